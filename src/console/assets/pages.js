// The console's pages. Each takes the <main> element and its route
// parameters, fetches what it shows and builds it; the router re-runs
// live pages every few seconds.

import { get, post, put, del, query, can, identified, whoami, ApiError } from './api.js';
import { h, fill, navigate, time, ago, badge, table, facts, note } from './dom.js';
import { barChart, fmtNumber, fmtSeconds } from './charts.js';

const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'duplicate'];

// Where a token would unlock more, said once per place.
function tokenHint(what) {
  if (identified()) return note('info', `Your role may not ${what}.`);
  if (whoami() && whoami().sso) return note('info', `Sign in, or enter the API token at the top, to ${what}.`);
  return note('info', `Enter the API token at the top to ${what}.`);
}

function managedNote(row) {
  return note('managed', 'Read-only — managed by git: ', h('code', {}, row.source || '(unknown manifest)'),
    ` (owner ${row.managed_by}). Change the manifest instead.`);
}

function owner(row) {
  return row.managed_by
    ? h('span', { class: 'managed' }, 'managed by git: ', h('code', {}, row.source || row.managed_by))
    : h('span', { class: 'muted' }, 'unmanaged');
}

function errorNote(e) {
  if (e instanceof ApiError && e.needsToken) {
    return note('error', e.message, ' ', e.status === 401 ? 'Check the API token at the top.' : '');
  }
  return note('error', e.message);
}

function title(text) {
  document.title = `${text} · cpi console`;
  return h('h1', {}, text);
}

// "Newer" / "Older" links for a page of `limit` rows at `offset` of `total`.
// The top of a connection's or project's page: its title, the way back to
// its list and, for a row git manages, why it cannot be changed here.
function rowHead(row, heading, listHref, listName) {
  const managed = row.managed_by ? managedNote(row) : null;
  if (managed) managed.id = 'managed-note';
  return [title(heading), h('p', {}, h('a', { href: listHref }, `← ${listName}`)), managed];
}

