'use strict';
// require('wx-server-sdk') inside a function resolves here (the Node loop maps the name, before
// any copy the bundle holds): WeChat cloud development's server SDK, over frazil's own SDK.
//
//   const cloud = require('wx-server-sdk');
//   cloud.init({ env: cloud.DYNAMIC_CURRENT_ENV });
//   const db = cloud.database();
//   const _ = db.command;
//   const { _id } = await db.collection('userInfo').add({ data: { name: 'a', score: 3 } });
//   const { data } = await db.collection('userInfo').where({ score: _.gt(2) }).orderBy('score', 'desc').limit(10).get();
//   await db.collection('userInfo').doc(_id).update({ data: { score: _.inc(1) } });
//   const { OPENID } = cloud.getWXContext();             // the calling end user's id
//   const { result } = await cloud.callFunction({ name: 'other', data: { x: 1 } });
//
// Collections are frazil's data tables (admin rights, like a cloud function's), documents are
// its records with `id` shown as `_id` (the platform's created_by/created_at/updated_at are not
// shown). Results and errors have the shapes WeChat code checks: {_id, errMsg: 'collection.add:ok'},
// {data, errMsg}, {stats: {updated}, errMsg}, {total, errMsg}; a failure rejects with an Error
// that carries errCode and errMsg ('<api>:fail <reason>'). Query operators become frazil filters
// (eq, ne, gt, gte, lt, lte, in, nin, exists; several on one field all hold); `or` between
// different conditions has no frazil filter and is refused with a clear error, never guessed.
// Update commands inc, push and remove are atomic (frazil.data.updates); set replaces a field.
// What frazil does not provide (cloud storage, openapi, aggregate, watch) rejects at once.

const sdk = require('../frazil-sdk');

const call = sdk._call;
const bridge = sdk._bridge;

const DYNAMIC_CURRENT_ENV = Symbol.for('DYNAMIC_CURRENT_ENV');
const DEFAULT_LIMIT = 100; // what WeChat's server SDK answers when no limit is given
const PLATFORM_FIELDS = ['id', 'created_by', 'created_at', 'updated_at'];

// errCode values WeChat code may compare against.
const ERR = {
  UNKNOWN: -1,
  INVALID_PARAM: -501007,
  NOT_SUPPORTED: -501009,
  COLLECTION_NOT_EXIST: -502005,
  DOCUMENT_NOT_EXIST: -502004,
  PERMISSION_DENIED: -502003,
  FUNCTION_FAILED: -404011,
};

let currentEnv = 'frazil';

// --- errors -------------------------------------------------------------------------------------

function wxError(api, code, reason) {
  const errMsg = `${api}:fail ${reason}`;
  const err = new Error(`errCode: ${code} ${reason} | errMsg: ${errMsg}`);
  err.errCode = code;
  err.errMsg = errMsg;
  return err;
}

function fromSdkError(api, err) {
  if (err && err.errCode !== undefined) return err; // ours already
  const type = err && err.type;
  const text = String((err && err.message) || err);
  if (type === 'NotFound' && /no table/.test(text)) return wxError(api, ERR.COLLECTION_NOT_EXIST, `database collection not exists: ${text}`);
  if (type === 'NotFound') return wxError(api, ERR.DOCUMENT_NOT_EXIST, text);
  if (type === 'BadRequest' || type === 'PayloadTooLarge' || type === 'Conflict' || err instanceof TypeError) {
    return wxError(api, ERR.INVALID_PARAM, text);
  }
  if (type === 'Forbidden' || type === 'Unauthorized') return wxError(api, ERR.PERMISSION_DENIED, text);
  return wxError(api, ERR.UNKNOWN, text);
}

/** Run `work` as WeChat API `api`: its errors become WeChat errors; success/fail/complete callbacks are honoured. */
function run(api, work, options) {
  const promise = Promise.resolve().then(work).catch((err) => { throw fromSdkError(api, err); });
  const opts = options || {};
  if (typeof opts.success !== 'function' && typeof opts.fail !== 'function' && typeof opts.complete !== 'function') {
    return promise;
  }
  promise.then(
    (value) => { if (typeof opts.success === 'function') opts.success(value); if (typeof opts.complete === 'function') opts.complete(value); },
    (err) => { if (typeof opts.fail === 'function') opts.fail(err); if (typeof opts.complete === 'function') opts.complete(err); },
  );
  return undefined;
}

