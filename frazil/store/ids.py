"""Identifiers: time-ordered, so sorting by id sorts by creation."""
import secrets
import time


def new_id() -> str:
    """48 bits of milliseconds then 64 random bits, as 28 hex characters."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(8)}"
