"""What JSON the platform takes from callers: how deep and how wide it may be, and - for the JSON
it stores to query (data records, and the values filters compare them with) - which strings and
numbers every store hands back unchanged.

Depth and width (`JsonBounds`, from `Settings.max_json_depth` / `max_json_width`) protect what
reads the JSON after us: the Python runtime's `json.loads` recurses once per level and dies near
1,000 levels, and SQLite's merge of a patch nests one SQL call per 50 fields. Both are checked
without recursion, so no input can raise RecursionError here.

The storable rule (`storable=True`), for records and filters:
- no string or key may hold U+0000: PostgreSQL refuses it in text and in JSONB.
- every number is finite with a magnitude below 2**63 (so integers from -(2**63-1) to 2**63-1,
  and floats under 9.22e18). PostgreSQL's JSONB keeps numbers as exact decimals and hands
  1e20 back as the integer 100000000000000000000, which orjson (64-bit integers) cannot
  encode; SQLite reads integers beyond 64 bits as floats; orjson itself decodes integers
  beyond 64 bits as floats. Below 2**63 all three agree. (NaN and infinities are not JSON.)
"""
from __future__ import annotations

from dataclasses import dataclass

from frazil.errors import BadRequest
from frazil.settings import Settings

# Numbers in stored JSON must have a magnitude below this (see the module docstring).
STORED_MAGNITUDE_LIMIT = 2**63
_DEPTH_VARIABLE = Settings.env_name("max_json_depth")
_WIDTH_VARIABLE = Settings.env_name("max_json_width")


@dataclass(frozen=True)
class JsonBounds:
    """The deepest nesting of arrays and objects, and the most members of one array or object."""

    depth: int
    width: int

    @classmethod
    def from_settings(cls, settings) -> "JsonBounds":
        return cls(settings.max_json_depth, settings.max_json_width)

    def may_exceed(self, raw: bytes) -> bool:
        """Whether the JSON text `raw` could break a bound: it cannot unless it holds more
        brackets than the depth or more commas than the width (a C-speed count that spares
        walking ordinary events)."""
        return (raw.count(b"[") + raw.count(b"{") > self.depth) or raw.count(b",") >= self.width


def check_json(value, what: str, bounds: JsonBounds, *, storable: bool = False) -> None:
    """Raise BadRequest when the decoded JSON `value` breaks `bounds`, or - with `storable` -
    holds a string or number the stores cannot keep (see the module docstring). `what` names
    the value in the message ("the event", "the record")."""
    if not isinstance(value, (dict, list)):
        if storable:
            check_storable_scalar(value, what)
        return
    # An explicit stack of (container, depth, path): no recursion, whatever the nesting.
    stack = [(value, 1, "")]
    while stack:
        container, depth, path = stack.pop()
        if depth > bounds.depth:
            raise BadRequest(f"{what} is nested deeper than {bounds.depth} levels (at {path or 'the top'}); "
                             f"the limit is a setting ({_DEPTH_VARIABLE})")
        if len(container) > bounds.width:
            raise BadRequest(f"{what} has {len(container)} members in one "
                             f"{'object' if isinstance(container, dict) else 'array'} (at {path or 'the top'}); "
                             f"the limit is {bounds.width} ({_WIDTH_VARIABLE})")
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in items:
            if storable and isinstance(key, str) and "\x00" in key:
                raise BadRequest(f"{what}: the key {_show(key)} at {path or 'the top'} holds the character "
                                 "U+0000, which the data store cannot keep")
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1, f"{path}.{key}" if path else str(key)))
            elif storable:
                check_storable_scalar(item, what, f"{path}.{key}" if path else str(key))


def check_storable_scalar(value, what: str, path: str = "") -> None:
    """Raise BadRequest for a string holding U+0000 or a number outside the stored range."""
    where = f" at {path}" if path else ""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest(f"{what}: the string{where} holds the character U+0000, which the data store "
                             "cannot keep")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not abs(value) < STORED_MAGNITUDE_LIMIT:  # `not <` also catches NaN
            raise BadRequest(f"{what}: the number {value!r}{where} is out of range: stored numbers must "
                             f"have a magnitude below 2**63 ({float(STORED_MAGNITUDE_LIMIT):.4g}), which "
                             "every store and the JSON encoder keep exactly")


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")
