// Services and nodes: lists with health, a service's instances with every check and its output.
import { watch } from './api.js';
import { esc, enc, tags, summaryStatus, worst, notice, describeError } from './util.js';

function counts(s) {
  return `<span class="counts"><span class="p">${s.ChecksPassing} passing</span>` +
    (s.ChecksWarning ? `<span class="w">${s.ChecksWarning} warning</span>` : '') +
    (s.ChecksCritical ? `<span class="c">${s.ChecksCritical} critical</span>` : '') + '</span>';
}

function applyFilter(table, text) {
  const needle = text.trim().toLowerCase();
  for (const tr of table.tBodies[0].rows) {
    const hide = needle !== '' && !tr.dataset.search.includes(needle);
    if (tr.hidden !== hide) tr.hidden = hide;
  }
}

function serviceRow(s) {
  const st = summaryStatus(s);
  const mesh = s.ConnectedWithProxy ? ' <span class="tag">in mesh</span>' : '';
  const kind = s.Kind ? ` <span class="tag">${esc(s.Kind)}</span>` : '';
  return `<tr data-service="${esc(s.Name)}" data-status="${st}" data-search="${esc((s.Name + ' ' + (s.Tags || []).join(' ')).toLowerCase())}">` +
    `<td><span class="health ${st}" title="${st}"></span><a href="#/services/${enc(s.Name)}">${esc(s.Name)}</a>${kind}${mesh}</td>` +
    `<td>${counts(s)}</td><td>${s.InstanceCount}</td><td>${tags(s.Tags)}</td></tr>`;
}

export function servicesView(main, params, signal) {
  main.innerHTML = `<h1>Services <span class="muted" id="svc-count"></span></h1>
    <div class="toolbar"><input type="search" id="svc-filter" placeholder="Search by name or tag" size="36">
    <label class="muted"><input type="checkbox" id="svc-proxies"> show sidecar proxies</label></div>
    <table id="services"><thead><tr><th>Service</th><th>Health checks</th><th>Instances</th><th>Tags</th></tr></thead>
    <tbody></tbody></table><p class="muted" id="svc-filtered" hidden>Some services are hidden: this token may not
    read them. <a href="#/acl">Log in</a> with one that may.</p>`;
  const table = main.querySelector('#services');
  const filter = main.querySelector('#svc-filter');
  const proxies = main.querySelector('#svc-proxies');
  let last = [];
  let shown = { names: [], html: [] };   // what the table holds now, row by row
  const draw = () => {
    const show = last.filter(s => proxies.checked || (s.Kind !== 'connect-proxy'));
    const names = show.map(s => s.Name);
    const html = show.map(serviceRow);
    const body = table.tBodies[0];
    if (names.length === shown.names.length && names.every((n, i) => n === shown.names[i])) {
      // the same services: redraw only the rows that changed (a health change touches one or two)
      html.forEach((h, i) => { if (h !== shown.html[i]) body.rows[i].outerHTML = h; });
    } else {
      body.innerHTML = html.join('');
    }
    shown = { names, html };
    main.querySelector('#svc-count').textContent = `(${show.length})`;
    applyFilter(table, filter.value);
  };
  filter.addEventListener('input', () => applyFilter(table, filter.value));
  proxies.addEventListener('change', draw);
  let first = true;
  watch('/v1/internal/ui/services', {}, signal, r => {
    last = r.data || [];
    draw();
    main.querySelector('#svc-filtered').hidden = !r.filtered;
    if (first) { first = false; markRendered('services'); }
  }, e => notice(describeError(e), 'error'));
}

// Benchmarks and tests read this: when the first frame showing a page's data was painted
// (requestAnimationFrame runs before that frame's paint; the task after it runs once it is done).
function markRendered(page) {
  requestAnimationFrame(() => setTimeout(() => {
    performance.mark(`lictor:${page}:rendered`);
    document.body.dataset.rendered = page;
  }, 0));
}

export function tabs(name, active) {
  const t = (href, label, key) => `<a href="${href}" class="${key === active ? 'active' : ''}">${label}</a>`;
  return `<div class="tabs">${t(`#/services/${enc(name)}`, 'Instances', 'instances')}` +
    `${t(`#/services/${enc(name)}/topology`, 'Topology', 'topology')}</div>`;
}

function checkHTML(c) {
  return `<div class="check" data-check="${esc(c.CheckID)}" data-status="${esc(c.Status)}">` +
    `<span class="badge ${esc(c.Status)}">${esc(c.Status)}</span> <b>${esc(c.Name || c.CheckID)}</b>` +
    ` <span class="muted">${esc(c.CheckID)}${c.Type ? ' · ' + esc(c.Type) : ''}${c.ServiceID ? '' : ' · node check'}</span>` +
    (c.Notes ? `<div class="muted">${esc(c.Notes)}</div>` : '') +
    `<pre class="output">${c.Output ? esc(c.Output) : '<span class="muted">(no output)</span>'}</pre></div>`;
}

