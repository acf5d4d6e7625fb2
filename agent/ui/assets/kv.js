// The KV browser and editor. Every write is a check-and-set: a new key is written with ?cas=0 (only
// if it does not exist yet) and an edit or delete with ?cas=<the ModifyIndex the editor loaded>,
// so two people editing the same key cannot overwrite each other: the second save is refused and
// says so, keeping the text that was not saved.
import { get, request, watch } from './api.js';
import { esc, encPath, b64decode, notice, describeError } from './util.js';

const link = key => `#/kv/${encPath(key)}`;

function crumbs(path) {
  const parts = path.split('/').filter(Boolean);
  let acc = '';
  const out = [`<a href="#/kv/">Key/Value</a>`];
  parts.forEach((p, i) => {
    const last = i === parts.length - 1 && !path.endsWith('/');
    acc += p + (last ? '' : '/');
    out.push(last ? `<span>/ ${esc(p)}</span>` : `<a href="${link(acc)}">/ ${esc(p)}</a>`);
  });
  return `<div class="crumbs">${out.join('')}</div>`;
}

export function kvView(main, { path }, signal) {
  if (path === '' || path.endsWith('/')) return folderView(main, path, signal);
  return keyView(main, path, signal);
}

function folderView(main, prefix, signal) {
  main.innerHTML = `${crumbs(prefix)}<h1>${prefix ? esc(prefix) : 'Key/Value'}</h1>
    <div class="toolbar"><button class="primary" id="kv-new">Create</button></div>
    <form class="form" id="kv-create" hidden>
      <label for="kv-name">Key or folder (end with / for a folder)</label>
      <input type="text" id="kv-name" size="50" placeholder="${esc(prefix)}name" autocomplete="off">
      <label for="kv-value">Value</label><textarea id="kv-value"></textarea>
      <div class="row"><button class="primary" type="submit" id="kv-save">Save</button>
      <button type="button" id="kv-cancel">Cancel</button></div></form>
    <table id="kv-list"><thead><tr><th>Key</th><th></th></tr></thead><tbody></tbody></table>`;
  const form = main.querySelector('#kv-create');
  main.querySelector('#kv-new').onclick = () => { form.hidden = false; main.querySelector('#kv-name').focus(); };
  main.querySelector('#kv-cancel').onclick = () => { form.hidden = true; };
  form.onsubmit = async ev => {
    ev.preventDefault();
    const name = main.querySelector('#kv-name').value.trim().replace(/^\/+/, '');
    if (!name) { notice('Give the new key a name.', 'error'); return; }
    const key = prefix + name;
    const value = key.endsWith('/') ? '' : main.querySelector('#kv-value').value;
    try {
      const r = await request('PUT', `/v1/kv/${encPath(key)}`, { query: { cas: '0' }, body: value });
      if (r.data !== true) { notice(`"${key}" already exists: nothing was written. Open it to edit it.`, 'error'); return; }
      notice(`Created ${key}.`, 'ok');
      location.hash = link(key);
    } catch (e) { notice(describeError(e), 'error'); }
  };
  const body = main.querySelector('#kv-list tbody');
  let listed = null;
  watch(`/v1/kv/${encPath(prefix)}`, { keys: '', separator: '/' }, signal, r => {
    const keys = (r.data || []).filter(k => k !== prefix).sort((a, b) => (b.endsWith('/') - a.endsWith('/')) || a.localeCompare(b));
    if (listed === keys.join('\n')) return;   // a value changed, not the list: keep the rows (and an armed delete)
    listed = keys.join('\n');
    if (!keys.length) { body.innerHTML = `<tr><td colspan="2" class="muted">No keys${prefix ? ' under ' + esc(prefix) : ''}.</td></tr>`; return; }
    body.innerHTML = keys.map(k => `<tr data-key="${esc(k)}"><td><a href="${link(k)}">${esc(k.slice(prefix.length))}</a>` +
      `${k.endsWith('/') ? ' <span class="tag">folder</span>' : ''}</td>` +
      `<td><button class="danger" data-delete="${esc(k)}">Delete</button></td></tr>`).join('');
  }, e => notice(describeError(e), 'error'));
  body.addEventListener('click', async ev => {
    const btn = ev.target.closest('button[data-delete]');
    if (!btn) return;
    const key = btn.dataset.delete;
    const folder = key.endsWith('/');
    try {
      if (btn.dataset.armed !== '1') {
        // a key is deleted only as it was when the user asked: its ModifyIndex now is the CAS index
        if (!folder) btn.dataset.cas = String((await get(`/v1/kv/${encPath(key)}`)).data[0].ModifyIndex);
        btn.dataset.armed = '1'; btn.textContent = folder ? 'Confirm: delete everything under it' : 'Confirm delete';
        return;
      }
      const r = await request('DELETE', `/v1/kv/${encPath(key)}`, { query: folder ? { recurse: '' } : { cas: btn.dataset.cas } });
      if (r.data !== true) {
        btn.dataset.armed = ''; btn.textContent = 'Delete';   // the next click reads the new index
        notice(`Not deleted: ${key} was changed after you asked to delete it. Look at it first.`, 'error');
        return;
      }
      notice(`Deleted ${key}.`, 'ok');
    } catch (e) { notice(describeError(e), 'error'); }
  });
}