function unsupported(api, what) {
  return (options) => run(api, () => {
    throw wxError(api, ERR.NOT_SUPPORTED, `${what} is not provided by frazil (see docs/moving.md)`);
  }, options);
}

// --- values -------------------------------------------------------------------------------------

const SERVER_DATE = Symbol('serverDate');

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)
    && !(v instanceof QueryCommand) && !(v instanceof UpdateCommand) && !(v instanceof LogicCommand) && !v[SERVER_DATE];
}

/** A value as stored: dates (and db.serverDate()) as ISO 8601 strings, the rest as JSON has it. */
function storable(value) {
  if (value instanceof Date) return value.toISOString();
  if (value && value[SERVER_DATE]) return new Date(Date.now() + value.offset).toISOString();
  if (Array.isArray(value)) return value.map(storable);
  if (value instanceof QueryCommand || value instanceof UpdateCommand || value instanceof LogicCommand) {
    throw new TypeError('a command (db.command.*) cannot be stored as a value here');
  }
  if (value !== null && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = storable(v);
    return out;
  }
  return value;
}

function toDoc(record) {
  const doc = { _id: record.id };
  for (const [k, v] of Object.entries(record)) if (!PLATFORM_FIELDS.includes(k)) doc[k] = v;
  return doc;
}

function fieldName(name) {
  return name === '_id' ? 'id' : name;
}

// --- commands -----------------------------------------------------------------------------------

const QUERY_OPS = { eq: 'eq', neq: 'ne', gt: 'gt', gte: 'gte', lt: 'lt', lte: 'lte', in: 'in', nin: 'nin', exists: 'exists' };

/** Conditions on one field, all of which must hold: [[frazil op, value], ...]. */
class QueryCommand {
  constructor(conds) {
    this.conds = conds;
  }

  and(...others) {
    const list = others.length === 1 && Array.isArray(others[0]) ? others[0] : others;
    return new QueryCommand([...this.conds, ...list.flatMap((c) => asQuery(c).conds)]);
  }

  or(...others) {
    const list = others.length === 1 && Array.isArray(others[0]) ? others[0] : others;
    return fieldOr([this, ...list]);
  }
}

function asQuery(c) {
  if (c instanceof QueryCommand) return c;
  return new QueryCommand([['eq', storable(c)]]);
}

/** `or` of conditions on one field: expressible only as `in` when each is an equality. */
function fieldOr(list) {
  const queries = list.map(asQuery);
  if (queries.every((q) => q.conds.length === 1 && (q.conds[0][0] === 'eq' || q.conds[0][0] === 'in'))) {
    return new QueryCommand([['in', queries.flatMap((q) => (q.conds[0][0] === 'in' ? q.conds[0][1] : [q.conds[0][1]]))]]);
  }
  throw wxError('database.command.or', ERR.NOT_SUPPORTED, 'frazil filters have no OR between different '
    + 'conditions; only an or of equalities on one field (which becomes `in`) is supported');
}

/** and/or between whole where-objects, given to where(). */
class LogicCommand {
  constructor(kind, operands) {
    this.kind = kind;
    this.operands = operands;
  }
}

class UpdateCommand {
  constructor(kind, value) {
    this.kind = kind;
    this.value = value;
  }
}

function makeCommand() {
  const command = {};
  for (const [name, op] of Object.entries(QUERY_OPS)) {
    command[name] = (value) => {
      if ((op === 'in' || op === 'nin') && !Array.isArray(value)) throw new TypeError(`db.command.${name} takes an array`);
      return new QueryCommand([[op, storable(value)]]);
    };
  }
  command.and = (...args) => {
    const list = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
    if (list.every((x) => x instanceof QueryCommand || !isPlainObject(x))) return new QueryCommand(list.flatMap((c) => asQuery(c).conds));
    return new LogicCommand('and', list);
  };
  command.or = (...args) => {
    const list = args.length === 1 && Array.isArray(args[0]) ? args[0] : args;
    if (list.every((x) => x instanceof QueryCommand || !isPlainObject(x))) return fieldOr(list);
    return new LogicCommand('or', list);
  };
  command.inc = (n) => new UpdateCommand('inc', n);
  command.push = (value) => {
    // push(v), push([v, ...]) or push({each: [...]}) as WeChat takes them.
    if (Array.isArray(value)) return new UpdateCommand('push', value);
    if (isPlainObject(value) && Array.isArray(value.each)) {
      if (value.position !== undefined || value.slice !== undefined || value.sort !== undefined) {
        throw wxError('database.command.push', ERR.NOT_SUPPORTED, 'push with position, slice or sort is not supported by frazil');
      }
      return new UpdateCommand('push', value.each);
    }
    return new UpdateCommand('push', [value]);
  };
  command.set = (value) => new UpdateCommand('set', value);
  command.remove = () => new UpdateCommand('remove', true);
  for (const name of ['mul', 'min', 'max', 'rename', 'pop', 'shift', 'unshift', 'pull', 'pullAll', 'addToSet']) {
    command[name] = () => {
      throw wxError(`database.command.${name}`, ERR.NOT_SUPPORTED, `the update command ${name} is not supported by frazil (inc, push, set and remove are)`);
    };
  }
  return command;
}

