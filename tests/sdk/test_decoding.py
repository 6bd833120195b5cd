"""`BodyDecoder` on its own: one content coding at most, decoded in bounded steps, within a cap."""
from __future__ import annotations

import gzip
import zlib

import pytest

from frazil.sdk.decoding import STEP, BodyDecoder, content_codings
from frazil.sdk.errors import EncodingRefused, ResponseTooLarge


def decode(codings, chunks, limit=10_000_000) -> tuple[bytes, list[int]]:
    decoder = BodyDecoder(codings, limit, what="the answer")
    pieces = [p for chunk in chunks for p in decoder.feed(chunk)] + list(decoder.finish())
    return b"".join(pieces), [len(p) for p in pieces]


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


class TestCodings:
    def test_headers_are_read_as_one_list(self):
        """Every header and comma-separated item counts; identity is no coding."""
        assert content_codings(["gzip, identity", " GZIP "]) == ["gzip", "gzip"]
        assert content_codings(["identity"]) == [] and content_codings([]) == []

    @pytest.mark.parametrize("codings", [["gzip", "gzip"], ["deflate", "gzip"], ["br", "gzip"]])
    def test_two_layers_are_refused(self, codings):
        with pytest.raises(EncodingRefused, match="at most one layer"):
            BodyDecoder(codings, 100, what="the answer")

    def test_unknown_coding_passes_through(self):
        """br is not decoded: the body is as sent, and the decoder says it changed nothing."""
        decoder = BodyDecoder(["br"], 100, what="the answer")
        assert not decoder.decodes and list(decoder.feed(b"raw")) == [b"raw"]


class TestDecoding:
    def test_gzip_in_any_chunking(self):
        data = bytes(range(256)) * 1000
        for size in (1, 7, 4096, 1 << 20):
            assert decode(["gzip"], split(gzip.compress(data), size))[0] == data

    def test_gzip_members_follow_each_other(self):
        assert decode(["x-gzip"], [gzip.compress(b"one ") + gzip.compress(b"two")])[0] == b"one two"

    def test_deflate_zlib_wrapped_and_raw(self):
        raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        assert decode(["deflate"], [zlib.compress(b"hello")])[0] == b"hello"
        assert decode(["deflate"], [raw.compress(b"hello") + raw.flush()])[0] == b"hello"

    def test_no_piece_is_larger_than_a_step(self):
        """A chunk that expands a thousandfold comes out in STEP-sized pieces."""
        data, sizes = decode(["gzip"], [gzip.compress(bytes(4 * 1024 * 1024))])
        assert len(data) == 4 * 1024 * 1024 and max(sizes) <= STEP

    def test_broken_data_is_refused(self):
        with pytest.raises(EncodingRefused, match="not valid gzip"):
            decode(["gzip"], [b"not gzip at all"])


class TestCap:
    def test_exactly_the_cap_passes_one_more_byte_does_not(self):
        assert len(decode(["gzip"], [gzip.compress(bytes(1000))], limit=1000)[0]) == 1000
        with pytest.raises(ResponseTooLarge, match="more than 999 bytes once decoded"):
            decode(["gzip"], [gzip.compress(bytes(1000))], limit=999)

    def test_bomb_stops_within_a_step_of_the_cap(self):
        """Decoding stops as soon as the total passes the cap, not at the end of the chunk."""
        decoder = BodyDecoder(["gzip"], 100_000, what="the answer")
        with pytest.raises(ResponseTooLarge):
            for piece in decoder.feed(gzip.compress(bytes(64 * 1024 * 1024))):
                assert len(piece) <= STEP
        assert decoder.decoded_bytes <= 100_000 + STEP

    def test_raw_bytes_are_capped_too(self):
        with pytest.raises(ResponseTooLarge, match="more than 10 bytes"):
            list(BodyDecoder([], 10, what="the answer").feed(b"x" * 11))
