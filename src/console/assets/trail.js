// The audit trail's and the events' pages: what was done through the API
// (admins of every project only), and what happened with the
// notifications it sent.

import { get, query, can } from './api.js';
import { h, fill, navigate, time, badge, table, note } from './dom.js';
import { input, pager, title } from './common.js';

const AUDIT_PAGE = 50;

// ---- Audit trail -------------------------------------------------------

// An HTTP status (or a reconcile's outcome) coloured as done or not.
function outcome(o) {
  const done = /^[23]\d\d$/.test(o) || o === 'succeeded';
  return h('span', { class: `badge badge-${done ? 'succeeded' : 'failed'}` }, o);
}

export async function audit(main, params) {
  if (!can('audit')) {
    fill(main, title('Audit trail'),
      note('error', 'Not allowed: the audit trail is shown only to callers with the audit permission on every project (an admin of all projects).'));
    return;
  }
  const offset = Math.max(Number(params.offset) || 0, 0);
  const which = { actor: params.actor, action: params.action };
  // One row more than shown tells whether an older page exists.
  const rows = await get(`/audit${query({ ...which, limit: AUDIT_PAGE + 1, offset: offset || null })}`);
  const filters = {
    actor: input('actor', 'Actor', params.actor || '', { placeholder: 'token:ci' }),
    action: input('action', 'Action', params.action || '', { placeholder: 'POST /jobs/{id}/retry' }),
  };
  const form = h('form', { class: 'filters', id: 'audit-filters', role: 'search' },
    Object.values(filters).map((f) => f.wrap), h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    navigate(`#/audit${query({ actor: filters.actor.el.value.trim(), action: filters.action.el.value.trim() })}`);
  });
  const shown = rows.slice(0, AUDIT_PAGE);
  const known = offset + rows.length;
  fill(main,
    title('Audit trail'),
    h('p', { class: 'muted' }, 'Every action made through the API, every refused request and every reconcile, newest first. Never a secret: no body, header or query string.'),
    form,
    table('Audit trail', ['Time', 'Actor', 'Action', 'Target', 'Outcome', 'From'], shown.map((e) => [
      time(e.at), h('code', {}, e.actor), h('code', {}, e.action), e.target,
      outcome(e.outcome), e.source || '—',
    ]), params.actor || params.action ? 'No row matches: widen the filters.' : 'Nothing recorded yet.'),
    pager('#/audit', which, offset, AUDIT_PAGE, known));
}
audit.live = true;

// ---- Events and their deliveries ----------------------------------------

function delivery(d) {
  return h('li', { class: 'delivery' },
    h('code', {}, d.alert), ' ', badge(d.state),
    ` ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`,
    d.last_error ? [' · last error: ', h('span', { class: 'reason' }, d.last_error)] : null,
    d.state === 'pending' ? [' · next attempt ', time(d.next_attempt_at)] : null,
    d.done_at ? [' · done ', time(d.done_at)] : null);
}

export async function events(main, params) {
  const list = await get(`/events${query({ project: params.project, limit: 100 })}`);
  fill(main,
    title('Events'),
    h('p', { class: 'muted' }, 'What happened (failed imports, checks, freshness, reconciles, operator actions), newest first, with the delivery of each notification an Alert sent for it.'),
    table('Events', ['Time', 'Kind', 'Project', 'Severity', 'Deliveries'], list.map((e) => [
      time(e.at), h('code', {}, e.kind), e.project || '—', badge(e.severity),
      e.deliveries.length ? h('ul', { class: 'deliveries' }, e.deliveries.map(delivery)) : h('span', { class: 'muted' }, 'no Alert took it'),
    ]), 'No events yet.'));
}
events.live = true;
