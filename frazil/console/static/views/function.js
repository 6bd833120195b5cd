// One function: a header with its settings and actions, and tabs (overview with versions and
// build logs, test-invoke, invocation history, logs, metrics).

import { api, fnPath } from '../api.js';
import { h, replace, badge, statusBadge, fmtTime, fmtAgo, fmtBytes, fmtDuration, pre, toast, confirmDialog, copyText, spinner } from '../dom.js';
import { poller } from '../stats.js';
import { invocationCharts, updateInvocationCharts } from './dashboard.js';
import { LastHour } from './last-hour.js';
import { TestTab } from './invoke.js';
import { HistoryTab } from './history.js';
import { LogsTab } from './logs.js';

const TABS = [
  ['overview', 'Overview'],
  ['test', 'Test'],
  ['invocations', 'Invocations'],
  ['logs', 'Logs'],
  ['metrics', 'Metrics'],
];

export class FunctionView {
  constructor(name, ctx) {
    this.name = name;
    this.ctx = ctx;
    this.title = name;
    this.fn = null;
    this.tab = null;
    this.tabView = null;
    this.heading = h('div', { class: 'page-meta' }, spinner());
    this.tabLinks = {};
    const tabs = h('nav', { class: 'tabs', role: 'tablist' }, TABS.map(([key, label]) => {
      const link = h('a', { class: 'tab', role: 'tab', href: `#/fn/${encodeURIComponent(name)}/${key}` }, label);
      this.tabLinks[key] = link;
      return link;
    }));
    this.body = h('div', { class: 'tab-body' });
    this.el = h('section', { class: 'page' },
      h('div', { class: 'page-head' },
        h('div', null, h('h1', { class: 'fn-title' }, name), this.heading),
        h('div', { class: 'actions' },
          h('a', { class: 'btn', href: `#/deploy/${encodeURIComponent(name)}` }, 'Deploy new version'),
          h('button', { class: 'btn btn-danger-ghost', type: 'button', onclick: () => this.remove() }, 'Delete'))),
      tabs,
      this.body);
    this.ready = this.load();
  }

  async load() {
    try {
      const { data } = await api(fnPath(this.name));
      this.fn = data.function;
      this.renderHeading();
    } catch (exc) {
      this.fn = null;
      if (exc.status === 404) this.showMissing();
      else replace(this.heading, h('span', { class: 'text-bad' }, exc.message));
    }
    return this.fn;
  }

  // A function that does not exist (mistyped, or deleted meanwhile): say so instead of tabs
  // that would wait for it forever.
  showMissing() {
    if (this.tabView) this.tabView.destroy();
    this.tabView = null;
    this.show = () => {};
    replace(this.el,
      h('div', { class: 'page-head' }, h('div', null, h('h1', { class: 'fn-title' }, this.name))),
      h('div', { class: 'card missing', role: 'alert' }, h('div', { class: 'card-body' },
        h('h2', null, 'This function does not exist'),
        h('p', null, `There is no function named ${this.name}: it was deleted, or the address is mistyped.`),
        h('p', null, h('a', { class: 'btn btn-primary', href: `#/deploy/${encodeURIComponent(this.name)}` }, `Deploy ${this.name}`),
          ' ', h('a', { class: 'btn', href: '#/' }, 'Back to the dashboard')))));
  }

  renderHeading() {
    const f = this.fn;
    replace(this.heading,
      badge(`v${f.version}`, 'info'), badge(f.runtime, 'muted'), badge(`${f.memory} MB`, 'muted'), badge(`timeout ${f.timeout} s`, 'muted'),
      accessBadge(f.access),
      f.http ? badge('http', 'info', `an HTTP endpoint at ${endpointUrl(f)}`) : null,
      (f.triggers || []).length ? badge(`${f.triggers.length} trigger${f.triggers.length > 1 ? 's' : ''}`, 'info', f.triggers.map(triggerText).join('\n')) : null,
      f.resident ? badge(`resident ${f.resident}`, 'warn', 'instances kept warm at all times') : null,
      h('span', { class: 'muted small' }, `deployed ${fmtAgo(f.deployed_at)}`));
  }

  show(tab, arg) {
    if (!TABS.some(([key]) => key === tab)) tab = 'overview';
    for (const [key, link] of Object.entries(this.tabLinks)) {
      link.classList.toggle('active', key === tab);
      link.setAttribute('aria-selected', key === tab ? 'true' : 'false');
    }
    if (this.tab === tab && this.tabView && this.tabView.show) {
      this.tabView.show(arg);
      return;
    }
    if (this.tabView) this.tabView.destroy();
    this.tab = tab;
    const make = {
      overview: () => new OverviewTab(this),
      test: () => new TestTab(this),
      invocations: () => new HistoryTab(this),
      logs: () => new LogsTab(this),
      metrics: () => new MetricsTab(this),
    }[tab];
    this.tabView = make();
    replace(this.body, this.tabView.el);
    if (this.tabView.show) this.tabView.show(arg);
  }

