'use strict';
// Finding, loading and calling a Node.js function's handler (inside an instance or the
// deploy's inspection; Node standard library only). The Python twin is ../python/handlers.py.
//
// - A handler is "<module>.<function>"; the module part is a file path under the code folder
//   whose candidates are tried in `moduleFiles` order (frazil/build/detect.py lists the same).
// - The module is loaded from its absolute path (require, or import() for an ES module: .mjs
//   or a "type": "module" package), never found by name: a project's `loop.js` or
//   `protocol.js` is the project's, whatever the runtime's own files are called.
// - The function "default" is an ES module's `export default`, a CommonJS
//   `module.exports = fn`, or a compiled `exports.default`.
// - No handler given: `choose()` looks for the conventions of the platforms people move from
//   (CANDIDATE_MODULES x CANDIDATE_FUNCTIONS, see docs/moving.md).
// - How a handler is called follows its length (`callStyle`): (event, context, callback) is
//   Lambda's callback style, (event) gets the event alone, anything else (event, context).

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

const DEFAULT_HANDLER = 'index.main';
const INSPECT_FLAG = '--inspect-handler'; // the loop's argument for the deploy's inspection
const CANDIDATE_MODULES = ['index', 'main', 'handler', 'app'];
const CANDIDATE_FUNCTIONS = ['main', 'handler', 'default'];

class HandlerNotFound extends Error {
  constructor(message, exported) {
    super(message);
    this.name = 'HandlerNotFound';
    this.exports = exported || [];
  }
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (_) {
    return false;
  }
}

function split(spec) {
  const dot = typeof spec === 'string' ? spec.lastIndexOf('.') : -1;
  if (dot <= 0 || dot === spec.length - 1) {
    throw new TypeError(`handler ${JSON.stringify(spec)} must look like 'module.function'`);
  }
  return [spec.slice(0, dot), spec.slice(dot + 1)];
}

/** Candidate files of a handler's module, in the order frazil/build/detect.py lists them. */
function moduleFiles(modulePath) {
  if (/\.(c?js|mjs)$/.test(modulePath)) return [modulePath];
  return [`${modulePath}.js`, `${modulePath}/index.js`, `${modulePath}.cjs`, `${modulePath}.mjs`];
}

function moduleFile(codeDir, modulePath) {
  return moduleFiles(modulePath).map((c) => path.resolve(codeDir, c)).find(isFile);
}

async function loadModule(codeDir, modulePath) {
  const file = moduleFile(codeDir, modulePath);
  if (!file) {
    const err = new Error(`cannot find the handler's module: none of ${moduleFiles(modulePath).join(', ')} exists`);
    err.code = 'MODULE_NOT_FOUND';
    throw err;
  }
  try {
    return { file, exported: require(file) };
  } catch (err) {
    if (!err || (err.code !== 'ERR_REQUIRE_ESM' && err.code !== 'ERR_REQUIRE_ASYNC_MODULE')) throw err;
    return { file, exported: await import(pathToFileURL(file).href) }; // an ES module
  }
}

function isNamespace(exported) {
  return exported != null && exported[Symbol.toStringTag] === 'Module';
}

/** The value the module offers under `name` (undefined when none). */
function pick(exported, name) {
  if (exported == null) return undefined;
  if (name === 'default') {
    if (typeof exported === 'function') return exported; // module.exports = fn
    return exported.default;
  }
  let value = exported[name];
  if (value === undefined && exported.default && typeof exported.default === 'object') {
    value = exported.default[name]; // export default { main }
  }
  return value;
}

/** What a module offers a caller: its names, functions marked. */
function exportsOf(exported) {
  if (exported == null) return [];
  if (typeof exported === 'function' && !isNamespace(exported)) {
    return ['default()', ...Object.keys(exported).map((k) => describe(k, exported[k]))];
  }
  if (typeof exported !== 'object') return [];
  const names = Object.keys(exported).map((k) => describe(k, exported[k]));
  if (exported.default && typeof exported.default === 'object' && !Array.isArray(exported.default)) {
    for (const k of Object.keys(exported.default)) names.push(describe(`default.${k}`, exported.default[k]));
  }
  return names;
}

