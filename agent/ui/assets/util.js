// Small helpers shared by the views.

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const esc = v => String(v ?? '').replace(/[&<>"']/g, c => ESC[c]);
export const enc = encodeURIComponent;
// a KV key or prefix in a URL: each segment encoded, the slashes kept
export const encPath = p => p.split('/').map(encodeURIComponent).join('/');

export function notice(text, kind = 'info') {
  const el = document.getElementById('notice');
  if (!text) { el.hidden = true; el.textContent = ''; return; }
  el.className = kind; el.textContent = text; el.hidden = false;
}

export function describeError(e) {
  if (e && e.status === 403) {
    return `Permission denied (${e.body || '403'}). Log in with a token that may read this (top right).`;
  }
  if (e && e.status) return `Request to ${e.path} failed: ${e.message}`;
  return `Request failed: ${e && e.message ? e.message : e}`;
}

// "passing" | "warning" | "critical" | "none" from a list of check statuses or a summary
export function worst(statuses) {
  if (statuses.includes('critical')) return 'critical';
  if (statuses.includes('warning')) return 'warning';
  if (statuses.includes('passing')) return 'passing';
  return 'none';
}

export function summaryStatus(s) {
  if (s.ChecksCritical > 0) return 'critical';
  if (s.ChecksWarning > 0) return 'warning';
  if (s.ChecksPassing > 0) return 'passing';
  return 'none';
}

export const tags = list => (list || []).map(t => `<span class="tag">${esc(t)}</span>`).join('');

export function b64decode(v) {
  if (v == null) return '';
  const bin = atob(v);
  const bytes = Uint8Array.from(bin, c => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}
