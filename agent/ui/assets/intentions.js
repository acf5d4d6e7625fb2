// Intentions: the list in precedence order (the order the mesh evaluates them), and a form to
// create, edit and delete one, addressed by its exact source and destination.
import { get, request, watch } from './api.js';
import { esc, enc, notice, describeError } from './util.js';

export function intentionsView(main, params, signal) {
  main.innerHTML = `<h1>Intentions</h1><div class="toolbar"><a href="#/intentions/new"><button class="primary">Create</button></a>
    <span class="muted">Listed in precedence order: the first one that matches a connection decides it.</span></div>
    <table id="intentions"><thead><tr><th>Precedence</th><th>Source</th><th></th><th>Destination</th><th>Action</th>
    <th>Description</th><th></th></tr></thead><tbody></tbody></table>`;
  const body = main.querySelector('#intentions tbody');
  watch('/v1/connect/intentions', {}, signal, r => {
    const list = (r.data || []).slice().sort((a, b) => (b.Precedence - a.Precedence)
      || a.DestinationName.localeCompare(b.DestinationName) || a.SourceName.localeCompare(b.SourceName));
    if (!list.length) { body.innerHTML = '<tr><td colspan="7" class="muted">No intentions.</td></tr>'; return; }
    body.innerHTML = list.map(ix => {
      const action = ix.Action || (ix.Permissions ? 'L7' : '');
      const edit = `#/intentions/edit/${enc(ix.SourceName)}/${enc(ix.DestinationName)}`;
      return `<tr data-source="${esc(ix.SourceName)}" data-destination="${esc(ix.DestinationName)}">` +
        `<td>${ix.Precedence}</td><td>${esc(ix.SourceName)}</td><td>→</td><td>${esc(ix.DestinationName)}</td>` +
        `<td><span class="badge ${esc(action)}">${esc(action)}</span></td><td>${esc(ix.Description || '')}</td>` +
        `<td><a href="${edit}">Edit</a></td></tr>`;
    }).join('');
  }, e => notice(describeError(e), 'error'));
}

export async function intentionFormView(main, { source, destination }, signal) {
  const editing = source !== undefined;
  main.innerHTML = `<h1>${editing ? 'Edit intention' : 'Create intention'}</h1>
    <form class="form" id="ix-form">
      <label for="ix-source">Source service</label><input type="text" id="ix-source" size="40" placeholder="web, or * for any">
      <label for="ix-destination">Destination service</label><input type="text" id="ix-destination" size="40" placeholder="api, or *">
      <label for="ix-action">Action</label><select id="ix-action"><option value="allow">allow</option><option value="deny">deny</option></select>
      <label for="ix-description">Description</label><input type="text" id="ix-description" size="60">
      <div class="row"><button class="primary" type="submit" id="ix-save">Save</button>
      <a href="#/intentions"><button type="button">Cancel</button></a><span class="spacer"></span>
      ${editing ? '<button type="button" class="danger" id="ix-delete">Delete</button>' : ''}</div></form>`;
  const $ = id => main.querySelector(id);
  if (editing) {
    $('#ix-source').value = source; $('#ix-destination').value = destination;
    $('#ix-source').readOnly = true; $('#ix-destination').readOnly = true;
    try {
      const r = await get('/v1/connect/intentions/exact', { query: { source, destination }, signal });
      $('#ix-action').value = r.data.Action || 'allow';
      $('#ix-description').value = r.data.Description || '';
      if (r.data.Permissions) notice('This intention has L7 permissions; saving here replaces them with the action chosen.', 'info');
    } catch (e) { notice(describeError(e), 'error'); }
  }
  const pair = () => ({ source: $('#ix-source').value.trim(), destination: $('#ix-destination').value.trim() });
  $('#ix-form').onsubmit = async ev => {
    ev.preventDefault();
    const p = pair();
    if (!p.source || !p.destination) { notice('Both a source and a destination are needed.', 'error'); return; }
    try {
      await request('PUT', '/v1/connect/intentions/exact', { query: p,
        json: { SourceType: 'consul', Action: $('#ix-action').value, Description: $('#ix-description').value } });
      notice(`Saved ${p.source} → ${p.destination}: ${$('#ix-action').value}.`, 'ok');
      location.hash = '#/intentions';
    } catch (e) { notice(describeError(e), 'error'); }
  };
  if (editing) {
    $('#ix-delete').onclick = async ev => {
      if (ev.target.dataset.armed !== '1') { ev.target.dataset.armed = '1'; ev.target.textContent = 'Confirm delete'; return; }
      try {
        await request('DELETE', '/v1/connect/intentions/exact', { query: pair() });
        notice(`Deleted ${source} → ${destination}.`, 'ok');
        location.hash = '#/intentions';
      } catch (e) { notice(describeError(e), 'error'); }
    };
  }
}
