// The invocation history of one function, newest first; a row opens the full record.

import { api, fnPath } from '../api.js';
import { h, replace, statusBadge, fmtTime, fmtAgo, fmtDuration, emptyState, spinner } from '../dom.js';
import { coldBadge, recordView } from './record.js';

const PAGE = 50;

export class HistoryTab {
  constructor(view) {
    this.view = view;
    this.records = [];
    this.alive = true;
    this.auto = h('input', { type: 'checkbox', checked: true, onchange: () => this.schedule() });
    this.countEl = h('span', { class: 'muted small' });
    this.tbody = h('tbody');
    this.more = h('button', { class: 'btn btn-sm', type: 'button', hidden: true, onclick: () => this.loadOlder() }, 'Load older');
    this.list = h('div', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, 'Invocations'), this.countEl,
        h('span', { class: 'toolbar-spacer' }),
        h('label', { class: 'check' }, this.auto, 'Auto-refresh'),
        h('button', { class: 'btn btn-sm', type: 'button', onclick: () => this.refresh() }, 'Refresh')),
      h('div', { class: 'card-body card-body-flush' },
        h('table', { class: 'table table-hover' },
          h('thead', null, h('tr', null, ['Time', 'Status', 'Mode', 'Start', 'Duration', 'Version', 'Attempts', 'Invocation'].map((c) => h('th', null, c)))),
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

  async refresh() {
    clearTimeout(this.timer);
    if (!this.records.length) replace(this.tbody, h('tr', null, h('td', { colspan: 8 }, spinner())));
    try {
      const { data } = await api(fnPath(this.view.name, '/invocations'), { params: { limit: PAGE } });
      if (!this.alive) return;
      // Keep the older pages already loaded below the fresh first page.
      const fresh = data.invocations;
      const oldest = fresh.length ? fresh[fresh.length - 1].id : null;
      const older = oldest ? this.records.filter((r) => r.id < oldest) : [];
      this.records = [...fresh, ...older];
      if (this.more.hidden) this.more.hidden = fresh.length < PAGE;
      this.render();
    } catch (exc) {
      if (this.alive) replace(this.tbody, h('tr', null, h('td', { colspan: 8, class: 'text-bad' }, exc.message)));
    }
    this.schedule();
  }

  async loadOlder() {
    const last = this.records[this.records.length - 1];
    if (!last) return;
    this.more.disabled = true;
    try {
      const { data } = await api(fnPath(this.view.name, '/invocations'), { params: { limit: PAGE, before: last.id } });
      this.records.push(...data.invocations);
      this.more.hidden = data.invocations.length < PAGE;
      this.render();
    } finally {
      this.more.disabled = false;
    }
  }

  render() {
    this.countEl.textContent = `${this.records.length}${this.more.hidden ? '' : '+'} shown`;
    if (!this.records.length) {
      replace(this.tbody, h('tr', null, h('td', { colspan: 8 }, emptyState('No invocations yet', 'Use the Test tab, the CLI or the HTTP API to invoke this function.'))));
      return;
    }
    replace(this.tbody, this.records.map((r) => {
      const href = `#/fn/${encodeURIComponent(this.view.name)}/invocations/${encodeURIComponent(r.id)}`;
      const tr = h('tr', { class: 'clickable', tabindex: '0' },
        h('td', { title: r.created_at }, fmtTime(r.created_at), h('span', { class: 'muted small' }, ` ${fmtAgo(r.created_at)}`)),
        h('td', null, statusBadge(r.status)),
        h('td', null, r.mode),
        h('td', null, coldBadge(r.cold)),
        h('td', { class: 'num' }, fmtDuration(r.duration_ms)),
        h('td', null, r.version === null ? '—' : `v${r.version}`),
        h('td', { class: 'num' }, String(r.attempts)),
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
    replace(this.detail, h('div', { class: 'card' },
      h('div', { class: 'card-head' }, back, h('h2', null, 'Invocation'), h('code', { class: 'small muted' }, id), h('span', { class: 'toolbar-spacer' }), refresh),
      body));
    try {
      const { data } = await api(`/v1/invocations/${encodeURIComponent(id)}`);
      if (this.alive && this.detailId === id) replace(body, recordView(data.invocation));
    } catch (exc) {
      if (this.alive) replace(body, h('p', { class: 'text-bad' }, exc.message));
    }
  }

  destroy() {
    this.alive = false;
    clearTimeout(this.timer);
  }
}