// What a page of one row starts with: the row, or null once the page
// says why it could not be read.
async function getOrShow(main, path, heading) {
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
function rowForm(kind, row, fields, out, body, byPath = () => fields) {
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

function pager(base, params, offset, limit, total) {
  const link = (o, text, rel) => h('a', { href: `${base}${query({ ...params, offset: o || null })}`, rel }, text);
  const parts = [];
  if (offset > 0) parts.push(link(Math.max(offset - limit, 0), '← Newer', 'prev'));
  if (offset + limit < total) parts.push(link(offset + limit, 'Older →', 'next'));
  return parts.length ? h('nav', { class: 'pager', 'aria-label': 'Pages' }, parts.flatMap((p) => [p, ' '])) : null;
}

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

// ---- Projects ----------------------------------------------------------

export async function projects(main) {
  const list = await get('/projects');
  fill(main, 
    title('Projects'),
    can('write') ? h('p', {}, h('a', { href: '#/projects/new', class: 'button', id: 'new-project' }, 'New project'))
      : tokenHint('create or change projects'),
    table('Projects', ['Name', 'Connection', 'Inbox', 'Tables', 'Owner', 'Imports'], list.map((p) => [
      h('a', { href: `#/projects/${p.id}` }, p.name),
      p.connection_id ? h('a', { href: `#/connections/${p.connection_id}` }, p.connection_name || p.connection_id) : h('span', { class: 'muted' }, 'none'),
      p.config && p.config.inbox ? h('code', {}, p.config.inbox) : '—',
      String((p.config && p.config.tables || []).length),
      owner(p),
      p.paused ? badge('paused') : 'running',
    ]), 'No projects yet: add a Project manifest to the manifests folder (the daemon applies it), or, with the token, create one here.'));
}
projects.live = true;

function listOf(v) {
  if (v === undefined || v === null) return '—';
  return Array.isArray(v) ? v.join(', ') : String(v);
}

// `create_table`: `infer` (from the file's values), or a yes/no.
function createTable(v) {
  if (v === 'infer') return 'infer (from the file)';
  return v ? 'yes' : 'no';
}

function tableRows(config) {
  const d = config.defaults || {};
  const tables = config.tables && config.tables.length ? config.tables : (config.defaults ? [{}] : []);
  return tables.map((t) => [
    h('code', {}, t.file_pattern || d.file_pattern || '*.csv'),
    h('code', {}, t.table || d.table || '(from the file name)'),
    t.mode || d.mode || ((t.primary_key || d.primary_key) ? 'upsert' : 'append'),
    listOf(t.primary_key || d.primary_key),
    createTable(t.create_table ?? d.create_table),
    t.on_error || d.on_error || 'abort',
  ]);
}

// A project's form, a field per setting: inbox, then one group per table
// (pattern, table, mode, key, create) with the rest of each table's
// options, and the rest of the config, as JSON. The API's problems name
// their path (`config.tables[0].mode: …`), so each lands on its field.
const TABLE_KEYS = ['file_pattern', 'table', 'mode', 'primary_key', 'create_table'];

function jsonRest(obj, keys) {
  const rest = { ...obj };
  for (const k of keys) delete rest[k];
  return Object.keys(rest).length ? JSON.stringify(rest, null, 2) : '';
}

function choice(name, label, options, value) {
  const sel = h('select', { id: `f-${name}`, name },
    options.map(([v, text]) => h('option', { value: v, selected: String(value ?? '') === v }, text)));
  return field(name, label, sel);
}

function tableGroup(i, t, onRemove) {
  const n = (k) => `t${i}-${k}`;
  const pk = Array.isArray(t.primary_key) ? t.primary_key.join(', ') : t.primary_key || '';
  const f = {
    file_pattern: input(n('file_pattern'), 'File pattern', t.file_pattern || '', { placeholder: '*.csv' }),
    table: input(n('table'), 'Table', t.table || '', { placeholder: 'from the file name' }),
    mode: choice(n('mode'), 'Mode', [['', '(default: upsert with a key, else append)'], ['append', 'append'],
      ['upsert', 'upsert'], ['replace', 'replace'], ['sync', 'sync']], t.mode),
    primary_key: input(n('primary_key'), 'Primary key (columns, comma-separated)', pk),
    create_table: choice(n('create_table'), 'Create the table if missing', [['', 'no'], ['true', 'yes, every column text'],
      ['infer', 'yes, types inferred from the file']], t.create_table === false ? '' : t.create_table),
    other: field(n('other'), 'Other options of this table (JSON)',
      h('textarea', { id: `f-${n('other')}`, name: 'other', rows: 3, spellcheck: 'false' }, jsonRest(t, TABLE_KEYS))),
  };
  const remove = h('button', { type: 'button', id: `remove-${n('table')}`, class: 'danger' }, 'Remove this table');
  remove.addEventListener('click', onRemove);
  const wrap = h('fieldset', { class: 'table-group', id: `table-${i}` },
    h('legend', {}, `Table ${i + 1}`), Object.values(f).map((x) => x.wrap), remove);
  return { i, f, wrap };
}

// One table's options from its group, or null once a field says why not.
function readTable(g) {
  const { f } = g;
  let t = {};
  const other = f.other.el.value.trim();
  if (other) {
    try {
      t = JSON.parse(other);
    } catch (e) {
      fieldError(f.other, `not valid JSON: ${e.message}`);
      return null;
    }
    if (!t || typeof t !== 'object' || Array.isArray(t)) {
      fieldError(f.other, 'must be a JSON object ({"on_error": "skip_rows"}, …)');
      return null;
    }
  }
  const text = (x) => x.el.value.trim();
  if (text(f.file_pattern)) t.file_pattern = text(f.file_pattern);
  if (text(f.table)) t.table = text(f.table);
  if (f.mode.el.value) t.mode = f.mode.el.value;
  const keys = text(f.primary_key).split(',').map((k) => k.trim()).filter(Boolean);
  if (keys.length) t.primary_key = keys.length === 1 ? keys[0] : keys;
  if (f.create_table.el.value) t.create_table = f.create_table.el.value === 'infer' ? 'infer' : true;
  return t;
}

function projectForm(row, conns) {
  const out = h('div', { id: 'form-result' });
  const config = row ? { ...row.config } : { tables: [{ file_pattern: '*.csv' }] };
  delete config.name;
  const select = h('select', { id: 'f-connection_id', name: 'connection_id' },
    h('option', { value: '' }, '(none)'),
    conns.map((c) => h('option', { value: c.id, selected: row && row.connection_id === c.id }, c.name)));
  const fields = {
    name: input('name', 'Name', row ? row.name : '', { required: true }),
    description: input('description', 'Description', row ? row.description || '' : ''),
    connection_id: field('connection_id', 'Connection', select),
    inbox: input('inbox', 'Inbox (a folder, or s3://bucket/prefix/)', config.inbox || ''),
  };
  const other = field('other', 'Other settings (JSON: defaults, processed_dir, settle_seconds, …)',
    h('textarea', { id: 'f-other', name: 'other', rows: 4, spellcheck: 'false' }, jsonRest(config, ['inbox', 'tables'])));
  const box = h('div', { id: 'tables' });
  let groups = [];
  const draw = (tables) => {
    groups = tables.map((t, i) => tableGroup(i, t, () => {
      const now = groups.map((g) => readTable(g) || {});
      now.splice(i, 1);
      draw(now);
    }));
    box.replaceChildren(...groups.map((g) => g.wrap));
  };
  draw(config.tables || []);
  const add = h('button', { type: 'button', id: 'add-table' }, 'Add a table');
  add.addEventListener('click', () => {
    draw([...groups.map((g) => readTable(g) || {}), { file_pattern: '*.csv' }]);
    groups[groups.length - 1].f.file_pattern.el.focus();
  });
  const tablesWrap = h('div', { class: 'field' }, h('h2', {}, 'Tables'),
    h('p', { class: 'muted' }, 'A file goes to the first table whose pattern matches its name.'), box, h('p', {}, add));
  // Every field the API's problems may name, by the path they name.
  const byPath = () => {
    const all = {
      name: fields.name, description: fields.description, connection_id: fields.connection_id,
      'config.inbox': fields.inbox, config: other,
    };
    for (const g of groups) {
      all[`config.tables[${g.i}]`] = g.f.other;
      for (const k of TABLE_KEYS) all[`config.tables[${g.i}].${k}`] = g.f[k];
    }
    return all;
  };
  const shown = { ...fields, tables: { wrap: tablesWrap }, other };
  return rowForm('project', row, shown, out, () => {
    let cfg = {};
    const text = other.el.value.trim();
    if (text) {
      try {
        cfg = JSON.parse(text);
      } catch (e) {
        fieldError(other, `not valid JSON: ${e.message}`);
        return null;
      }
    }
    const tables = groups.map(readTable);
    if (tables.includes(null)) return null;
    if (fields.inbox.el.value.trim()) cfg.inbox = fields.inbox.el.value.trim();
    if (tables.length) cfg.tables = tables;
    return {
      name: fields.name.el.value,
      description: fields.description.el.value || null,
      connection_id: select.value || null,
      config: cfg,
    };
  }, byPath);
}

export async function projectNew(main) {
  if (!can('write')) {
    fill(main, title('New project'), tokenHint('create projects'));
    return;
  }
  const conns = await get('/connections');
  fill(main, title('New project'), projectForm(null, conns));
}

export async function project(main, params) {
  const p = await getOrShow(main, `/projects/${params.id}`, 'Project');
  if (!p) return;
  const [jobs, conns, fresh] = await Promise.all([
    get(`/jobs${query({ project: p.name, limit: 10 })}`),
    get('/connections'),
    get(`/freshness${query({ project: p.name })}`),
  ]);
  const cfg = p.config || {};
  const edit = h('div', { id: 'edit-box' });
  const editBtn = h('button', { type: 'button', id: 'edit-project', disabled: Boolean(p.managed_by) || !can('write'),
    'aria-describedby': p.managed_by ? 'managed-note' : null }, 'Edit');
  editBtn.addEventListener('click', () => edit.replaceChildren(projectForm(p, conns)));
  // Pausing is the operator's, not git's: managed projects pause too.
  const pauseResult = h('div', { id: 'pause-result', role: 'status' });
  const pauseBtn = h('button', { type: 'button', id: p.paused ? 'resume-project' : 'pause-project', disabled: !can('operate') },
    p.paused ? 'Resume' : 'Pause');
  pauseBtn.addEventListener('click', async () => {
    pauseBtn.disabled = true;
    try {
      await post(`/projects/${encodeURIComponent(p.name)}/${p.paused ? 'resume' : 'pause'}${query({ reason: 'from the console' })}`);
      await project(main, params);
    } catch (e) {
      pauseResult.replaceChildren(errorNote(e));
      pauseBtn.disabled = false;
    }
  });
  const paused = p.paused
    ? h('span', { id: 'pause-state' }, badge('paused'), ` since ${time(p.paused.paused_at)} by ${p.paused.paused_by}`,
      p.paused.reason ? ` (${p.paused.reason})` : '', ': its files are queued and wait')
    : h('span', { id: 'pause-state' }, 'Not paused');
  fill(main, 
    rowHead(p, `Project ${p.name}`, '#/projects', 'Projects'),
    facts([
      ['Description', p.description || '—'],
      ['Connection', p.connection_id ? h('a', { href: `#/connections/${p.connection_id}` }, p.connection_name || p.connection_id) : 'none'],
      ['Owner', owner(p)],
      ['Inbox', cfg.inbox ? h('code', {}, cfg.inbox) : '—'],
      ['Processed files', cfg.processed_dir ? h('code', {}, cfg.processed_dir) : 'default (inbox/processed)'],
      ['Failed files', cfg.failed_dir ? h('code', {}, cfg.failed_dir) : 'default (inbox/failed)'],
      ['Settle time', cfg.settle_seconds !== undefined ? `${cfg.settle_seconds} s` : 'default'],
      ['Imports', paused],
    ]),
    h('div', { class: 'actions' }, pauseBtn),
    can('operate') ? pauseResult : tokenHint('pause or resume this project'),
    h('h2', {}, 'Tables'),
    table('Files and their tables', ['Files', 'Table', 'Mode', 'Key', 'Create table', 'On error'], tableRows(cfg), 'No tables configured.'),
    cfg.defaults ? h('details', {}, h('summary', {}, 'Defaults'), h('pre', {}, JSON.stringify(cfg.defaults, null, 2))) : null,
    h('h2', {}, 'Freshness'),
    table('How long since each table got a file', ['Table', 'State', 'Last file', 'Warn after', 'Error after'], fresh.map((f) => [
      h('code', {}, f.table),
      h('span', { class: `badge badge-${f.state}`, 'data-table': f.table }, f.state),
      f.last_import ? time(f.last_import) : 'none yet',
      f.warn_after || '—',
      f.error_after || '—',
    ]), 'No table has a freshness rule: add `freshness: {warn_after: 26h, error_after: 50h}` to the defaults or a table.'),
    h('div', { class: 'actions' }, editBtn),
    can('write') || p.managed_by ? null : tokenHint('change this project'),
    edit,
    h('h2', {}, 'Recent jobs'),
    jobsTable(jobs.jobs),
    h('p', {}, h('a', { href: `#/jobs?project=${encodeURIComponent(p.name)}` }, 'All jobs of this project')));
}

// ---- Jobs --------------------------------------------------------------

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

function jobsTable(jobs) {
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

// ---- Forms -------------------------------------------------------------

function field(name, label, el) {
  const err = h('p', { class: 'field-error', id: `e-${name}`, hidden: true });
  el.setAttribute('aria-describedby', `e-${name}`);
  const wrap = h('div', { class: 'field' }, h('label', { for: `f-${name}` }, label), el, err);
  return { el, err, wrap };
}

function input(name, label, value, attrs = {}) {
  return field(name, label, h('input', { id: `f-${name}`, name, value, type: 'text', ...attrs }));
}

function fieldError(f, msg) {
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
