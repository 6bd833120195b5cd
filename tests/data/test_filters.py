"""Parsing the filter language: what is accepted, how it is normalised, and the 400s for the
rest. No database here; what the filters match is in test_filter_semantics.py."""
import pytest

from frazil.data.filters import MAX_IN_VALUES, Condition, Op, SortKey, parse_order, parse_where
from frazil.data.records import parse_time
from frazil.errors import BadRequest


class TestParseWhere:
    def test_shorthand_is_eq(self):
        """{"field": value} means {"field": {"eq": value}}."""
        assert parse_where({"text": "hi"}) == [Condition(("text",), Op.EQ, "hi")]

    def test_several_operators_on_one_field(self):
        """Operators on one field all apply (AND)."""
        assert parse_where({"n": {"gte": 1, "lt": 5}}) == [Condition(("n",), Op.GTE, 1), Condition(("n",), Op.LT, 5)]

    def test_nested_path(self):
        """'a.b' reaches into nested objects."""
        assert parse_where({"address.city": "Oslo"})[0].path == ("address", "city")

    def test_none_and_empty_match_everything(self):
        """No filter, or {}, has no conditions."""
        assert parse_where(None) == [] and parse_where({}) == []

    def test_time_fields_take_iso_or_epoch(self):
        """created_at/updated_at take ISO 8601 or epoch seconds; naive times are UTC."""
        iso = parse_where({"created_at": {"gte": "2024-01-02T03:04:05.678Z"}})[0].value
        naive = parse_where({"updated_at": {"gte": "2024-01-02T03:04:05.678"}})[0].value
        epoch = parse_where({"created_at": {"lt": 1704164645.678}})[0].value
        assert iso == naive == epoch == 1704164645.678

    def test_platform_field_conditions_are_marked(self):
        """id, created_by, created_at, updated_at compile to columns, not JSON paths."""
        assert parse_where({"id": "x"})[0].platform and not parse_where({"idx": "x"})[0].platform

    @pytest.mark.parametrize("where, message", [
        ([], "must be a JSON object"),
        ("text", "must be a JSON object"),
        ({"n": {"gtx": 1}}, "unknown operator 'gtx'"),
        ({"n": {}}, "an empty condition"),
        ({"n": {"eq": [1]}}, "not an array"),
        ({"n": {"eq": {"a": 1}}}, "not an object"),
        ({"n": {"a": 1}}, "unknown operator 'a'"),
        ({"n": {"ne": {"x": 1}}}, "not an object"),
        ({"n": {"lt": True}}, "'lt' takes a number or a string"),
        ({"n": {"gte": None}}, "'gte' takes a number or a string"),
        ({"n": {"gt": [1]}}, "'gt' takes a number or a string"),
        ({"n": {"in": 1}}, "'in' takes an array"),
        ({"n": {"in": [[1]]}}, "not an array"),
        ({"n": {"contains": None}}, "'contains' takes a string, number or boolean"),
        ({"n": {"contains": [1]}}, "'contains' takes a string, number or boolean"),
        ({"": 1}, "field name"),
        ({"a..b": 1}, "invalid field name"),
        ({'a"b': 1}, "invalid field name"),
        ({"id.x": 1}, "platform field"),
        ({"id": 5}, "id takes a string"),
        ({"id": {"contains": "a"}}, "id takes a string"),
        ({"created_by": {"gt": "u"}}, "created_by takes a user id or null"),
        ({"created_by": 5}, "created_by takes a user id or null"),
        ({"created_at": {"contains": "2024"}}, "does not support 'contains'"),
        ({"created_at": "yesterday"}, "not an ISO 8601 time"),
        ({"created_at": True}, "not a boolean"),
        ({f"f{i}": 1 for i in range(65)}, "the limit is 64"),
        ({"n": {"in": list(range(MAX_IN_VALUES + 1))}}, f"at most {MAX_IN_VALUES} values"),
    ])
    def test_refusals_name_the_problem(self, where, message):
        """Every malformed filter is a 400 whose message says what is wrong."""
        with pytest.raises(BadRequest) as caught:
            parse_where(where)
        assert message in caught.value.message


class TestParseOrder:
    def test_forms(self):
        """A field, -field for descending, a comma-separated list, or a list."""
        assert parse_order("name") == [SortKey(("name",))]
        assert parse_order("-created_at,+a.b") == [SortKey(("created_at",), True), SortKey(("a", "b"))]
        assert parse_order(["-n"]) == [SortKey(("n",), True)]
        assert parse_order(None) == parse_order("") == []

    @pytest.mark.parametrize("order", ["a,b,c,d,e", "-", 5, ["a", 1], 'a"b'])
    def test_refusals(self, order):
        """Bad sort keys are a 400."""
        with pytest.raises(BadRequest):
            parse_order(order)


class TestTimes:
    def test_iso_round_trips_to_the_stored_millisecond(self):
        """A time rendered by the API parses back to exactly the stored float."""
        from frazil.data.records import iso, now_ms

        for _ in range(200):
            ts = now_ms()
            assert parse_time(iso(ts), "t") == ts

    def test_offsets_are_honoured(self):
        """An ISO time with an offset means the same instant in UTC."""
        assert parse_time("2024-01-01T01:00:00+01:00", "t") == parse_time("2024-01-01T00:00:00Z", "t")
