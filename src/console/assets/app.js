// The router (hash routes: #/jobs/ID, shareable, no server round trip),
// the token form and live updates by polling.

import { token, setToken, get, post, loadMe, whoami, can } from './api.js';
import { h, fill, note } from './dom.js';
import * as pages from './pages.js';

const POLL_MS = 5000;

const ROUTES = [
  [/^\/$/, pages.overview, 'overview'],
  [/^\/connections$/, pages.connections, 'connections'],
  [/^\/connections\/new$/, pages.connectionNew, 'connections'],
  [/^\/connections\/(?<id>[0-9a-f-]{36})$/, pages.connection, 'connections'],
  [/^\/projects$/, pages.projects, 'projects'],
  [/^\/projects\/new$/, pages.projectNew, 'projects'],
  [/^\/projects\/(?<id>[0-9a-f-]{36})$/, pages.project, 'projects'],
  [/^\/jobs$/, pages.jobs, 'jobs'],
  [/^\/jobs\/(?<id>[0-9a-f-]{36})$/, pages.job, 'jobs'],
  [/^\/reconcile$/, pages.reconcile, 'reconcile'],
  [/^\/reconcile\/(?<id>[0-9a-f-]{36})$/, pages.run, 'reconcile'],
  [/^\/events$/, pages.events, 'events'],
  [/^\/audit$/, pages.audit, 'audit'],
];

const main = document.getElementById('main');
let current = null;
let rendering = false;

function parse() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(1) : '/';
  const [path, qs] = raw.split('?');
  const params = Object.fromEntries(new URLSearchParams(qs || ''));
  for (const [re, page, nav] of ROUTES) {
    const m = path.match(re);
    if (m) return { page, nav, params: { ...params, ...(m.groups || {}) } };
  }
  return { page: null, nav: null, params };
}

// Renders run one after another: a navigation during a poll's redraw is
// drawn after it, never under it.
let chain = Promise.resolve();
function render(focus, live = false) {
  chain = chain.then(() => draw(focus, live));
  return chain;
}

async function draw(focus, live) {
  const route = parse();
  current = route;
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === route.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!route.page) {
    document.title = 'Not found · cpi console';
    fill(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Overview')));
    return;
  }
  rendering = true;
  try {
    if (live) {
      // A poll's redraw is built aside and swapped in only when it differs:
      // the polite live region then speaks of changes, not of every poll.
      const box = document.createElement('div');
      await route.page(box, route.params);
      if (box.innerHTML !== main.innerHTML) main.replaceChildren(...box.childNodes);
    } else {
      await route.page(main, route.params);
    }
    document.getElementById('updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    // Without a token (and no anonymous reading) every page answers 401:
    // say how to get in rather than echo the API's refusal.
    if (e.status === 401 && !token()) {
      const me = whoami();
      const how = me && me.sso
        ? 'Press Sign in at the top, or enter an API token in the box there and press Use token.'
        : 'Enter your token in the box at the top and press Use token; ask your cpi administrator for one (cpi token create).';
      fill(main, h('h1', {}, 'Sign in to see this page'),
        note('info', `This server shows nothing to anonymous callers. ${how}`));
    } else {
      fill(main, h('h1', {}, 'Cannot load this page'), note('error', e.message));
    }
  } finally {
    rendering = false;
  }
  if (focus) main.focus({ preventScroll: true });
}

// Live pages are redrawn in place, unless the reader is busy in them
// (focus inside the page, a form open) or the tab is hidden.
function poll() {
  if (rendering || document.hidden || !current || !current.page || !current.page.live) return;
  if (main.contains(document.activeElement) && document.activeElement !== main) return;
  if (main.querySelector('form:not(.filters), #url-box code, #confirm-delete')) return;
  render(false, true);
}

// Single sign-on: who is signed in, Sign in / Sign out; the token form
// stays for API tokens and hides while someone is signed in.
function showSso() {
  const me = whoami();
  const box = document.getElementById('sso');
  const signedIn = Boolean(me && me.signed_in);
  box.hidden = !(me && me.sso);
  document.getElementById('sso-login').hidden = signedIn || Boolean(token());
  document.getElementById('sso-logout').hidden = !signedIn;
  const user = document.getElementById('sso-user');
  user.hidden = !signedIn;
  user.textContent = signedIn ? `Signed in as ${me.actor.replace(/^user:/, '')}` : '';
  document.getElementById('auth').hidden = signedIn;
}

function showAuth() {
  showSso();
  // The audit trail's link only for whom GET /audit answers.
  document.getElementById('nav-audit').hidden = !can('audit');
  const has = Boolean(token());
  const state = document.getElementById('auth-state');
  document.getElementById('token').hidden = has;
  document.querySelector('label[for="token"]').hidden = has;
  document.getElementById('token-use').hidden = has;
  document.getElementById('token-forget').hidden = !has;
  state.textContent = has ? 'Token set for this tab' : 'Read-only: no token';
}

document.getElementById('auth').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = document.getElementById('token');
  const value = input.value.trim();
  input.value = '';
  if (!value) return;
  setToken(value);
  // GET /connections/{id} needs the token: a cheap check that it is right
  // when a connection exists; otherwise the next write tells.
  try {
    const list = await get('/connections');
    if (list.length) await get(`/connections/${list[0].id}`);
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      setToken(null);
      showAuth();
      document.getElementById('auth-state').textContent = e.status === 401 ? 'Wrong token' : 'The server has no token configured';
      return;
    }
  }
  await loadMe();
  showAuth();
  render(false);
});

document.getElementById('sso-logout').addEventListener('click', async () => {
  try {
    // Signed out here; a provider that signs out too comes back to the
    // console afterwards (post_logout_redirect_uri).
    const out = await post('/auth/logout');
    if (out && out.end_session_url) {
      location.assign(out.end_session_url);
      return;
    }
  } finally {
    await loadMe();
    showAuth();
    render(false);
  }
});

document.getElementById('token-forget').addEventListener('click', async () => {
  setToken(null);
  await loadMe();
  showAuth();
  render(false);
  document.getElementById('token').focus();
});

document.getElementById('skip').addEventListener('click', (ev) => {
  ev.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', () => render(true));
loadMe().then(() => {
  showAuth();
  render(false);
});
setInterval(poll, POLL_MS);
