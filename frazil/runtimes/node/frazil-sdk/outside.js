'use strict';
// The SDK outside the platform: the same operations over a running server's HTTP API.
//
// A function's own unit tests require it on a developer's machine, where no runtime loop has
// connected a protocol channel. There each operation becomes a request to FRAZIL_URL with the
// admin key (FRAZIL_TOKEN, else $FRAZIL_DATA_DIR/admin.key, else ./.frazil/admin.key, as the
// frazil CLI reads it) and resolves to what the platform's SDK host would have answered, so
// index.js decodes it the same way. The routes are those of ../python/frazil_sdk/_outside.py:
// records by /v1/tables/{t}/records[/{id}], tables by /v1/tables[/{t}]. db update/delete by
// filter have no HTTP counterpart and reject with type 'NotAvailableOutside'. http requests go
// straight to their destination (no proxy, no allow-list). Node 20's fetch, nothing else.

const fs = require('fs');
const path = require('path');

const PAGE = 1000; // the largest page the records route serves

function settings(SdkError) {
  const url = (process.env.FRAZIL_URL || '').trim().replace(/\/+$/, '');
  if (!url) {
    throw new SdkError('frazil-sdk is not running inside a frazil function: set FRAZIL_URL (e.g. '
      + 'http://127.0.0.1:8080) and FRAZIL_TOKEN (the admin key) to use a running `frazil server` from tests',
    'NotInFunction');
  }
  if (!/^https?:\/\//.test(url)) throw new SdkError(`FRAZIL_URL must be an http:// or https:// URL, not ${url}`, 'BadRequest');
  let token = (process.env.FRAZIL_TOKEN || '').trim();
  if (!token) {
    const keyFile = path.join((process.env.FRAZIL_DATA_DIR || '').trim() || '.frazil', 'admin.key');
    try {
      token = fs.readFileSync(keyFile, 'utf8').trim();
    } catch (err) {
      throw new SdkError(`no admin key: set FRAZIL_TOKEN (or FRAZIL_DATA_DIR to the server's data dir); `
        + `${keyFile} cannot be read`, 'Unauthorized', 401);
    }
  }
  return { url, token };
}

function makeOps(SdkError) {
  async function api(method, route, { query, body } = {}) {
    const { url, token } = settings(SdkError);
    const target = url + route + (query ? `?${new URLSearchParams(query)}` : '');
    let response;
    try {
      response = await fetch(target, {
        method,
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new SdkError(`cannot reach the frazil server at ${url} (FRAZIL_URL): ${(err.cause || err).message}`, 'ChannelClosed');
    }
    const text = await response.text();
    let parsed = {};
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch (err) { /* not JSON: described below */ }
    if (!response.ok) {
      const error = parsed.error || {};
      throw new SdkError(String(error.message || `${method} ${route} answered HTTP ${response.status}`),
        String(error.type || 'SdkError'), response.status);
    }
    return parsed;
  }

  function tablePath(f) {
    if (typeof f.table !== 'string') throw new TypeError(`a table name is a string, not ${typeof f.table}`);
    return `/v1/tables/${encodeURIComponent(f.table)}`;
  }

  function recordsQuery(f, limit, offset) {
    const query = { where: JSON.stringify(f.where || {}), limit: String(limit) };
    if (offset) query.offset = String(offset);
    if (f.order) query.order = f.order;
    return query;
  }

  function noCounterpart(call, instead) {
    return async () => {
      throw new SdkError(`${call} (by filter) has no counterpart in frazil's HTTP API, so it works only inside a `
        + `function running on frazil; in tests outside the platform, ${instead}`, 'NotAvailableOutside', 501);
    };
  }

  return {
    'db.insert': async (f) => (await api('POST', `${tablePath(f)}/records`, { body: f.record })).record,
    'db.find': async (f) => (await api('GET', `${tablePath(f)}/records`, {
      query: recordsQuery(f, f.limit ?? 100, f.offset ?? 0),
    })).records,
    'db.get': async (f) => {
      if (typeof f.id !== 'string' || !f.id) throw new SdkError('a record id is a non-empty string', 'BadRequest', 400);
      return (await api('GET', `${tablePath(f)}/records/${encodeURIComponent(f.id)}`)).record;
    },
    'db.count': async (f) => {
      if (!f.where || Object.keys(f.where).length === 0) return (await api('GET', tablePath(f))).table.records;
      // No count route takes a filter: page through the matches (reads only, so exact).
      let total = 0;
      const query = recordsQuery(f, PAGE, 0);
      for (;;) {
        const page = await api('GET', `${tablePath(f)}/records`, { query });
        total += page.count;
        if (!page.next_cursor) return total;
        query.cursor = page.next_cursor;
      }
    },
    'db.update': noCounterpart('db.table(...).update', 'update records one at a time: find them, then '
      + 'PATCH /v1/tables/{table}/records/{id}'),
    'db.delete': noCounterpart('db.table(...).delete', 'delete records one at a time: find them, then '
      + 'DELETE /v1/tables/{table}/records/{id}'),
    'db.create_table': async (f) => {
      try {
        await api('GET', tablePath(f));
      } catch (err) {
        if (err.status !== 404) throw err;
        return (await api('PUT', tablePath(f), { body: { acl: f.acl } })).table;
      }
      throw new SdkError(`table '${f.table}' already exists`, 'Conflict', 409);
    },
    'db.set_acl': async (f) => (await api('PUT', tablePath(f), { body: { acl: f.acl } })).table,
    'db.drop': async (f) => (await api('DELETE', tablePath(f))).deleted_records,
    'db.tables': async () => (await api('GET', '/v1/tables')).tables,
    'http.request': async (f) => {
      // A direct request; resolves to what the platform's proxy answers (status, header pairs,
      // the final URL, the body in base64). An HTTP error status is an answer, not an error.
      let body;
      if (f.body_b64 !== undefined) body = Buffer.from(f.body_b64, 'base64');
      else if (f.body !== undefined) body = f.body;
      let response;
      try {
        response = await fetch(f.url, {
          method: f.method,
          headers: f.headers,
          body,
          redirect: f.follow_redirects === false ? 'manual' : 'follow',
          signal: AbortSignal.timeout(Math.max(1, Math.round((f.timeout ?? 10) * 1000))),
        });
      } catch (err) {
        if (err.name === 'TimeoutError') throw new SdkError(`${f.method} ${f.url} timed out after ${f.timeout} s`, 'HttpTimeout', 504);
        throw new SdkError(`${f.method} ${f.url} failed: ${(err.cause || err).message}`, 'HttpError', 502);
      }
      const content = Buffer.from(await response.arrayBuffer());
      return {
        status: response.status, headers: [...response.headers], url: response.url || f.url, base64: content.toString('base64'),
      };
    },
  };
}

let ops = null;

/** Serve one SDK call over the HTTP API; rejects with an SdkError as the platform would. */
async function call(op, fields, SdkError) {
  if (ops === null) ops = makeOps(SdkError);
  const serve = ops[op];
  if (!serve) {
    throw new SdkError(`${op} works only inside a function running on frazil (it has no HTTP counterpart the SDK `
      + 'could use from FRAZIL_URL)', 'NotAvailableOutside', 501);
  }
  return serve(fields);
}

module.exports = { call };
