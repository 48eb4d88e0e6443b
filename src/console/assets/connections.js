// The overview and the connections' pages.

import { get, post, del, query, can } from './api.js';
import { h, fill, time, ago, badge, table, facts, note } from './dom.js';
import { barChart, fmtSeconds } from './charts.js';
import { errorNote, input, owner, rowForm, rowHead, title, tokenHint } from './common.js';

// ---- Overview ----------------------------------------------------------

export async function overview(main, params) {
  const days = Math.min(Math.max(Number(params.days) || 7, 1), 90);
  const [stats, ok, runs, ready] = await Promise.all([
    get(`/stats/imports${query({ days })}`),
    get('/reconcile/runs?limit=1&status=succeeded'),
    get('/reconcile/runs?limit=20'),
    fetch('/readyz', { cache: 'no-store' }).then((r) => r.json()).catch(() => null),
  ]);
  const lastOk = ok.runs[0];
  const lastBad = runs.runs.find((r) => r.status !== 'succeeded');
  const procLast = ready && ready.last_reconcile;
  const b = stats.buckets;
  fill(main, 
    title('Overview'),
    h('section', { class: 'cards', 'aria-label': 'State' },
      h('article', { class: 'card', id: 'card-reconcile' },
        h('h2', {}, 'Reconcile'),
        facts([
          ['Last success', lastOk ? [time(lastOk.finished_at || lastOk.started_at), ` (${ago(lastOk.finished_at || lastOk.started_at)})`] : 'never'],
          ['Last error', lastBad
            ? h('span', {}, badge(lastBad.status), ' ', time(lastBad.started_at), h('br'), h('span', { class: 'reason' }, lastBad.error || ''))
            : 'none recorded'],
          ['Drift corrections', h('span', { class: ok.drifted_total > 0 ? 'drift' : '' }, String(ok.drifted_total))],
          procLast ? ['This process', [badge(procLast.status), ' ', time(procLast.finished_at)]] : null,
        ]),
        h('a', { href: '#/reconcile' }, 'Reconcile history')),
      h('article', { class: 'card', id: 'card-queue' },
        h('h2', {}, 'Imports'),
        facts([
          ['Queue depth', h('span', { id: 'queued' }, String(stats.queued))],
          ['Running', h('span', { id: 'running' }, String(stats.running))],
          ['Failed in 24 h', h('a', { href: '#/jobs?status=failed', class: stats.failed_last_24h ? 'bad' : '', id: 'failed24' }, String(stats.failed_last_24h))],
        ]),
        h('a', { href: '#/jobs' }, 'All jobs'))),
    h('section', { 'aria-labelledby': 'charts-h' },
      h('h2', { id: 'charts-h' }, `Per hour, last ${days} day${days > 1 ? 's' : ''}`),
      h('p', { class: 'range' }, 'Range: ', [1, 7, 30].map((d) => [
        h('a', { href: `#/?days=${d}`, 'aria-current': d === days ? 'true' : null }, `${d} d`), ' ',
      ])),
      h('div', { class: 'charts' },
        barChart({ id: 'chart-files', title: 'Files imported', buckets: b, value: (x) => x.files }),
        barChart({ id: 'chart-rows', title: 'Rows written', buckets: b, value: (x) => x.rows, kind: 'rows' }),
        barChart({ id: 'chart-durations', title: 'Longest import', buckets: b, value: (x) => x.duration_max_seconds, fmt: fmtSeconds, kind: 'duration' }),
        barChart({ id: 'chart-failures', title: 'Failed imports', buckets: b, value: (x) => x.failed, kind: 'failures' }))));
}
overview.live = true;

// ---- Connections -------------------------------------------------------

export async function connections(main) {
  const list = await get('/connections');
  fill(main, 
    title('Connections'),
    h('p', { class: 'muted' }, 'Target databases. The list never shows a URL.'),
    can('write') ? h('p', {}, h('a', { href: '#/connections/new', class: 'button', id: 'new-connection' }, 'New connection'))
      : tokenHint('create connections, reveal URLs and run connection tests'),
    table('Connections', ['Name', 'Description', 'Owner', 'Updated'], list.map((c) => [
      h('a', { href: `#/connections/${c.id}` }, c.name), c.description || '', owner(c), time(c.updated_at),
    ]), 'No connections yet: add a Connection manifest to the manifests folder (the daemon applies it), or, with the token, create one here.'));
}
connections.live = true;

