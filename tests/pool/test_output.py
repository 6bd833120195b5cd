"""OutputCapture attributes the output pipe to invocations by their markers, within a cap."""
import asyncio

import pytest

from frazil.pool.output import OutputCapture

MARKER = b"\x00frazil:0123456789abcdef\x00"


def feed_in_pieces(capture: OutputCapture, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        capture.feed(data[i:i + size])


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 25, 1000])
async def test_marker_split_across_reads_is_found_once(piece):
    """However the pipe splits the bytes, the text before the marker is kept exactly once."""
    capture = OutputCapture(1024)
    seen = asyncio.get_running_loop().create_future()
    capture.expect(MARKER, seen)
    feed_in_pieces(capture, b"line one\nline two\n" + MARKER + b"later\n", piece)
    assert seen.done()
    assert capture.take() == "line one\nline two\n"
    # What came after the marker belongs to the next invocation.
    nxt = asyncio.get_running_loop().create_future()
    capture.expect(MARKER, nxt)
    capture.feed(MARKER)
    assert capture.take() == "later\n"


async def test_output_over_the_cap_is_dropped_and_marked():
    """Memory stays bounded; the text says how much was dropped."""
    capture = OutputCapture(10)
    seen = asyncio.get_running_loop().create_future()
    capture.expect(MARKER, seen)
    feed_in_pieces(capture, b"x" * 5000 + MARKER, 333)
    text = capture.take()
    assert text.startswith("x" * 10)
    assert "4990 more bytes dropped" in text
    assert seen.done()


async def test_without_a_marker_take_returns_everything():
    """A timed-out or crashed invocation keeps what it printed, held tail included."""
    capture = OutputCapture(1024)
    capture.expect(MARKER, asyncio.get_running_loop().create_future())
    capture.feed(b"partial output\x00fra")
    assert capture.take() == "partial output\x00fra"