function describe(name, value) {
  return typeof value === 'function' ? `${name}()` : name;
}

async function loadHandler(codeDir, spec) {
  const [modulePath, name] = split(spec);
  const { file, exported } = await loadModule(codeDir, modulePath);
  const handler = pick(exported, name);
  const where = path.relative(codeDir, file);
  if (handler === undefined) {
    throw new HandlerNotFound(`${where} does not export a function named ${JSON.stringify(name)}`,
      exportsOf(exported));
  }
  if (typeof handler !== 'function') {
    throw new HandlerNotFound(`${spec} is not a function (it is ${typeof handler})`, exportsOf(exported));
  }
  return handler;
}

/**
 * The handler to use when none was given: {handler, why}, {ambiguous: [spec, ...]} or
 * {none: {module: [exports]}}. index.main, the default, wins whenever it exists; otherwise
 * the first module of CANDIDATE_MODULES that offers any of CANDIDATE_FUNCTIONS decides: one
 * such function is the handler, more than one (not the same function twice) is ambiguous.
 */
async function choose(codeDir) {
  const seen = {};
  const main = packageMain(codeDir);
  const modules = [CANDIDATE_MODULES[0], ...(main ? [main] : []), ...CANDIDATE_MODULES.slice(1)];
  for (const modulePath of modules) {
    const file = moduleFile(codeDir, modulePath);
    if (!file) continue;
    const { exported } = await loadModule(codeDir, modulePath);
    const found = [];
    for (const name of CANDIDATE_FUNCTIONS) {
      const value = pick(exported, name);
      if (typeof value === 'function' && !found.some(([, other]) => other === value)) found.push([name, value]);
    }
    const where = path.relative(codeDir, file);
    if (modulePath === 'index' && found.some(([name]) => name === 'main')) {
      return { handler: DEFAULT_HANDLER, why: 'the default' };
    }
    if (found.length === 1) {
      const [name] = found[0];
      const what = name === 'default' ? 'a default export' : `exports.${name}`;
      return { handler: `${modulePath}.${name}`, why: `${where} has ${what}` };
    }
    if (found.length > 1) return { ambiguous: found.map(([name]) => `${modulePath}.${name}`) };
    seen[where] = exportsOf(exported);
  }
  return { none: seen };
}

/**
 * The module package.json's "main" names, without its extension (OpenWhisk and Google Cloud
 * Functions take the handler from there); null when there is none. It is tried right after
 * index. frazil/build/detect.py's package_main reads it the same way.
 */
function packageMain(codeDir) {
  let main;
  try {
    main = JSON.parse(fs.readFileSync(path.join(codeDir, 'package.json'), 'utf8')).main;
  } catch (_) {
    return null;
  }
  if (typeof main !== 'string') return null;
  main = main.trim().replace(/^\.\//, '').replace(/\.(c|m)?js$/, '').replace(/\/+$/, '');
  if (!main || main.split('/').some((part) => part === '..' || part === '')) return null;
  return main;
}

/** 'callback' for (event, context, callback), 1 for (event), else 2. */
function callStyle(handler) {
  if (handler.length >= 3) return 'callback';
  return handler.length === 1 ? 1 : 2;
}

/** Call the handler as its style asks; a value or a promise of one. */
function callHandler(handler, style, event, context) {
  if (style === 'callback') {
    return new Promise((resolve, reject) => {
      const callback = (err, value) => (err ? reject(err) : resolve(value));
      Promise.resolve(handler(event, context, callback)).then((value) => {
        if (value !== undefined) resolve(value);
      }, reject);
    });
  }
  return style === 1 ? handler(event) : handler(event, context);
}

module.exports = {
  DEFAULT_HANDLER, INSPECT_FLAG, CANDIDATE_MODULES, CANDIDATE_FUNCTIONS, HandlerNotFound,
  loadHandler, choose, callStyle, callHandler,
};
