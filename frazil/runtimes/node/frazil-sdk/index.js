'use strict';
// require('frazil-sdk') inside a function resolves here (the Node loop maps the name).
//
//   const { db, http, functions, log } = require('frazil-sdk');
//   const notes = db.table('notes');
//   const rec = await notes.insert({ text: 'hi' });          // the stored record, with "id"
//   const rows = await notes.find({ text: 'hi' }, { limit: 10 });
//   const n = await notes.update({ seen: { ne: true } }, { seen: true });   // bulk
//   const r = await http.get('https://example.com/', { timeout: 10 });      // r.status, r.text, r.json()
//   log.info('visible in the invocation\'s logs');
//   const env = await functions.invoke('other', { x: 1 });                // the callee's envelope
//
// `db` has admin rights over the BaaS tables (ACLs do not apply); `http` goes out through the
// platform's proxy (the function has no network of its own; at most 50 requests of one instance
// are in flight, more wait their turn). Every call is an "sdk_call" frame on the instance's
// protocol channel (../bridge.js), carrying the running invocation's credential, which dies when
// the invocation ends. A failed call rejects with an SdkError (err.name === 'SdkError', err.type
// e.g. 'NotFound', 'HttpDenied', 'HttpTimeout', 'CredentialRefused').
//
// Outside the platform (a function's own unit tests, after `npm install <frazil>/frazil/runtimes/
// node/frazil-sdk`), no runtime loop has connected the channel, and the same calls go to a
// running `frazil server` over its HTTP API, configured by FRAZIL_URL and FRAZIL_TOKEN
// (./outside.js): db with the admin key, http straight to the destination, log to stderr.

const util = require('util');
const bridge = loadBridge();

function loadBridge() {
  // Installed from the repository the package is a link and ../bridge.js resolves; a copy of
  // the package alone has no bridge, and can only be outside.
  try {
    return require('../bridge');
  } catch (err) {
    if (err.code === 'MODULE_NOT_FOUND') return null;
    throw err;
  }
}

function insidePlatform() {
  return bridge !== null && bridge.connected();
}

class SdkError extends Error {
  constructor(message, type = 'SdkError', status = undefined) {
    super(message);
    this.name = 'SdkError';
    this.type = type;
    if (status !== undefined && status !== null) this.status = status;
  }
}

// --- the call ---------------------------------------------------------------------------------

async function call(op, fields) {
  if (!insidePlatform()) return require('./outside').call(op, fields, SdkError);
  const current = bridge.currentInvocation();
  if (current === null) {
    throw new SdkError('no invocation is running: the SDK can be used only while the function\'s '
      + 'invocation runs (not after it returned)', 'NoInvocation');
  }
  let reply;
  try {
    reply = await bridge.sendSdkCall({ ...fields, op });
  } catch (err) {
    throw new SdkError(`the platform channel is closed: ${err && err.message}`, 'ChannelClosed');
  }
  if (reply && reply.ok) return reply.value;
  const error = (reply && reply.error) || {};
  throw new SdkError(String(error.message || 'the SDK call failed'), String(error.type || 'SdkError'), error.status);
}

// --- db ---------------------------------------------------------------------------------------

function where(w) {
  return w === undefined || w === null ? {} : w;
}

class Table {
  constructor(name) {
    this.name = name;
  }

  /** Store a new record; resolves to it with its id, created_at and updated_at. */
  insert(record) {
    return call('db.insert', { table: this.name, record });
  }

  /** Records matching `w` (all when omitted); opts: {limit = 100, offset = 0, order}. */
  find(w, opts = {}) {
    return call('db.find', {
      table: this.name, where: where(w), limit: opts.limit ?? 100, offset: opts.offset ?? 0, order: opts.order ?? null,
    });
  }

  async findOne(w, opts = {}) {
    const rows = await call('db.find', { table: this.name, where: where(w), limit: 1, offset: 0, order: opts.order ?? null });
    return rows.length ? rows[0] : null;
  }

  /** The record with this id; rejects with an SdkError of type 'NotFound' when there is none. */
  get(id) {
    return call('db.get', { table: this.name, id });
  }

  count(w) {
    return call('db.count', { table: this.name, where: where(w) });
  }

  /**
   * Set the patch's fields on every record matching `w` ({} = all) and apply the atomic
   * opts.ops ({n: {inc: 1}, tags: {push: [...]}, old: {remove: true}}); resolves to how many changed.
   */
  update(w, patch, opts = {}) {
    const fields = { table: this.name, where: w, patch: patch ?? null };
    if (opts.ops !== undefined) fields.ops = opts.ops;
    return call('db.update', fields);
  }

  /** Delete every record matching `w` ({} = all); resolves to how many. */
  delete(w) {
    return call('db.delete', { table: this.name, where: w });
  }
}

