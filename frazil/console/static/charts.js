// Small time-series line charts on <canvas>: crisp on high-DPI screens, resized with their
// box, with a legend showing the latest values and a hover read-out.

import { h, fmtNumber } from './dom.js';

const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif';
const AXIS = '#8a94a6';
const GRID = '#e8ecf2';
const TABLE_ROWS = 12;

// A "nice" axis maximum: four equal steps of 1, 1.5, 2, 2.5 … 8 × 10^k (whole steps for counts).
export function niceMax(v, integer = false) {
  const step = Math.max(v, 1e-9) / 4;
  const p = 10 ** Math.floor(Math.log10(step));
  const multipliers = [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];
  for (const m of multipliers) {
    const candidate = m * p;
    if (candidate >= step - 1e-12 && (!integer || Number.isInteger(candidate))) return candidate * 4;
  }
  return integer ? Math.max(4, Math.ceil(step) * 4) : 10 * p * 4;
}

export class LineChart {
  // series: [{key, label, color, fill?, dash?}]; options: {unit, format, min, max, minMax, windowS}
  constructor({ title, series, unit = '', format, axis, minMax = 1, max, integer = false, windowS = 120, note }) {
    this.series = series;
    this.unit = unit;
    this.format = format || ((v) => `${fmtNumber(v)}${unit ? ' ' + unit : ''}`);
    this.axis = axis || this.format;
    this.minMax = minMax;
    this.fixedMax = max;
    this.integer = integer;
    this.windowS = windowS;
    this.data = { t: [], values: {} };
    this.hoverX = null;
    this.limit = null;

    this.legendValues = {};
    const legend = h('div', { class: 'chart-legend' }, series.map((s) => {
      const value = h('span', { class: 'legend-value' }, '—');
      this.legendValues[s.key] = value;
      const swatch = h('span', { class: ['swatch', s.dash ? 'swatch-dash' : null] });
      swatch.style.setProperty('--swatch', s.color);
      return h('span', { class: 'legend-item' }, swatch, h('span', { class: 'legend-label' }, s.label), value);
    }));
    this.extra = h('span', { class: 'chart-extra' });
    this.canvas = h('canvas', { class: 'chart-canvas', role: 'img', 'aria-label': title });
    this.tooltip = h('div', { class: 'chart-tooltip', hidden: true });
    // The same numbers as a table, for keyboards and screen readers (the canvas is a picture).
    this.tableBody = h('tbody');
    this.table = h('details', { class: 'chart-table' },
      h('summary', null, 'Show as a table'),
      h('table', { class: 'table' },
        h('caption', { class: 'sr-only' }, `${title}, the latest values`),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Time'), series.map((s) => h('th', { scope: 'col' }, s.label)))),
        this.tableBody));
    this.table.addEventListener('toggle', () => this.renderTable());
    this.el = h('figure', { class: 'chart' },
      h('figcaption', { class: 'chart-head' }, h('span', { class: 'chart-title' }, title), note ? h('span', { class: 'chart-note' }, note) : null, this.extra),
      legend,
      h('div', { class: 'chart-body' }, this.canvas, this.tooltip),
      this.table);
    this.canvas.addEventListener('mousemove', (e) => {
      const rect = this.canvas.getBoundingClientRect();
      this.hoverX = e.clientX - rect.left;
      this.draw();
    });
    this.canvas.addEventListener('mouseleave', () => { this.hoverX = null; this.draw(); });
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.canvas);
  }

  destroy() {
    this.resizeObserver.disconnect();
  }

  // t: [seconds since epoch], values: {key: [number|null]}, limit: {value, label} or null
  setData(t, values, { limit = null, extra = null } = {}) {
    this.data = { t, values };
    this.limit = limit;
    this.extra.textContent = extra || '';
    for (const s of this.series) {
      const arr = values[s.key] || [];
      let last = null;
      for (let k = arr.length - 1; k >= 0; k--) if (arr[k] !== null && arr[k] !== undefined) { last = arr[k]; break; }
      this.legendValues[s.key].textContent = last === null ? '—' : this.format(last);
    }
    this.draw();
    this.renderTable();
  }

  // The last TABLE_ROWS points, newest first (only while the table is open).
  renderTable() {
    if (!this.table.open) return;
    const { t, values } = this.data;
    const rows = [];
    for (let k = t.length - 1; k >= 0 && rows.length < TABLE_ROWS; k--) {
      rows.push(h('tr', null, h('td', null, new Date(t[k] * 1000).toLocaleTimeString(undefined, { hour12: false })),
        this.series.map((s) => {
          const v = (values[s.key] || [])[k];
          return h('td', { class: 'num' }, v === null || v === undefined ? '—' : this.format(v));
        })));
    }
    this.tableBody.replaceChildren(...rows);
  }

  draw() {
    const canvas = this.canvas;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;

    const { t, values } = this.data;
    const now = t.length ? t[t.length - 1] : Date.now() / 1000;
    const t0 = now - this.windowS;
    let peak = 0;
    for (const s of this.series) for (const v of values[s.key] || []) if (v !== null && v > peak) peak = v;
    const yMax = this.fixedMax !== undefined ? this.fixedMax : niceMax(Math.max(peak * 1.15, this.minMax), this.integer);

    const labels = [0, 0.25, 0.5, 0.75, 1].map((f) => this.axis(yMax * f));
    const padLeft = Math.max(...labels.map((l) => ctx.measureText(l).width)) + 10;
    const pad = { l: padLeft, r: 8, t: 8, b: 20 };
    const W = width - pad.l - pad.r;
    const H = height - pad.t - pad.b;
    const x = (tt) => pad.l + ((tt - t0) / this.windowS) * W;
    const y = (v) => pad.t + H - (v / yMax) * H;

    // grid and axes
    ctx.lineWidth = 1;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    [0, 0.25, 0.5, 0.75, 1].forEach((f, k) => {
      const yy = Math.round(y(yMax * f)) + 0.5;
      ctx.strokeStyle = GRID;
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(pad.l + W, yy);
      ctx.stroke();
      ctx.fillStyle = AXIS;
      ctx.fillText(labels[k], pad.l - 6, yy);
    });
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    // Ticks every 30 s on the live charts, in quarters (minutes) on the last hour's.
    const tick = this.windowS <= 120 ? 30 : this.windowS / 4;
    for (let s = 0; s <= this.windowS; s += tick) {
      const xx = x(now - s);
      ctx.fillStyle = AXIS;
      const label = s === 0 ? 'now' : (s >= 60 ? `-${Math.round(s / 60)}m` : `-${s}s`);
      ctx.fillText(label, Math.min(Math.max(xx, pad.l + 14), pad.l + W - 12), pad.t + H + 5);
    }

    // the limit line
    if (this.limit && this.limit.value <= yMax) {
      const yy = Math.round(y(this.limit.value)) + 0.5;
      ctx.save();
      ctx.strokeStyle = '#dc2626';
      ctx.setLineDash([5, 4]);
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(pad.l + W, yy);
      ctx.stroke();
      ctx.restore();
      ctx.fillStyle = '#dc2626';
      ctx.textAlign = 'left';
      ctx.textBaseline = 'bottom';
      ctx.fillText(this.limit.label || `limit ${this.limit.value}`, pad.l + 4, yy - 2);
    }

    // the series
    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.l, pad.t - 2, W, H + 4);
    ctx.clip();
    for (const s of this.series) {
      const arr = values[s.key] || [];
      const segments = [];
      let seg = [];
      for (let k = 0; k < t.length; k++) {
        const v = arr[k];
        if (v === null || v === undefined || t[k] < t0 - 2) {
          if (seg.length) segments.push(seg);
          seg = [];
        } else seg.push([x(t[k]), y(v)]);
      }
      if (seg.length) segments.push(seg);
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.75;
      ctx.lineJoin = 'round';
      ctx.setLineDash(s.dash ? [4, 3] : []);
      for (const points of segments) {
        if (s.fill) {
          ctx.beginPath();
          ctx.moveTo(points[0][0], y(0));
          for (const [px, py] of points) ctx.lineTo(px, py);
          ctx.lineTo(points[points.length - 1][0], y(0));
          ctx.closePath();
          ctx.globalAlpha = 0.12;
          ctx.fillStyle = s.color;
          ctx.fill();
          ctx.globalAlpha = 1;
        }
        ctx.beginPath();
        points.forEach(([px, py], k) => (k ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
        ctx.stroke();
        if (points.length === 1) {
          ctx.fillStyle = s.color;
          ctx.beginPath();
          ctx.arc(points[0][0], points[0][1], 2.5, 0, Math.PI * 2);
          ctx.fill();
        }
      }
    }
    ctx.restore();

    // hover read-out
    this.tooltip.hidden = true;
    if (this.hoverX !== null && t.length) {
      let best = -1;
      let bestD = Infinity;
      for (let k = 0; k < t.length; k++) {
        const d = Math.abs(x(t[k]) - this.hoverX);
        if (d < bestD) { bestD = d; best = k; }
      }
      if (best >= 0 && bestD < 30) {
        const xx = Math.round(x(t[best])) + 0.5;
        ctx.strokeStyle = '#94a3b8';
        ctx.setLineDash([]);
        ctx.beginPath();
        ctx.moveTo(xx, pad.t);
        ctx.lineTo(xx, pad.t + H);
        ctx.stroke();
        const rows = [h('div', { class: 'tt-time' }, new Date(t[best] * 1000).toLocaleTimeString(undefined, { hour12: false }))];
        for (const s of this.series) {
          const v = (values[s.key] || [])[best];
          const sw = h('span', { class: 'swatch' });
          sw.style.setProperty('--swatch', s.color);
          rows.push(h('div', null, sw, `${s.label}: `, h('b', null, v === null || v === undefined ? '—' : this.format(v))));
          if (v !== null && v !== undefined) {
            ctx.fillStyle = s.color;
            ctx.beginPath();
            ctx.arc(xx, y(v), 3, 0, Math.PI * 2);
            ctx.fill();
          }
        }
        this.tooltip.replaceChildren(...rows);
        this.tooltip.hidden = false;
        const left = xx + 12 + 160 > width ? xx - 12 - this.tooltip.offsetWidth : xx + 12;
        this.tooltip.style.left = `${Math.max(0, left)}px`;
        this.tooltip.style.top = `${pad.t}px`;
      }
    }
  }
}
