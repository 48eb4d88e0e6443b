// What every page family shares: titles, notes, the row form and its
// fields, the pager.

import { get, post, put, query, identified, whoami, ApiError } from './api.js';
import { h, fill, navigate, note } from './dom.js';

// Where a token would unlock more, said once per place.
export function tokenHint(what) {
  if (identified()) return note('info', `Your role may not ${what}.`);
  if (whoami() && whoami().sso) return note('info', `Sign in, or enter the API token at the top, to ${what}.`);
  return note('info', `Enter the API token at the top to ${what}.`);
}

function managedNote(row) {
  return note('managed', 'Read-only — managed by git: ', h('code', {}, row.source || '(unknown manifest)'),
    ` (owner ${row.managed_by}). Change the manifest instead.`);
}

export function owner(row) {
  return row.managed_by
    ? h('span', { class: 'managed' }, 'managed by git: ', h('code', {}, row.source || row.managed_by))
    : h('span', { class: 'muted' }, 'unmanaged');
}

export function errorNote(e) {
  if (e instanceof ApiError && e.needsToken) {
    return note('error', e.message, ' ', e.status === 401 ? 'Check the API token at the top.' : '');
  }
  return note('error', e.message);
}

export function title(text) {
  document.title = `${text} · cpi console`;
  return h('h1', {}, text);
}

// "Newer" / "Older" links for a page of `limit` rows at `offset` of `total`.
// The top of a connection's or project's page: its title, the way back to
// its list and, for a row git manages, why it cannot be changed here.
export function rowHead(row, heading, listHref, listName) {
  const managed = row.managed_by ? managedNote(row) : null;
  if (managed) managed.id = 'managed-note';
  return [title(heading), h('p', {}, h('a', { href: listHref }, `← ${listName}`)), managed];
}

// What a page of one row starts with: the row, or null once the page
// says why it could not be read.
export async function getOrShow(main, path, heading) {
  try {
    return await get(path);
  } catch (e) {
    fill(main, title(heading), errorNote(e));
    return null;
  }
}

// The create-or-edit form of a connection or project: its fields, then
// Save (or Create) and Cancel. On submit `body()` reads the fields (null
// when it has marked one wrong) and the row is written.
export function rowForm(kind, row, fields, out, body, byPath = () => fields) {
  const editing = Boolean(row);
  const list = `/${kind}s`;
  const form = h('form', { class: 'form', id: `${kind}-form`, novalidate: true },
    Object.values(fields).map((f) => f.wrap),
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, editing ? 'Save' : 'Create'),
      h('a', { href: editing ? `#${list}/${row.id}` : `#${list}` }, 'Cancel')),
    out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(byPath());
    out.replaceChildren();
    const sent = body();
    if (!sent) return;
    try {
      const saved = editing ? await put(`${list}/${row.id}`, sent) : await post(list, sent);
      navigate(`#${list}/${saved.id}`);
    } catch (e) {
      showErrors(e, byPath(), out);
    }
  });
  return form;
}

export function pager(base, params, offset, limit, total) {
  const link = (o, text, rel) => h('a', { href: `${base}${query({ ...params, offset: o || null })}`, rel }, text);
  const parts = [];
  if (offset > 0) parts.push(link(Math.max(offset - limit, 0), '← Newer', 'prev'));
  if (offset + limit < total) parts.push(link(offset + limit, 'Older →', 'next'));
  return parts.length ? h('nav', { class: 'pager', 'aria-label': 'Pages' }, parts.flatMap((p) => [p, ' '])) : null;
}

// ---- Forms -------------------------------------------------------------

export function field(name, label, el) {
  const err = h('p', { class: 'field-error', id: `e-${name}`, hidden: true });
  el.setAttribute('aria-describedby', `e-${name}`);
  const wrap = h('div', { class: 'field' }, h('label', { for: `f-${name}` }, label), el, err);
  return { el, err, wrap };
}

export function input(name, label, value, attrs = {}) {
  return field(name, label, h('input', { id: `f-${name}`, name, value, type: 'text', ...attrs }));
}

export function fieldError(f, msg) {
  f.err.hidden = false;
  f.err.textContent = msg;
  f.el.setAttribute('aria-invalid', 'true');
}

function clearErrors(fields) {
  for (const f of Object.values(fields)) {
    f.err.hidden = true;
    f.err.textContent = '';
    f.el.removeAttribute('aria-invalid');
  }
}

// Each problem of a 400 goes to the field it names ("config.inbox: …"
// → the inbox); the rest, and every other error, below the form.
function showErrors(e, fields, out) {
  if (!(e instanceof ApiError) || e.status !== 400) {
    out.replaceChildren(errorNote(e));
    return;
  }
  const rest = [];
  const byField = {};
  // A problem goes to the field of the longest path it starts with
  // (`config.tables[0].mode: …` to that table's mode).
  const keys = Object.keys(fields).sort((a, b) => b.length - a.length);
  for (const p of e.problems()) {
    const head = p.split(': ')[0];
    const key = keys.find((k) => head === k || head.startsWith(`${k}.`) || head.startsWith(`${k}[`));
    if (key) (byField[key] = byField[key] || []).push(p);
    else rest.push(p);
  }
  for (const [k, msgs] of Object.entries(byField)) fieldError(fields[k], msgs.join('; '));
  out.replaceChildren(rest.length ? note('error', rest.join('; ')) : note('error', 'Please correct the fields marked above.'));
  const first = Object.keys(byField)[0];
  if (first) fields[first].el.focus();
}
