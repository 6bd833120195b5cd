// The invocation history of one function, newest first; a row opens the full record.

import { api, fnPath } from '../api.js';
import { h, replace, statusBadge, fmtTime, fmtAgo, fmtDuration, emptyState, spinner, toast } from '../dom.js';
import { coldBadge, recordView, triggerBadge } from './record.js';

const PAGE = 50;
const STATUSES = ['queued', 'running', 'succeeded', 'failed', 'timeout', 'throttled'];
const COLUMNS = ['Time', 'Status', 'Mode', 'Trigger', 'Start', 'Duration', 'Version', 'Attempts', 'Error', 'Invocation'];

// The error column: the type, and the start of the message (the full record has the rest).
function errorCell(error) {
  if (!error) return h('td', { class: 'muted' }, '—');
  const text = `${error.type || 'Error'}: ${error.message || ''}`;
  return h('td', { class: 'error-cell', title: text }, text.length > 80 ? `${text.slice(0, 79)}…` : text);
}

export class HistoryTab {
  constructor(view) {
    this.view = view;
    this.records = [];
    this.alive = true;
    this.auto = h('input', { type: 'checkbox', checked: true, onchange: () => this.schedule() });
    this.countEl = h('span', { class: 'muted small' });
    this.statusFilter = h('select', { class: 'input input-sm', id: 'history-status', onchange: () => this.restart() },
      h('option', { value: '' }, 'All statuses'), STATUSES.map((st) => h('option', { value: st }, st)));
    this.tbody = h('tbody');
    this.more = h('button', { class: 'btn btn-sm', type: 'button', hidden: true, onclick: () => this.loadOlder() }, 'Load older');
    this.list = h('div', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, 'Invocations'), this.countEl,
        h('span', { class: 'toolbar-spacer' }),
        h('label', { class: 'sr-only', for: 'history-status' }, 'Status'), this.statusFilter,
        h('label', { class: 'check' }, this.auto, 'Auto-refresh'),
        h('button', { class: 'btn btn-sm', type: 'button', onclick: () => this.refresh() }, 'Refresh')),
      h('div', { class: 'card-body card-body-flush' },
        h('table', { class: 'table table-hover' },
          h('thead', null, h('tr', null, COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
          this.tbody)),
      h('div', { class: 'card-foot' }, this.more));
    this.detail = h('div');
    this.el = h('div', null, this.list, this.detail);
  }

  show(id) {
    this.detailId = id;
    if (id) {
      this.list.hidden = true;
      this.showDetail(id);
    } else {
      this.list.hidden = false;
      replace(this.detail);
      this.refresh();
    }
  }

  schedule() {
    clearTimeout(this.timer);
    if (this.alive && this.auto.checked && !this.detailId) this.timer = setTimeout(() => this.refresh(), 3000);
  }

  // The page of records, newest first: with a status chosen, from the list of every function's
  // records filtered to this one (the per-function list has no status filter).
  fetchPage(cursor) {
    const status = this.statusFilter.value;
    if (status) return api('/v1/invocations', { params: { function: this.view.name, status, limit: PAGE, cursor } });
    return api(fnPath(this.view.name, '/invocations'), { params: { limit: PAGE, cursor } });
  }

  restart() {
    this.records = [];
    this.cursor = null;
    this.more.hidden = true;
    this.refresh();
  }

  async refresh() {
    clearTimeout(this.timer);
    if (!this.records.length) replace(this.tbody, h('tr', null, h('td', { colspan: COLUMNS.length }, spinner())));
    const filter = this.statusFilter.value;
    try {
      const { data } = await this.fetchPage();
      if (filter !== this.statusFilter.value) return; // the filter changed meanwhile
      if (!this.alive) return;
      // Keep the older pages already loaded below the fresh first page.
      const fresh = data.invocations;
      const oldest = fresh.length ? fresh[fresh.length - 1].id : null;
      const older = oldest ? this.records.filter((r) => r.id < oldest) : [];
      this.records = [...fresh, ...older];
      if (this.more.hidden) {
        this.more.hidden = !data.next_cursor;
        this.cursor = data.next_cursor;
      }
      this.render();
    } catch (exc) {
      if (this.alive) replace(this.tbody, h('tr', null, h('td', { colspan: COLUMNS.length, class: 'text-bad' }, exc.message)));
    }
    this.schedule();
  }

