// The single page: a hash router that mounts one view at a time. Each view gets an AbortSignal
// that stops its blocking queries when the user navigates away.
import { get } from './api.js';
import { notice } from './util.js';
import { servicesView, serviceView, nodesView, nodeView } from './catalog.js';
import { topologyView } from './topology.js';
import { kvView } from './kv.js';
import { intentionsView, intentionFormView } from './intentions.js';
import { configView } from './config.js';
import { aclView, whoami } from './acl.js';

const ROUTES = [
  [/^\/?$/, 'services', servicesView, () => ({})],
  [/^\/services$/, 'services', servicesView, () => ({})],
  [/^\/services\/([^/]+)$/, 'services', serviceView, m => ({ name: m[1] })],
  [/^\/services\/([^/]+)\/topology$/, 'services', topologyView, m => ({ name: m[1] })],
  [/^\/nodes$/, 'nodes', nodesView, () => ({})],
  [/^\/nodes\/([^/]+)$/, 'nodes', nodeView, m => ({ name: m[1] })],
  [/^\/kv\/(.*)$/, 'kv', kvView, m => ({ path: m[1] })],
  [/^\/intentions$/, 'intentions', intentionsView, () => ({})],
  [/^\/intentions\/new$/, 'intentions', intentionFormView, () => ({})],
  [/^\/intentions\/edit\/([^/]+)\/([^/]+)$/, 'intentions', intentionFormView, m => ({ source: m[1], destination: m[2] })],
  [/^\/config$/, 'config', configView, () => ({})],
  [/^\/acl$/, 'acl', aclView, () => ({})],
];

let current = null;

function route() {
  if (current) current.abort();
  current = new AbortController();
  const path = location.hash.replace(/^#/, '');
  const main = document.getElementById('main');
  const keep = document.getElementById('notice');
  if (keep.className !== 'ok') notice('');   // a success message survives the navigation it caused
  else setTimeout(() => { if (keep.className === 'ok') notice(''); }, 4000);
  for (const [re, nav, view, params] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    const p = Object.fromEntries(Object.entries(params(m)).map(([k, v]) => [k, decodeURIComponent(v)]));
    for (const a of document.querySelectorAll('header [data-nav]')) a.classList.toggle('active', a.dataset.nav === nav);
    Promise.resolve(view(main, p, current.signal)).catch(e => notice(String(e), 'error'));
    return;
  }
  main.innerHTML = '<h1>Not found</h1><p><a href="#/services">Services</a></p>';
}

window.addEventListener('hashchange', route);
route();
whoami();
get('/v1/catalog/datacenters').then(r => { document.getElementById('dc').textContent = (r.data || [])[0] || ''; })
  .catch(() => {});
