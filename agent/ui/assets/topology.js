// A service's topology: downstreams on the left, the service in the middle, upstreams on the right,
// drawn as inline SVG. Each box is coloured by health; each edge by the intention decision
// (allow green, deny red and dashed, L7 permissions amber), and both redraw live.
import { watch } from './api.js';
import { esc, enc, summaryStatus, worst, notice, describeError } from './util.js';
import { tabs } from './catalog.js';

const W = 960, BOX_W = 220, BOX_H = 46, GAP = 18, TOP = 40;
const COL = { down: 30, center: (W - BOX_W) / 2, up: W - BOX_W - 30 };

function edgeClass(intention) {
  if (!intention) return 'allow';
  if (intention.HasPermissions) return 'l7';
  return intention.Allowed ? 'allow' : 'deny';
}

function box(x, y, s, status, cls, link) {
  const sub = s.sub || `${s.InstanceCount ?? 0} instance${s.InstanceCount === 1 ? '' : 's'} · ${status}`;
  const inner = `<rect x="${x}" y="${y}" width="${BOX_W}" height="${BOX_H}" rx="6"></rect>` +
    `<text x="${x + 12}" y="${y + 19}">${esc(s.Name)}</text><text class="sub" x="${x + 12}" y="${y + 36}">${esc(sub)}</text>`;
  const g = `<g class="node ${cls} ${status}" data-service="${esc(s.Name)}" data-status="${status}">${inner}</g>`;
  return link ? `<a href="#/services/${enc(s.Name)}/topology">${g}</a>` : g;
}

function edge(x1, y1, x2, y2, from, to, intention) {
  const cls = edgeClass(intention);
  const mx = (x1 + x2) / 2;
  const label = cls === 'l7' ? 'L7' : cls;
  const why = intention && intention.Reason ? intention.Reason : '';
  return `<g class="edge ${cls}" data-from="${esc(from)}" data-to="${esc(to)}" data-decision="${cls}">` +
    `<title>${esc(from)} → ${esc(to)}: ${esc(why)}</title>` +
    `<path d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"></path>` +
    `<text x="${mx - 12}" y="${(y1 + y2) / 2 - 6}">${label}</text></g>`;
}

export function draw(name, topo, selfStatus, selfCount) {
  const downs = topo.Downstreams || [], ups = topo.Upstreams || [];
  const rows = Math.max(downs.length, ups.length, 1);
  const H = TOP + rows * (BOX_H + GAP) + 20;
  const cy = TOP + (rows * (BOX_H + GAP) - GAP) / 2 - BOX_H / 2;
  const y = i => TOP + i * (BOX_H + GAP);
  const parts = [
    `<text x="${COL.down}" y="22" class="muted" font-size="12">Downstreams</text>`,
    `<text x="${COL.up}" y="22" font-size="12">Upstreams</text>`,
  ];
  downs.forEach((s, i) => parts.push(edge(COL.down + BOX_W, y(i) + BOX_H / 2, COL.center, cy + BOX_H / 2, s.Name, name, s.Intention)));
  ups.forEach((s, i) => parts.push(edge(COL.center + BOX_W, cy + BOX_H / 2, COL.up, y(i) + BOX_H / 2, name, s.Name, s.Intention)));
  downs.forEach((s, i) => parts.push(box(COL.down, y(i), s, summaryStatus(s), 'downstream', true)));
  ups.forEach((s, i) => parts.push(box(COL.up, y(i), s, summaryStatus(s), 'upstream', true)));
  parts.push(box(COL.center, cy, { Name: name, InstanceCount: selfCount }, selfStatus, 'center', false));
  return `<svg class="topology" id="topology" viewBox="0 0 ${W} ${H}" height="${H}" xmlns="http://www.w3.org/2000/svg">${parts.join('')}</svg>`;
}

export function topologyView(main, { name }, signal) {
  main.innerHTML = `<h1><span class="health" id="svc-health"></span>${esc(name)}</h1>${tabs(name, 'topology')}
    <div id="topo"><p class="muted">Loading…</p></div>
    <p class="legend"><span class="badge allow">allow</span> <span class="badge deny">deny</span>
    <span class="badge warning">L7 permissions</span> <span class="muted">Edges show the intention decision; boxes the health of each service.
    Upstreams come from the service's sidecar proxy registrations.</span></p><p id="topo-note" class="muted"></p>`;
  let topo = null, self = null;
  const render = () => {
    if (!topo || !self) return;
    const statuses = self.flatMap(x => (x.Checks || []).map(c => c.Status));
    const st = worst(statuses);
    main.querySelector('#svc-health').className = `health ${st}`;
    main.querySelector('#topo').innerHTML = draw(name, topo, st, self.length);
    const empty = !(topo.Upstreams || []).length && !(topo.Downstreams || []).length;
    main.querySelector('#topo-note').textContent = (empty ? `${name} has no upstreams or downstreams in the mesh. ` : '') +
      (topo.FilteredByACLs ? 'Some services are hidden: your token may not read them.' : '');
  };
  watch(`/v1/internal/ui/service-topology/${enc(name)}`, { kind: '' }, signal, r => { topo = r.data || {}; render(); },
    e => notice(describeError(e), 'error'));
  watch(`/v1/health/service/${enc(name)}`, {}, signal, r => { self = r.data || []; render(); },
    e => notice(describeError(e), 'error'));
}
