"""The messages a gateway and an invoker exchange over NATS for one sync invocation (version 1).

A call is one request and one reply:

    gateway --request--> frazil.<cluster>.invoke.<invoker>  (reply subject: the gateway's inbox
    invoker --reply----> that inbox                           for this call, unique to it)

Each message is a head (one line of JSON) and a body (raw bytes) joined by a newline:
- request: head `{"v": 1, "version": <FunctionVersion>, "record": <the new record's fields>,
  "keep_event": bool, "timeout_s": float|null, "slot_wait_s": float}`, body the event's JSON.
  The whole version travels, so the invoker runs exactly the version the gateway resolved and
  needs no database read to do it;
- reply, one of the `Reply` kinds:
  `done`: head `{"v": 1, "kind": "done", "run": <the record's fields the run filled in>}`,
  body the result's JSON text (empty unless it succeeded);
  `refused`: head `{..., "kind": "refused", "message"}`: the invoker did not start the
  invocation (its tier is full), so the gateway may try another invoker;
  `failed`: head `{..., "kind": "failed", "status", "type", "message"}`: a refusal the gateway
  relays as it is (never tried elsewhere: the invocation may have started).

Parts: NATS refuses a message over the server's `max_payload` (1 MB by default) and an event or
a result may be larger (6 MB). A longer message travels as several parts, each with the headers
`Frazil-Call` (the call's reply subject) and `Frazil-Part` (`k/n`); the first carries the reply
subject. NATS delivers one connection's messages to a subscriber in the order they were sent,
and `Assembler` joins the parts of each call, within a bound on bytes and on time.
"""
from __future__ import annotations

import enum
import functools
import time
from dataclasses import dataclass, fields

import orjson

from frazil.errors import FrazilError
from frazil.store.models import Access, FunctionVersion, InvocationRecord, InvocationStatus, Trigger, VersionStatus

WIRE_VERSION = 1
CALL_HEADER = "Frazil-Call"
PART_HEADER = "Frazil-Part"
# Room left in each part for the headers and the protocol line (NATS counts them in max_payload).
PART_HEADROOM = 4096
PARTIAL_MAX_AGE_S = 60.0  # a call whose parts stopped coming (its sender died) is forgotten then

# The record's fields a gateway fills in before the call, and those the run fills in after it.
_CALL_FIELDS = ("id", "function", "version", "mode", "created_at", "caller", "retry_of", "depth")
_RUN_FIELDS = ("status", "version", "node", "attempts", "cold", "instance_id", "started_at", "finished_at",
               "duration_ms", "error", "logs")


class WireError(ValueError):
    """A message that does not follow this protocol (another version, a broken head)."""


class Reply(str, enum.Enum):
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass
class Request:
    version: FunctionVersion
    record: InvocationRecord
    event_json: bytes
    timeout_s: float | None
    slot_wait_s: float


@dataclass
class Answer:
    """A decoded reply: `run` and `result` for DONE, `message` (and `status`, `type` for
    FAILED) otherwise."""

    kind: Reply
    run: dict | None = None
    result: bytes = b""
    message: str = ""
    status: int = 500
    type: str = "InternalError"


def _join(head: dict, body: bytes) -> bytes:
    return orjson.dumps(head) + b"\n" + body


def _split(data: bytes) -> tuple[dict, bytes]:
    head, sep, body = data.partition(b"\n")
    try:
        decoded = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"a message head is not JSON: {exc}") from None
    if not sep or not isinstance(decoded, dict) or decoded.get("v") != WIRE_VERSION:
        raise WireError(f"not a message of wire version {WIRE_VERSION}")
    return decoded, body


# --- requests -----------------------------------------------------------------------------------

def encode_request(version: FunctionVersion, record: InvocationRecord, event_json: bytes, *,
                   timeout_s: float | None, slot_wait_s: float) -> bytes:
    head = {"v": WIRE_VERSION, "version": version, "keep_event": record.event is not None,
            "record": {name: getattr(record, name) for name in _CALL_FIELDS} | {"trigger": record.trigger},
            "timeout_s": timeout_s, "slot_wait_s": slot_wait_s}
    return _join(head, event_json)


