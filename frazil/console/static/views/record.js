// Rendering one invocation record (GET /v1/invocations/{id}): shared by the test tab and the
// history. Everything from the function (result, error, logs) goes in as text.

import { h, badge, statusBadge, fmtTime, fmtDuration, prettyJson, pre } from '../dom.js';

export function coldBadge(cold) {
  if (cold === null || cold === undefined) return badge('—', 'muted');
  return cold ? badge('cold', 'cold', 'a new instance was started for it') : badge('warm', 'warm', 'served by a warm instance');
}

// What fired an invocation (the record's `trigger`).
const TRIGGERS = {
  api: 'called through the API', http: 'a request to its HTTP endpoint', schedule: 'its schedule',
  table: 'a change in a data table', delay: 'a delayed call', function: 'another function (SDK)',
  retry: 'run again from an earlier record',
};

export function triggerBadge(trigger) {
  if (!trigger) return badge('—', 'muted');
  return badge(trigger, 'muted', TRIGGERS[trigger] || '');
}

export function errorBlock(error) {
  if (!error) return null;
  return h('div', { class: 'error-block' },
    h('div', { class: 'error-head' }, h('span', { class: 'error-type' }, error.type || 'Error'), h('span', { class: 'error-message' }, error.message || '')),
    error.stack ? pre(error.stack, 'code-stack') : null);
}

export function logsBlock(logs) {
  if (!logs) return h('div', { class: 'logs-empty' }, 'No output.');
  return pre(logs, 'code-log');
}

export function section(title, ...content) {
  return h('div', { class: 'section' }, h('div', { class: 'label' }, title), ...content);
}

export function recordView(record) {
  const row = (k, v) => [h('dt', null, k), h('dd', null, v)];
  return h('div', { class: 'record' },
    h('dl', { class: 'props props-grid' },
      row('Status', statusBadge(record.status)),
      row('Mode', record.mode || '—'),
      row('Trigger', triggerBadge(record.trigger)),
      record.retry_of ? row('Run again from', h('code', { class: 'small' }, record.retry_of)) : null,
      row('Version', record.version === null ? '—' : `v${record.version}`),
      row('Attempts', String(record.attempts)),
      row('Start', coldBadge(record.cold)),
      row('Duration', fmtDuration(record.duration_ms)),
      row('Created', h('span', { title: record.created_at || '' }, fmtTime(record.created_at))),
      row('Started', h('span', { title: record.started_at || '' }, fmtTime(record.started_at))),
      row('Finished', h('span', { title: record.finished_at || '' }, fmtTime(record.finished_at))),
      row('Instance', h('code', { class: 'small' }, record.instance_id || '—')),
      row('Invocation', h('code', { class: 'small' }, record.id))),
    record.event !== undefined ? section('Event', record.event === null ? h('div', { class: 'logs-empty' }, 'Not kept (larger than the payload limit).') : pre(prettyJson(record.event), 'code-json code-event')) : null,
    record.status === 'succeeded' ? section('Result', pre(prettyJson(record.result), 'code-json')) : null,
    record.error ? section('Error', errorBlock(record.error)) : null,
    section('Logs', logsBlock(record.logs)));
}
