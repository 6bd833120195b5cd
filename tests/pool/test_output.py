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


INIT_MARKER = b"\x00frazil:fedcba9876543210\x00"


async def test_markers_awaited_in_order_each_seal_their_text():
    """A cold instance's init marker, then its first invocation's: take() gives both texts in order."""
    capture = OutputCapture(1024)
    loop = asyncio.get_running_loop()
    init_seen, seen = loop.create_future(), loop.create_future()
    capture.expect(INIT_MARKER, init_seen)
    capture.expect(MARKER, seen)
    feed_in_pieces(capture, b"loading\n" + INIT_MARKER + b"running\n" + MARKER + b"later\n", 5)
    assert init_seen.done() and seen.done()
    assert capture.take() == "loading\nrunning\n"
    capture.expect(MARKER, loop.create_future())
    capture.feed(MARKER)
    assert capture.take() == "later\n"


async def test_a_skipped_marker_is_settled_by_the_next():
    """The runtime skipped the init marker (the pipe was empty): finding the invocation's
    marker settles it too, and the text up to there is one piece."""
    capture = OutputCapture(1024)
    loop = asyncio.get_running_loop()
    init_seen, seen = loop.create_future(), loop.create_future()
    capture.expect(INIT_MARKER, init_seen)
    capture.expect(MARKER, seen)
    capture.feed(b"loading\nrunning\n" + MARKER)
    assert init_seen.done() and seen.done()
    assert capture.take() == "loading\nrunning\n"
