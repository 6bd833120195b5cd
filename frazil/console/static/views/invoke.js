// Test-invoke: a JSON editor for the event, sync or async invoke, and the answer with the
// invocation's logs.

import { api, fnPath } from '../api.js';
import { h, replace, badge, fmtDuration, prettyJson, pre, emptyState, spinner } from '../dom.js';
import { JsonEditor } from '../json-editor.js';
import { coldBadge, errorBlock, logsBlock, recordView, section } from './record.js';

const FINAL = new Set(['succeeded', 'failed', 'timeout', 'throttled']);
const DEFAULT_EVENT = '{\n  "name": "world"\n}';

function savedEvent(name) {
  try {
    return localStorage.getItem(`frazil.event.${name}`);
  } catch {
    return null;
  }
}

function saveEvent(name, text) {
  try {
    localStorage.setItem(`frazil.event.${name}`, text);
  } catch { /* storage full or unavailable */ }
}

export class TestTab {
  constructor(view) {
    this.view = view;
    this.alive = true;
    this.syncButton = h('button', { class: 'btn btn-primary', type: 'button', onclick: () => this.invoke('sync') }, 'Invoke');
    this.asyncButton = h('button', { class: 'btn', type: 'button', onclick: () => this.invoke('async'), title: 'Queue it (?mode=async) and follow the record' }, 'Invoke async');
    this.formatButton = h('button', { class: 'btn btn-ghost', type: 'button', onclick: () => this.editor.format(), title: 'Pretty-print (or go to the error)' }, 'Format');
    this.editor = new JsonEditor({
      value: savedEvent(view.name) ?? DEFAULT_EVENT,
      onChange: (result) => {
        this.syncButton.disabled = this.asyncButton.disabled = !result.ok || this.busy;
        if (this.editor) saveEvent(view.name, this.editor.value);
      },
      onSubmit: (shift) => this.invoke(shift ? 'async' : 'sync'),
    });
    this.result = h('div', { class: 'card-body' }, emptyState('No invocation yet', 'Write an event and press Invoke (Ctrl+Enter; Ctrl+Shift+Enter for async).'));
    this.el = h('div', { class: 'grid-2 grid-test' },
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', null, 'Event'), h('span', { class: 'muted small' }, 'the request body, as JSON')),
        h('div', { class: 'card-body' },
          this.editor.el,
          h('div', { class: 'toolbar' }, this.syncButton, this.asyncButton, h('span', { class: 'toolbar-spacer' }), this.formatButton))),
      h('div', { class: 'card result-card' },
        h('div', { class: 'card-head' }, h('h2', null, 'Result')),
        this.result));
  }

  setBusy(busy) {
    this.busy = busy;
    this.syncButton.disabled = this.asyncButton.disabled = busy || !this.editor.result.ok;
  }

  async invoke(mode) {
    if (this.busy) return;
    if (!this.editor.result.ok) {
      this.editor.focusError();
      return;
    }
    this.setBusy(true);
    const started = performance.now();
    const elapsed = h('span', { class: 'muted' }, '');
    const ticker = setInterval(() => { elapsed.textContent = ` ${((performance.now() - started) / 1000).toFixed(1)} s`; }, 100);
    replace(this.result, h('div', { class: 'pending' }, spinner(), mode === 'async' ? 'Queueing…' : 'Invoking…', elapsed));
    try {
      const body = this.editor.value.trim() || '{}';
      const { status, data } = await api(fnPath(this.view.name, '/invoke'), { method: 'POST', body, contentType: 'application/json', params: { mode } });
      const roundTrip = performance.now() - started;
      if (!this.alive) return;
      if (mode === 'async') await this.followAsync(data, status);
      else await this.showSync(data, status, roundTrip);
    } catch (exc) {
      if (!this.alive) return;
      replace(this.result,
        h('div', { class: 'result-head' }, badge(`HTTP ${exc.status || 'error'}`, 'bad'), badge(exc.type || 'refused', 'bad')),
        h('div', { class: 'alert alert-bad' }, exc.message),
        exc.body && typeof exc.body === 'object' ? h('details', { class: 'raw' }, h('summary', null, 'Response body'), pre(prettyJson(exc.body), 'code-json')) : null);
    } finally {
      clearInterval(ticker);
      this.setBusy(false);
    }
  }

  async showSync(envelope, status, roundTrip) {
    const logsHolder = h('div', null, h('div', { class: 'pending small' }, spinner(), 'Loading the logs…'));
    const link = h('a', { href: `#/fn/${encodeURIComponent(this.view.name)}/invocations/${encodeURIComponent(envelope.invocation_id)}` }, envelope.invocation_id);
    replace(this.result,
      h('div', { class: 'result-head' },
        envelope.success ? badge('success', 'ok') : badge('failed', 'bad'),
        coldBadge(envelope.cold),
        h('span', { class: 'metric' }, h('span', { class: 'metric-label' }, 'duration'), h('b', null, fmtDuration(envelope.duration_ms))),
        h('span', { class: 'metric' }, h('span', { class: 'metric-label' }, 'round trip'), h('b', null, fmtDuration(roundTrip))),
        h('span', { class: 'metric' }, h('span', { class: 'metric-label' }, 'HTTP'), h('b', null, String(status)))),
      h('div', { class: 'small muted id-line' }, 'invocation ', link),
      envelope.success
        ? section('Result', pre(prettyJson(envelope.result), 'code-json result-value'))
        : section('Error', errorBlock(envelope.error || { type: 'Error', message: envelope.message })),
      section('Logs', logsHolder),
      h('details', { class: 'raw' }, h('summary', null, 'Response envelope'), pre(prettyJson(envelope), 'code-json')));
    try {
      const { data } = await api(`/v1/invocations/${encodeURIComponent(envelope.invocation_id)}`);
      if (this.alive) replace(logsHolder, logsBlock(data.invocation.logs));
    } catch (exc) {
      if (this.alive) replace(logsHolder, h('p', { class: 'text-bad small' }, `Cannot load the record: ${exc.message}`));
    }
  }

  async followAsync(accepted, status) {
    const id = accepted.invocation_id;
    const state = h('div', { class: 'pending' }, spinner(), `Accepted (HTTP ${status}); waiting for it to run…`);
    const holder = h('div');
    replace(this.result,
      h('div', { class: 'result-head' }, badge('async', 'info'), badge(`HTTP ${status}`, 'muted')),
      h('div', { class: 'small muted id-line' }, 'invocation ', h('a', { href: `#/fn/${encodeURIComponent(this.view.name)}/invocations/${encodeURIComponent(id)}` }, id)),
      state, holder);
    const deadline = Date.now() + 10 * 60 * 1000;
    let delay = 250;
    while (this.alive && Date.now() < deadline) {
      let record;
      try {
        ({ data: { invocation: record } } = await api(`/v1/invocations/${encodeURIComponent(id)}`));
      } catch (exc) {
        replace(state, h('span', { class: 'text-bad' }, exc.message));
        return;
      }
      if (!this.alive) return;
      if (FINAL.has(record.status)) {
        state.remove();
        replace(holder, recordView(record));
        return;
      }
      replace(state, spinner(), `Status: ${record.status}${record.attempts ? ` (attempt ${record.attempts})` : ''}…`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 1.5, 2000);
    }
  }

  destroy() {
    this.alive = false;
  }
}
