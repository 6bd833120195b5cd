'use strict';
// The Node.js runtime loop that runs inside an instance (Node standard library only).
//
// It behaves like ../python/loop.py: say hello on the channel (fd 3), receive "init" (load the
// handler once), then serve "invoke" frames one at a time until the channel closes. Module
// globals and files in /tmp survive between invocations because this process does. See
// ../protocol.py for the messages.
//
// Invariants:
// - Everything the function writes through process.stdout / process.stderr / console reaches
//   the output pipe synchronously (fs.writeSync), so once a handler's promise settles, its
//   output is already in the pipe; the log marker is written after it and before the result
//   frame is sent. (Node's own pipe streams write asynchronously; they are never created.)
// - An unhandled rejection or uncaught exception from user code is reported in the logs and
//   never kills the instance in the middle of an invocation.
// - require('frazil-sdk') resolves to ./frazil-sdk/index.js; packages resolve from the
//   project's own node_modules first (Node's usual walk up from the requiring file), then from
//   each dependency layer's node_modules (NODE_PATH semantics).

const fs = require('fs');
const path = require('path');
const stream = require('stream');
const util = require('util');

const CHANNEL_FD = 3;
const DEFAULT_MAX_RESULT_BYTES = 6 * 1024 * 1024;
const SDK_DIR = path.join(__dirname, 'frazil-sdk');

// --- synchronous stdout/stderr (installed before anything can touch the real ones) -------

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function writeAllSync(fd, data, encoding) {
  let buf;
  if (typeof data === 'string') buf = Buffer.from(data, encoding || 'utf8');
  else if (Buffer.isBuffer(data)) buf = data;
  else if (ArrayBuffer.isView(data)) buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  else buf = Buffer.from(String(data), 'utf8');
  let offset = 0;
  while (offset < buf.length) {
    try {
      offset += fs.writeSync(fd, buf, offset, buf.length - offset);
    } catch (err) {
      if (err.code === 'EAGAIN') {
        Atomics.wait(sleepCell, 0, 0, 1); // the pipe is full and non-blocking: wait for the reader
        continue;
      }
      if (err.code === 'EPIPE') return; // nobody reads the output any more
      throw err;
    }
  }
}

class SyncWriteStream extends stream.Writable {
  constructor(fd) {
    super({ decodeStrings: false });
    this.fd = fd;
    this.isTTY = false;
  }

  // Overridden so a write is on the pipe before write() returns, whatever the stream state.
  write(chunk, encoding, callback) {
    if (typeof encoding === 'function') {
      callback = encoding;
      encoding = undefined;
    }
    writeAllSync(this.fd, chunk, encoding);
    if (typeof callback === 'function') process.nextTick(callback);
    return true;
  }

  _write(chunk, encoding, callback) {
    writeAllSync(this.fd, chunk, encoding);
    callback();
  }

  // end() on stdout must not close the pipe the platform reads the logs from.
  _final(callback) {
    callback();
  }

  _destroy(err, callback) {
    callback(err);
  }
}

function installOutputStreams() {
  const stdout = new SyncWriteStream(1);
  const stderr = new SyncWriteStream(2);
  Object.defineProperty(process, 'stdout', { configurable: true, enumerable: true, get: () => stdout });
  Object.defineProperty(process, 'stderr', { configurable: true, enumerable: true, get: () => stderr });
}

installOutputStreams();

const Module = require('module');
const net = require('net');
const { pathToFileURL } = require('url');
const protocol = require('./protocol');
const bridge = require('./bridge');

function platformLog(text) {
  writeAllSync(2, `frazil: ${text}\n`);
}

process.on('unhandledRejection', (reason) => {
  platformLog(`unhandled promise rejection: ${formatThrown(reason)}`);
});

process.on('uncaughtException', (err) => {
  platformLog(`uncaught exception: ${formatThrown(err)}`);
});

function formatThrown(value) {
  try {
    if (value instanceof Error && value.stack) return value.stack;
    return util.inspect(value, { depth: 4 });
  } catch (_) {
    return '<unprintable value>';
  }
}

// --- module resolution ---------------------------------------------------------------------

function installSdkResolution() {
  const sdkEntry = path.join(SDK_DIR, 'index.js');
  const originalResolve = Module._resolveFilename;
  Module._resolveFilename = function resolveFilename(request, parent, isMain, options) {
    if (request === 'frazil-sdk') return sdkEntry;
    return originalResolve.call(this, request, parent, isMain, options);
  };
}

