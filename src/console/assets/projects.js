// The projects' pages: the list, the form with its tables, one project.

import { get, post, query, can } from './api.js';
import { h, fill, time, badge, table, facts } from './dom.js';
import { errorNote, field, fieldError, getOrShow, input, owner, rowForm, rowHead, title, tokenHint } from './common.js';
import { jobsTable } from './jobs.js';

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
