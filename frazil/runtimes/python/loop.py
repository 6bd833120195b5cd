"""The Python runtime loop that runs inside an instance (standard library only).

It says hello, receives "init" (imports the handler once), then serves "invoke" frames one
at a time until the channel closes. Module globals and files in /tmp survive between
invocations because this process does. See protocol.py for the messages.
"""
import fcntl
import collections
import importlib.util
import itertools
import json
import os
import struct
import sys
import termios
import threading
import time
import traceback

CHANNEL_FD = 3
READ_BUFFER_BYTES = 16384
RUNTIMES_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON_RUNTIME_DIR = os.path.join(RUNTIMES_ROOT, "python")


def _load_private(name, path):
    # Loaded under a private name so a function's own `protocol.py` or `handlers.py` still imports.
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


protocol = _load_private("_frazil_protocol", os.path.join(RUNTIMES_ROOT, "protocol.py"))
handlers = _load_private("_frazil_handlers", os.path.join(PYTHON_RUNTIME_DIR, "handlers.py"))


class ChannelClosed(Exception):
    """The platform closed the channel (the instance is being stopped)."""


class Channel:
    """The runtime's end of the protocol socketpair.

    send() may be called from any thread. Reading is shared, because more than the main loop
    waits for frames: an SDK call made by the handler (on the main thread, on a thread it
    started, or from an async task through the pump thread) waits for its sdk_reply while the
    handler runs. Whoever waits takes the reader role, reads one frame, routes it and lets go:
    an sdk_reply goes to the call waiting for it, any other frame is queued for the main loop.

    Invariants, guarded by `_cond`: at most one thread reads the socket (`_reading`); a sync
    call's id is in `_sync_calls` until its reply is in `_replies`; an async call's id maps to
    its callback in `_async_calls` until the reply is routed; `_frames` holds the frames the
    main loop has not taken yet. A reply for an unknown call (one whose waiter gave up) is
    dropped.
    """

    def __init__(self, fd):
        # Buffered: a frame's length prefix and its payload come in one read, not two.
        # Only the thread in the reader role reads it (see `_wait_for`).
        self._reader = os.fdopen(fd, "rb", buffering=READ_BUFFER_BYTES, closefd=False)
        self._fd = fd
        self._send_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._reading = False
        self._closed = False
        self._frames = collections.deque()
        self._sync_calls = set()
        self._replies = {}
        self._async_calls = {}
        self._call_ids = itertools.count(1)
        self._pump_thread = None

    def send(self, message):
        self._write(protocol.encode(message))

    def send_raw(self, payload):
        self._write(protocol.frame(payload))

    def _write(self, data):
        with self._send_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]

    def recv(self):
        """The next frame for the main loop (not an sdk_reply); None once the channel closed."""
        try:
            return self._wait_for(self._next_frame)
        except ChannelClosed:
            return None

    def _next_frame(self):
        return self._frames.popleft() if self._frames else None

    # --- SDK calls ------------------------------------------------------------------------

    def call(self, message):
        """Send an sdk_call and block until its sdk_reply; raises ChannelClosed."""
        call_id = next(self._call_ids)
        data = _sdk_call_frame(message, call_id)
        with self._cond:
            if self._closed:
                raise ChannelClosed()
            self._sync_calls.add(call_id)
        self._write(data)
        return self._wait_for(lambda: self._replies.pop(call_id, None))

    def call_async(self, message, on_reply):
        """Send an sdk_call; `on_reply(reply or None)` runs on the pump thread when its reply
        arrives (None: the channel closed first). Never blocks on the reply."""
        call_id = next(self._call_ids)
        data = _sdk_call_frame(message, call_id)
        with self._cond:
            if self._closed:
                raise ChannelClosed()
            self._async_calls[call_id] = on_reply
            if self._pump_thread is None:
                self._pump_thread = threading.Thread(target=self._pump, name="frazil-sdk-pump", daemon=True)
                self._pump_thread.start()
            self._cond.notify_all()  # wake the pump
        self._write(data)

    def _pump(self):
        # Reads for the async calls while any is pending; idle otherwise. One per process.
        while True:
            with self._cond:
                while not self._async_calls and not self._closed:
                    self._cond.wait()
            try:
                self._wait_for(lambda: None if self._async_calls else True)
            except ChannelClosed:
                with self._cond:
                    orphans, self._async_calls = list(self._async_calls.values()), {}
                for on_reply in orphans:
                    on_reply(None)
                return

    # --- the reader role --------------------------------------------------------------------

    def _wait_for(self, ready):
        """Wait until ready() (checked under the lock) gives something, reading frames
        whenever no other thread is; raises ChannelClosed once nothing more can come."""
        while True:
            with self._cond:
                while True:
                    value = ready()
                    if value is not None:
                        return value
                    if self._closed:
                        raise ChannelClosed()
                    if not self._reading:
                        self._reading = True
                        break
                    self._cond.wait()
            message = None
            try:
                payload = protocol.read_frame(self._reader)
                if payload is not None:
                    message = json.loads(payload)
            except Exception:
                payload = None  # a broken channel ends the instance, like a closed one
            with self._cond:
                self._reading = False
                if payload is None:
                    self._closed = True
                else:
                    self._route(message)
                self._cond.notify_all()

    def _route(self, message):
        if message.get("type") != protocol.SDK_REPLY:
            self._frames.append(message)
            return
        call_id = message.get("call")
        if call_id in self._sync_calls:
            self._sync_calls.discard(call_id)
            self._replies[call_id] = message
            return
        on_reply = self._async_calls.pop(call_id, None)
        if on_reply is not None:
            on_reply(message)


