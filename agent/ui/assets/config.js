// Config entries, read only: every kind the token may read, each entry as JSON.
import { get } from './api.js';
import { esc } from './util.js';

const KINDS = ['proxy-defaults', 'service-defaults', 'service-router', 'service-splitter', 'service-resolver',
  'service-intentions', 'ingress-gateway', 'terminating-gateway', 'mesh', 'jwt-provider'];

export async function configView(main, params, signal) {
  main.innerHTML = '<h1>Config entries</h1><div id="cfg"><p class="muted">Loading…</p></div>';
  const sections = await Promise.all(KINDS.map(async kind => {
    try {
      const r = await get(`/v1/config/${kind}`, { signal });
      return { kind, entries: r.data || [] };
    } catch (e) {
      return { kind, entries: [], error: e.status === 403 ? 'not readable with this token' : e.message };
    }
  }));
  if (signal.aborted) return;
  const shown = sections.filter(s => s.entries.length || s.error);
  main.querySelector('#cfg').innerHTML = shown.length ? shown.map(s => `<h2 data-kind="${esc(s.kind)}">${esc(s.kind)}` +
    ` <span class="muted">(${s.entries.length})</span></h2>` + (s.error ? `<p class="muted">${esc(s.error)}</p>` : '') +
    s.entries.map(e => `<details class="form" data-entry="${esc(s.kind)}/${esc(e.Name)}"><summary><b>${esc(e.Name)}</b>` +
      ` <span class="muted">ModifyIndex ${e.ModifyIndex ?? ''}</span></summary><pre class="output">${esc(JSON.stringify(e, null, 2))}</pre></details>`).join(''))
    .join('') : '<p class="muted">No config entries.</p>';
}
