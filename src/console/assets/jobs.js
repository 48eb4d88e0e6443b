// The jobs' and the reconcile history's pages.

import { get, post, query, can } from './api.js';
import { h, fill, navigate, time, badge, table, facts, note } from './dom.js';
import { fmtNumber, fmtSeconds } from './charts.js';
import { errorNote, field, getOrShow, pager, title, tokenHint } from './common.js';

// ---- Jobs --------------------------------------------------------------

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'duplicate'];

const SINCE = { '': 'any time', '1h': 'last hour', '24h': 'last 24 hours', '7d': 'last 7 days' };
const SINCE_MS = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };

// The API holds a job's error back without the token: say how to see it.
const HIDDEN_PREFIX = 'hidden:';
function errorLine(e) {
  if (!e) return '—';
  if (e.startsWith(HIDDEN_PREFIX)) return h('span', { class: 'muted' }, 'shown with the API token');
  const first = e.split('\n')[0];
  return first.length > 120 ? `${first.slice(0, 119)}…` : first;
}

export function jobsTable(jobs) {
  return table('Jobs', ['File', 'Project', 'Status', 'Error', 'Queued', 'Rows read', 'Written'], jobs.map((j) => [
    h('a', { href: `#/jobs/${j.id}` }, j.file_name),
    j.project_name,
    badge(j.status),
    errorLine(j.error),
    time(j.created_at),
    fmtNumber(j.rows_read || 0),
    fmtNumber((j.rows_inserted || 0) + (j.rows_updated || 0) + (j.rows_deleted || 0)),
  ]), 'No jobs match: drop a CSV file into a project\'s inbox folder, or widen the filters.');
}

export async function jobs(main, params) {
  const since = SINCE_MS[params.since] ? params.since : '';
  const limit = since ? 500 : 100;
  const offset = Math.max(Number(params.offset) || 0, 0);
  const [page, projectsList] = await Promise.all([
    get(`/jobs${query({ project: params.project, status: params.status, limit, offset: offset || null })}`),
    get('/projects'),
  ]);
  const cutoff = since ? Date.now() - SINCE_MS[since] : 0;
  const shown = page.jobs.filter((j) => new Date(j.created_at).getTime() >= cutoff);
  const sel = (name, label, options, value) => field(name, label,
    h('select', { id: `f-${name}`, name }, options.map(([v, t]) => h('option', { value: v, selected: v === (value || '') }, t))));
  const filters = {
    project: sel('project', 'Project', [['', 'all projects'], ...projectsList.map((p) => [p.name, p.name])], params.project),
    status: sel('status', 'Status', [['', 'any status'], ...STATUSES.map((x) => [x, x])], params.status),
    since: sel('since', 'Queued', Object.entries(SINCE), since),
  };
  const form = h('form', { class: 'filters', id: 'job-filters', role: 'search' },
    Object.values(filters).map((f) => f.wrap), h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    navigate(`#/jobs${query({ project: filters.project.el.value, status: filters.status.el.value, since: filters.since.el.value })}`);
  });
  fill(main, 
    title('Jobs'),
    form,
    h('p', { class: 'muted', id: 'job-count' }, `${shown.length} shown of ${page.total} matching${since ? ` (time filter over the newest ${page.jobs.length})` : ''}.`),
    jobsTable(shown),
    pager('#/jobs', { project: params.project, status: params.status, since }, offset, limit, page.total));
}
jobs.live = true;

