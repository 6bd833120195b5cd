'use strict';
// The wire protocol between the platform and a runtime, version 2: the same bytes as
// frazil/runtimes/protocol.py (read its docstring for every message). A frame is a 4-byte
// big-endian length followed by that many bytes of UTF-8 JSON (one object with a "type").
// Node standard library only: this file runs inside the sandbox.

const PROTOCOL_VERSION = 2;
const HEADER_BYTES = 4;
const MAX_FRAME_BYTES = 64 * 1024 * 1024;
// The largest sdk_call the platform accepts (protocol.py's MAX_SDK_CALL_BYTES).
const MAX_SDK_CALL_BYTES = 8 * 1024 * 1024 + 256 * 1024;

const HELLO = 'hello';
const INIT = 'init';
const READY = 'ready';
const INIT_ERROR = 'init_error';
const INVOKE = 'invoke';
const RESULT = 'result';
const SDK_CALL = 'sdk_call';
const SDK_REPLY = 'sdk_reply';

class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** One frame from a JSON text (already encoded: the loop splices pre-encoded results). */
function frameText(json) {
  const size = Buffer.byteLength(json, 'utf8');
  if (size > MAX_FRAME_BYTES) {
    throw new ProtocolError(`frame of ${size} bytes exceeds ${MAX_FRAME_BYTES}`);
  }
  const buf = Buffer.allocUnsafe(HEADER_BYTES + size);
  buf.writeUInt32BE(size, 0);
  buf.write(json, HEADER_BYTES, 'utf8');
  return buf;
}

/** One frame from a JSON-able object. */
function encode(message) {
  return frameText(JSON.stringify(message));
}

/**
 * Incremental decoder: feed Buffers as they arrive, get complete payloads (Buffers) back.
 * Chunks are kept in a list and joined once per frame, so a large frame arriving in many
 * small reads is copied once, not once per read.
 */
class FrameDecoder {
  constructor(maxFrame = MAX_FRAME_BYTES) {
    this.max = maxFrame;
    this.chunks = [];
    this.length = 0;
  }

  feed(data) {
    if (data.length) {
      this.chunks.push(data);
      this.length += data.length;
    }
    const frames = [];
    for (;;) {
      if (this.length < HEADER_BYTES) break;
      const head = this._peek(HEADER_BYTES);
      const size = head.readUInt32BE(0);
      if (size > this.max) throw new ProtocolError(`frame of ${size} bytes exceeds ${this.max}`);
      if (this.length < HEADER_BYTES + size) break;
      const all = this._take(HEADER_BYTES + size);
      frames.push(all.subarray(HEADER_BYTES));
    }
    return frames;
  }

  _peek(n) {
    if (this.chunks[0].length >= n) return this.chunks[0];
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined;
  }

  _take(n) {
    let joined = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const out = joined.subarray(0, n);
    joined = joined.subarray(n);
    this.chunks = joined.length ? [joined] : [];
    this.length -= n;
    return out;
  }
}

module.exports = {
  PROTOCOL_VERSION,
  MAX_FRAME_BYTES,
  MAX_SDK_CALL_BYTES,
  HELLO,
  INIT,
  READY,
  INIT_ERROR,
  INVOKE,
  RESULT,
  SDK_CALL,
  SDK_REPLY,
  ProtocolError,
  encode,
  frameText,
  FrameDecoder,
};