def decode_request(data: bytes) -> Request:
    head, body = _split(data)
    try:
        # A version is immutable once ready and the same one arrives call after call: built
        # once per distinct content (its JSON, re-dumped, is the key), not once per call.
        version = _version(orjson.dumps(head["version"]))
        r = head["record"]
        record = InvocationRecord(status=InvocationStatus.QUEUED, trigger=Trigger(r["trigger"]),
                                  **{name: r[name] for name in _CALL_FIELDS})
        if head["keep_event"]:
            record.event = body.decode()
        timeout_s = head["timeout_s"]
        return Request(version, record, body, None if timeout_s is None else float(timeout_s),
                       float(head["slot_wait_s"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"a malformed request ({type(exc).__name__}: {exc})") from None


_VERSION_FIELDS = tuple(f.name for f in fields(FunctionVersion))


@functools.lru_cache(maxsize=1024)
def _version(data: bytes) -> FunctionVersion:
    """The FunctionVersion a request's `version` JSON describes (FunctionVersion is frozen, so
    one object serves every call that carries the same JSON)."""
    v = orjson.loads(data)
    v = {name: v[name] for name in _VERSION_FIELDS if name in v}
    return FunctionVersion(**(v | {"status": VersionStatus(v["status"]), "access": Access(v["access"]),
                                   "env": dict(v["env"]), "triggers": tuple(v.get("triggers") or ())}))


# --- replies ------------------------------------------------------------------------------------

def encode_done(record: InvocationRecord) -> bytes:
    run = {name: getattr(record, name) for name in _RUN_FIELDS}
    body = record.result.encode() if record.result is not None else b""
    return _join({"v": WIRE_VERSION, "kind": Reply.DONE, "run": run}, body)


def encode_refused(message: str) -> bytes:
    return _join({"v": WIRE_VERSION, "kind": Reply.REFUSED, "message": message}, b"")


def encode_failed(exc: FrazilError) -> bytes:
    return _join({"v": WIRE_VERSION, "kind": Reply.FAILED, "status": exc.status, "type": exc.type,
                  "message": exc.message}, b"")


def decode_reply(data: bytes) -> Answer:
    head, body = _split(data)
    try:
        kind = Reply(head["kind"])
        if kind is Reply.DONE:
            return Answer(kind, run=dict(head["run"]), result=body)
        if kind is Reply.REFUSED:
            return Answer(kind, message=str(head["message"]))
        return Answer(kind, message=str(head["message"]), status=int(head["status"]), type=str(head["type"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"a malformed reply ({type(exc).__name__}: {exc})") from None


def apply_run(record: InvocationRecord, answer: Answer) -> None:
    """Fill `record` (the gateway's) in with what the invoker's run wrote on its copy."""
    run = answer.run
    for name in _RUN_FIELDS:
        setattr(record, name, run.get(name))
    record.status = InvocationStatus(run["status"])
    record.attempts = int(run.get("attempts") or 0)
    record.result = answer.result.decode() if answer.result else None


# --- parts --------------------------------------------------------------------------------------

async def send(nc, subject: str, data: bytes, reply: str, call: str) -> None:
    """Publish `data` to `subject`, in parts when it exceeds what the NATS server takes."""
    size = nc.max_payload - PART_HEADROOM
    if len(data) <= size:
        await nc.publish(subject, data, reply=reply)
        return
    count = -(-len(data) // size)
    for k in range(count):
        await nc.publish(subject, data[k * size:(k + 1) * size], reply=reply if k == 0 else "",
                         headers={CALL_HEADER: call, PART_HEADER: f"{k + 1}/{count}"})


# Incomplete calls an Assembler holds at once, in bytes, as a multiple of one call's bound.
PARTIAL_CALLS_HELD = 8


class Assembler:
    """Joins the parts of messages, each call's in the order they arrive (see the module
    docstring). Bounded: a call whose parts exceed `max_bytes`, or would take the parts held
    for all incomplete calls beyond PARTIAL_CALLS_HELD times that, is dropped whole (its sender
    learns nothing, as of a lost message), and a call incomplete for `PARTIAL_MAX_AGE_S` is
    forgotten at the next part of any call."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._partial: dict[str, tuple[float, str, list[bytes]]] = {}  # call -> (since, reply, parts)
        self._held = 0  # bytes of every part in _partial
        self.dropped = 0

    def feed(self, msg) -> tuple[bytes, str] | None:
        """(the whole message, its reply subject) once `msg` completes one; else None."""
        headers = msg.headers
        if not headers or PART_HEADER not in headers:
            return msg.data, msg.reply
        try:
            call = headers[CALL_HEADER]
            k, n = (int(x) for x in headers[PART_HEADER].split("/"))
        except (KeyError, ValueError):
            self.dropped += 1
            return None
        now = time.monotonic()
        self._forget_stale(now)
        since, reply, parts = self._partial.get(call, (now, msg.reply, []))
        if (k != len(parts) + 1 or k > n or sum(map(len, parts)) + len(msg.data) > self.max_bytes
                or self._held + len(msg.data) > PARTIAL_CALLS_HELD * self.max_bytes):
            self._forget(call)  # a part missing, out of order, or too much: the call is lost
            self.dropped += 1
            return None
        if k == n:
            self._forget(call)
            return b"".join([*parts, msg.data]), reply
        parts.append(msg.data)
        self._held += len(msg.data)
        self._partial[call] = (since, reply, parts)
        return None

    def _forget(self, call: str) -> None:
        _, _, parts = self._partial.pop(call, (0.0, "", []))
        self._held -= sum(map(len, parts))

    def _forget_stale(self, now: float) -> None:
        for call in [c for c, (since, _, _) in self._partial.items() if now - since > PARTIAL_MAX_AGE_S]:
            self._forget(call)
            self.dropped += 1

    @property
    def pending(self) -> int:
        return len(self._partial)
