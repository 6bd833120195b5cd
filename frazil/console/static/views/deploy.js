// Deploy: a bundle (.zip / .tar.gz, or a folder zipped here) plus the settings form. While the
// upload builds, the new version's live build log is shown; the answer (or the 400 reason)
// and the final build log come after.

import { api, deployUpload, fnPath } from '../api.js';
import { h, replace, badge, fmtBytes, pre, spinner, toast } from '../dom.js';
import { selectFolderFiles, zipFolder } from '../zip.js';

const NAME_RE = /^[a-z][a-z0-9-]{0,62}$/;
const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const ARCHIVE_RE = /\.(zip|tar\.gz|tgz)$/i;

function field(label, control, hint, id) {
  return h('div', { class: 'field' },
    h('label', { class: 'label', for: id }, label),
    control,
    hint ? h('div', { class: 'hint' }, hint) : null);
}

function segmented(name, options, value) {
  const inputs = {};
  const el = h('div', { class: 'segmented', role: 'radiogroup' }, options.map(([v, label]) => {
    const input = h('input', { type: 'radio', name, value: v, checked: String(v) === String(value), id: `${name}-${v}` });
    inputs[v] = input;
    return h('label', { class: 'seg', for: `${name}-${v}` }, input, h('span', null, label));
  }));
  return { el, get value() { return Object.entries(inputs).find(([, i]) => i.checked)?.[0]; }, inputs };
}