// --- where and update data -----------------------------------------------------------------------

/** A frazil filter from a WeChat query object (nested objects address nested fields). */
function toWhere(cond) {
  const out = {};
  addWhere(out, cond, '');
  return out;
}

function addWhere(out, cond, prefix) {
  if (cond instanceof LogicCommand) {
    if (cond.kind === 'and') {
      for (const each of cond.operands) addWhere(out, each, prefix);
      return;
    }
    if (cond.operands.length === 1) {
      addWhere(out, cond.operands[0], prefix);
      return;
    }
    throw wxError('collection.where', ERR.NOT_SUPPORTED, 'frazil filters have no OR between conditions on '
      + 'different fields; run one query per branch');
  }
  if (!isPlainObject(cond)) throw new TypeError('where takes an object of conditions');
  for (const [key, value] of Object.entries(cond)) {
    const field = prefix ? `${prefix}.${key}` : fieldName(key);
    if (value === undefined) {
      // Never dropped: where({_openid: OPENID}) with no end user would otherwise match everyone.
      throw wxError('collection.where', ERR.INVALID_PARAM, `the condition on ${field} is undefined`);
    }
    if (isPlainObject(value)) {
      addWhere(out, value, field);
      continue;
    }
    if (value instanceof LogicCommand) throw new TypeError(`${field}: use db.command.and/or on whole conditions`);
    for (const [op, v] of asQuery(value).conds) {
      const ops = out[field] || (out[field] = {});
      if (op in ops && JSON.stringify(ops[op]) !== JSON.stringify(v)) {
        throw wxError('collection.where', ERR.NOT_SUPPORTED, `${field}: two different '${op}' conditions on one field`);
      }
      ops[op] = v;
    }
  }
}

/** {patch, ops} for frazil's update from WeChat update data. */
function toUpdate(data, api) {
  if (!isPlainObject(data) || !Object.keys(data).length) throw wxError(api, ERR.INVALID_PARAM, 'data must be a non-empty object');
  const patch = {};
  const ops = {};
  for (const [key, value] of Object.entries(data)) {
    if (value === undefined) continue;
    if (key === '_id') throw wxError(api, ERR.INVALID_PARAM, '_id cannot be updated');
    if (key.includes('.')) {
      throw wxError(api, ERR.NOT_SUPPORTED, `'${key}': frazil updates top-level fields; set the whole object with db.command.set`);
    }
    if (value instanceof UpdateCommand) {
      if (value.kind === 'set') patch[key] = storable(value.value);
      else if (value.kind === 'inc') ops[key] = { inc: value.value };
      else if (value.kind === 'push') ops[key] = { push: storable(value.value) };
      else ops[key] = { remove: true };
    } else {
      patch[key] = storable(value);
    }
  }
  return { patch, ops };
}

async function applyUpdate(table, where, data, api) {
  const { patch, ops } = toUpdate(data, api);
  const fields = { table, where, patch: Object.keys(patch).length ? patch : null };
  if (Object.keys(ops).length) fields.ops = ops;
  return call('db.update', fields);
}

function project(doc, projection) {
  if (!projection) return doc;
  const entries = Object.entries(projection);
  const including = entries.some(([k, v]) => v && k !== '_id');
  const out = {};
  if (including) {
    if (projection._id !== false && projection._id !== 0) out._id = doc._id;
    for (const [k, v] of entries) if (v && k in doc) out[k] = doc[k];
    return out;
  }
  for (const [k, v] of Object.entries(doc)) if (!(k in projection) || projection[k]) out[k] = v;
  return out;
}

