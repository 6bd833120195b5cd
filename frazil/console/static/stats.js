// Samples GET /v1/stats every second into a rolling window (~2 minutes) and derives the
// charted series: rates from counter deltas, latency quantiles from histogram bucket deltas.

import { api } from './api.js';

export const WINDOW_S = 120;
const LATENCY_WINDOW_S = 5; // quantiles over the last few seconds: steadier than 1 s deltas
const FAILED = ['failed', 'timeout', 'throttled'];

export class StatsPoller {
  constructor() {
    this.samples = [];
    this.listeners = new Set();
    this.timer = null;
    this.inflight = false;
    this.error = null;
  }

  start() {
    if (this.timer) return;
    this.tick();
    this.timer = setInterval(() => this.tick(), 1000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.samples = [];
  }

  subscribe(fn) {
    this.listeners.add(fn);
    if (this.samples.length) fn(this);
    return () => this.listeners.delete(fn);
  }

  async tick() {
    if (this.inflight) return;
    this.inflight = true;
    try {
      const { data } = await api('/v1/stats', { quiet401: false });
      this.error = null;
      this.samples.push(data);
      const oldest = data.time - WINDOW_S - LATENCY_WINDOW_S - 2;
      while (this.samples.length && this.samples[0].time < oldest) this.samples.shift();
    } catch (exc) {
      this.error = exc;
    } finally {
      this.inflight = false;
    }
    for (const fn of this.listeners) {
      try {
        fn(this);
      } catch (exc) {
        console.error(exc);
      }
    }
  }

  get latest() {
    return this.samples[this.samples.length - 1];
  }

  // The counters of one function (or of all), from a sample.
  static scope(sample, fn) {
    if (!fn) return sample.totals;
    return sample.functions[fn] || null;
  }

  // Derived series over the window; `fn` limits the invocation numbers to one function.
  series(fn = null) {
    const s = this.samples;
    const out = {
      t: [], ok: [], failed: [], total: [], cold: [], p50: [], p95: [], mean: [],
      running: {}, limits: {}, idle: [], busy: [], queue: [],
    };
    if (!s.length) return out;
    const last = s[s.length - 1];
    const start = last.time - WINDOW_S;
    const bounds = last.latency_buckets_s;
    for (const tier of Object.keys(last.tiers)) {
      out.running[tier] = [];
      out.limits[tier] = last.tiers[tier].limit;
    }
    let j = 0; // the sample LATENCY_WINDOW_S before sample k
    for (let k = 1; k < s.length; k++) {
      const cur = s[k];
      if (cur.time < start) continue;
      const prev = s[k - 1];
      const dt = cur.time - prev.time;
      const a = StatsPoller.scope(prev, fn);
      const b = StatsPoller.scope(cur, fn);
      out.t.push(cur.time);
      const rate = (x, y) => (dt > 0 && y >= x ? (y - x) / dt : null);
      const ok = rate(count(a, ['succeeded']), count(b, ['succeeded']));
      const bad = rate(count(a, FAILED), count(b, FAILED));
      out.ok.push(ok);
      out.failed.push(bad);
      out.total.push(ok === null || bad === null ? null : ok + bad);
      out.cold.push(rate(a ? a.cold_starts : 0, b ? b.cold_starts : 0));

      while (j < k && s[j + 1] && s[j + 1].time <= cur.time - LATENCY_WINDOW_S) j++;
      const base = StatsPoller.scope(s[Math.min(j, k - 1)], fn);
      const q = quantiles(base && base.duration, b && b.duration, bounds);
      out.p50.push(q && q.p50);
      out.p95.push(q && q.p95);
      out.mean.push(q && q.mean);

      for (const tier of Object.keys(out.running)) out.running[tier].push(cur.tiers[tier] ? cur.tiers[tier].running : null);
      out.idle.push(cur.instances.idle);
      out.busy.push(cur.instances.busy);
      out.queue.push(cur.queue_depth);
    }
    return out;
  }
}

function count(scope, statuses) {
  if (!scope) return 0;
  return statuses.reduce((n, st) => n + (scope.invocations[st] || 0), 0);
}

// p50/p95/mean (ms) of the observations between two cumulative histograms, interpolating
// linearly inside a bucket (as Prometheus' histogram_quantile does).
export function quantiles(before, after, bounds) {
  if (!after) return null;
  const n = after.count - (before ? before.count : 0);
  if (n <= 0) return null;
  const delta = after.buckets.map((c, k) => c - (before ? before.buckets[k] : 0));
  if (delta.some((d) => d < 0)) return null; // counters reset (server restarted)
  const q = (p) => {
    const rank = p * n;
    for (let k = 0; k < delta.length; k++) {
      if (delta[k] >= rank) {
        if (k >= bounds.length) return bounds[bounds.length - 1] * 1000; // +Inf bucket
        const lo = k === 0 ? 0 : bounds[k - 1];
        const hi = bounds[k];
        const below = k === 0 ? 0 : delta[k - 1];
        const inBucket = delta[k] - below;
        const frac = inBucket > 0 ? (rank - below) / inBucket : 1;
        return (lo + (hi - lo) * frac) * 1000;
      }
    }
    return bounds[bounds.length - 1] * 1000;
  };
  const sum = after.sum - (before ? before.sum : 0);
  return { p50: q(0.5), p95: q(0.95), mean: (sum / n) * 1000 };
}

// The last hour the server kept (GET /v1/stats/history): per sample, rates over its interval
// and latency quantiles of its histogram differences; `fn` limits them to one function.
export function historySeries(history, fn = null) {
  const out = { t: [], ok: [], failed: [], cold: [], p50: [], p95: [] };
  for (const sample of history.samples) {
    const counters = fn ? sample.functions[fn] : sample.totals;
    const dt = sample.interval_s > 0 ? sample.interval_s : history.interval_s;
    out.t.push(sample.time);
    out.ok.push(count(counters, ['succeeded']) / dt);
    out.failed.push(count(counters, FAILED) / dt);
    out.cold.push(counters ? counters.cold_starts / dt : 0);
    const q = quantiles(null, counters && counters.duration, history.latency_buckets_s);
    out.p50.push(q && q.p50);
    out.p95.push(q && q.p95);
  }
  return out;
}

export const poller = new StatsPoller();