function keyView(main, key, signal) {
  main.innerHTML = `${crumbs(key)}<h1>${esc(key)}</h1><div id="kv-editor"><p class="muted">Loading…</p></div>`;
  const box = main.querySelector('#kv-editor');
  let loaded = null;   // the entry the editor holds: its ModifyIndex is the CAS index of the next save
  const show = entry => {
    loaded = entry;
    box.innerHTML = `<form class="form" id="kv-form"><label for="kv-value">Value</label><textarea id="kv-value"></textarea>
      <p class="muted" id="kv-meta"></p><div class="row"><button class="primary" type="submit" id="kv-save">Save</button>
      <button type="button" id="kv-reload">Reload</button><span class="spacer"></span>
      <button type="button" class="danger" id="kv-delete">Delete</button></div></form>`;
    box.querySelector('#kv-value').value = b64decode(entry.Value);
    box.querySelector('#kv-meta').textContent = `ModifyIndex ${entry.ModifyIndex} · Flags ${entry.Flags}` +
      (entry.Session ? ` · locked by session ${entry.Session}` : '');
    box.querySelector('#kv-form').onsubmit = save;
    box.querySelector('#kv-reload').onclick = () => load(true);
    box.querySelector('#kv-delete').onclick = del;
  };
  const load = async (announce) => {
    try {
      const r = await get(`/v1/kv/${encPath(key)}`, { signal });
      show(r.data[0]);
      if (announce) notice(`Reloaded ${key} (ModifyIndex ${r.data[0].ModifyIndex}).`, 'ok');
    } catch (e) {
      if (e.status === 404) { box.innerHTML = `<p class="muted">${esc(key)} does not exist (any more).</p>`; return; }
      notice(describeError(e), 'error');
    }
  };
  const save = async ev => {
    ev.preventDefault();
    const value = box.querySelector('#kv-value').value;
    try {
      const r = await request('PUT', `/v1/kv/${encPath(key)}`, { query: { cas: String(loaded.ModifyIndex) }, body: value });
      if (r.data === true) {
        notice(`Saved ${key}.`, 'ok');
        const keep = value;
        await load(false);
        box.querySelector('#kv-value').value = keep;
        return;
      }
      const now = await get(`/v1/kv/${encPath(key)}`).then(x => x.data[0].ModifyIndex).catch(() => 'deleted');
      notice(`Not saved: ${key} was changed by someone else after you opened it (you loaded ModifyIndex ` +
        `${loaded.ModifyIndex}, it is now ${now}). Your text is still in the editor; press Reload to see the ` +
        `current value, then make your change again.`, 'error');
    } catch (e) { notice(describeError(e), 'error'); }
  };
  const del = async ev => {
    const btn = ev.target;
    if (btn.dataset.armed !== '1') { btn.dataset.armed = '1'; btn.textContent = 'Confirm delete'; return; }
    try {
      const r = await request('DELETE', `/v1/kv/${encPath(key)}`, { query: { cas: String(loaded.ModifyIndex) } });
      if (r.data !== true) {
        notice(`Not deleted: ${key} was changed by someone else after you opened it. Reload to see it.`, 'error');
        return;
      }
      notice(`Deleted ${key}.`, 'ok');
      const parent = key.includes('/') ? key.slice(0, key.lastIndexOf('/') + 1) : '';
      location.hash = link(parent);
    } catch (e) { notice(describeError(e), 'error'); }
  };
  load(false);
}