// What to do about a failed job, with the exact place of its file: the
// project's failed folder (`failed_dir`, absolute or under the inbox;
// `failed/` by default), where the daemon set it aside.
async function nextStep(j) {
  let config = null;
  try {
    config = j.project_id ? (await get(`/projects/${j.project_id}`)).config : null;
  } catch (_) { /* the project is gone: say it without a path */ }
  const inbox = config && config.inbox;
  if (!inbox || inbox.startsWith('s3://')) {
    return h('p', { id: 'next-step', class: 'next-step' },
      'Next: fix the file where it was set aside (the project\'s failed folder, beside its report), then press Retry.');
  }
  const fd = config.failed_dir;
  const failed = fd ? (fd.startsWith('/') ? fd : `${inbox}/${fd}`) : `${inbox}/failed`;
  return h('p', { id: 'next-step', class: 'next-step' },
    'Next: fix the file at ', h('code', {}, `${failed}/${j.file_name}`),
    ` (or ${j.id.slice(0, 8)}_${j.file_name} there, when that name was taken), then press Retry: `,
    'it goes back through the inbox and ends in processed/ or failed/ once.');
}

export async function job(main, params) {
  const j = await getOrShow(main, `/jobs/${params.id}`, 'Job');
  if (!j) return;
  const details = j.error_details || {};
  const rowErrors = Array.isArray(details.errors) ? details.errors : [];
  const result = h('div', { id: 'retry-result', role: 'status' });
  let retry = null;
  if (j.status === 'failed') {
    retry = h('button', { type: 'button', id: 'retry-job', disabled: !can('operate') }, 'Retry');
    retry.addEventListener('click', async () => {
      retry.disabled = true;
      try {
        const q = await post(`/jobs/${j.id}/retry`);
        result.replaceChildren(note('ok', `Queued again (${q.status}); a worker picks it up shortly.`));
        document.getElementById('main').focus(); // hand focus back so live updates resume
      } catch (e) {
        result.replaceChildren(errorNote(e));
        retry.disabled = false;
      }
    });
  }
  const next = j.status === 'failed' ? await nextStep(j) : null;
  const kept = await keptRows(j);
  const dur = j.started_at && j.finished_at ? (new Date(j.finished_at) - new Date(j.started_at)) / 1000 : null;
  fill(main, 
    title(`Job ${j.file_name}`),
    h('p', {}, h('a', { href: '#/jobs' }, '← Jobs')),
    h('p', {}, 'Status: ', h('span', { id: 'job-status' }, badge(j.status))),
    next,
    facts([
      ['Project', j.project_id ? h('a', { href: `#/projects/${j.project_id}` }, j.project_name) : j.project_name],
      ['File', j.file_name],
      j.file_path ? ['Path', h('code', {}, j.file_path)] : null,
      ['Table', j.target_table ? h('code', {}, j.target_table) : '—'],
      ['Mode', j.mode || '—'],
      ['Attempts', String(j.attempts)],
      ['Queued', time(j.created_at)],
      ['Started', time(j.started_at)],
      ['Finished', time(j.finished_at)],
      dur !== null ? ['Duration', fmtSeconds(dur)] : null,
    ]),
    h('h2', {}, 'Rows'),
    facts([
      ['Read', String(j.rows_read)], ['Inserted', String(j.rows_inserted)], ['Updated', String(j.rows_updated)],
      ['Deleted', String(j.rows_deleted)], ['Rejected', String(j.rows_rejected)],
    ]),
    j.error ? [h('h2', {}, 'Error'), j.error.startsWith(HIDDEN_PREFIX)
      ? h('p', { id: 'job-error' }, 'The error and the row errors may quote the file\'s values, so the API shows them only with the token: enter the API token at the top of the page.')
      : h('pre', { class: 'error', id: 'job-error' }, j.error)] : null,
    rowErrors.length ? [
      h('h2', {}, 'Row errors'),
      details.errors_truncated ? h('p', { class: 'muted' }, `First ${rowErrors.length} of ${details.errors_total}.`) : null,
      table('Row errors', ['Line', 'Column', 'Value', 'Message'], rowErrors.map((r) => [
        String(r.line), r.column || '—', r.value !== undefined ? h('code', {}, r.value) : '—', r.message,
      ])),
    ] : null,
    kept,
    retry ? h('div', { class: 'actions' }, retry) : null,
    can('operate') ? null : tokenHint(retry ? 'retry this job, and to see what the API shows only with it' : 'see what the API shows only with it'),
    result);
}
job.live = true;

