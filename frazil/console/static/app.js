// The console's shell: sign-in, header, the sidebar of functions, and a hash router that
// mounts one view at a time into the main panel.

import { api, ApiError, clearKey, getKey, setKey } from './api.js';
import { h, replace, badge, toast, fmtAgo } from './dom.js';
import { poller } from './stats.js';
import { ClusterView } from './views/cluster.js';
import { DashboardView } from './views/dashboard.js';
import { DataView } from './views/data.js';
import { DeployView } from './views/deploy.js';
import { FunctionView } from './views/function.js';

const app = {
  functions: [],
  loaded: false,
  view: null,
  route: null,
  timers: [],
};

// --- the shell ----------------------------------------------------------------------------------

const health = h('span', { class: 'health health-unknown', title: 'server health' }, h('span', { class: 'dot' }), 'connecting…');
const signOutButton = h('button', { class: 'btn btn-ghost', type: 'button', onclick: signOut }, 'Sign out');
const header = h('header', { class: 'topbar' },
  h('a', { class: 'brand', href: '#/' },
    h('img', { src: '/console/favicon.svg', alt: '', width: 26, height: 26 }),
    h('span', { class: 'brand-name' }, 'frazil'),
    h('span', { class: 'brand-sub' }, 'console')),
  h('div', { class: 'topbar-spacer' }),
  health,
  signOutButton);

const fnFilter = h('input', { class: 'input input-sm', type: 'search', placeholder: 'Filter functions', 'aria-label': 'Filter functions' });
fnFilter.addEventListener('input', renderFunctionList);
const fnCount = h('span', { class: 'count' });
const fnList = h('ul', { class: 'fn-list', 'aria-label': 'Functions' });
const navDashboard = h('a', { class: 'nav-item', href: '#/' }, h('span', { class: 'nav-icon icon-chart' }), 'Dashboard');
const navDeploy = h('a', { class: 'nav-item', href: '#/deploy' }, h('span', { class: 'nav-icon icon-plus' }), 'Deploy function');
const navData = h('a', { class: 'nav-item', href: '#/data' }, h('span', { class: 'nav-icon icon-data' }), 'Data tables and users');
// Shown in cluster mode only (showClusterEntry): the embedded mode is one node.
const navCluster = h('a', { class: 'nav-item', href: '#/cluster', hidden: true }, h('span', { class: 'nav-icon icon-cluster' }), 'Cluster nodes');
const sidebar = h('aside', { class: 'sidebar' },
  h('nav', { class: 'nav' }, navDashboard, navDeploy, navData, navCluster),
  h('div', { class: 'sidebar-head' },
    h('span', null, 'Functions'), fnCount,
    h('button', { class: 'icon-btn', type: 'button', title: 'Refresh the list', 'aria-label': 'Refresh the list', onclick: () => refreshFunctions(true) }, '↻')),
  h('div', { class: 'sidebar-filter' }, fnFilter),
  fnList);
// tabindex 0: the main panel scrolls, so a keyboard must be able to reach it.
const main = h('main', { class: 'main', id: 'main', tabindex: '0' });
// The first stop of the Tab key: past the header and the sidebar. (Not a plain #main link: the
// hash is the console's route.)
const skipLink = h('a', { class: 'skip-link', href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } }, 'Skip to content');
const shell = h('div', { class: 'shell' }, sidebar, main);

// --- sign-in -----------------------------------------------------------------------------------

function signInScreen(message) {
  const input = h('input', { class: 'input', type: 'password', id: 'admin-key', name: 'admin-key', autocomplete: 'current-password', placeholder: 'Admin key', required: true });
  const error = h('div', { class: 'form-error', role: 'alert' }, message || '');
  const submit = h('button', { class: 'btn btn-primary btn-block', type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'signin-card', novalidate: true },
    h('div', { class: 'signin-brand' }, h('img', { src: '/console/favicon.svg', alt: '', width: 40, height: 40 }), h('span', null, 'frazil')),
    h('h1', null, 'Sign in to the console'),
    h('p', { class: 'muted' }, 'Paste the admin key: the server\'s FRAZIL_ADMIN_KEY, or the contents of ', h('code', null, '<data-dir>/admin.key'), '. It is kept in this browser only.'),
    h('label', { class: 'label', for: 'admin-key' }, 'Admin key'),
    input, error, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) {
      error.textContent = 'Enter the admin key.';
      return;
    }
    submit.disabled = true;
    error.textContent = '';
    try {
      const { data } = await api('/v1/functions', { key, quiet401: true });
      setKey(key);
      app.functions = data.functions;
      enterConsole();
    } catch (exc) {
      error.textContent = exc instanceof ApiError && exc.status === 401 ? 'That key is not valid.' : exc.message;
      submit.disabled = false;
      input.select();
    }
  });
  const screen = h('div', { class: 'signin' }, form);
  setTimeout(() => input.focus(), 0);
  return screen;
}

function showSignIn(message) {
  stopConsole();
  document.body.replaceChildren(signInScreen(message));
  document.title = 'Sign in · frazil console';
}

function signOut() {
  clearKey();
  showSignIn('Signed out. The key was removed from this browser.');
}

window.addEventListener('frazil:unauthorized', () => {
  if (!getKey()) return;
  clearKey();
  showSignIn('The admin key was refused (it may have changed). Sign in again.');
});

// --- console lifecycle ---------------------------------------------------------------------------

