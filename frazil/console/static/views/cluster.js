// The cluster's live nodes (GET /v1/cluster), refreshed every few seconds: each node's role,
// address, when it started and was last heard of, and for the nodes that run functions their
// instances (idle / busy) and running invocations per tier. The embedded mode is one node:
// the view says so (and the sidebar shows no entry for it: see app.js).

import { api } from '../api.js';
import { h, replace, fmtAgo, fmtTime, badge, emptyState, spinner, card, scrollBox } from '../dom.js';

const REFRESH_S = 3;
const COLUMNS = ['Node', 'Role', 'Address', 'Started', 'Last seen', 'Instances idle / busy', 'Running per tier'];

// The registry's times are seconds since the epoch; the formatters read ISO text.
const iso = (seconds) => new Date(seconds * 1000).toISOString();

function runsFunctions(node) {
  return node.role === 'invoker' || node.role === 'all';
}

function running(node) {
  const tiers = Object.entries(node.running).sort(([a], [b]) => Number(a) - Number(b));
  if (!runsFunctions(node) || !tiers.length) return '—';
  return tiers.map(([mb, n]) => `${mb} MB: ${n}`).join(' · ');
}

function nodeRow(node) {
  return h('tr', null,
    h('td', { class: 'mono small' }, node.id),
    h('td', null, badge(node.role, node.role === 'gateway' ? 'info' : 'muted')),
    h('td', { class: 'mono small' }, node.address),
    h('td', { title: fmtTime(iso(node.started_at)) }, fmtAgo(iso(node.started_at))),
    h('td', { title: fmtTime(iso(node.last_seen)) }, fmtAgo(iso(node.last_seen))),
    h('td', { class: 'num' }, runsFunctions(node) ? `${node.instances.idle} / ${node.instances.busy}` : '—'),
    h('td', null, running(node)));
}

function summary(data) {
  if (data.mode === 'embedded') return 'Embedded: one node, this process.';
  const count = (role) => data.nodes.filter((n) => n.role === role).length;
  const parts = [`${data.nodes.length} live node${data.nodes.length === 1 ? '' : 's'}`,
    `${count('gateway')} gateway${count('gateway') === 1 ? '' : 's'}`,
    `${count('invoker')} invoker${count('invoker') === 1 ? '' : 's'}`];
  if (count('all')) parts.push(`${count('all')} running everything`);
  return `Cluster: ${parts.join(', ')}.`;
}

export class ClusterView {
  constructor() {
    this.title = 'Cluster';
    this.alive = true;
    this.rows = h('tbody', null, h('tr', null, h('td', { colspan: COLUMNS.length }, spinner())));
    this.status = h('div', { class: 'page-sub', id: 'cluster-summary', role: 'status' }, 'Loading…');
    this.el = h('section', { class: 'page' },
      h('div', { class: 'page-head' }, h('div', null, h('h1', null, 'Cluster'), this.status)),
      card('Live nodes', scrollBox('Live nodes', h('table', { class: 'table' },
        h('thead', null, h('tr', null, COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
        this.rows))));
    this.refresh();
  }

  async refresh() {
    try {
      const { data } = await api('/v1/cluster');
      if (!this.alive) return;
      this.status.textContent = summary(data);
      this.status.className = 'page-sub';
      if (data.nodes.length) replace(this.rows, data.nodes.map(nodeRow));
      else replace(this.rows, h('tr', null, h('td', { colspan: COLUMNS.length }, emptyState('No live node', 'The registry lists no node right now.'))));
    } catch (exc) {
      if (!this.alive) return;
      this.status.textContent = `Unavailable: ${exc.message}`;
      this.status.className = 'page-sub text-bad';
    }
    this.timer = setTimeout(() => this.refresh(), REFRESH_S * 1000);
  }

  destroy() {
    this.alive = false;
    clearTimeout(this.timer);
  }
}
