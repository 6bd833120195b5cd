// The dashboard: live numbers and charts for the whole installation, from the stats poller.

import { h, fmtDuration, fmtNumber } from '../dom.js';
import { LineChart } from '../charts.js';
import { poller } from '../stats.js';
import { LastHour } from './last-hour.js';

export const COLORS = {
  ok: '#0ea5e9', failed: '#ef4444', p50: '#6366f1', p95: '#f59e0b', cold: '#8b5cf6',
  idle: '#10b981', busy: '#f97316', queue: '#0d9488', running: '#2563eb',
};

const fmtRate = (v) => `${fmtNumber(v)}/s`;
const fmtMs = (v) => fmtDuration(v);
const axisMs = (v) => (v >= 1000 ? `${fmtNumber(v / 1000)} s` : `${fmtNumber(v)} ms`);

// The charts for invocation numbers (of one function or of all): shared with the function view
// and the last hour (a wider window).
export function invocationCharts({ windowS = 120, latencyNote = '5 s window' } = {}) {
  return {
    rate: new LineChart({
      title: 'Invocations per second', format: fmtRate, minMax: 1, windowS,
      series: [{ key: 'ok', label: 'succeeded', color: COLORS.ok, fill: true }, { key: 'failed', label: 'failed', color: COLORS.failed }],
    }),
    latency: new LineChart({
      title: 'Latency', note: latencyNote, format: fmtMs, axis: axisMs, minMax: 1, windowS,
      series: [{ key: 'p50', label: 'p50', color: COLORS.p50 }, { key: 'p95', label: 'p95', color: COLORS.p95, dash: true }],
    }),
    cold: new LineChart({
      title: 'Cold starts per second', format: fmtRate, minMax: 1, windowS,
      series: [{ key: 'cold', label: 'cold starts', color: COLORS.cold, fill: true }],
    }),
  };
}

export function updateInvocationCharts(charts, series) {
  charts.rate.setData(series.t, { ok: series.ok, failed: series.failed });
  charts.latency.setData(series.t, { p50: series.p50, p95: series.p95 });
  charts.cold.setData(series.t, { cold: series.cold });
}

function tile(label, hint) {
  const value = h('div', { class: 'tile-value' }, '—');
  const sub = h('div', { class: 'tile-sub' }, hint || '');
  return { el: h('div', { class: 'tile' }, h('div', { class: 'tile-label' }, label), value, sub), value, sub };
}

export class DashboardView {
  constructor(ctx) {
    this.title = 'Dashboard';
    this.ctx = ctx;
    this.tiles = {
      functions: tile('Functions', 'deployed and active'),
      rate: tile('Invocations / s', 'last 10 s'),
      latency: tile('Latency p95', 'last 10 s'),
      running: tile('Running', 'all tiers'),
      instances: tile('Instances', 'idle / busy'),
      queue: tile('Async queue', 'waiting'),
    };
    this.charts = invocationCharts();
    this.tierCharts = {};
    this.tierGrid = h('div', { class: 'chart-grid' });
    this.instances = new LineChart({
      title: 'Instances', integer: true, minMax: 4,
      series: [{ key: 'idle', label: 'idle (warm)', color: COLORS.idle, fill: true }, { key: 'busy', label: 'busy', color: COLORS.busy }],
    });
    this.queue = new LineChart({
      title: 'Async queue depth', integer: true, minMax: 4,
      series: [{ key: 'queue', label: 'queued', color: COLORS.queue, fill: true }],
    });
    this.status = h('span', { class: 'muted small' }, 'waiting for the first sample…');
    this.lastHour = new LastHour();
    this.el = h('section', { class: 'page' },
      h('div', { class: 'page-head' },
        h('div', null, h('h1', null, 'Dashboard'), h('div', { class: 'page-sub' }, 'Live numbers of this installation, sampled every second over the last 2 minutes.')),
        this.status),
      h('div', { class: 'tiles' }, Object.values(this.tiles).map((t) => t.el)),
      h('h2', { class: 'section-title' }, 'Invocations'),
      h('div', { class: 'chart-grid' }, this.charts.rate.el, this.charts.latency.el, this.charts.cold.el),
      h('h2', { class: 'section-title' }, 'Capacity'),
      this.tierGrid,
      h('div', { class: 'chart-grid' }, this.instances.el, this.queue.el),
      this.lastHour.el);
    this.unsubscribe = poller.subscribe(() => this.update());
  }

  tierChart(tier) {
    if (!this.tierCharts[tier]) {
      const chart = new LineChart({
        title: `Tier ${tier} MB: running invocations`, integer: true, minMax: 4,
        series: [{ key: 'running', label: 'running', color: COLORS.running, fill: true }],
      });
      this.tierCharts[tier] = chart;
      this.tierGrid.append(chart.el);
    }
    return this.tierCharts[tier];
  }

  update() {
    const latest = poller.latest;
    if (poller.error) {
      this.status.textContent = `stats unavailable: ${poller.error.message}`;
      this.status.className = 'small text-bad';
    } else if (latest) {
      this.status.textContent = `updated ${new Date(latest.time * 1000).toLocaleTimeString(undefined, { hour12: false })}`;
      this.status.className = 'muted small live';
    }
    if (!latest) return;
    const s = poller.series();
    updateInvocationCharts(this.charts, s);
    for (const tier of Object.keys(s.running)) {
      const limit = s.limits[tier];
      const running = latest.tiers[tier].running;
      const waiting = latest.tiers[tier].waiting;
      this.tierChart(tier).setData(s.t, { running: s.running[tier] }, {
        limit: { value: limit, label: `limit ${limit}` },
        extra: `${running} / ${limit}${waiting ? ` · ${waiting} waiting` : ''}`,
      });
    }
    this.instances.setData(s.t, { idle: s.idle, busy: s.busy });
    this.queue.setData(s.t, { queue: s.queue });

    // tiles
    const recent = (arr) => {
      const xs = arr.slice(-10).filter((v) => v !== null);
      return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
    };
    this.tiles.functions.value.textContent = String(this.ctx.functions().length);
    this.tiles.rate.value.textContent = fmtNumber(recent(s.total) ?? 0);
    const totals = latest.totals.invocations;
    const all = Object.values(totals).reduce((a, b) => a + b, 0);
    this.tiles.rate.sub.textContent = `${all} since start`;
    const p95 = s.p95.slice(-10).filter((v) => v !== null && v !== undefined);
    this.tiles.latency.value.textContent = p95.length ? fmtDuration(Math.max(...p95)) : '—';
    const running = Object.values(latest.tiers).reduce((a, t) => a + t.running, 0);
    const limit = Object.values(latest.tiers).reduce((a, t) => a + t.limit, 0);
    this.tiles.running.value.textContent = String(running);
    this.tiles.running.sub.textContent = Object.entries(latest.tiers).map(([tier, t]) => `${tier}: ${t.running}/${t.limit}`).join(' · ') || `of ${limit}`;
    this.tiles.instances.value.textContent = `${latest.instances.idle} / ${latest.instances.busy}`;
    this.tiles.queue.value.textContent = String(latest.queue_depth);
  }

  destroy() {
    this.unsubscribe();
    this.lastHour.destroy();
    for (const c of [...Object.values(this.charts), ...Object.values(this.tierCharts), this.instances, this.queue]) c.destroy();
  }
}
