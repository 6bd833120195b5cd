"""What filters and sorting match, on SQLite and PostgreSQL alike: hand-picked cases, then a
seeded random comparison of both databases against a small Python model of the documented
semantics (frazil.data.filters' docstring)."""
import random

import pytest

from frazil.data.acl import ADMIN
from frazil.data.records import parse_time

MISSING = object()

# Values of every JSON kind, with the traps: bools vs numbers, "10" vs 10, case, non-ASCII.
VALUES = [None, True, False, 0, 1, -1, 2.5, 10, 1e10, "", "a", "ab", "b", "B", "é", "10", "2", "a b",
          [1, "a"], ["a", "b"], [], [True], [2.5, None], {"x": 1}, {"x": "a"}]
SCALARS = [v for v in VALUES if not isinstance(v, (list, dict))]


# --- the model --------------------------------------------------------------------------

def get(record, path):
    value = record
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return MISSING
        value = value[key]
    return value


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def model_eq(v, x):
    if x is None:
        return v is MISSING or v is None
    if isinstance(x, bool):
        return isinstance(v, bool) and v == x
    if isinstance(x, str):
        return isinstance(v, str) and v == x
    return is_number(v) and float(v) == float(x)


def model_matches(record, where):
    for field, condition in where.items():
        v = record.get(field, MISSING) if field in ("id", "created_by") else get(record, field)
        ops = condition.items() if isinstance(condition, dict) else [("eq", condition)]
        for op, x in ops:
            if field in ("created_at", "updated_at"):
                v_t, x_t = parse_time(v, "t"), parse_time(x, "t")
                ok = {"eq": v_t == x_t, "ne": v_t != x_t, "lt": v_t < x_t, "lte": v_t <= x_t,
                      "gt": v_t > x_t, "gte": v_t >= x_t}[op]
            elif op == "eq":
                ok = model_eq(v, x)
            elif op == "ne":
                ok = not model_eq(v, x)
            elif op == "in":
                ok = any(model_eq(v, y) for y in x)
            elif op == "contains":
                ok = (isinstance(x, str) and isinstance(v, str) and x in v) or \
                     (isinstance(v, list) and any(e is not None and model_eq(e, x) for e in v))
            else:
                same = (isinstance(x, str) and isinstance(v, str)) or (is_number(x) and is_number(v))
                ok = same and {"lt": v < x, "lte": v <= x, "gt": v > x, "gte": v >= x}[op]
            if not ok:
                return False
    return True


def model_sort_key(value):
    """Missing/null < false < true < numbers < strings (scalars only)."""
    if value is MISSING or value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1 + value, 0, "")
    if is_number(value):
        return (3, float(value), "")
    return (4, 0, value)


# --- fixtures -------------------------------------------------------------------------------

def random_record(rng):
    record = {}
    for field in ("a", "b", "c"):
        if rng.random() < 0.8:
            record[field] = rng.choice(VALUES)
    if rng.random() < 0.7:
        record["o"] = {"x": rng.choice(SCALARS)} if rng.random() < 0.8 else rng.choice(SCALARS)
    return record