  async loadOlder() {
    const last = this.records[this.records.length - 1];
    if (!last) return;
    this.more.disabled = true;
    try {
      const { data } = await this.fetchPage(this.cursor);
      this.records.push(...data.invocations);
      this.cursor = data.next_cursor;
      this.more.hidden = !data.next_cursor;
      this.render();
    } finally {
      this.more.disabled = false;
    }
  }

  render() {
    this.countEl.textContent = `${this.records.length}${this.more.hidden ? '' : '+'} shown`;
    if (!this.records.length) {
      replace(this.tbody, h('tr', null, h('td', { colspan: COLUMNS.length }, emptyState('No invocations yet', 'Use the Test tab, the CLI or the HTTP API to invoke this function.'))));
      return;
    }
    replace(this.tbody, this.records.map((r) => {
      const href = `#/fn/${encodeURIComponent(this.view.name)}/invocations/${encodeURIComponent(r.id)}`;
      const tr = h('tr', { class: 'clickable', tabindex: '0' },
        h('td', { title: r.created_at }, fmtTime(r.created_at), h('span', { class: 'muted small' }, ` ${fmtAgo(r.created_at)}`)),
        h('td', null, statusBadge(r.status)),
        h('td', null, r.mode),
        h('td', null, triggerBadge(r.trigger)),
        h('td', null, coldBadge(r.cold)),
        h('td', { class: 'num' }, fmtDuration(r.duration_ms)),
        h('td', null, r.version === null ? '—' : `v${r.version}`),
        h('td', { class: 'num' }, String(r.attempts)),
        errorCell(r.error),
        h('td', null, h('a', { href, class: 'mono small' }, r.id)));
      tr.addEventListener('click', (e) => { if (e.target.tagName !== 'A') location.hash = href; });
      tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') location.hash = href; });
      return tr;
    }));
  }

  async showDetail(id) {
    clearTimeout(this.timer);
    const back = h('a', { class: 'btn btn-sm', href: `#/fn/${encodeURIComponent(this.view.name)}/invocations` }, '← History');
    const body = h('div', { class: 'card-body' }, spinner());
    const refresh = h('button', { class: 'btn btn-sm', type: 'button', onclick: () => this.showDetail(id) }, 'Reload');
    const again = h('button', { class: 'btn btn-sm btn-primary', type: 'button', disabled: true, title: 'A new invocation of this event on the active version (POST /v1/invocations/{id}/retry)', onclick: () => this.runAgain(id, again) }, 'Run again with this event');
    replace(this.detail, h('div', { class: 'card' },
      h('div', { class: 'card-head' }, back, h('h2', null, 'Invocation'), h('code', { class: 'small muted' }, id), h('span', { class: 'toolbar-spacer' }), again, refresh),
      body));
    try {
      const { data } = await api(`/v1/invocations/${encodeURIComponent(id)}`);
      if (!this.alive || this.detailId !== id) return;
      const record = data.invocation;
      replace(body, recordView(record));
      // A replay needs the event kept, and a finished record (the API refuses others).
      const final = !['queued', 'running'].includes(record.status);
      again.disabled = !final || record.event === null;
      if (!final) this.timer = setTimeout(() => { if (this.detailId === id) this.showDetail(id); }, 1000);
    } catch (exc) {
      if (this.alive) replace(body, h('p', { class: 'text-bad' }, exc.message));
    }
  }

  async runAgain(id, button) {
    button.disabled = true;
    try {
      const { data } = await api(`/v1/invocations/${encodeURIComponent(id)}/retry`, { method: 'POST' });
      toast(`Started ${data.invocation_id}`, 'ok');
      location.hash = `#/fn/${encodeURIComponent(this.view.name)}/invocations/${encodeURIComponent(data.invocation_id)}`;
    } catch (exc) {
      button.disabled = false;
      toast(`Run again failed: ${exc.message}`, 'bad');
    }
  }

  destroy() {
    this.alive = false;
    clearTimeout(this.timer);
  }
}