  async remove() {
    const yes = await confirmDialog({
      title: `Delete ${this.name}?`,
      message: `This deletes the function ${this.name}, every one of its versions and its warm instances. It cannot be undone.`,
      confirm: 'Delete function', danger: true,
    });
    if (!yes) return;
    try {
      await api(fnPath(this.name), { method: 'DELETE' });
      toast(`Deleted ${this.name}`, 'ok');
      window.dispatchEvent(new CustomEvent('frazil:functions-changed'));
      location.hash = '#/';
    } catch (exc) {
      toast(`Delete failed: ${exc.message}`, 'bad');
    }
  }

  destroy() {
    if (this.tabView) this.tabView.destroy();
  }
}

// --- who may invoke it, what fires it ------------------------------------------------------------

const ACCESS = {
  admin: ['ok', 'the admin key only'],
  user: ['info', 'any logged-in end user with their token, and the admin'],
  public: ['warn', 'anyone, without a token'],
};

function accessBadge(access) {
  const [kind, title] = ACCESS[access] || ['muted', ''];
  return badge(`access ${access}`, kind, title);
}

function endpointUrl(f) {
  return `${location.origin}${f.endpoint}`;
}

function triggerText(t) {
  if (t.type === 'schedule') return `schedule ${t.cron}${t.next_fire_at ? ` (next ${t.next_fire_at})` : ''}`;
  if (t.type === 'table') return `table ${t.table} on ${(t.on || []).join(', ')}`;
  return JSON.stringify(t);
}

function triggerItem(t) {
  if (t.type === 'schedule') {
    return [badge('schedule', 'muted'), ' ', h('code', null, t.cron), ' UTC',
      t.next_fire_at ? h('span', { class: 'muted small fn-next-fire', title: t.next_fire_at }, ` · next ${fmtTime(t.next_fire_at)}`) : null];
  }
  if (t.type === 'table') {
    return [badge('table', 'muted'), ' ', h('code', null, t.table), h('span', { class: 'muted small' }, ` · on ${(t.on || []).join(', ')}`)];
  }
  return h('code', null, JSON.stringify(t));
}

// --- overview -----------------------------------------------------------------------------------

class OverviewTab {
  constructor(view) {
    this.view = view;
    this.settings = h('div', { class: 'card' }, h('div', { class: 'card-body' }, spinner()));
    this.versions = h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Versions')), h('div', { class: 'card-body' }, spinner()));
    this.el = h('div', { class: 'grid-2' }, h('div', { class: 'stack' }, this.settings, this.endpointCard()), this.versions);
    this.view.ready.then((fn) => fn && this.renderSettings(fn));
    this.loadVersions();
  }

