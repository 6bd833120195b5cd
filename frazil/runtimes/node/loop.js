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
// - require('frazil-sdk') resolves to ./frazil-sdk/index.js, require('wx-server-sdk') to
//   ./wx-server-sdk/index.js (before any bundled copy); other packages resolve from the
//   project's own node_modules first (Node's usual walk up from the requiring file), then from
//   each dependency layer's node_modules (NODE_PATH semantics).

const fs = require('fs');
const path = require('path');
const stream = require('stream');
const util = require('util');

const CHANNEL_FD = 3;
// argv[2] of a generic instance (frazil.runtimes.GENERIC_FLAG): warm up, say hello, await GO_FD
const GENERIC_FLAG = '--generic';
const GO_FD = 4; // frazil.sandbox.helper.enter.GO_FD
const GO = 0x31; // the byte the platform writes once the code is in place (wire.GO: '1')
const DEFAULT_MAX_RESULT_BYTES = 6 * 1024 * 1024;
const SDK_DIR = path.join(__dirname, 'frazil-sdk');

/**
 * Package names the platform provides itself, whatever a bundle or a layer holds: its own SDK,
 * and WeChat's wx-server-sdk over it (frazil/build/provided.py says so in the build log).
 */
function providedModules() {
  return new Map([
    ['frazil-sdk', path.join(SDK_DIR, 'index.js')],
    ['wx-server-sdk', path.join(__dirname, 'wx-server-sdk', 'index.js')],
  ]);
}

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
const protocol = require('./protocol');
const bridge = require('./bridge');
const handlers = require('./handlers');

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
  const provided = providedModules();
  const originalResolve = Module._resolveFilename;
  Module._resolveFilename = function resolveFilename(request, parent, isMain, options) {
    const entry = provided.get(request);
    if (entry !== undefined) return entry;
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

// --- errors and results ----------------------------------------------------------------------

// Cut to a size every frame that carries an error accepts (protocol.py's ERROR_TEXT_CHARS).
const ERROR_TEXT_CHARS = 32 * 1024;

function cutText(text, keepEnd) {
  if (text.length <= ERROR_TEXT_CHARS) return text;
  const note = `[... ${text.length - ERROR_TEXT_CHARS} characters cut ...]`;
  return keepEnd ? note + text.slice(text.length - ERROR_TEXT_CHARS) : text.slice(0, ERROR_TEXT_CHARS) + note;
}

function describeError(err) {
  const error = describeErrorWhole(err);
  return { type: cutText(error.type, false), message: cutText(error.message, false), stack: cutText(error.stack, true) };
}

function describeErrorWhole(err) {
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

function resultError(id, durationMs, type, message) {
  return protocol.encode({ type: protocol.RESULT, id, ok: false, duration_ms: durationMs, error: { type, message, stack: '' } });
}

/** The result frame for `value`: pre-encoded JSON spliced in, or a typed error. */
function resultFrame(id, durationMs, value, maxBytes) {
  let encoded;
  try {
    encoded = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    return resultError(id, durationMs, 'ResultNotSerializable', `the result cannot be encoded as JSON: ${err && err.message}`);
  }
  if (encoded === undefined) encoded = 'null'; // a function or a symbol
  const size = Buffer.byteLength(encoded, 'utf8');
  if (size > maxBytes) {
    return resultError(id, durationMs, 'ResultTooLarge', `the result is ${size} bytes; the limit is ${maxBytes}`);
  }
  const head = JSON.stringify({ type: protocol.RESULT, id, ok: true, duration_ms: durationMs });
  return protocol.frameText(`${head.slice(0, -1)},"result":${encoded}}`);
}

/** Milliseconds since `started` (a process.hrtime.bigint()), to the µs. */
function msSince(started) {
  return Math.round(Number(process.hrtime.bigint() - started) / 1e3) / 1e3;
}

function writeMarker(marker) {
  if (marker) writeAllSync(1, marker);
}

// --- the runtime -----------------------------------------------------------------------------

class Runtime {
  constructor(channel) {
    this.channel = channel;
    this.handler = null;
    this.style = 2; // how the handler is called (handlers.callStyle)
    this.meta = {};
    this.maxResultBytes = DEFAULT_MAX_RESULT_BYTES;
    this.queue = Promise.resolve(); // invocations run one at a time, in arrival order
    this.nextCall = 1;
    this.pendingCalls = new Map(); // call id -> resolve
    this.initialized = false;
    this.finished = false; // init failed: the runtime ends, and serves nothing sent behind init
  }

  send(buffer) {
    this.channel.write(buffer);
  }

  sendSdkCall(message) {
    const call = this.nextCall++;
    const current = bridge.currentInvocation();
    // "type" first: the platform reads a frame's kind from its first bytes.
    const frame = { type: protocol.SDK_CALL, call, ...message };
    frame.type = protocol.SDK_CALL;
    frame.call = call;
    if (current) {
      // The platform accepts a call only with the running invocation's token.
      if (frame.invocation_id === undefined) frame.invocation_id = current.id;
      if (frame.sdk_token === undefined && current.sdk_token !== undefined) frame.sdk_token = current.sdk_token;
    }
    return new Promise((resolve, reject) => {
      try {
        const data = protocol.encode(frame);
        if (data.length - 4 > protocol.MAX_SDK_CALL_BYTES) {
          throw new Error(`the SDK call is ${data.length - 4} bytes; the limit is ${protocol.MAX_SDK_CALL_BYTES}`);
        }
        this.send(data);
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
      const codeDir = prepare(init);
      this.handler = await handlers.loadHandler(codeDir, init.handler);
      this.style = handlers.callStyle(this.handler);
    } catch (err) {
      writeMarker(init.log_marker);
      // Like the Python loop: an instance whose init failed is finished.
      this.finished = true;
      this.channel.end(protocol.encode({ type: protocol.INIT_ERROR, error: describeError(err) }), () => process.exit(0));
      return;
    }
    this.initialized = true;
    writeMarker(init.log_marker);
    this.send(protocol.encode({ type: protocol.READY }));
  }

  async invoke(request) {
    if (this.finished) return; // sent right behind an init that failed: nothing runs
    const id = request.id;
    const deadline = invocationDeadline(request);
    const meta = this.meta;
    const remaining = () => Math.max(0, Math.floor(deadline - Date.now()));
    const context = {
      invocation_id: id,
      function_name: meta.function,
      version: meta.version,
      memory_mb: meta.memory_mb,
      cold: Boolean(request.cold),
      user: request.user || null, // {id, username} of the end user who called, else null
      remaining_ms: remaining,
      getRemainingTimeInMillis: remaining,
      // AWS Lambda's names for what frazil has (docs/moving.md)
      awsRequestId: id,
      functionName: meta.function,
      functionVersion: String(meta.version),
      memoryLimitInMB: String(meta.memory_mb),
      callbackWaitsForEmptyEventLoop: true, // accepted, without effect: an invocation ends when its handler settles
    };
    let frame;
    bridge.setCurrentInvocation({ id, deadline_ms: deadline, sdk_token: request.sdk_token, user: context.user });
    const started = process.hrtime.bigint();
    try {
      if (!this.initialized) throw new Error('the runtime was not initialized');
      const value = await this.call(request.event === undefined ? null : request.event, context);
      frame = resultFrame(id, msSince(started), value, this.maxResultBytes);
    } catch (err) {
      frame = protocol.encode({ type: protocol.RESULT, id, ok: false, duration_ms: msSince(started), error: describeError(err) });
    } finally {
      bridge.setCurrentInvocation(null);
    }
    writeMarker(request.log_marker);
    this.send(frame);
  }

  call(event, context) {
    return handlers.callHandler(this.handler, this.style, event, context); // a value or a promise
  }
}

/**
 * When the invocation must end (epoch ms): its deadline_ms, or for an invoke sent right
 * behind init, timeout_ms from now (its clock starts when it starts, after init).
 */
function invocationDeadline(request) {
  if (request.timeout_ms !== undefined) return Date.now() + (Number(request.timeout_ms) || 0);
  return Number(request.deadline_ms) || Date.now();
}

/** The function's environment, working folder and module paths, as its handler sees them. */
function prepare(init) {
  Object.assign(process.env, init.env || {});
  const codeDir = path.resolve(init.code_dir);
  process.chdir(codeDir);
  installLayers(init.layer_dirs);
  return codeDir;
}

/**
 * The deploy's look at the function (frazil/build/handlers.py): load it as an instance would,
 * say which handler it has, write that as JSON to the spec's "result" file.
 */
async function inspectMain(specPath) {
  installSdkResolution();
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'));
  let outcome;
  try {
    const codeDir = prepare(spec);
    if (spec.handler) {
      const handler = await handlers.loadHandler(codeDir, spec.handler);
      outcome = { handler: spec.handler, arguments: handlers.callStyle(handler) };
    } else {
      outcome = await handlers.choose(codeDir);
    }
  } catch (err) {
    if (err instanceof handlers.HandlerNotFound) outcome = { missing: err.message, exports: err.exports };
    else outcome = { load_error: describeError(err) };
  }
  fs.writeFileSync(spec.result, JSON.stringify(outcome));
  process.exit(0); // whatever the module left running (timers, sockets) ends here
}

/**
 * Serve `runtime` the frames that arrive on `channel`, one by one, until it ends (`onEnd`).
 * A broken frame or channel ends this process: the platform sees the runtime exit.
 */
function serve(channel, runtime, onEnd) {
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
  channel.on('end', onEnd);
  channel.on('error', (err) => {
    platformLog(`channel error: ${err.message}`);
    process.exit(1);
  });
}

const WARM_SOURCE = "exports.main = async (event, context) => ({ warm: [event, context.remaining_ms() > 0] });\n";

/**
 * One init and one invoke of a throw-away handler, through this loop's own code, on a
 * throw-away channel (a Unix socket in /tmp); then every trace of it is undone. A generic
 * instance does this while it waits, so that a cold start does not pay for the first run of
 * the code it goes through (V8 compiles a function when it is first called; the first read
 * from a socket sets up Node's stream machinery): ~1.5 ms of CPU off every hand-over.
 * What it undoes: the module (require's cache and path cache), its folder, the working
 * directory and the environment. It writes nothing to stdout or stderr (no log markers).
 */
async function warmUp() {
  const folder = `/tmp/.frazil-warm-up-${process.pid}`;
  const file = path.join(folder, 'index.js');
  const cwd = process.cwd();
  const env = { ...process.env };
  fs.mkdirSync(folder, { mode: 0o700 });
  try {
    fs.writeFileSync(file, WARM_SOURCE);
    const [ours, theirs] = await socketPair(path.join(folder, 'channel'));
    const answered = new Promise((resolve) => {
      const decoder = new protocol.FrameDecoder();
      theirs.on('data', (data) => {
        for (const payload of decoder.feed(data)) {
          if (JSON.parse(payload.toString('utf8')).type === protocol.RESULT) resolve();
        }
      });
    });
    serve(ours, new Runtime(ours), () => {});
    theirs.write(Buffer.concat([
      protocol.encode({ type: protocol.INIT, handler: 'index.main', code_dir: folder, layer_dirs: [], env: {},
        function: 'warm-up', version: 0, memory_mb: 0 }),
      protocol.encode({ type: protocol.INVOKE, id: 'warm-up', event: { name: 'warm' }, cold: true,
        deadline_ms: Date.now() + 60000 }),
    ]));
    await answered;
    ours.destroy();
    theirs.destroy();
  } finally {
    process.chdir(cwd);
    delete require.cache[file];
    for (const key of Object.keys(Module._pathCache)) {
      if (key.includes(folder)) delete Module._pathCache[key];
    }
    for (const key of Object.keys(process.env)) {
      if (!(key in env)) delete process.env[key];
    }
    Object.assign(process.env, env);
    bridge.setCurrentInvocation(null);
    fs.rmSync(folder, { recursive: true, force: true });
  }
}

/** Two connected sockets, through a Unix socket at `where` (removed once they are). */
function socketPair(where) {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.once('connection', (ours) => {
      server.close();
      resolve([ours, theirs]);
    });
    let theirs;
    server.listen(where, () => {
      theirs = net.connect(where);
      theirs.once('error', reject);
    });
  });
}

/**
 * A generic instance (started before its function is known) waits, after its hello, until
 * the platform has attached the code: one byte on GO_FD, or EOF if it gave up (then this
 * runtime ends). The descriptor is closed before anything reads "init", so no function
 * code ever sees it. The read blocks the thread: there is nothing else to do meanwhile.
 */
function awaitGo() {
  const byte = Buffer.alloc(1);
  let got = -1;
  while (got < 0) {
    try {
      got = fs.readSync(GO_FD, byte, 0, 1, null);
    } catch (err) {
      if (err.code !== 'EINTR') throw err;
    }
  }
  fs.closeSync(GO_FD);
  if (got !== 1 || byte[0] !== GO) process.exit(0); // the platform gave up: no code, no function
}

function main(generic) {
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
  const hello = protocol.encode({
    type: protocol.HELLO,
    protocol: protocol.PROTOCOL_VERSION,
    runtime: 'nodejs20',
    pid: process.pid,
  });
  if (!generic) {
    serve(channel, runtime, () => process.exit(0)); // the platform closed the channel: done
    runtime.send(hello);
    return;
  }
  // Once the hello is on the socket, nothing runs here until the code is in place: "init"
  // waits in the socket (or in the stream's buffer) meanwhile.
  channel.write(hello, () => {
    awaitGo();
    serve(channel, runtime, () => process.exit(0));
  });
}

if (process.argv[2] === handlers.INSPECT_FLAG) {
  inspectMain(process.argv[3]);
} else if (process.argv[2] === GENERIC_FLAG) {
  process.argv.splice(2, 1); // what an instance started with its code has: no flag
  installSdkResolution();
  warmUp().then(() => main(true), (err) => {
    platformLog(`warm-up failed: ${formatThrown(err)}`);
    process.exit(1);
  });
} else {
  installSdkResolution();
  main(false);
}