// --- queries, collections, documents --------------------------------------------------------------

class Query {
  constructor(collection, state = {}) {
    this.collection = collection;
    this.state = { where: {}, order: [], limit: undefined, skip: 0, projection: undefined, ...state };
  }

  _with(change) {
    return new Query(this.collection, { ...this.state, ...change });
  }

  where(cond) {
    const where = { ...this.state.where };
    const added = toWhere(cond);
    for (const [field, ops] of Object.entries(added)) where[field] = { ...(where[field] || {}), ...ops };
    return this._with({ where });
  }

  orderBy(field, direction = 'asc') {
    if (direction !== 'asc' && direction !== 'desc') throw new TypeError("orderBy's direction is 'asc' or 'desc'");
    const name = fieldName(field);
    return this._with({ order: [...this.state.order, direction === 'desc' ? `-${name}` : name] });
  }

  limit(n) {
    return this._with({ limit: n });
  }

  skip(n) {
    return this._with({ skip: n });
  }

  field(projection) {
    return this._with({ projection });
  }

  get(options) {
    return run('collection.get', async () => {
      const records = await call('db.find', {
        table: this.collection.name,
        where: this.state.where,
        limit: this.state.limit ?? DEFAULT_LIMIT,
        offset: this.state.skip,
        order: this.state.order.length ? this.state.order.join(',') : null,
      });
      return { data: records.map((r) => project(toDoc(r), this.state.projection)), errMsg: 'collection.get:ok' };
    }, options);
  }

  count(options) {
    return run('collection.count', async () => {
      const total = await call('db.count', { table: this.collection.name, where: this.state.where });
      return { total, errMsg: 'collection.count:ok' };
    }, options);
  }

  update(options = {}) {
    return run('collection.update', async () => {
      const updated = await applyUpdate(this.collection.name, this.state.where, options.data, 'collection.update');
      return { stats: { updated }, errMsg: 'collection.update:ok' };
    }, options);
  }

  remove(options) {
    return run('collection.remove', async () => {
      const removed = await call('db.delete', { table: this.collection.name, where: this.state.where });
      return { stats: { removed }, errMsg: 'collection.remove:ok' };
    }, options);
  }

  watch() {
    throw wxError('collection.watch', ERR.NOT_SUPPORTED, 'watch is not provided by frazil (table triggers are: docs/moving.md)');
  }
}

class Collection extends Query {
  constructor(name) {
    super(null);
    this.collection = this;
    this.name = name;
    this.collectionName = name;
  }

  add(options = {}) {
    return run('collection.add', async () => {
      const data = options.data;
      if (!isPlainObject(data)) throw wxError('collection.add', ERR.INVALID_PARAM, 'data must be an object');
      const { _id, ...fields } = storable(data);
      if (_id !== undefined) {
        await call('db.put', { table: this.name, id: _id, record: fields, create_only: true });
        return { _id, errMsg: 'collection.add:ok' };
      }
      const record = await call('db.insert', { table: this.name, record: fields });
      return { _id: record.id, errMsg: 'collection.add:ok' };
    }, options);
  }

  doc(id) {
    return new Document(this, id);
  }

  // As in WeChat, a whole collection is updated or emptied only through where(): never by accident.
  update(options) {
    return run('collection.update', () => {
      throw wxError('collection.update', ERR.INVALID_PARAM, 'call where() first (where({}) for every document)');
    }, options);
  }

  remove(options) {
    return run('collection.remove', () => {
      throw wxError('collection.remove', ERR.INVALID_PARAM, 'call where() first (where({}) for every document)');
    }, options);
  }

  aggregate() {
    throw wxError('collection.aggregate', ERR.NOT_SUPPORTED, 'aggregate is not provided by frazil: query and count instead');
  }
}

class Document {
  constructor(collection, id) {
    this.collection = collection;
    this._id = id;
  }

  get(options) {
    return run('document.get', async () => {
      let record;
      try {
        record = await call('db.get', { table: this.collection.name, id: String(this._id) });
      } catch (err) {
        if (err.type === 'NotFound' && !/no table/.test(err.message)) {
          throw wxError('document.get', ERR.DOCUMENT_NOT_EXIST, `document with _id ${this._id} does not exist`);
        }
        throw err;
      }
      return { data: toDoc(record), errMsg: 'document.get:ok' };
    }, options);
  }