class CallTooLarge(ValueError):
    """An SDK call too large for the channel: the platform would end the instance for it."""


def _sdk_call_frame(message, call_id):
    """The frame of one sdk_call: its type first (the platform reads a frame's kind from its
    first bytes), and no larger than the platform accepts."""
    payload = json.dumps({"type": protocol.SDK_CALL, "call": call_id, **message}, separators=(",", ":"),
                         ensure_ascii=False).encode()
    if len(payload) > protocol.MAX_SDK_CALL_BYTES:
        raise CallTooLarge(f"the SDK call is {len(payload)} bytes; the limit is {protocol.MAX_SDK_CALL_BYTES}")
    return protocol.frame(payload)


class SdkBridge:
    """What `frazil_sdk` talks through: the channel plus the running invocation's credential.

    The loop runs as __main__, so the SDK cannot import it by name: the bridge is published in
    sys.modules under BRIDGE_MODULE. `token` is the invocation's sdk_token while an invocation
    runs and None between invocations, so a call made after `main` returned is refused here,
    and one replayed with an old token is refused by the platform.
    """

    def __init__(self, channel):
        self.channel = channel
        self.token = None
        self.deadline_ms = None

    def begin(self, request):
        self.token = request.get("sdk_token")
        self.deadline_ms = request.get("deadline_ms")

    def end(self):
        self.token = None
        self.deadline_ms = None


BRIDGE_MODULE = "_frazil_sdk_bridge"


class Context:
    """What a handler gets as `context`. The attributes of AWS Lambda's context that frazil
    has are there under Lambda's names too (docs/moving.md): aws_request_id, function_version
    (a string, as Lambda's) and memory_limit_in_mb."""

    def __init__(self, invocation_id, function_name, version, memory_mb, cold, deadline_ms, user=None):
        self.invocation_id = invocation_id
        self.function_name = function_name
        self.version = version
        self.memory_mb = memory_mb
        self.cold = cold
        self.user = user  # {"id", "username"} of the end user who called, else None
        self._deadline_ms = deadline_ms
        self.aws_request_id = invocation_id
        self.function_version = str(version)
        self.memory_limit_in_mb = memory_mb

    def remaining_ms(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))

    get_remaining_time_in_millis = remaining_ms

    def __repr__(self):
        return (f"Context(invocation_id={self.invocation_id!r}, function_name={self.function_name!r}, "
                f"version={self.version}, memory_mb={self.memory_mb}, cold={self.cold}, user={self.user!r})")


