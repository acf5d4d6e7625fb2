// Log in with an ACL token: checked with /v1/acl/token/self, then kept in localStorage and sent as
// X-Consul-Token on every request.
import { get, token, setToken } from './api.js';
import { esc, notice } from './util.js';

export async function whoami() {
  const el = document.getElementById('whoami');
  if (!token()) { el.textContent = 'Log in'; return; }
  try {
    const r = await get('/v1/acl/token/self');
    el.textContent = r.data.Description ? `Token: ${r.data.Description}` : `Token ${r.data.AccessorID.slice(0, 8)}`;
  } catch { el.textContent = 'Token (not valid)'; }
}

export async function aclView(main) {
  main.innerHTML = `<h1>ACL token</h1><div id="acl-current" class="muted"></div>
    <form class="form" id="acl-form"><label for="acl-secret">Token (SecretID)</label>
    <input type="password" id="acl-secret" size="46" autocomplete="off">
    <div class="row"><button class="primary" type="submit" id="acl-login">Log in</button>
    <button type="button" id="acl-logout">Log out</button></div></form>`;
  const current = main.querySelector('#acl-current');
  const describe = async () => {
    if (!token()) { current.textContent = 'No token: requests use the agent\'s default (anonymous) token.'; return; }
    try {
      const r = await get('/v1/acl/token/self');
      const pol = (r.data.Policies || []).map(p => p.Name).join(', ') || 'none';
      current.innerHTML = `Logged in: AccessorID <code>${esc(r.data.AccessorID)}</code>` +
        `${r.data.Description ? ' (' + esc(r.data.Description) + ')' : ''}; policies: ${esc(pol)}.`;
    } catch (e) { current.textContent = `The stored token is not valid: ${e.body || e.message}`; }
  };
  main.querySelector('#acl-form').onsubmit = async ev => {
    ev.preventDefault();
    const secret = main.querySelector('#acl-secret').value.trim();
    if (!secret) { notice('Paste a token\'s SecretID.', 'error'); return; }
    try {
      await get('/v1/acl/token/self', { secret });
    } catch (e) {
      notice(e.status === 401 || /disabled/i.test(e.body || '') ? 'ACLs are not enabled on this agent: no token is needed.'
        : `Log in failed: ${e.body || e.message}`, 'error');
      return;
    }
    setToken(secret);
    main.querySelector('#acl-secret').value = '';
    notice('Logged in.', 'ok');
    await describe(); await whoami();
  };
  main.querySelector('#acl-logout').onclick = async () => {
    setToken(''); notice('Logged out.', 'ok'); await describe(); await whoami();
  };
  await describe();
}