  endpointCard() {
    const url = `${location.origin}/v1/functions/${this.view.name}/invoke`;
    // The header in double quotes: the shell expands $FRAZIL_TOKEN there (not in single quotes).
    const curl = `curl -X POST '${url}' \\\n  -H "Authorization: Bearer $FRAZIL_TOKEN" \\\n  -d '{"name": "world"}'`;
    return h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, 'Invoke'),
        h('button', { class: 'btn btn-sm', type: 'button', onclick: () => copyText(curl) }, 'Copy curl')),
      h('div', { class: 'card-body' },
        h('div', { class: 'endpoint' }, h('span', { class: 'method' }, 'POST'), h('code', null, url)),
        pre(curl, 'code-sm'),
        h('p', { class: 'muted small' }, 'Add ?mode=async to queue it (202 with the invocation id).')));
  }

  renderSettings(f) {
    const row = (k, v) => [h('dt', null, k), h('dd', null, v)];
    const envRows = Object.entries(f.env || {});
    replace(this.settings,
      h('div', { class: 'card-head' }, h('h2', null, 'Settings')),
      h('div', { class: 'card-body' },
        h('dl', { class: 'props' },
          row('Active version', String(f.version)),
          row('Runtime', f.runtime),
          row('Handler', h('code', null, f.handler)),
          row('Memory', `${f.memory} MB`),
          row('Timeout', `${f.timeout} s`),
          row('Resident instances', String(f.resident)),
          row('Access', h('span', { class: 'fn-access' }, accessBadge(f.access), ' ', ACCESS[f.access] ? ACCESS[f.access][1] : '')),
          row('HTTP endpoint', f.endpoint
            ? h('span', { class: 'fn-endpoint' }, h('code', null, endpointUrl(f)), ' ',
              h('button', { class: 'btn btn-sm', type: 'button', onclick: () => copyText(endpointUrl(f)) }, 'Copy'))
            : h('span', { class: 'muted' }, 'off (deploy with http = true for one at /fn/' + f.name + ')')),
          row('Triggers', (f.triggers || []).length
            ? h('ul', { class: 'fn-triggers' }, f.triggers.map((t) => h('li', null, triggerItem(t))))
            : h('span', { class: 'muted' }, 'none: only calls start it')),
          row('Deployed', `${fmtTime(f.deployed_at)} (${fmtAgo(f.deployed_at)})`)),
        h('h3', { class: 'sub-title' }, 'Environment'),
        envRows.length
          ? h('table', { class: 'table table-compact' },
            h('thead', null, h('tr', null, h('th', null, 'Name'), h('th', null, 'Value'))),
            h('tbody', null, envRows.map(([k, v]) => h('tr', null, h('td', null, h('code', null, k)), h('td', { class: 'mono' }, v)))))
          : h('p', { class: 'muted small' }, 'No environment variables.')));
  }

  async loadVersions() {
    const body = this.versions.querySelector('.card-body');
    try {
      const { data } = await api(fnPath(this.view.name, '/versions'));
      const active = this.view.fn ? this.view.fn.version : null;
      const rows = [];
      for (const v of data.versions) {
        const logRow = h('tr', { class: 'detail-row', hidden: true }, h('td', { colspan: 6 }));
        const row = h('tr', { class: 'clickable', tabindex: '0', title: 'Show the build log' },
          h('td', { class: 'nowrap' }, h('b', null, `v${v.version}`), ' ', v.version === active ? badge('active', 'ok') : null),
          h('td', null, statusBadge(v.status)),
          h('td', null, v.runtime),
          h('td', null, fmtBytes(v.bundle_bytes)),
          h('td', { title: v.created_at }, fmtTime(v.created_at)),
          h('td', { class: 'muted nowrap' }, v.finished_at ? fmtDuration(new Date(v.finished_at) - new Date(v.created_at)) : '…'));
        const toggle = () => this.toggleLog(v, logRow);
        row.addEventListener('click', toggle);
        row.addEventListener('keydown', (e) => { if (e.key === 'Enter') toggle(); });
        rows.push(row, logRow);
      }
      replace(body, h('table', { class: 'table' },
        h('thead', null, h('tr', null, ['Version', 'Status', 'Runtime', 'Bundle', 'Created', 'Build'].map((c) => h('th', null, c)))),
        h('tbody', null, rows)));
      if (data.versions.length) rows[0].click();
    } catch (exc) {
      replace(body, h('p', { class: 'text-bad' }, exc.message));
    }
  }

  async toggleLog(v, logRow) {
    logRow.hidden = !logRow.hidden;
    if (logRow.hidden || logRow.dataset.loaded) return;
    const cell = logRow.firstChild;
    replace(cell, spinner());
    try {
      const { data } = await api(fnPath(this.view.name, `/versions/${v.version}`));
      const ver = data.version;
      logRow.dataset.loaded = '1';
      replace(cell,
        ver.error ? h('div', { class: 'alert alert-bad' }, ver.error) : null,
        h('div', { class: 'kv-line muted small' }, `sha256 ${ver.bundle_sha256.slice(0, 16)}…`, ver.layer ? ` · dependency layer ${ver.layer}` : ' · no dependency layer'),
        h('div', { class: 'label' }, 'Build log'),
        pre(ver.build_log || '(empty)', 'code-log'));
    } catch (exc) {
      replace(cell, h('p', { class: 'text-bad' }, exc.message));
    }
  }

  destroy() {}
}

// --- metrics ------------------------------------------------------------------------------------

class MetricsTab {
  constructor(view) {
    this.view = view;
    this.charts = invocationCharts();
    this.lastHour = new LastHour(view.name);
    this.totals = h('div', { class: 'tiles tiles-sm' });
    this.el = h('div', null,
      h('p', { class: 'muted small' }, `Live numbers of ${view.name}, sampled every second over the last 2 minutes. Totals count since the server started.`),
      this.totals,
      h('div', { class: 'chart-grid' }, this.charts.rate.el, this.charts.latency.el, this.charts.cold.el),
      this.lastHour.el);
    this.unsubscribe = poller.subscribe(() => this.update());
  }

  update() {
    const latest = poller.latest;
    if (!latest) return;
    updateInvocationCharts(this.charts, poller.series(this.view.name));
    const scope = latest.functions[this.view.name];
    const inv = scope ? scope.invocations : {};
    const n = (k) => inv[k] || 0;
    const d = scope ? scope.duration : null;
    const tiles = [
      ['Succeeded', n('succeeded')], ['Failed', n('failed')], ['Timed out', n('timeout')],
      ['Throttled', n('throttled') + (scope ? scope.throttled_sync : 0)], ['Cold starts', scope ? scope.cold_starts : 0],
      ['Mean duration', d && d.count ? fmtDuration((d.sum / d.count) * 1000) : '—'],
    ];
    replace(this.totals, tiles.map(([label, value]) => h('div', { class: 'tile' }, h('div', { class: 'tile-label' }, label), h('div', { class: 'tile-value' }, String(value)))));
  }

  destroy() {
    this.unsubscribe();
    this.lastHour.destroy();
    for (const c of Object.values(this.charts)) c.destroy();
  }
}
