// The BaaS data: tables with their ACLs (changed in place), a table's records page by page,
// and the end users. Everything through the admin API: /v1/tables, /v1/tables/{t}/records,
// /v1/users.

import { api } from '../api.js';
import { h, replace, fmtTime, fmtAgo, emptyState, spinner, toast, card, scrollBox } from '../dom.js';

const MODES = ['public', 'authenticated', 'owner', 'admin'];
const PAGE = 50;
const tablePath = (name, rest = '') => `/v1/tables/${encodeURIComponent(name)}${rest}`;

function errorRow(colspan, exc) {
  return h('tr', null, h('td', { colspan, class: 'text-bad' }, exc.message));
}

export class DataView {
  constructor(table) {
    this.title = table ? `Table ${table}` : 'Data';
    this.alive = true;
    this.el = h('section', { class: 'page' });
    if (table) this.showTable(table);
    else this.showOverview();
  }

  // --- tables and users -------------------------------------------------------------------

  showOverview() {
    this.tables = h('tbody');
    this.users = h('tbody');
    replace(this.el,
      h('div', { class: 'page-head' }, h('div', null, h('h1', null, 'Data'),
        h('div', { class: 'page-sub' }, 'The data tables with who may read and write them, and the end users who log in.'))),
      card('Tables', scrollBox('Tables', h('table', { class: 'table' },
        h('thead', null, h('tr', null, ['Table', 'Records', 'Read', 'Write', 'Created'].map((c) => h('th', { scope: 'col' }, c)))),
        this.tables))),
      h('div', { class: 'spacer' }),
      card('Users', scrollBox('Users', h('table', { class: 'table' },
        h('thead', null, h('tr', null, ['Username', 'User id', 'Registered'].map((c) => h('th', { scope: 'col' }, c)))),
        this.users))));
    this.loadTables();
    this.loadUsers();
  }

  async loadTables() {
    replace(this.tables, h('tr', null, h('td', { colspan: 5 }, spinner())));
    try {
      const { data } = await api('/v1/tables');
      if (!this.alive) return;
      if (!data.tables.length) {
        replace(this.tables, h('tr', null, h('td', { colspan: 5 }, emptyState('No tables yet', 'A table is made by PUT /v1/tables/{name}, or by a function writing to it.'))));
        return;
      }
      replace(this.tables, data.tables.map((t) => h('tr', null,
        h('td', null, h('a', { href: `#/data/${encodeURIComponent(t.name)}`, class: 'mono' }, t.name)),
        h('td', { class: 'num' }, t.records === null || t.records === undefined ? '—' : String(t.records)),
        h('td', null, this.aclSelect(t, 'read')),
        h('td', null, this.aclSelect(t, 'write')),
        h('td', { title: t.created_at }, fmtAgo(t.created_at)))));
    } catch (exc) {
      if (this.alive) replace(this.tables, errorRow(5, exc));
    }
  }

  // A select that changes one side of a table's ACL at once (PUT /v1/tables/{t} with both).
  aclSelect(table, side) {
    const select = h('select', { class: 'input input-sm', 'aria-label': `${side} access of ${table.name}` },
      MODES.map((m) => h('option', { value: m, selected: table.acl[side] === m }, m)));
    select.addEventListener('change', async () => {
      const acl = { ...table.acl, [side]: select.value };
      select.disabled = true;
      try {
        const { data } = await api(tablePath(table.name), { method: 'PUT', json: { acl } });
        table.acl = data.table.acl;
        toast(`${table.name}: ${side} is now ${select.value}`, 'ok');
      } catch (exc) {
        select.value = table.acl[side];
        toast(`Cannot change the ACL: ${exc.message}`, 'bad');
      } finally {
        select.disabled = false;
      }
    });
    return select;
  }

  async loadUsers() {
    replace(this.users, h('tr', null, h('td', { colspan: 3 }, spinner())));
    try {
      const { data } = await api('/v1/users', { params: { limit: 200 } });
      if (!this.alive) return;
      if (!data.users.length) {
        replace(this.users, h('tr', null, h('td', { colspan: 3 }, emptyState('No users yet', 'End users register with POST /v1/auth/register.'))));
        return;
      }
      replace(this.users, data.users.map((u) => h('tr', null,
        h('td', null, u.username), h('td', { class: 'mono small' }, u.user_id),
        h('td', { title: u.created_at }, fmtTime(u.created_at)))));
    } catch (exc) {
      if (this.alive) replace(this.users, errorRow(3, exc));
    }
  }

  // --- one table's records ----------------------------------------------------------------

  showTable(name) {
    this.name = name;
    this.cursor = null;
    this.rows = h('tbody');
    this.more = h('button', { class: 'btn btn-sm', type: 'button', hidden: true, onclick: () => this.loadRecords(true) }, 'Load more');
    replace(this.el,
      h('div', { class: 'page-head' }, h('div', null, h('h1', { class: 'mono' }, name),
        h('div', { class: 'page-sub' }, 'Records, oldest first, as the admin sees them (every record, whatever the ACL).')),
      h('div', { class: 'actions' }, h('a', { class: 'btn', href: '#/data' }, '← Tables'))),
      card('Records', scrollBox('Records', h('table', { class: 'table' },
        h('thead', null, h('tr', null, ['Id', 'Created', 'Created by', 'Fields'].map((c) => h('th', { scope: 'col' }, c)))),
        this.rows)), this.more));
    this.loadRecords(false);
  }

  async loadRecords(more) {
    if (!more) replace(this.rows, h('tr', null, h('td', { colspan: 4 }, spinner())));
    try {
      const { data } = await api(tablePath(this.name, '/records'), { params: { limit: PAGE, cursor: more ? this.cursor : null } });
      if (!this.alive) return;
      const rows = data.records.map((r) => {
        const { id, created_at: createdAt, updated_at: _updated, created_by: by, ...fields } = r;
        return h('tr', null,
          h('td', { class: 'mono small' }, id),
          h('td', { title: createdAt }, fmtTime(createdAt)),
          h('td', { class: 'mono small' }, by || '—'),
          h('td', null, h('code', { class: 'record-fields' }, JSON.stringify(fields))));
      });
      if (more) this.rows.append(...rows);
      else if (rows.length) replace(this.rows, rows);
      else replace(this.rows, h('tr', null, h('td', { colspan: 4 }, emptyState('No records', 'This table is empty.'))));
      this.cursor = data.next_cursor;
      this.more.hidden = !data.next_cursor;
    } catch (exc) {
      if (this.alive) replace(this.rows, errorRow(4, exc));
    }
  }

  destroy() {
    this.alive = false;
  }
}
