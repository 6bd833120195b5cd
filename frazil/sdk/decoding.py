"""Decoding a proxied response body within a size cap, so that a compression bomb costs the
platform no more than the cap.

An upstream chooses what it sends, so the proxy reads the raw body and decodes it itself,
under these rules (`BodyDecoder`):

- at most ONE content-coding layer (`gzip`/`x-gzip` or `deflate`; `identity` is no layer).
  Two or more (`Content-Encoding: gzip, gzip`, or two headers) are refused with
  `EncodingRefused` before any byte is decoded: each layer multiplies what a few bytes expand
  to, and no real server needs two;
- a coding the proxy does not know (`br`, `zstd`: the proxy never asks for them) is not
  decoded: the body reaches the function as sent, with its Content-Encoding header;
- the cap applies to the decoded bytes WHILE decoding: zlib is asked for at most `STEP` bytes
  per call (`max_length`), the running total is checked after each call, and decoding stops
  with `ResponseTooLarge` as soon as it passes the cap. So no single call on the event loop
  expands more than `STEP` bytes, and the platform never holds more than cap + STEP decoded
  bytes of one response;
- the raw (encoded) body is capped at the same size too.

A gzip body may hold several members one after the other (RFC 1952); they are one layer and
are decoded in turn, under the same cap.
"""
from __future__ import annotations

import zlib
from typing import Iterator

from frazil.sdk.errors import EncodingRefused, ResponseTooLarge

STEP = 64 * 1024  # decoded bytes per zlib call at most
GZIP = "gzip"
DEFLATE = "deflate"
CODINGS = {"gzip": GZIP, "x-gzip": GZIP, "deflate": DEFLATE}
IDENTITY = "identity"


def content_codings(header_values: list[str]) -> list[str]:
    """The content codings of a response, in the order they were applied, from every
    Content-Encoding header it has (lower-cased, `identity` dropped)."""
    codings = []
    for value in header_values:
        for item in value.split(","):
            coding = item.strip().lower()
            if coding and coding != IDENTITY:
                codings.append(coding)
    return codings


class BodyDecoder:
    """Feed raw chunks in, get decoded pieces out, never more than `limit` bytes in all.

    `decodes` tells whether this decoder changes the body (a known coding): when it does,
    the answer to the function drops Content-Encoding and Content-Length."""

    def __init__(self, codings: list[str], limit: int, *, what: str):
        if len(codings) > 1:
            raise EncodingRefused(f"{what} is encoded {len(codings)} times (Content-Encoding: {', '.join(codings)}); "
                                  "the proxy decodes at most one layer", codings=codings)
        self.limit = limit
        self.what = what
        self.coding = CODINGS.get(codings[0]) if codings else None
        self.decodes = self.coding is not None
        self.raw_bytes = 0
        self.decoded_bytes = 0
        self._inflate = self._new_inflater() if self.decodes else None
        self._started = False  # deflate: whether the zlib wrapper was tried on the first bytes

    def _new_inflater(self, raw_deflate: bool = False):
        if self.coding == GZIP:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is meant to be zlib-wrapped (RFC 9110), but some servers send raw deflate.
        return zlib.decompressobj(-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of the next raw chunk, each at most `STEP` bytes."""
        self.raw_bytes += len(data)
        if self.raw_bytes > self.limit:
            self._too_large(decoded=False)
        if not self.decodes:
            self._count(len(data))
            if data:
                yield data
            return
        yield from self._inflate_all(data)

    def finish(self) -> Iterator[bytes]:
        """What the decoder still holds once the raw body has ended."""
        if self.decodes:
            yield from self._inflate_all(b"")

    def _inflate_all(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                piece = self._inflate.decompress(data, STEP)
            except zlib.error as exc:
                if self.coding == DEFLATE and not self._started:
                    self._started = True
                    self._inflate = self._new_inflater(raw_deflate=True)
                    continue
                raise EncodingRefused(f"{self.what} is not valid {self.coding} data: {exc}") from None
            self._started = True
            if piece:
                self._count(len(piece))
                yield piece
            data = self._inflate.unconsumed_tail
            if self._inflate.eof:
                rest = self._inflate.unused_data
                if not rest.strip(b"\0"):  # the end (a few servers pad with zeros)
                    return
                if self.coding != GZIP:
                    raise EncodingRefused(f"{self.what} has data after the end of its {self.coding} stream")
                self._inflate = self._new_inflater()  # the next gzip member
                data = rest
                continue
            # Without input left, zlib may still hold output: ask again until a short piece.
            if not data and len(piece) < STEP:
                return

    def _count(self, size: int) -> None:
        self.decoded_bytes += size
        if self.decoded_bytes > self.limit:
            self._too_large(decoded=self.decodes)

    def _too_large(self, decoded: bool):
        shown = " once decoded" if decoded else ""
        raise ResponseTooLarge(f"{self.what} is more than {self.limit} bytes{shown} (the limit)", limit=self.limit)
