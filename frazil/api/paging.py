"""Pages of every list route: `?limit=N&cursor=C` in, `next_cursor` out while more remain.

A cursor is opaque to clients: URL-safe base64 of a small JSON object naming the list it
belongs to (`kind`) and the position after the last item served. Positions are keyset values
(an id, a name, a version number), so a page never repeats or skips an item when others are
added or deleted meanwhile. A cursor that does not decode, or belongs to another list, is a 400.

Each route asks its store for `limit + 1` items: the extra one only tells that more remain.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any, Sequence, TypeVar

import orjson

from frazil.errors import BadRequest

T = TypeVar("T")


def encode(kind: str, position: Any) -> str:
    raw = orjson.dumps({"k": kind, "p": position})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str | None, kind: str, expect: type | tuple[type, ...]) -> Any:
    """The position `cursor` holds (None for no cursor, or an empty one); BadRequest for a cursor that is not one
    of `kind`'s, or whose position is not an `expect`."""
    if not cursor:  # absent, or empty (`cursor=`, as a client passing on a null next_cursor sends)
        return None
    try:
        body = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        body = None
    position = body.get("p") if isinstance(body, dict) and body.get("k") == kind else None
    if not isinstance(position, expect) or isinstance(position, bool):
        raise BadRequest(f"invalid cursor {cursor[:64]!r}: pass the next_cursor of the previous page "
                         "of this same list")
    return position


def split(items: Sequence[T], limit: int | None) -> tuple[list[T], bool]:
    """The page (the first `limit` items) and whether more remain, from `limit + 1` items."""
    if limit is None:
        return list(items), False
    return list(items[:limit]), len(items) > limit