export class DeployView {
  constructor(name, ctx) {
    this.ctx = ctx;
    this.existing = name;
    this.title = name ? `Deploy ${name}` : 'Deploy a function';
    this.source = null; // {kind: 'archive'|'folder', file?, kept?, folder?, skipped?}
    this.alive = true;

    // --- source ---
    this.fileInput = h('input', { type: 'file', id: 'bundle-file', accept: '.zip,.tar.gz,.tgz,application/zip,application/gzip', class: 'visually-hidden' });
    this.folderInput = h('input', { type: 'file', id: 'bundle-folder', class: 'visually-hidden', multiple: true });
    this.folderInput.webkitdirectory = true;
    this.fileInput.addEventListener('change', () => this.fileInput.files[0] && this.pickArchive(this.fileInput.files[0]));
    this.folderInput.addEventListener('change', () => this.pickFolder(this.folderInput.files));
    this.sourceInfo = h('div', { class: 'drop-info' }, h('div', { class: 'drop-title' }, 'Drop a .zip or .tar.gz here'), h('div', { class: 'muted small' }, 'or choose one:'));
    this.drop = h('div', { class: 'dropzone' },
      this.sourceInfo,
      h('div', { class: 'drop-actions' },
        h('label', { class: 'btn', for: 'bundle-file' }, 'Choose archive…'),
        h('label', { class: 'btn', for: 'bundle-folder' }, 'Choose folder…')),
      this.fileInput, this.folderInput);
    this.drop.addEventListener('dragover', (e) => { e.preventDefault(); this.drop.classList.add('drag'); });
    this.drop.addEventListener('dragleave', () => this.drop.classList.remove('drag'));
    this.drop.addEventListener('drop', (e) => {
      e.preventDefault();
      this.drop.classList.remove('drag');
      const file = e.dataTransfer.files[0];
      if (file) this.pickArchive(file);
    });

    // --- settings ---
    this.nameInput = h('input', { class: 'input mono', id: 'fn-name', name: 'name', placeholder: 'my-function', autocomplete: 'off', spellcheck: 'false', value: name || '' });
    if (name) this.nameInput.readOnly = true;
    this.nameInput.addEventListener('input', () => this.validate());
    this.runtime = h('select', { class: 'input', id: 'fn-runtime', name: 'runtime' },
      h('option', { value: '' }, 'Auto-detect'), h('option', { value: 'python3.11' }, 'Python 3.11'), h('option', { value: 'nodejs20' }, 'Node.js 20'));
    // Empty: the deploy finds the handler (index.main first; docs/moving.md).
    this.handler = h('input', { class: 'input mono', id: 'fn-handler', name: 'handler', value: '',
      placeholder: 'found at deploy', spellcheck: 'false' });
    this.memory = segmented('memory', [[128, ['128 MB', h('small', null, '0.5 CPU')]], [256, ['256 MB', h('small', null, '0.75 CPU')]]], 128);
    this.timeout = h('input', { class: 'input', id: 'fn-timeout', name: 'timeout', type: 'number', min: '0.1', max: '900', step: 'any', value: '10' });
    this.resident = h('input', { class: 'input', id: 'fn-resident', name: 'resident', type: 'number', min: '0', max: '100', step: '1', value: '0' });
    this.public = h('input', { type: 'checkbox', id: 'fn-public', name: 'public' });
    this.envRows = h('div', { class: 'env-rows' });
    this.errors = h('div', { class: 'form-error', role: 'alert' });
    this.submit = h('button', { class: 'btn btn-primary', type: 'submit' }, name ? 'Deploy new version' : 'Deploy');
    for (const el of [this.handler, this.timeout, this.resident]) el.addEventListener('input', () => this.validate());

    this.form = h('form', { class: 'stack', novalidate: true },
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', null, '1 · Code')),
        h('div', { class: 'card-body' }, this.drop,
          h('p', { class: 'hint' }, 'A folder is zipped in the browser (node_modules, virtualenvs and caches are left out: dependencies from requirements.txt or package.json are built at deploy).'))),
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', null, '2 · Settings')),
        h('div', { class: 'card-body' },
          h('div', { class: 'form-grid' },
            field('Name', this.nameInput, name ? 'a new version of this function' : 'a-z, 0-9 and -, starting with a letter', 'fn-name'),
            field('Runtime', this.runtime, 'auto: from index.py or index.js', 'fn-runtime'),
            field('Handler', this.handler, 'module.function', 'fn-handler'),
            field('Timeout (s)', this.timeout, 'at most 900', 'fn-timeout'),
            h('div', { class: 'field' }, h('span', { class: 'label' }, 'Memory tier'), this.memory.el),
            field('Resident instances', this.resident, 'kept warm at all times', 'fn-resident')),
          h('label', { class: 'check check-lg' }, this.public, h('span', null, h('b', null, 'Public'), h('span', { class: 'muted' }, ': anyone may invoke it without the admin key'))),
          h('div', { class: 'field' },
            h('div', { class: 'label-row' }, h('span', { class: 'label' }, 'Environment variables'),
              h('button', { class: 'btn btn-sm btn-ghost', type: 'button', onclick: () => this.addEnv('', '', true) }, '+ Add variable')),
            this.envRows))),
      h('div', { class: 'form-actions' }, this.errors, this.submit));
    this.form.addEventListener('submit', (e) => { e.preventDefault(); this.deploy(); });

    this.output = h('div', { class: 'card-body' }, h('div', { class: 'empty' },
      h('div', { class: 'empty-title' }, 'Nothing deployed yet'),
      h('div', { class: 'empty-hint' }, 'Choose the code, check the settings, and press Deploy. The build log shows here.')));
    this.el = h('section', { class: 'page' },
      h('div', { class: 'page-head' },
        h('div', null, h('h1', null, name ? `Deploy ${name}` : 'Deploy a function'),
          h('div', { class: 'page-sub' }, 'Every deploy is a new immutable version; a failed build never replaces the active one.'))),
      h('div', { class: 'grid-2 grid-deploy' }, this.form,
        h('div', { class: 'card deploy-output' }, h('div', { class: 'card-head' }, h('h2', null, 'Build')), this.output)));
    if (name) this.prefill(name);
    this.validate();
  }

  async prefill(name) {
    try {
      const { data } = await api(fnPath(name));
      const f = data.function;
      this.runtime.value = f.runtime;
      this.handler.value = f.handler;
      this.memory.inputs[f.memory].checked = true;
      this.timeout.value = String(f.timeout);
      this.resident.value = String(f.resident);
      this.public.checked = f.public;
      // Settings the form has no control for yet: a redeploy keeps them instead of resetting them.
      this.keptSettings = { access: f.access, http: f.http };
      for (const [k, v] of Object.entries(f.env || {})) this.addEnv(k, v);
    } catch (exc) {
      toast(`Cannot load the current settings: ${exc.message}`, 'warn');
    }
    this.validate();
  }

  addEnv(key = '', value = '', focus = false) {
    const k = h('input', { class: 'input input-sm mono', placeholder: 'NAME', value: key, 'aria-label': 'Variable name', spellcheck: 'false' });
    const v = h('input', { class: 'input input-sm mono', placeholder: 'value', value, 'aria-label': 'Variable value', spellcheck: 'false' });
    const row = h('div', { class: 'env-row' }, k, v,
      h('button', { class: 'icon-btn', type: 'button', title: 'Remove', 'aria-label': 'Remove the variable', onclick: () => { row.remove(); this.validate(); } }, '×'));
    k.addEventListener('input', () => this.validate());
    this.envRows.append(row);
    if (focus) k.focus();
  }

  pickArchive(file) {
    if (!ARCHIVE_RE.test(file.name)) {
      toast(`${file.name} is not a .zip or .tar.gz`, 'warn');
    }
    this.source = { kind: 'archive', file };
    replace(this.sourceInfo,
      h('div', { class: 'drop-title' }, h('span', { class: 'file-icon' }, '▤'), file.name),
      h('div', { class: 'muted small' }, `${fmtBytes(file.size)} archive`));
    this.drop.classList.add('chosen');
    this.suggestName(file.name.replace(ARCHIVE_RE, ''));
    this.validate();
  }

  pickFolder(files) {
    if (!files || !files.length) return;
    const picked = selectFolderFiles(files);
    const size = picked.kept.reduce((n, { file }) => n + file.size, 0);
    this.source = { kind: 'folder', ...picked, size };
    replace(this.sourceInfo,
      h('div', { class: 'drop-title' }, h('span', { class: 'file-icon' }, '▣'), `${picked.folder || 'folder'}/`),
      h('div', { class: 'muted small' }, `${picked.kept.length} files, ${fmtBytes(size)}${picked.skipped ? ` · ${picked.skipped} left out` : ''}`),
      h('ul', { class: 'file-list' }, picked.kept.slice(0, 8).map(({ path }) => h('li', null, path)),
        picked.kept.length > 8 ? h('li', { class: 'muted' }, `… and ${picked.kept.length - 8} more`) : null));
    this.drop.classList.add('chosen');
    this.suggestName(picked.folder);
    this.validate();
  }

  suggestName(base) {
    if (this.existing || this.nameInput.value) return;
    const name = (base || '').toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '').slice(0, 63);
    if (NAME_RE.test(name)) this.nameInput.value = name;
  }

  env() {
    const env = {};
    for (const row of this.envRows.children) {
      const [k, v] = row.querySelectorAll('input');
      if (k.value.trim()) env[k.value.trim()] = v.value;
    }
    return env;
  }

  // The problems with the form, or [] (the server checks again; this only saves a round trip).
  problems() {
    const out = [];
    if (!this.source) out.push('choose the code: an archive or a folder');
    else if (this.source.kind === 'folder' && !this.source.kept.length) out.push('the folder holds no files to deploy');
    if (!NAME_RE.test(this.nameInput.value)) out.push('the name must be 1-63 characters a-z, 0-9 and -, starting with a letter');
    const t = Number(this.timeout.value);
    if (!(t > 0 && t <= 900)) out.push('the timeout must be more than 0 and at most 900 s');
    const r = Number(this.resident.value);
    if (!(Number.isInteger(r) && r >= 0 && r <= 100)) out.push('resident instances must be a whole number from 0 to 100');
    for (const row of this.envRows.children) {
      const key = row.querySelector('input').value.trim();
      row.classList.toggle('invalid', Boolean(key) && (!ENV_KEY_RE.test(key) || key.startsWith('FRAZIL_')));
      if (key && !ENV_KEY_RE.test(key)) out.push(`${key} is not a valid variable name`);
      else if (key.startsWith('FRAZIL_')) out.push(`${key}: the FRAZIL_ prefix is reserved`);
    }
    return out;
  }

  validate() {
    const problems = this.problems();
    this.nameInput.classList.toggle('invalid', Boolean(this.nameInput.value) && !NAME_RE.test(this.nameInput.value));
    this.errors.textContent = this.shownErrors && problems.length ? `Cannot deploy yet: ${problems.join('; ')}.` : '';
    return problems;
  }

  config() {
    const config = {
      handler: this.handler.value.trim() || null,
      memory: Number(this.memory.value),
      timeout: Number(this.timeout.value),
      resident: Number(this.resident.value),
      // The checkbox says public or not; a function for end users (access "user") stays so.
      access: this.public.checked ? 'public' : ((this.keptSettings || {}).access === 'user' ? 'user' : 'admin'),
      env: this.env(),
    };
    if ((this.keptSettings || {}).http) config.http = true;
    if (this.runtime.value) config.runtime = this.runtime.value;
    return config;
  }

  async deploy() {
    this.shownErrors = true;
    if (this.validate().length || this.busy) return;
    const name = this.nameInput.value;
    const config = this.config();
    this.busy = true;
    this.submit.disabled = true;
    const phase = h('div', { class: 'pending' }, spinner(), 'Preparing…');
    const bar = h('div', { class: 'progress-bar' });
    const progress = h('div', { class: 'progress' }, bar);
    const live = h('div');
    replace(this.output, phase, progress, live);
    const startedAt = Date.now();
    let watcher = null;
    try {
      let blob;
      let filename;
      if (this.source.kind === 'folder') {
        replace(phase, spinner(), `Zipping ${this.source.kept.length} files…`);
        blob = await zipFolder(this.source.kept);
        filename = `${name}.zip`;
      } else {
        blob = this.source.file;
        filename = this.source.file.name;
      }
      replace(phase, spinner(), `Uploading ${fmtBytes(blob.size)}…`);
      const known = await this.latestVersion(name);
      const upload = deployUpload(name, blob, filename, config, {
        onProgress: (fraction, _loaded, done) => {
          if (fraction !== null) bar.style.width = `${Math.round(fraction * 100)}%`;
          if (done) {
            replace(phase, spinner(), 'Uploaded; building…');
            progress.classList.add('indeterminate');
            if (!watcher) watcher = this.watchBuild(name, known, live);
          }
        },
      });
      const { data } = await upload;
      if (watcher) watcher.stop();
      progress.remove();
      const seconds = ((Date.now() - startedAt) / 1000).toFixed(1);
      replace(phase, badge('deployed', 'ok'), h('span', null, ` ${data.message} `), h('span', { class: 'muted small' }, `(${seconds} s)`));
      phase.className = 'result-line';
      replace(live,
        h('div', { class: 'alert alert-ok' }, 'Version ', h('b', null, String(data.version)), ' is active. ',
          h('a', { href: `#/fn/${encodeURIComponent(name)}/test` }, 'Test it →')),
        h('div', { class: 'label' }, 'Build log'),
        pre(data.build_log || '(empty)', 'code-log'));
      toast(`${name} v${data.version} deployed`, 'ok');
      window.dispatchEvent(new CustomEvent('frazil:functions-changed'));
    } catch (exc) {
      if (watcher) watcher.stop();
      progress.remove();
      phase.className = 'result-line';
      replace(phase, badge(exc.status ? `HTTP ${exc.status}` : 'error', 'bad'), ' ', badge(exc.type || 'failed', 'bad'));
      const version = exc.body && exc.body.error && exc.body.error.version;
      const logHolder = h('div');
      replace(live, h('div', { class: 'alert alert-bad' }, exc.message), logHolder);
      if (version) {
        try {
          const { data } = await api(fnPath(name, `/versions/${version}`));
          replace(logHolder, h('div', { class: 'label' }, `Build log of version ${version}`), pre(data.version.build_log || '(empty)', 'code-log'));
        } catch { /* the reason above is what matters */ }
      }
    } finally {
      this.busy = false;
      this.submit.disabled = false;
    }
  }

  async latestVersion(name) {
    // Only a listed function has versions to ask about (asking about a new name is a 404).
    if (name !== this.existing && !this.ctx.functions().some((f) => f.name === name)) return 0;
    try {
      const { data } = await api(fnPath(name, '/versions'), { quiet401: true });
      return data.versions.length ? data.versions[0].version : 0;
    } catch {
      return 0;
    }
  }

  // Poll the version being built for its live build log until stopped.
  watchBuild(name, known, holder) {
    let stopped = false;
    const logEl = pre('', 'code-log');
    const title = h('div', { class: 'label' }, 'Build log (live)');
    const loop = async () => {
      await new Promise((resolve) => setTimeout(resolve, 400)); // the server records the version first
      while (!stopped && this.alive) {
        try {
          const { data } = await api(fnPath(name, '/versions'), { quiet401: true });
          const v = data.versions.find((x) => x.version > known);
          if (v) {
            const { data: one } = await api(fnPath(name, `/versions/${v.version}`), { quiet401: true });
            if (stopped) return;
            if (!holder.contains(logEl)) replace(holder, title, logEl);
            title.textContent = `Build log of version ${v.version} (live)`;
            logEl.textContent = one.version.build_log || '…';
            logEl.scrollTop = logEl.scrollHeight;
          }
        } catch { /* not there yet */ }
        await new Promise((resolve) => setTimeout(resolve, 700));
      }
    };
    loop();
    return { stop: () => { stopped = true; } };
  }

  destroy() {
    this.alive = false;
  }
}
