// The output of a function's invocations, oldest first, followed live: while the tab is open
// and "Follow" is on, GET .../logs?after=<cursor> every second appends the new entries.

import { api, fnPath } from '../api.js';
import { h, replace, statusBadge, fmtTime } from '../dom.js';

const MAX_ENTRIES = 1000;

export class LogsTab {
  constructor(view) {
    this.view = view;
    this.alive = true;
    this.cursor = null;
    this.started = false;
    this.count = 0;
    this.follow = h('input', { type: 'checkbox', checked: true, onchange: () => this.schedule(0) });
    this.onlyOutput = h('input', { type: 'checkbox', onchange: () => this.el.classList.toggle('hide-silent', this.onlyOutput.checked) });
    this.state = h('span', { class: 'muted small' }, 'loading…');
    this.out = h('div', { class: 'log-view', tabindex: '0', 'aria-live': 'polite', 'aria-label': 'Function logs' });
    this.el = h('div', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, 'Logs'), this.state,
        h('span', { class: 'toolbar-spacer' }),
        h('label', { class: 'check' }, this.onlyOutput, 'Only with output'),
        h('label', { class: 'check' }, this.follow, 'Follow'),
        h('button', { class: 'btn btn-sm', type: 'button', onclick: () => this.clear() }, 'Clear')),
      this.out);
    this.schedule(0);
  }

  schedule(ms = 1000) {
    clearTimeout(this.timer);
    if (!this.alive) return;
    if (ms === 0 || this.follow.checked) this.timer = setTimeout(() => this.poll(), ms);
    else this.state.textContent = 'paused';
  }

  async poll() {
    try {
      const params = this.started ? { after: this.cursor } : { limit: 200 };
      const { data } = await api(fnPath(this.view.name, '/logs'), { params });
      if (!this.alive) return;
      this.started = true;
      this.append(data.entries);
      this.cursor = data.cursor;
      const now = new Date().toLocaleTimeString(undefined, { hour12: false });
      this.state.textContent = this.follow.checked ? `following · ${now}` : `updated ${now}`;
      this.state.className = this.follow.checked ? 'muted small live' : 'muted small';
    } catch (exc) {
      if (!this.alive) return;
      this.state.textContent = `error: ${exc.message}`;
      this.state.className = 'small text-bad';
    }
    this.schedule();
  }

  append(entries) {
    if (!this.count && !entries.length && !this.out.childElementCount) {
      this.out.append(h('div', { class: 'log-empty' }, 'No output yet. New invocations appear here as they finish.'));
      return;
    }
    if (!entries.length) return;
    const empty = this.out.querySelector('.log-empty');
    if (empty) empty.remove();
    const atBottom = this.out.scrollHeight - this.out.scrollTop - this.out.clientHeight < 40;
    const frag = document.createDocumentFragment();
    for (const e of entries) {
      const href = `#/fn/${encodeURIComponent(this.view.name)}/invocations/${encodeURIComponent(e.invocation_id)}`;
      frag.append(h('div', { class: ['log-entry', e.logs ? null : 'log-silent'] },
        h('div', { class: 'log-head' },
          h('span', { class: 'log-time', title: e.created_at }, fmtTime(e.created_at)),
          statusBadge(e.status),
          h('span', { class: 'log-version' }, `v${e.version}`),
          h('a', { class: 'log-id', href }, e.invocation_id)),
        e.logs ? h('pre', { class: 'log-text' }, e.logs) : h('div', { class: 'log-none' }, '(no output)')));
      this.count++;
    }
    this.out.append(frag);
    while (this.out.childElementCount > MAX_ENTRIES) this.out.firstChild.remove();
    if (atBottom || !this.scrolled) {
      this.out.scrollTop = this.out.scrollHeight;
      this.scrolled = true;
    }
  }

  clear() {
    replace(this.out);
    this.count = 0;
  }

  destroy() {
    this.alive = false;
    clearTimeout(this.timer);
  }
}
