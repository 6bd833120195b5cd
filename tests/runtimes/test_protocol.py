"""The wire protocol: length-prefixed JSON frames, decoded incrementally and bounded."""
import io
import json

import pytest

from frazil.runtimes import protocol


class TestFrames:
    def test_encode_then_read_round_trips(self):
        """A frame read back from a stream is the message that was encoded."""
        message = {"type": protocol.INVOKE, "id": "x", "event": {"name": "ünï", "n": [1, 2]}}
        stream = io.BytesIO(protocol.encode(message) + protocol.encode({"type": protocol.READY}))
        assert json.loads(protocol.read_frame(stream)) == message
        assert json.loads(protocol.read_frame(stream)) == {"type": "ready"}
        assert protocol.read_frame(stream) is None

    @pytest.mark.parametrize("piece", [1, 3, 4, 5, 64])
    def test_decoder_reassembles_frames_split_anywhere(self, piece):
        """However the bytes arrive, the decoder yields whole payloads in order."""
        data = b"".join(protocol.frame(p) for p in (b'{"a":1}', b"", b'{"b":' + b"2" * 100 + b"}"))
        decoder = protocol.FrameDecoder()
        frames = []
        for i in range(0, len(data), piece):
            frames += decoder.feed(data[i:i + piece])
        assert frames == [b'{"a":1}', b"", b'{"b":' + b"2" * 100 + b"}"]

    def test_oversized_frame_is_a_protocol_error(self):
        """A peer announcing more than the limit is refused before anything is buffered."""
        decoder = protocol.FrameDecoder(max_frame=100)
        with pytest.raises(protocol.ProtocolError):
            decoder.feed(protocol.HEADER.pack(101))
        with pytest.raises(protocol.ProtocolError):
            protocol.read_frame(io.BytesIO(protocol.HEADER.pack(protocol.MAX_FRAME_BYTES + 1)))

    def test_truncated_frame_is_a_protocol_error(self):
        """A channel that closes mid-frame is an error, not a short message."""
        with pytest.raises(protocol.ProtocolError):
            protocol.read_frame(io.BytesIO(protocol.frame(b"0123456789")[:-3]))
        with pytest.raises(protocol.ProtocolError):
            protocol.read_frame(io.BytesIO(b"\x00\x00"))