def invocation_deadline_ms(request):
    """When the invocation must end (epoch ms): its deadline_ms, or for an invoke sent right
    behind init, timeout_ms from now (its clock starts when it starts, after init)."""
    if "timeout_ms" in request:
        return time.time() * 1000 + request["timeout_ms"]
    return request["deadline_ms"]


def prepare(init):
    """The function's environment, working folder and import path, as its handler sees them."""
    os.environ.update(init.get("env") or {})
    code_dir = init["code_dir"]
    os.chdir(code_dir)
    # The project first, then its dependency layers, then the SDK; stdlib stays ahead.
    layer_dirs = init.get("layer_dirs", ())
    sys.path[:0] = [code_dir, *layer_dirs, PYTHON_RUNTIME_DIR]
    if layer_dirs:
        forget_shadowed(code_dir, layer_dirs)


def forget_shadowed(code_dir, layer_dirs):
    """Forget the modules imported from the layers before the code came (an instance that
    imported its layers ahead: frazil.sandbox.layer_ready) that a top-level module or package
    of the code shadows: with the code first on sys.path, the function's own `utils` or
    `config` is what its imports find on the plain path, so here too."""
    own = set()
    for entry in os.scandir(code_dir):
        name, ext = os.path.splitext(entry.name)
        if ext in (".py", ".pyc", ".so"):  # (an extension module: name.cpython-311-....so)
            own.add(name.partition(".")[0])
        elif entry.is_dir(follow_symlinks=False):
            own.add(entry.name)
    roots = tuple(os.path.join(layer, "") for layer in layer_dirs)
    for name in [n for n in sys.modules if n.partition(".")[0] in own]:
        spec = getattr(sys.modules[name], "__spec__", None)
        places = [spec.origin or ""] + list(spec.submodule_search_locations or ()) if spec else []
        if any(place.startswith(roots) for place in places):
            del sys.modules[name]


def describe_error(exc):
    # Cut to a size every frame that carries an error accepts (protocol.ERROR_TEXT_CHARS).
    return {
        "type": protocol.cut_text(type(exc).__name__, 200),
        "message": protocol.cut_text(str(exc)),
        "stack": protocol.cut_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                                   keep_end=True),
    }


class Runtime:
    def __init__(self, channel):
        self.channel = channel
        self.handler = None
        self.arguments = 2  # how many of (event, context) the handler takes (handlers.call_style)
        self.meta = {}
        self.max_result_bytes = 6 * 1024 * 1024
        self.loop = None  # created on the first async handler, then reused
        self.sdk = SdkBridge(channel)
        sys.modules[BRIDGE_MODULE] = self.sdk
        self.duration_ms = 0.0  # how long the last invocation's handler ran (the result says it)

    def initialize(self, init):
        self.meta = init
        self.max_result_bytes = init.get("max_result_bytes", self.max_result_bytes)
        prepare(init)
        self.handler = handlers.load_handler(init["code_dir"], init["handler"])
        self.arguments = handlers.call_style(self.handler)

    def invoke(self, request):
        request["deadline_ms"] = invocation_deadline_ms(request)  # fixed now: what all below read
        context = Context(
            request["id"], self.meta.get("function"), self.meta.get("version"),
            self.meta.get("memory_mb"), request.get("cold", False), request["deadline_ms"], request.get("user"),
        )
        self.sdk.begin(request)
        started = time.perf_counter()
        try:
            value = self.handler(*(request.get("event"), context)[:self.arguments])
            if hasattr(value, "__await__"):  # a coroutine or any awaitable
                if self.loop is None:
                    import asyncio  # only for async handlers: it costs an exec'd interpreter ~40 ms

                    self.loop = asyncio.new_event_loop()
                value = self.loop.run_until_complete(value)
        except Exception as exc:  # the function's error, reported; the instance stays usable
            return {"type": protocol.RESULT, "id": request["id"], "ok": False, "error": describe_error(exc)}
        finally:
            self.duration_ms = round((time.perf_counter() - started) * 1000, 3)
            self.sdk.end()
        return self._result(request["id"], value)

    def _result(self, invocation_id, value):
        try:
            encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as exc:
            return {"type": protocol.RESULT, "id": invocation_id, "ok": False, "error": {
                "type": "ResultNotSerializable",
                "message": f"the result cannot be encoded as JSON: {exc}",
                "stack": "",
            }}
        encoded = encoded.encode()
        if len(encoded) > self.max_result_bytes:  # in bytes, as the platform counts
            return {"type": protocol.RESULT, "id": invocation_id, "ok": False, "error": {
                "type": "ResultTooLarge",
                "message": f"the result is {len(encoded)} bytes; the limit is {self.max_result_bytes}",
                "stack": "",
            }}
        return encoded