// The rows a job skipped and kept in its target (`rejects: table`): they
// hold the file's values, so only for read_secrets; nothing when none kept.
async function keptRows(j) {
  if (!can('read_secrets') || !j.rows_rejected) return null;
  let kept;
  try {
    kept = await get(`/jobs/${j.id}/rejected${query({ limit: 20 })}`);
  } catch (e) {
    return [h('h2', {}, 'Rejected rows'), errorNote(e)];
  }
  if (!kept.total) return null;
  return [
    h('h2', {}, 'Rejected rows'),
    h('p', { class: 'muted', id: 'kept-count' }, `${kept.total} row${kept.total === 1 ? '' : 's'} kept in the target's `,
      h('code', {}, 'cpi.rejected_rows'), kept.total > kept.rows.length ? ` (the first ${kept.rows.length} shown)` : '', ': ',
      h('code', {}, `SELECT * FROM cpi.rejected_rows WHERE job_id = '${j.id}'`)),
    table('Rejected rows', ['Line', 'Row as written', 'Error'], kept.rows.map((r) => [
      String(r.line), h('code', {}, r.raw), r.error,
    ])),
  ];
}

// ---- Reconcile history ---------------------------------------------------

export async function reconcile(main, params) {
  const limit = 100;
  const offset = Math.max(Number(params.offset) || 0, 0);
  const page = await get(`/reconcile/runs${query({ status: params.status, limit, offset: offset || null })}`);
  fill(main, 
    title('Reconcile history'),
    h('p', { class: 'muted' }, `Runs are recorded when something changed, drifted or failed. ${page.total} in all; ${page.drifted_total} drift correction${page.drifted_total === 1 ? '' : 's'}.`),
    table('Reconcile runs', ['Started', 'Trigger', 'Status', 'Created', 'Updated', 'Deleted', 'Drifted', 'Error'], page.runs.map((r) => [
      h('a', { href: `#/reconcile/${r.id}` }, time(r.started_at)),
      r.trigger, badge(r.status), String(r.created), String(r.updated), String(r.deleted),
      h('span', { class: r.drifted > 0 ? 'drift' : '' }, String(r.drifted)),
      r.error ? h('span', { class: 'reason' }, r.error) : '',
    ]), 'No runs recorded yet: a run is recorded when a reconcile changes something, corrects drift or fails.'),
    pager('#/reconcile', { status: params.status }, offset, limit, page.total));
}
reconcile.live = true;

export async function run(main, params) {
  const r = await getOrShow(main, `/reconcile/runs/${params.id}`, 'Reconcile run');
  if (!r) return;
  const diff = h('pre', { class: 'diff', id: 'run-diff' }, (r.diff || '').split('\n').map((line) => {
    let cls = '';
    if (/drift/i.test(line)) cls = 'drift';
    else if (line.startsWith('+')) cls = 'add';
    else if (line.startsWith('-')) cls = 'del';
    return h('span', { class: cls }, `${line}\n`);
  }));
  fill(main, 
    title('Reconcile run'),
    h('p', {}, h('a', { href: '#/reconcile' }, '← Reconcile history')),
    facts([
      ['Status', badge(r.status)], ['Trigger', r.trigger], ['Owner', r.owner], ['Revision', r.revision || '—'],
      ['Started', time(r.started_at)], ['Finished', time(r.finished_at)],
      ['Counts', `${r.created} created, ${r.updated} updated, ${r.deleted} deleted`],
      ['Drifted', h('span', { class: r.drifted > 0 ? 'drift' : '' }, String(r.drifted))],
    ]),
    r.error ? h('pre', { class: 'error' }, r.error) : null,
    h('h2', {}, 'Diff (secrets redacted)'),
    r.diff ? diff : h('p', { class: 'muted' }, 'No changes.'));
}
