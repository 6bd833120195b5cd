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


class TestGuardedDecoder:
    """The platform's decoder: a frame is judged by its length and kind before its body is held."""

    LIMITS = protocol.RuntimeFrameLimits(1000)

    def decoder(self, accept=None):
        def limit_for(kind):
            if kind not in self.LIMITS.by_kind or (accept is not None and kind not in accept):
                raise protocol.UnexpectedFrame(kind, "not now")
            return self.LIMITS[kind]
        return protocol.GuardedDecoder(limit_for, self.LIMITS.largest)

    @pytest.mark.parametrize("piece", [1, 3, 4, 5, 17, 64])
    def test_frames_split_anywhere_come_out_whole_with_their_kind(self, piece):
        """However the bytes arrive, each frame comes out whole, with the kind it named first."""
        messages = [{"type": "hello", "protocol": 2}, {"type": "result", "id": "x", "ok": True, "result": "r" * 500},
                    {"type": "sdk_call", "call": 1}]
        data = b"".join(protocol.encode(m) for m in messages)
        decoder, frames = self.decoder(), []
        for i in range(0, len(data), piece):
            frames += decoder.feed(data[i:i + piece])
        assert [(kind, json.loads(p)) for kind, p in frames] == [(m["type"], m) for m in messages]

    def test_each_frame_is_judged_after_the_one_before_is_taken(self):
        """frames() judges a frame's kind only once the frame before it was taken, so that one
        may change the rules: a result may follow "ready" in the same read."""
        accepted = {"ready"}

        def limit_for(kind):
            if kind not in accepted:
                raise protocol.UnexpectedFrame(kind, "not now")
            return self.LIMITS[kind]
        decoder = protocol.GuardedDecoder(limit_for, self.LIMITS.largest)
        data = protocol.encode({"type": "ready"}) + protocol.encode({"type": "result", "id": "x", "ok": True})
        kinds = []
        for kind, _ in decoder.frames(data):
            kinds.append(kind)
            accepted.add("result")  # what taking "ready" allows next
        assert kinds == ["ready", "result"]

    def test_a_result_over_its_limit_is_refused_from_its_first_bytes(self):
        """66 MB announced: refused once the kind is known, with nothing of the body held."""
        decoder = self.decoder()
        with pytest.raises(protocol.FrameTooLarge) as caught:
            decoder.feed(protocol.HEADER.pack(66 * 1024 * 1024) + b'{"type":"result","id":"x"')
        assert caught.value.kind == protocol.RESULT and caught.value.limit == 1000 + protocol.RESULT_ENVELOPE_BYTES
        assert len(decoder._buf) == 0

    def test_a_length_beyond_every_kind_is_refused_at_once(self):
        """A length prefix alone, larger than any kind's limit, is refused without its kind."""
        with pytest.raises(protocol.FrameTooLarge) as caught:
            self.decoder().feed(protocol.HEADER.pack(protocol.MAX_SDK_CALL_BYTES + 1))
        assert caught.value.kind is None

    def test_the_limit_is_per_kind(self):
        """The same length is fine for an sdk_call and too large for a hello."""
        size = 10_000
        call = protocol.HEADER.pack(size) + b'{"type":"sdk_call"'
        assert self.decoder().feed(call) == []  # accepted, waiting for the rest
        with pytest.raises(protocol.FrameTooLarge):
            self.decoder().feed(protocol.HEADER.pack(size) + b'{"type":"hello"')

    @pytest.mark.parametrize("start", [b'{"id":1,"type":"result"}', b'{ "type": "result"}', b'[1, 2, 3]', b"",
                                       b'{"type":"' + b"x" * 40 + b'"}', b'{"type":"Result"}'])
    def test_a_frame_must_name_its_kind_first(self, start):
        """Only `{"type":"<lower-case word>"` may open a frame."""
        with pytest.raises(protocol.ProtocolError):
            self.decoder().feed(protocol.frame(start))

    def test_a_kind_not_accepted_now_is_refused_before_its_body(self):
        """The reader's rule of the moment is asked as soon as the kind is known."""
        decoder = self.decoder(accept={protocol.SDK_CALL})
        with pytest.raises(protocol.UnexpectedFrame) as caught:
            decoder.feed(protocol.HEADER.pack(500) + b'{"type":"result",')
        assert caught.value.kind == protocol.RESULT

    def test_cut_text(self):
        """Error texts are cut to a bound, saying so, keeping their start or their end."""
        assert protocol.cut_text("abc", 5) == "abc"
        assert protocol.cut_text("abcdefgh", 3).startswith("abc[... 5 characters cut")
        assert protocol.cut_text("abcdefgh", 3, keep_end=True).endswith("cut ...]fgh")