function installLayers(layerDirs) {
  // A layer is <layer>/node_modules (what the platform builds); a directory without one is
  // taken as a node_modules folder itself. NODE_PATH entries come after the project's own
  // node_modules in Node's lookup, so a bundled package wins over a layer's.
  const dirs = [];
  for (const dir of layerDirs || []) {
    const nm = path.join(dir, 'node_modules');
    dirs.push(isDirectory(nm) ? nm : dir);
  }
  if (!dirs.length) return;
  const previous = process.env.NODE_PATH;
  process.env.NODE_PATH = [...dirs, ...(previous ? previous.split(path.delimiter) : [])].join(path.delimiter);
  Module._initPaths();
  if (previous === undefined) delete process.env.NODE_PATH;
  else process.env.NODE_PATH = previous;
}

function isDirectory(p) {
  try {
    return fs.statSync(p).isDirectory();
  } catch (_) {
    return false;
  }
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (_) {
    return false;
  }
}

/** Candidate files of a handler's module, in the order frazil/build/detect.py lists them. */
function moduleFiles(modulePath) {
  if (/\.(c?js)$/.test(modulePath)) return [modulePath];
  return [`${modulePath}.js`, `${modulePath}/index.js`, `${modulePath}.cjs`];
}

async function loadHandler(spec, codeDir) {
  const dot = typeof spec === 'string' ? spec.lastIndexOf('.') : -1;
  if (dot <= 0 || dot === spec.length - 1) {
    throw new TypeError(`handler ${JSON.stringify(spec)} must look like 'module.function'`);
  }
  const modulePath = spec.slice(0, dot);
  const name = spec.slice(dot + 1);
  const candidates = moduleFiles(modulePath);
  const file = candidates.map((c) => path.resolve(codeDir, c)).find(isFile);
  if (!file) {
    const err = new Error(`cannot find the handler's module: none of ${candidates.join(', ')} exists`);
    err.code = 'MODULE_NOT_FOUND';
    throw err;
  }
  let exported;
  try {
    exported = require(file);
  } catch (err) {
    if (!err || err.code !== 'ERR_REQUIRE_ESM') throw err;
    exported = await import(pathToFileURL(file).href); // an ES module ("type": "module")
  }
  let handler = exported == null ? undefined : exported[name];
  if (handler === undefined && exported && exported.default && typeof exported.default === 'object') {
    handler = exported.default[name];
  }
  if (handler === undefined) {
    throw new TypeError(`${path.relative(codeDir, file)} does not export a function named ${JSON.stringify(name)}`);
  }
  if (typeof handler !== 'function') {
    throw new TypeError(`${spec} is not a function (it is ${typeof handler})`);
  }
  return handler;
}

// --- errors and results ----------------------------------------------------------------------

function describeError(err) {
  try {
    if (err instanceof Error || (err !== null && typeof err === 'object' && 'message' in err && 'stack' in err)) {
      let type = err.name;
      if (!type || type === 'Error') {
        const ctor = err.constructor && err.constructor.name;
        if (ctor) type = ctor; // class MyError extends Error {} without setting .name
      }
      return {
        type: String(type || 'Error'),
        message: String(err.message === undefined ? '' : err.message),
        stack: String(err.stack === undefined ? '' : err.stack),
      };
    }
    const message = typeof err === 'string' ? err : util.inspect(err, { depth: 4 });
    return { type: 'Error', message, stack: '' };
  } catch (_) {
    return { type: 'Error', message: 'the function threw a value that cannot be described', stack: '' };
  }
}

function resultError(id, type, message) {
  return protocol.encode({ type: protocol.RESULT, id, ok: false, error: { type, message, stack: '' } });
}

/** The result frame for `value`: pre-encoded JSON spliced in, or a typed error. */
function resultFrame(id, value, maxBytes) {
  let encoded;
  try {
    encoded = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    return resultError(id, 'ResultNotSerializable', `the result cannot be encoded as JSON: ${err && err.message}`);
  }
  if (encoded === undefined) encoded = 'null'; // a function or a symbol
  const size = Buffer.byteLength(encoded, 'utf8');
  if (size > maxBytes) {
    return resultError(id, 'ResultTooLarge', `the result is ${size} bytes; the limit is ${maxBytes}`);
  }
  const head = JSON.stringify({ type: protocol.RESULT, id, ok: true });
  return protocol.frameText(`${head.slice(0, -1)},"result":${encoded}}`);
}

function writeMarker(marker) {
  if (marker) writeAllSync(1, marker);
}

// --- the runtime -----------------------------------------------------------------------------

class Runtime {
  constructor(channel) {
    this.channel = channel;
    this.handler = null;
    this.meta = {};
    this.maxResultBytes = DEFAULT_MAX_RESULT_BYTES;
    this.queue = Promise.resolve(); // invocations run one at a time, in arrival order
    this.nextCall = 1;
    this.pendingCalls = new Map(); // call id -> resolve
    this.initialized = false;
  }

  send(buffer) {
    this.channel.write(buffer);
  }

