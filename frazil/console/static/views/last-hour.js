// The last hour of invocation numbers, as the server kept them (GET /v1/stats/history): what
// happened before this page was opened. For the whole installation, or one function.

import { api } from '../api.js';
import { h } from '../dom.js';
import { historySeries } from '../stats.js';
import { invocationCharts, updateInvocationCharts } from './dashboard.js';

const HOUR_S = 3600;
const MIN_REFRESH_S = 5;

export class LastHour {
  constructor(fn = null) {
    this.fn = fn;
    this.alive = true;
    this.charts = invocationCharts({ windowS: HOUR_S, latencyNote: 'per sample' });
    this.status = h('span', { class: 'muted small' }, 'loading…');
    this.el = h('div', null,
      h('div', { class: 'section-head' }, h('h2', { class: 'section-title' }, 'Last hour'), this.status),
      h('div', { class: 'chart-grid' }, this.charts.rate.el, this.charts.latency.el, this.charts.cold.el));
    this.refresh();
  }

  async refresh() {
    let wait = MIN_REFRESH_S;
    try {
      const { data } = await api('/v1/stats/history', { params: { function: this.fn } });
      if (!this.alive) return;
      updateInvocationCharts(this.charts, historySeries(data, this.fn));
      const n = data.samples.length;
      this.status.textContent = `kept by the server: ${n} sample${n === 1 ? '' : 's'}, one every ${data.interval_s} s`;
      this.status.className = 'muted small';
      wait = Math.max(MIN_REFRESH_S, data.interval_s);
    } catch (exc) {
      if (!this.alive) return;
      this.status.textContent = `unavailable: ${exc.message}`;
      this.status.className = 'small text-bad';
    }
    this.timer = setTimeout(() => this.refresh(), wait * 1000);
  }

  destroy() {
    this.alive = false;
    clearTimeout(this.timer);
    for (const c of Object.values(this.charts)) c.destroy();
  }
}