function enterConsole() {
  document.body.replaceChildren(skipLink, header, shell);
  poller.start();
  app.timers.push(setInterval(() => refreshFunctions(), 10000));
  app.timers.push(setInterval(checkHealth, 5000));
  checkHealth();
  showClusterEntry();
  renderFunctionList();
  refreshFunctions();
  route();
}

function stopConsole() {
  for (const t of app.timers) clearInterval(t);
  app.timers = [];
  poller.stop();
  if (app.view) app.view.destroy();
  app.view = null;
  app.route = null;
}

async function checkHealth() {
  try {
    const response = await fetch('/healthz', { cache: 'no-store' });
    const data = await response.json();
    health.className = response.ok ? 'health health-ok' : 'health health-bad';
    replace(health, h('span', { class: 'dot' }), response.ok ? 'healthy' : 'unhealthy',
      h('span', { class: 'health-detail' }, ` · ${data.sandbox} sandbox · v${data.version}`));
    health.title = `node ${data.node}`;
  } catch {
    health.className = 'health health-bad';
    replace(health, h('span', { class: 'dot' }), 'unreachable');
  }
}

async function showClusterEntry() {
  try {
    const { data } = await api('/v1/cluster');
    navCluster.hidden = data.mode !== 'cluster';
  } catch {
    navCluster.hidden = true; // the page itself says why, if someone opens it
  }
}

export async function refreshFunctions(announce = false) {
  try {
    const { data } = await api('/v1/functions');
    app.functions = data.functions;
    app.loaded = true;
    renderFunctionList();
    if (announce) toast('Function list refreshed', 'info', 1200);
  } catch (exc) {
    if (exc.status !== 401) toast(`Cannot list functions: ${exc.message}`, 'bad');
  }
  return app.functions;
}

window.addEventListener('frazil:functions-changed', () => refreshFunctions());

function renderFunctionList() {
  const query = fnFilter.value.trim().toLowerCase();
  const selected = app.route && app.route.name;
  const items = app.functions.filter((f) => !query || f.name.includes(query));
  fnCount.textContent = String(app.functions.length);
  if (!app.functions.length) {
    replace(fnList, h('li', { class: 'fn-empty' }, app.loaded ? 'No functions yet.' : 'Loading…',
      app.loaded ? h('a', { href: '#/deploy' }, ' Deploy one') : null));
    return;
  }
  if (!items.length) {
    replace(fnList, h('li', { class: 'fn-empty' }, 'No function matches.'));
    return;
  }
  replace(fnList, items.map((f) => h('li', null,
    h('a', {
      class: ['fn-item', f.name === selected ? 'active' : null],
      href: `#/fn/${encodeURIComponent(f.name)}`,
      title: `deployed ${fmtAgo(f.deployed_at)}`,
      'aria-current': f.name === selected ? 'page' : null,
    },
    h('span', { class: 'fn-name' }, f.name),
    h('span', { class: 'fn-meta' },
      h('span', { class: ['rt', f.runtime.startsWith('python') ? 'rt-py' : 'rt-js'] }, f.runtime.startsWith('python') ? 'py' : 'js'),
      `v${f.version}`, h('span', { class: 'sep' }, '·'), `${f.memory} MB`,
      f.public ? badge('public', 'info') : null,
      f.resident ? badge(`resident ${f.resident}`, 'muted') : null)))));
}

// --- routing -----------------------------------------------------------------------------------

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts[0] === 'fn' && parts[1]) return { page: 'fn', name: parts[1], tab: parts[2] || 'overview', arg: parts[3] || null };
  if (parts[0] === 'deploy') return { page: 'deploy', name: parts[1] || null };
  if (parts[0] === 'data') return { page: 'data', name: parts[1] || null };
  if (parts[0] === 'cluster') return { page: 'cluster' };
  return { page: 'dashboard' };
}

function route() {
  if (!getKey()) return;
  const next = parseHash();
  const prev = app.route;
  app.route = next;
  navDashboard.classList.toggle('active', next.page === 'dashboard');
  navDeploy.classList.toggle('active', next.page === 'deploy' && !next.name);
  navData.classList.toggle('active', next.page === 'data');
  navCluster.classList.toggle('active', next.page === 'cluster');
  renderFunctionList();
  if (prev && app.view && next.page === 'fn' && prev.page === 'fn' && prev.name === next.name) {
    app.view.show(next.tab, next.arg);
    return;
  }
  if (app.view) app.view.destroy();
  const ctx = { functions: () => app.functions, refreshFunctions };
  if (next.page === 'fn') app.view = new FunctionView(next.name, ctx);
  else if (next.page === 'deploy') app.view = new DeployView(next.name, ctx);
  else if (next.page === 'data') app.view = new DataView(next.name);
  else if (next.page === 'cluster') app.view = new ClusterView();
  else app.view = new DashboardView(ctx);
  replace(main, app.view.el);
  if (next.page === 'fn') app.view.show(next.tab, next.arg);
  document.title = `${app.view.title} · frazil console`;
  main.scrollTop = 0;
}

window.addEventListener('hashchange', route);

// --- boot --------------------------------------------------------------------------------------

async function boot() {
  if (!getKey()) {
    showSignIn();
    return;
  }
  try {
    const { data } = await api('/v1/functions', { quiet401: true });
    app.functions = data.functions;
    app.loaded = true;
    enterConsole();
  } catch (exc) {
    if (exc.status === 401) {
      clearKey();
      showSignIn('The saved admin key was refused. Sign in again.');
    } else {
      enterConsole();
      toast(exc.message, 'bad');
    }
  }
}

boot();