def random_condition(rng):
    op = rng.choice(["eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "shorthand"])
    if op in ("eq", "ne", "shorthand"):
        x = rng.choice(SCALARS)
    elif op == "in":
        x = rng.sample(SCALARS, rng.randint(0, 4))
    elif op == "contains":
        x = rng.choice([v for v in SCALARS if v is not None])
    else:
        x = rng.choice([v for v in SCALARS if isinstance(v, str) or is_number(v)])
    return x if op == "shorthand" else {op: x}


@pytest.fixture
async def corpus(data):
    rng = random.Random(6)
    records = [await data.insert("corpus", random_record(rng), ADMIN) for _ in range(80)]
    # Ids order by creation to the millisecond; within one, randomly. Results come in id order.
    return data, sorted(records, key=lambda r: r["id"])


async def ids(data, where, **kw):
    return [r["id"] for r in await data.find("corpus", where, ADMIN, limit=1000, **kw)]


class TestHandPicked:
    @pytest.fixture
    async def table(self, data):
        rows = {
            "num": {"v": 10, "tags": ["red", "blue"], "o": {"x": 1}},
            "float": {"v": 10.0, "tags": "redish"},
            "str": {"v": "10", "tags": [10, True]},
            "true": {"v": True, "tags": []},
            "null": {"v": None},
            "missing": {},
        }
        names = {}
        for name, record in rows.items():
            names[(await data.insert("t", record, ADMIN))["id"]] = name
        return data, names

    @pytest.mark.parametrize("where, expected", [
        ({"v": 10}, {"num", "float"}),                      # 10 == 10.0, never "10"
        ({"v": "10"}, {"str"}),
        ({"v": True}, {"true"}),                            # true is not 1
        ({"v": 1}, set()),
        ({"v": None}, {"null", "missing"}),                 # null or missing
        ({"v": {"ne": None}}, {"num", "float", "str", "true"}),
        ({"v": {"ne": 10}}, {"str", "true", "null", "missing"}),  # ne includes missing
        ({"v": {"gt": 9}}, {"num", "float"}),               # typed: "10" is not > 9
        ({"v": {"gte": "1"}}, {"str"}),
        ({"v": {"in": [10, None]}}, {"num", "float", "null", "missing"}),
        ({"v": {"in": []}}, set()),
        ({"tags": {"contains": "red"}}, {"num", "float"}),  # array element, or substring
        ({"tags": {"contains": "blue"}}, {"num"}),
        ({"tags": {"contains": 10}}, {"str"}),
        ({"tags": {"contains": True}}, {"str"}),
        ({"tags": {"contains": "ish"}}, {"float"}),
        ({"o.x": 1}, {"num"}),
        ({"o.x": {"ne": 1}}, {"float", "str", "true", "null", "missing"}),
        ({"v": {"gte": 10, "lte": 10}}, {"num", "float"}),
    ])
    async def test_case(self, table, where, expected):
        """Each documented rule, on each backend."""
        data, names = table
        found = {names[r["id"]] for r in await data.find("t", where, ADMIN)}
        assert found == expected


class TestAgainstModel:
    async def test_random_filters_match_the_model(self, corpus):
        """300 random one- and two-condition filters select exactly what the model selects."""
        data, records = corpus
        rng = random.Random(42)
        for _ in range(300):
            where = {rng.choice(["a", "b", "c", "o.x", "o"]): random_condition(rng)}
            if rng.random() < 0.3:
                where[rng.choice(["a", "b", "c"]) + ""] = random_condition(rng)
            expected = [r["id"] for r in records if model_matches(r, where)]
            assert await ids(data, where) == expected, where

    async def test_platform_fields(self, corpus):
        """id and the times filter like columns; created_by is null for the admin."""
        data, records = corpus
        middle = records[40]
        assert await ids(data, {"id": middle["id"]}) == [middle["id"]]
        assert await ids(data, {"id": {"gt": middle["id"]}}) == [r["id"] for r in records[41:]]
        assert await ids(data, {"id": {"in": [records[1]["id"], records[3]["id"]]}}) == \
            [records[1]["id"], records[3]["id"]]
        assert await ids(data, {"created_at": middle["created_at"]}) == \
            [r["id"] for r in records if r["created_at"] == middle["created_at"]]
        later = [r["id"] for r in records if r["created_at"] > middle["created_at"]]
        assert await ids(data, {"created_at": {"gt": middle["created_at"]}}) == later
        assert len(await ids(data, {"created_by": None})) == 80
        assert await ids(data, {"created_by": {"ne": None}}) == []

    @pytest.mark.parametrize("field", ["a", "b", "o.x"])
    @pytest.mark.parametrize("descending", [False, True])
    async def test_sort_matches_the_model(self, data, field, descending):
        """Sorting a field of mixed scalar kinds follows the documented kind order, ties by id."""
        rng = random.Random(7)
        records = []
        for _ in range(60):
            record = {k: rng.choice(SCALARS) for k in ("a", "b") if rng.random() < 0.85}
            record["o"] = {"x": rng.choice(SCALARS)}
            records.append(await data.insert("sorted", record, ADMIN))
        order = ("-" if descending else "") + field
        found = [r["id"] for r in await data.find("sorted", None, ADMIN, order=order, limit=1000)]
        by_id = sorted(records, key=lambda r: r["id"])
        expected = sorted(by_id, key=lambda r: model_sort_key(get(r, field)), reverse=descending)
        # Descending reverses the keys but ties stay in id order.
        if descending:
            expected = sorted(by_id, key=lambda r: _negate(model_sort_key(get(r, field))))
        assert found == [r["id"] for r in expected]


def _negate(key):
    rank, number, text = key
    return (-rank, -number, _Reversed(text))


class _Reversed(str):
    def __lt__(self, other):
        return str.__gt__(self, other)

    def __gt__(self, other):
        return str.__lt__(self, other)