export function serviceView(main, { name }, signal) {
  main.innerHTML = `<h1><span class="health" id="svc-health"></span>${esc(name)}</h1>${tabs(name, 'instances')}
    <table id="instances"><thead><tr><th>Instance</th><th>Node</th><th>Address</th><th>Tags</th><th>Health checks</th></tr></thead>
    <tbody><tr><td colspan="5" class="muted">Loading…</td></tr></tbody></table>`;
  const body = main.querySelector('#instances tbody');
  watch(`/v1/health/service/${enc(name)}`, {}, signal, r => {
    const rows = r.data || [];
    const all = rows.flatMap(x => (x.Checks || []).map(c => c.Status));
    main.querySelector('#svc-health').className = `health ${worst(all)}`;
    if (!rows.length) { body.innerHTML = `<tr><td colspan="5" class="muted">No instances of ${esc(name)} are registered.</td></tr>`; return; }
    body.innerHTML = rows.map(x => {
      const s = x.Service, n = x.Node;
      const st = worst((x.Checks || []).map(c => c.Status));
      const addr = `${s.Address || n.Address}${s.Port ? ':' + s.Port : ''}`;
      return `<tr data-instance="${esc(s.ID)}" data-status="${st}"><td><span class="health ${st}"></span>${esc(s.ID)}</td>` +
        `<td><a href="#/nodes/${enc(n.Node)}">${esc(n.Node)}</a></td><td>${esc(addr)}</td><td>${tags(s.Tags)}</td>` +
        `<td>${(x.Checks || []).map(checkHTML).join('') || '<span class="muted">no checks</span>'}</td></tr>`;
    }).join('');
  }, e => notice(describeError(e), 'error'));
}

export function nodesView(main, params, signal) {
  main.innerHTML = `<h1>Nodes</h1><table id="nodes"><thead><tr><th>Node</th><th>Address</th><th>Health checks</th>
    <th>Services</th></tr></thead><tbody></tbody></table>`;
  const body = main.querySelector('#nodes tbody');
  watch('/v1/internal/ui/nodes', {}, signal, r => {
    body.innerHTML = (r.data || []).map(n => {
      const st = worst((n.Checks || []).filter(c => !c.ServiceID).map(c => c.Status));
      const svcs = [...new Set((n.Services || []).map(s => s.Service))];
      return `<tr data-node="${esc(n.Node)}"><td><span class="health ${st}"></span><a href="#/nodes/${enc(n.Node)}">${esc(n.Node)}</a></td>` +
        `<td>${esc(n.Address)}</td><td>${(n.Checks || []).filter(c => !c.ServiceID).map(c => `<span class="badge ${esc(c.Status)}">${esc(c.Name || c.CheckID)}</span>`).join(' ')}</td>` +
        `<td>${svcs.map(s => `<a class="tag" href="#/services/${enc(s)}">${esc(s)}</a>`).join('')}</td></tr>`;
    }).join('');
    markRendered('nodes');
  }, e => notice(describeError(e), 'error'));
}

export function nodeView(main, { name }, signal) {
  main.innerHTML = `<h1>Node ${esc(name)}</h1><div id="node-meta" class="muted"></div><h2>Health checks</h2><div id="node-checks"></div>
    <h2>Services</h2><table id="node-services"><thead><tr><th>Service</th><th>ID</th><th>Port</th><th>Tags</th></tr></thead><tbody></tbody></table>`;
  watch(`/v1/health/node/${enc(name)}`, {}, signal, r => {
    main.querySelector('#node-checks').innerHTML = (r.data || []).map(checkHTML).join('') || '<p class="muted">No checks.</p>';
  }, e => notice(describeError(e), 'error'));
  watch(`/v1/catalog/node/${enc(name)}`, {}, signal, r => {
    if (!r.data) { main.querySelector('#node-meta').textContent = 'This node is not registered.'; return; }
    const n = r.data.Node || {};
    main.querySelector('#node-meta').textContent = `Address ${n.Address || ''} · datacenter ${n.Datacenter || ''}`;
    main.querySelector('#node-services tbody').innerHTML = Object.values(r.data.Services || {}).map(s =>
      `<tr><td><a href="#/services/${enc(s.Service)}">${esc(s.Service)}</a></td><td>${esc(s.ID)}</td><td>${s.Port || ''}</td><td>${tags(s.Tags)}</td></tr>`).join('');
  }, e => notice(describeError(e), 'error'));
}
