"""Reading request bodies within a size limit."""
from __future__ import annotations

from fastapi import Request

from frazil.errors import BadRequest, LengthRequired, PayloadTooLarge


def declared_length(request: Request, limit: int, what: str) -> int | None:
    """The Content-Length, refused with 413 when over `limit` (the server holds the client
    to it: a body longer than declared is a protocol error)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    try:
        size = int(declared)
    except ValueError:
        raise BadRequest("the Content-Length header is not a number") from None
    if size > limit:
        raise PayloadTooLarge(f"{what} is {size} bytes; the limit is {limit} bytes")
    return size


def require_length(request: Request, limit: int, what: str) -> int:
    size = declared_length(request, limit, what)
    if size is None:
        raise LengthRequired(f"{what} needs a Content-Length header")
    return size


async def read_limited(request: Request, limit: int, what: str = "the request body") -> bytes:
    """The whole body, refused with 413 as soon as it exceeds `limit` bytes."""
    declared_length(request, limit, what)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"{what} exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