  sendSdkCall(message) {
    const call = this.nextCall++;
    const current = bridge.currentInvocation();
    const frame = { ...message, type: protocol.SDK_CALL, call };
    if (current) {
      // The platform accepts a call only with the running invocation's token.
      if (frame.invocation_id === undefined) frame.invocation_id = current.id;
      if (frame.sdk_token === undefined && current.sdk_token !== undefined) frame.sdk_token = current.sdk_token;
    }
    return new Promise((resolve, reject) => {
      try {
        this.send(protocol.encode(frame));
      } catch (err) {
        reject(err);
        return;
      }
      this.pendingCalls.set(call, resolve);
    });
  }

  onMessage(message) {
    switch (message.type) {
      case protocol.INIT:
        this.queue = this.queue.then(() => this.initialize(message));
        break;
      case protocol.INVOKE:
        this.queue = this.queue.then(() => this.invoke(message));
        break;
      case protocol.SDK_REPLY: {
        const resolve = this.pendingCalls.get(message.call);
        if (resolve) {
          this.pendingCalls.delete(message.call);
          resolve(message);
        } else {
          platformLog(`sdk_reply for unknown call ${JSON.stringify(message.call)}`);
        }
        break;
      }
      default:
        platformLog(`ignoring an unexpected ${JSON.stringify(message.type)} frame`);
    }
  }

  async initialize(init) {
    this.meta = init;
    if (typeof init.max_result_bytes === 'number') this.maxResultBytes = init.max_result_bytes;
    try {
      Object.assign(process.env, init.env || {});
      const codeDir = path.resolve(init.code_dir);
      process.chdir(codeDir);
      installLayers(init.layer_dirs);
      this.handler = await loadHandler(init.handler, codeDir);
    } catch (err) {
      writeMarker(init.log_marker);
      // Like the Python loop: an instance whose init failed is finished.
      this.channel.end(protocol.encode({ type: protocol.INIT_ERROR, error: describeError(err) }), () => process.exit(0));
      return;
    }
    this.initialized = true;
    writeMarker(init.log_marker);
    this.send(protocol.encode({ type: protocol.READY }));
  }

  async invoke(request) {
    const id = request.id;
    const deadline = Number(request.deadline_ms) || Date.now();
    const meta = this.meta;
    const remaining = () => Math.max(0, Math.floor(deadline - Date.now()));
    const context = {
      invocation_id: id,
      function_name: meta.function,
      version: meta.version,
      memory_mb: meta.memory_mb,
      cold: Boolean(request.cold),
      remaining_ms: remaining,
      getRemainingTimeInMillis: remaining,
    };
    let frame;
    bridge.setCurrentInvocation({ id, deadline_ms: deadline, sdk_token: request.sdk_token });
    try {
      if (!this.initialized) throw new Error('the runtime was not initialized');
      const value = await this.call(request.event === undefined ? null : request.event, context);
      frame = resultFrame(id, value, this.maxResultBytes);
    } catch (err) {
      frame = protocol.encode({ type: protocol.RESULT, id, ok: false, error: describeError(err) });
    } finally {
      bridge.setCurrentInvocation(null);
    }
    writeMarker(request.log_marker);
    this.send(frame);
  }

  call(event, context) {
    const handler = this.handler;
    if (handler.length >= 3) {
      // A callback-style handler (event, context, callback), as Lambda allows.
      return new Promise((resolve, reject) => {
        const callback = (err, value) => (err ? reject(err) : resolve(value));
        Promise.resolve(handler(event, context, callback)).then((value) => {
          if (value !== undefined) resolve(value);
        }, reject);
      });
    }
    return handler(event, context); // a value or a promise: `await` takes both
  }
}

function main() {
  installSdkResolution();
  let channel;
  try {
    fs.fstatSync(CHANNEL_FD);
    channel = new net.Socket({ fd: CHANNEL_FD, readable: true, writable: true });
  } catch (err) {
    platformLog(`no protocol channel on fd ${CHANNEL_FD}: ${err.message}`);
    process.exit(2);
  }
  const runtime = new Runtime(channel);
  bridge.install((message) => runtime.sendSdkCall(message));
  const decoder = new protocol.FrameDecoder();
  channel.on('data', (data) => {
    let payloads;
    try {
      payloads = decoder.feed(data);
    } catch (err) {
      platformLog(`protocol error: ${err.message}`);
      process.exit(1);
    }
    for (const payload of payloads) {
      let message;
      try {
        message = JSON.parse(payload.toString('utf8'));
      } catch (err) {
        platformLog(`protocol error: a frame is not JSON: ${err.message}`);
        process.exit(1);
      }
      runtime.onMessage(message);
    }
  });
  // The platform closed the channel: this instance is done.
  channel.on('end', () => process.exit(0));
  channel.on('error', (err) => {
    platformLog(`channel error: ${err.message}`);
    process.exit(1);
  });
  runtime.send(protocol.encode({
    type: protocol.HELLO,
    protocol: protocol.PROTOCOL_VERSION,
    runtime: 'nodejs20',
    pid: process.pid,
  }));
}

main();
