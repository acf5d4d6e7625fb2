// The HTTP API client: every request carries the token kept in localStorage as X-Consul-Token,
// and watch() runs a blocking query (?index=&wait=) in a loop so a view redraws as soon as the
// data behind it changes.

const TOKEN_KEY = 'lictor.token';

export function token() { return localStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(secret) {
  if (secret) localStorage.setItem(TOKEN_KEY, secret); else localStorage.removeItem(TOKEN_KEY);
}

export class HTTPError extends Error {
  constructor(status, body, path) {
    super(`${status}: ${body.trim() || 'request failed'}`);
    this.status = status; this.body = body.trim(); this.path = path;
  }
}

// request('GET', '/v1/kv/a', {query: {keys: ''}, body, signal, secret}) -> {data, index, filtered}
export async function request(method, path, opts = {}) {
  const headers = {};
  const secret = opts.secret !== undefined ? opts.secret : token();
  if (secret) headers['X-Consul-Token'] = secret;
  let url = path;
  if (opts.query) {
    const q = Object.entries(opts.query).map(([k, v]) => v === '' ? encodeURIComponent(k)
      : `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
    if (q) url += (url.includes('?') ? '&' : '?') + q;
  }
  if (opts.json !== undefined) { headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(opts.json); }
  const res = await fetch(url, { method, headers, body: opts.body, signal: opts.signal, cache: 'no-store' });
  const text = await res.text();
  if (!res.ok) throw new HTTPError(res.status, text, path);
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = text; } }
  return { data, index: Number(res.headers.get('X-Consul-Index') || 0),
           filtered: res.headers.get('X-Consul-Results-Filtered-By-ACLs') === 'true' };
}

export const get = (path, opts) => request('GET', path, opts);

// Calls onData(result) now and after every change, until signal aborts. onError(err) gets failures
// (a 404 is passed to onData as {data: null} so "not found" views update live too).
export async function watch(path, query, signal, onData, onError) {
  let index = 0;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const q = { ...query };
      if (index > 0) { q.index = String(index); q.wait = '30s'; }
      let r;
      try { r = await get(path, { query: q, signal }); } catch (e) {
        if (!(e instanceof HTTPError && e.status === 404)) throw e;
        r = { data: null, index: 0, notFound: true };
      }
      failures = 0;
      if (signal.aborted) return;
      if (r.index === 0 || r.index !== index) { onData(r); }
      // Consul's rule: an index that went backwards (a restore) restarts from 0
      index = r.index < index ? 0 : r.index;
      if (r.index === 0) await sleep(1000, signal);
    } catch (e) {
      if (signal.aborted || e.name === 'AbortError') return;
      failures += 1;
      if (onError) onError(e);
      await sleep(Math.min(1000 * failures, 10000), signal);
    }
  }
}

export function sleep(ms, signal) {
  return new Promise(resolve => {
    const t = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
