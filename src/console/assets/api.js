// The API client. The token is kept in sessionStorage (this tab, this
// session) and sent in the Authorization header only: never in a URL.
// Signed in by single sign-on instead, the browser sends the HttpOnly
// session cookie itself, and every action carries the session's CSRF
// token (from GET /auth/me) in X-CSRF-Token.

const KEY = 'cpi.api-token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

// Who the caller is (GET /auth/me): signed in or not, permissions.
let me = null;

export function whoami() {
  return me;
}

export async function loadMe() {
  try {
    me = await api('GET', '/auth/me');
  } catch {
    me = null;
  }
  return me;
}

// Whether the caller holds `permission` on at least one project: with a
// token typed in, the API decides (as before single sign-on); signed in,
// the page hides what the role may not do.
export function can(permission) {
  if (token()) return true;
  return Boolean(me && me.permissions && me.permissions.includes(permission) && (me.signed_in || me.actor !== 'anonymous'));
}

// Whether someone is identified (a token typed in, or signed in).
export function identified() {
  return Boolean(token()) || Boolean(me && me.signed_in);
}

// An answer other than 2xx: its status and the API's error body.
export class ApiError extends Error {
  constructor(status, body, text) {
    super((body && body.error) || text || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }

  // The problems of a 400, one per field where the message names it
  // ("name: …", "config.tables[0].mode: …").
  problems() {
    if (Array.isArray(this.body.details) && this.body.details.length) return this.body.details;
    const msg = this.body.error || this.message;
    return [msg.replace(/^invalid request: /, '')];
  }

  // Whether a token would have been accepted where this one was not.
  get needsToken() {
    return this.status === 401 || this.status === 403;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  else if (me && me.csrf_token && method !== 'GET') headers['X-CSRF-Token'] = me.csrf_token;
  const init = { method, headers, cache: 'no-store', credentials: 'same-origin', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!r.ok) throw new ApiError(r.status, json, text);
  return json;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

// A query string from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}