  update(options = {}) {
    return run('document.update', async () => {
      const updated = await applyUpdate(this.collection.name, { id: String(this._id) }, options.data, 'document.update');
      return { stats: { updated }, errMsg: 'document.update:ok' };
    }, options);
  }

  set(options = {}) {
    return run('document.set', async () => {
      const data = options.data;
      if (!isPlainObject(data)) throw wxError('document.set', ERR.INVALID_PARAM, 'data must be an object');
      const { _id, ...fields } = storable(data);
      const { created } = await call('db.put', { table: this.collection.name, id: String(this._id), record: fields });
      return { _id: this._id, stats: { updated: created ? 0 : 1, created: created ? 1 : 0 }, errMsg: 'document.set:ok' };
    }, options);
  }

  remove(options) {
    return run('document.remove', async () => {
      const removed = await call('db.delete', { table: this.collection.name, where: { id: String(this._id) } });
      return { stats: { removed }, errMsg: 'document.remove:ok' };
    }, options);
  }
}

function database() {
  return {
    command: makeCommand(),
    collection: (name) => new Collection(name),
    serverDate: (opts = {}) => ({ [SERVER_DATE]: true, offset: Number(opts.offset) || 0 }),
    createCollection: (name) => run('database.createCollection', async () => {
      await call('db.create_table', { table: name, acl: null });
      return { errMsg: 'database.createCollection:ok' };
    }),
    RegExp: () => {
      throw wxError('database.RegExp', ERR.NOT_SUPPORTED, 'regular expressions are not supported by frazil filters');
    },
    runTransaction: unsupported('database.runTransaction', 'transactions'),
    startTransaction: unsupported('database.startTransaction', 'transactions'),
  };
}

// --- cloud ---------------------------------------------------------------------------------------

function init(options = {}) {
  const env = options && options.env;
  if (typeof env === 'string') currentEnv = env;
  else if (env && typeof env.database === 'string') currentEnv = env.database;
}

/** Who called: OPENID (and UNIONID) are the calling end user's frazil id, absent when no end user called. */
function getWXContext() {
  const current = bridge && bridge.connected() ? bridge.currentInvocation() : null;
  const user = current && current.user ? current.user : null;
  return {
    OPENID: user ? user.id : undefined,
    UNIONID: user ? user.id : undefined,
    APPID: process.env.WX_APPID || undefined,
    ENV: currentEnv,
    SOURCE: user ? 'wx_client' : 'wx_unknown',
  };
}

function callFunction(options = {}) {
  return run('cloud.callFunction', async () => {
    if (typeof options.name !== 'string') throw wxError('cloud.callFunction', ERR.INVALID_PARAM, 'name must be a string');
    const envelope = await sdk.functions.invoke(options.name, options.data === undefined ? {} : options.data);
    if (!envelope.success) {
      throw wxError('cloud.callFunction', ERR.FUNCTION_FAILED, `cloud function execution error: ${envelope.message}`);
    }
    return { result: envelope.result, errMsg: 'cloud.callFunction:ok', requestID: envelope.invocation_id };
  }, options);
}

function logger() {
  return { log: sdk.log.info, info: sdk.log.info, warn: sdk.log.warn, error: sdk.log.error };
}

// openapi.* calls WeChat's servers: every member is a function that rejects, never hangs.
const openapi = new Proxy({}, {
  get: (_, group) => new Proxy({}, {
    get: (__, name) => unsupported(`openapi.${String(group)}.${String(name)}`, 'openapi (WeChat\'s server APIs)'),
  }),
});

module.exports = {
  init,
  DYNAMIC_CURRENT_ENV,
  SYMBOL_CURRENT_ENV: DYNAMIC_CURRENT_ENV,
  database,
  callFunction,
  getWXContext,
  logger,
  openapi,
  uploadFile: unsupported('cloud.uploadFile', 'cloud storage'),
  downloadFile: unsupported('cloud.downloadFile', 'cloud storage'),
  getTempFileURL: unsupported('cloud.getTempFileURL', 'cloud storage'),
  deleteFile: unsupported('cloud.deleteFile', 'cloud storage'),
  _translate: { toWhere, toUpdate, project }, // for the runtime's own tests
};
