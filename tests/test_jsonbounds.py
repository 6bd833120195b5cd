"""frazil.jsonbounds: depth and width bounds without recursion, and the storable rule."""
import json

import pytest

from frazil.errors import BadRequest
from frazil.jsonbounds import STORED_MAGNITUDE_LIMIT, JsonBounds, check_json

BOUNDS = JsonBounds(depth=8, width=5)


def nested(levels: int):
    value = 1
    for _ in range(levels - 1):
        value = [value]
    return [value]


class TestBounds:
    def test_depth_at_the_bound_passes_and_one_more_is_refused(self):
        check_json(nested(8), "the event", BOUNDS)
        with pytest.raises(BadRequest, match="deeper than 8"):
            check_json(nested(9), "the event", BOUNDS)

    def test_a_very_deep_value_is_refused_without_recursion_error(self):
        """100,000 levels (orjson could not even build it; we do) end in BadRequest."""
        with pytest.raises(BadRequest, match="deeper"):
            check_json(nested(100_000), "the event", JsonBounds(depth=64, width=10))

    @pytest.mark.parametrize("wide", [list(range(6)), {f"k{i}": i for i in range(6)}, {"a": {"b": list(range(6))}}])
    def test_width_counts_members_of_any_one_container(self, wide):
        with pytest.raises(BadRequest, match="6 members"):
            check_json(wide, "the record", BOUNDS)
        check_json(list(range(5)), "the record", BOUNDS)

    @pytest.mark.parametrize("raw,expected", [(b"[[[1]]]", False), (b"[" * 9 + b"]" * 9, True),
                                              (b"[1,2,3,4]", False), (b"[1,2,3,4,5,6]", True)])
    def test_may_exceed_is_a_safe_precheck(self, raw, expected):
        assert BOUNDS.may_exceed(raw) is expected
        if not expected:
            check_json(json.loads(raw), "x", BOUNDS)


class TestStorable:
    @pytest.mark.parametrize("value", [STORED_MAGNITUDE_LIMIT - 1, -(STORED_MAGNITUDE_LIMIT - 1), 9.2e18, -9.2e18,
                                       1e-300, 0.1, True, None, "text", {"k": ["é", 1.5]}])
    def test_what_every_store_keeps_passes(self, value):
        check_json({"v": value}, "the record", BOUNDS, storable=True)

    @pytest.mark.parametrize("value", [STORED_MAGNITUDE_LIMIT, -STORED_MAGNITUDE_LIMIT, 1e20, 2**70, float("inf"),
                                       float("nan"), "a\x00", ["\x00"], {"k\x00": 1}])
    def test_what_some_store_cannot_keep_is_refused(self, value):
        with pytest.raises(BadRequest, match=r"U\+0000|2\*\*63"):
            check_json({"v": value}, "the record", BOUNDS, storable=True)

    def test_without_storable_only_the_shape_is_checked(self):
        check_json({"v": [1e20, "a\x00"]}, "the event", BOUNDS)
