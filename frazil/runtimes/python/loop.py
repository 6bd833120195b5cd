"""The Python runtime loop that runs inside an instance (standard library only).

It says hello, receives "init" (imports the handler once), then serves "invoke" frames one
at a time until the channel closes. Module globals and files in /tmp survive between
invocations because this process does. See protocol.py for the messages.
"""
import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import sys
import threading
import time
import traceback

CHANNEL_FD = 3
RUNTIMES_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON_RUNTIME_DIR = os.path.join(RUNTIMES_ROOT, "python")


def _load_protocol():
    # Loaded under a private name so a function's own `protocol.py` still imports.
    spec = importlib.util.spec_from_file_location("_frazil_protocol", os.path.join(RUNTIMES_ROOT, "protocol.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["_frazil_protocol"] = module
    return module


protocol = _load_protocol()


class Channel:
    """The runtime's end of the protocol socketpair. send() may be called from any thread."""

    def __init__(self, fd):
        self._reader = os.fdopen(fd, "rb", buffering=0, closefd=False)
        self._fd = fd
        self._send_lock = threading.Lock()

    def send(self, message):
        data = protocol.encode(message)
        with self._send_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]

    def send_raw(self, payload):
        data = protocol.frame(payload)
        with self._send_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]

    def recv(self):
        payload = protocol.read_frame(self._reader)
        return None if payload is None else json.loads(payload)


class Context:
    """What a handler gets as `context`."""

    def __init__(self, invocation_id, function_name, version, memory_mb, cold, deadline_ms):
        self.invocation_id = invocation_id
        self.function_name = function_name
        self.version = version
        self.memory_mb = memory_mb
        self.cold = cold
        self._deadline_ms = deadline_ms

    def remaining_ms(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))

    get_remaining_time_in_millis = remaining_ms

    def __repr__(self):
        return (f"Context(invocation_id={self.invocation_id!r}, function_name={self.function_name!r}, "
                f"version={self.version}, memory_mb={self.memory_mb}, cold={self.cold})")


def describe_error(exc):
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "stack": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def load_handler(spec):
    """'index.main' -> index.main; 'src/app.handler' and 'pkg.mod.fn' work too."""
    module_path, sep, attr = spec.rpartition(".")
    if not sep or not module_path or not attr:
        raise ValueError(f"handler {spec!r} must look like 'module.function'")
    module_name = module_path.replace("/", ".").strip(".")
    module = importlib.import_module(module_name)
    try:
        handler = getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no function {attr!r}") from None
    if not callable(handler):
        raise TypeError(f"{spec} is not callable")
    return handler


class Runtime:
    def __init__(self, channel):
        self.channel = channel
        self.handler = None
        self.meta = {}
        self.max_result_bytes = 6 * 1024 * 1024
        self.loop = None  # created on the first async handler, then reused

    def initialize(self, init):
        self.meta = init
        self.max_result_bytes = init.get("max_result_bytes", self.max_result_bytes)
        os.environ.update(init.get("env") or {})
        code_dir = init["code_dir"]
        os.chdir(code_dir)
        # The project first, then its dependency layers, then the SDK; stdlib stays ahead.
        sys.path[:0] = [code_dir, *init.get("layer_dirs", ()), PYTHON_RUNTIME_DIR]
        self.handler = load_handler(init["handler"])

    def invoke(self, request):
        context = Context(
            request["id"], self.meta.get("function"), self.meta.get("version"),
            self.meta.get("memory_mb"), request.get("cold", False), request["deadline_ms"],
        )
        try:
            value = self.handler(request.get("event"), context)
            if inspect.isawaitable(value):
                if self.loop is None:
                    self.loop = asyncio.new_event_loop()
                value = self.loop.run_until_complete(value)
        except Exception as exc:  # the function's error, reported; the instance stays usable
            return {"type": protocol.RESULT, "id": request["id"], "ok": False, "error": describe_error(exc)}
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
        if len(encoded) > self.max_result_bytes:
            return {"type": protocol.RESULT, "id": invocation_id, "ok": False, "error": {
                "type": "ResultTooLarge",
                "message": f"the result is {len(encoded)} bytes; the limit is {self.max_result_bytes}",
                "stack": "",
            }}
        return encoded


def flush_output(marker):
    """Everything the function printed reaches the pipe before the marker does."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if marker:
        os.write(1, marker.encode())


def serve(channel):
    runtime = Runtime(channel)
    channel.send({"type": protocol.HELLO, "protocol": protocol.PROTOCOL_VERSION, "runtime": "python3.11",
                  "pid": os.getpid()})
    init = channel.recv()
    if init is None:
        return
    try:
        runtime.initialize(init)
    except BaseException as exc:  # a broken module may raise anything, even SystemExit
        flush_output(init.get("log_marker"))
        channel.send({"type": protocol.INIT_ERROR, "error": describe_error(exc)})
        return
    flush_output(init.get("log_marker"))
    channel.send({"type": protocol.READY})
    while True:
        request = channel.recv()
        if request is None:
            return
        outcome = runtime.invoke(request)
        flush_output(request.get("log_marker"))
        if isinstance(outcome, str):
            # The result is already JSON: splice it in instead of encoding it twice.
            head = json.dumps({"type": protocol.RESULT, "id": request["id"], "ok": True})
            channel.send_raw(f'{head[:-1]},"result":{outcome}}}'.encode())
        else:
            channel.send(outcome)


def main():
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True, errors="backslashreplace")
    serve(Channel(CHANNEL_FD))


if __name__ == "__main__":
    main()
