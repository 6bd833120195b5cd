"""Text that every store can hold, and back: what a function prints, returns or raises is
stored whatever characters it holds, and read back exactly as it was.

PostgreSQL refuses U+0000 in a text column (SQLite keeps it), and neither driver can encode a
lone surrogate, so a text column written with arbitrary output goes through `to_column` and
comes back through `from_column`. Storable text is stored as it is (the common case costs a
scan or two); other text is stored as MARK followed by its ASCII JSON string encoding, in
which U+0000 is the six characters `\\u0000`. Text that itself starts with MARK is encoded the
same way, so a stored value starting with MARK is always an encoded one and decoding is exact.

JSON texts (results, errors, events) never hold a raw U+0000 (JSON escapes it) nor start with
MARK (a JSON text starts with whitespace or a value), so they pass through unchanged.
"""
from __future__ import annotations

import json

# A Unicode noncharacter: never assigned, so output starting with it is rare, and safe anyway.
MARK = "\ufdd0"


def storable(text: str) -> bool:
    """Whether every store keeps `text` as it is."""
    if "\x00" in text or text.startswith(MARK):
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def to_column(text: str | None) -> str | None:
    """`text` in a form every store accepts (see the module docstring)."""
    if text is None or storable(text):
        return text
    # The standard library's encoder: ASCII output, and it takes lone surrogates (orjson does not).
    return MARK + json.dumps(text)


def from_column(stored: str | None) -> str | None:
    """The text `to_column` was given."""
    if stored is None or not stored.startswith(MARK):
        return stored
    return json.loads(stored[len(MARK):])


# SQLSTATEs of PostgreSQL refusing a character in text it was sent (U+0000, or one the
# database's encoding lacks).
_UNSTORABLE_CHARACTER_STATES = {"22021", "22P05"}


def refused_character(exc: BaseException) -> bool:
    """Whether `exc` is the database refusing a character of the text it was sent: the caller's
    input, to be answered 400 wherever it came from (a URL parameter, a name)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "sqlstate", None) in _UNSTORABLE_CHARACTER_STATES:
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__
    return False
