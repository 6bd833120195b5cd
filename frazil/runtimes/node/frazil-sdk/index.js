'use strict';
// require('frazil-sdk') inside a function resolves here (the Node loop maps the name).
// A stub for now: `log` works (one line per call on stderr, so it lands in the invocation's
// logs); `db` and `http` throw until the SDK channel is implemented on top of
// ../bridge.js (sendSdkCall -> "sdk_call"/"sdk_reply" frames).

const util = require('util');
const bridge = require('../bridge');

function notImplemented(what) {
  return () => {
    throw new Error(`frazil-sdk: ${what} is not implemented yet`);
  };
}

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

const db = {
  table: notImplemented('db.table'),
  drop: notImplemented('db.drop'),
};

const http = {
  request: notImplemented('http.request'),
  get: notImplemented('http.get'),
  post: notImplemented('http.post'),
  put: notImplemented('http.put'),
  delete: notImplemented('http.delete'),
};

module.exports = { db, http, log, _bridge: bridge };