const db = {
  /** A handle on a table (no call). Inserting into a missing table creates it, admin-only. */
  table(name) {
    if (typeof name !== 'string') throw new TypeError(`a table name is a string, not ${typeof name}`);
    return new Table(name);
  },
  /** Create a table with an ACL like {read: 'public', write: 'owner'}; rejects (Conflict) if it exists. */
  createTable(name, acl = null) {
    return call('db.create_table', { table: name, acl });
  },
  /** Create the table or replace its ACL. */
  setAcl(name, acl) {
    return call('db.set_acl', { table: name, acl });
  },
  /** Delete the table and its records; resolves to how many records went. */
  drop(name) {
    return call('db.drop', { table: name });
  },
  tables() {
    return call('db.tables', {});
  },
};
db.create_table = db.createTable;
db.set_acl = db.setAcl;

// --- http -------------------------------------------------------------------------------------

class Response {
  constructor(value) {
    this.status = value.status;
    this.url = value.url;
    this.headers = {};
    for (const [name, item] of value.headers || []) {
      const key = name.toLowerCase();
      this.headers[key] = key in this.headers ? `${this.headers[key]}, ${item}` : item;
    }
    this.body = value.base64 !== undefined ? Buffer.from(value.base64, 'base64') : Buffer.from(value.text || '', 'utf8');
    this.text = value.base64 !== undefined ? this.body.toString('utf8') : (value.text || '');
  }

  get ok() {
    return this.status >= 200 && this.status < 400;
  }

  json() {
    return JSON.parse(this.text);
  }
}

function headerPairs(headers) {
  if (!headers) return [];
  const entries = Array.isArray(headers) ? headers : Object.entries(headers);
  return entries.map(([k, v]) => [String(k), String(v)]);
}

function hasHeader(pairs, name) {
  return pairs.some(([k]) => k.toLowerCase() === name);
}

/**
 * http.request(method, url, {headers, params, json, body, timeout = 10 (s), followRedirects = true})
 * resolves to a Response: {status, headers (lower-case names), url, text, body (Buffer), json()}.
 * An HTTP error status is not a rejection; a refused or failed request is.
 */
function request(method, url, opts = {}) {
  if (typeof method !== 'string' || typeof url !== 'string') {
    return Promise.reject(new TypeError('method and url are strings'));
  }
  let target = url;
  if (opts.params) {
    const query = new URLSearchParams(opts.params).toString();
    if (query) target += (target.includes('?') ? '&' : '?') + query;
  }
  const headers = headerPairs(opts.headers);
  const fields = {
    method: method.toUpperCase(),
    url: target,
    timeout: opts.timeout ?? 10,
    follow_redirects: opts.followRedirects ?? opts.follow_redirects ?? true,
  };
  const body = opts.json !== undefined ? JSON.stringify(opts.json) : (opts.body ?? opts.data);
  if (opts.json !== undefined && !hasHeader(headers, 'content-type')) headers.push(['Content-Type', 'application/json']);
  if (body !== undefined && body !== null) {
    if (typeof body === 'string') fields.body = body;
    else if (Buffer.isBuffer(body) || ArrayBuffer.isView(body)) fields.body_b64 = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64');
    else if (typeof body === 'object') {
      fields.body = new URLSearchParams(body).toString();
      if (!hasHeader(headers, 'content-type')) headers.push(['Content-Type', 'application/x-www-form-urlencoded']);
    } else return Promise.reject(new TypeError('body must be a string, a Buffer or an object of form fields'));
  }
  fields.headers = headers;
  return call('http.request', fields).then((value) => new Response(value));
}

const http = { request };
for (const method of ['get', 'head', 'post', 'put', 'patch', 'delete']) {
  http[method] = (url, opts) => request(method.toUpperCase(), url, opts);
}

// --- functions --------------------------------------------------------------------------------

// Calls between functions. invoke(name, event) resolves to the callee's envelope
// ({success, message, result, invocation_id, ...}); with { mode: 'async', delay_s: N } to the
// queued invocation's id. The callee's timeout is cut to this invocation's remaining time; a
// chain deeper than 8 calls rejects with err.type 'ChainTooDeep', a full tier with 'TooManyRequests'.
const functions = {
  invoke(name, event = null, opts = {}) {
    const fields = { name, event: event === undefined ? null : event, mode: opts.mode || 'sync' };
    const delay = opts.delay_s ?? opts.delayS;
    if (delay !== undefined && delay !== null) fields.delay_s = delay;
    return call('functions.invoke', fields);
  },
};

// --- log --------------------------------------------------------------------------------------

function logger(level) {
  return (...args) => {
    const text = util.format(...args).replace(/\n/g, '\n  ');
    process.stderr.write(`[${level}] ${text}\n`);
  };
}

const log = {
  debug: logger('DEBUG'),
  info: logger('INFO'),
  warn: logger('WARN'),
  warning: logger('WARN'),
  error: logger('ERROR'),
};

// _call: one SDK operation, for the platform's other in-sandbox modules (../wx-server-sdk).
module.exports = { db, http, functions, log, SdkError, Response, Table, _bridge: bridge, _call: call };