function connectionForm(main, row) {
  const editing = Boolean(row);
  const out = h('div', { id: 'form-result' });
  const fields = {
    name: input('name', 'Name', row ? row.name : '', { required: true, autocomplete: 'off' }),
    description: input('description', 'Description', row ? row.description || '' : ''),
    database_url: input('database_url', editing ? 'Database URL (leave empty to keep it)' : 'Database URL', '',
      { type: 'password', required: !editing, autocomplete: 'off', placeholder: 'postgres://user:password@host/db' }),
  };
  return rowForm('connection', row, fields, out, () => {
    const body = { name: fields.name.el.value, description: fields.description.el.value || null };
    if (fields.database_url.el.value) body.database_url = fields.database_url.el.value;
    return body;
  });
}

export async function connectionNew(main) {
  fill(main, title('New connection'),
    can('write') ? connectionForm(main, null) : tokenHint('create connections'));
}

export async function connection(main, params) {
  const list = await get('/connections');
  const c = list.find((x) => x.id === params.id);
  if (!c) {
    fill(main, title('Connection'), note('error', 'No such connection.'));
    return;
  }
  const result = h('div', { id: 'test-result', role: 'status', 'aria-live': 'polite' });
  const urlBox = h('div', { id: 'url-box' });
  const actions = h('div', { class: 'actions' });
  const edit = h('div', { id: 'edit-box' });
  const testBtn = h('button', { type: 'button', id: 'test-connection', disabled: !can('operate') }, 'Test connection');
  testBtn.addEventListener('click', async () => {
    testBtn.disabled = true;
    result.replaceChildren(h('p', { class: 'muted' }, 'Testing…'));
    try {
      const r = await post(`/connections/${c.id}/test`);
      result.replaceChildren(note(r.success ? 'ok' : 'error', r.message));
    } catch (e) {
      result.replaceChildren(errorNote(e));
    } finally {
      testBtn.disabled = false;
    }
  });
  actions.append(testBtn);
  if (can('read_secrets')) {
    const reveal = h('button', { type: 'button', id: 'reveal-url' }, 'Reveal URL');
    reveal.addEventListener('click', async () => {
      try {
        const d = await get(`/connections/${c.id}`);
        urlBox.replaceChildren(h('p', {}, 'URL: ', h('code', { id: 'database-url' }, d.database_url)),
          h('p', { class: 'muted' }, 'Shown until you leave this page.'));
        reveal.hidden = true;
      } catch (e) {
        urlBox.replaceChildren(errorNote(e));
      }
    });
    actions.append(reveal);
  }
  const editBtn = h('button', { type: 'button', id: 'edit-connection', disabled: Boolean(c.managed_by) || !can('write'),
    'aria-describedby': c.managed_by ? 'managed-note' : null }, 'Edit');
  editBtn.addEventListener('click', () => edit.replaceChildren(connectionForm(main, c)));
  const delBtn = h('button', { type: 'button', id: 'delete-connection', class: 'danger', disabled: Boolean(c.managed_by) || !can('write') }, 'Delete');
  delBtn.addEventListener('click', () => {
    const sure = h('button', { type: 'button', id: 'confirm-delete', class: 'danger' }, `Delete ${c.name} for good`);
    sure.addEventListener('click', async () => {
      try {
        await del(`/connections/${c.id}`);
        location.hash = '#/connections';
      } catch (e) {
        edit.replaceChildren(errorNote(e));
      }
    });
    edit.replaceChildren(h('p', {}, 'Projects using it keep running without a connection until given another. '), sure);
    sure.focus();
  });
  actions.append(editBtn, delBtn);
  fill(main, 
    rowHead(c, `Connection ${c.name}`, '#/connections', 'Connections'),
    facts([
      ['Name', c.name],
      ['Description', c.description || '—'],
      ['Owner', owner(c)],
      ['Created', time(c.created_at)],
      ['Updated', time(c.updated_at)],
      ['URL', can('read_secrets') ? 'hidden — use “Reveal URL”' : 'shown only with the API token'],
    ]),
    can('read_secrets') ? null : tokenHint('test this connection, reveal its URL or change it'),
    actions, result, urlBox, edit);
}