def flush_output(marker):
    """Flush what the function printed, then write `marker` after it, so the platform knows
    where this invocation's output ends. When the pipe is already empty the platform has
    read, and so attributed, every byte: the marker is skipped (a syscall here, a wake-up
    and a read there). Returns whether the marker was written."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if not marker:
        return False
    try:
        pending = struct.unpack("i", fcntl.ioctl(1, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        pending = 1
    if pending == 0:
        return False
    os.write(1, marker.encode())
    return True


def serve(channel, before_init=None):
    """Say hello, then serve until the channel closes. `before_init()`, when given, runs
    between hello and reading "init" and may stop the loop by returning False: a runtime
    started ahead of time waits there until its function's code is in place."""
    runtime = Runtime(channel)
    channel.send({"type": protocol.HELLO, "protocol": protocol.PROTOCOL_VERSION, "runtime": "python3.11",
                  "pid": os.getpid()})
    if before_init is not None and not before_init():
        return
    init = channel.recv()
    if init is None:
        return
    try:
        runtime.initialize(init)
    except BaseException as exc:  # a broken module may raise anything, even SystemExit
        marked = flush_output(init.get("log_marker"))
        channel.send({"type": protocol.INIT_ERROR, "error": describe_error(exc), "marker": marked})
        return
    marked = flush_output(init.get("log_marker"))
    channel.send({"type": protocol.READY, "marker": marked})
    while True:
        request = channel.recv()
        if request is None:
            return
        outcome = runtime.invoke(request)
        marked = flush_output(request.get("log_marker"))
        if isinstance(outcome, bytes):
            # The result is already JSON: splice it in instead of encoding it twice.
            head = json.dumps({"type": protocol.RESULT, "id": request["id"], "ok": True, "marker": marked,
                               "duration_ms": runtime.duration_ms}, separators=(",", ":"), ensure_ascii=False).encode()
            channel.send_raw(head[:-1] + b',"result":' + outcome + b"}")
        else:
            outcome["marker"] = marked
            outcome["duration_ms"] = runtime.duration_ms
            channel.send(outcome)


def main(before_init=None):
    """The runtime's start (a Python zygote's child calls it too, with `before_init`)."""
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True, errors="backslashreplace")
    serve(Channel(CHANNEL_FD), before_init)


def inspect_main(spec_path):
    """The deploy's look at the function (frazil.build.handlers): load it as an instance
    would, say which handler it has, write that as JSON to the spec's "result" file."""
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        prepare(spec)
        if spec.get("handler"):
            handler = handlers.load_handler(spec["code_dir"], spec["handler"])
            outcome = {"handler": spec["handler"], "arguments": handlers.call_style(handler)}
        else:
            outcome = handlers.choose(spec["code_dir"])
    except handlers.HandlerNotFound as exc:
        outcome = {"missing": str(exc), "exports": exc.exports}
    except BaseException as exc:  # the module's own failure at import, even SystemExit
        outcome = {"load_error": describe_error(exc)}
    with open(spec["result"], "w") as f:
        json.dump(outcome, f)
    flush_output(None)
    os._exit(0)  # whatever the module left running (a thread) ends here


if __name__ == "__main__":
    if sys.argv[1:2] == [handlers.INSPECT_FLAG]:
        inspect_main(sys.argv[2])
    else:
        main()
