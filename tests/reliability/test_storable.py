"""Text and numbers the database cannot hold never reach it raw (issue 11, item 1): through
real servers on SQLite and on PostgreSQL (which refuses U+0000 and hands big numbers back
as integers JSON encoders cannot write)."""
import json

from frazil.settings import Settings

NUL_PRINTER = {"index.py": "import sys\n"
                           "def main(event, context):\n"
                           "    print('before\\x00after')\n"
                           "    sys.stderr.write('err\\x00\\n')\n"
                           "    return 'printed'\n"}
QUIET = {"index.py": "def main(event, context):\n    return event.get('n')\n"}
NUL_RESULT = {"index.py": "def main(event, context):\n"
                          "    return {'text': 'a\\x00b', 'k\\x00ey': ['\\x00', 1], 'big': 2**63 - 1}\n"}


def listed(srv, name: str) -> list[dict]:
    response = srv.client().get(f"/v1/functions/{name}/invocations")
    assert response.status_code == 200, response.text
    return response.json()["invocations"]


def test_a_nul_printing_function_does_not_stop_other_records(backend_server):
    """After a function prints U+0000, every record - its own and other functions' - is stored
    and listed, its logs read back as printed, an async run of it finishes, and records still
    pending at shutdown survive a restart."""
    srv = backend_server()
    srv.deploy("nul", NUL_PRINTER)
    srv.deploy("quiet", QUIET)
    assert srv.invoke("nul")["result"] == "printed"
    for n in range(3):
        assert srv.invoke("quiet", {"n": n})["result"] == n
    (own,) = listed(srv, "nul")
    assert "before\x00after\n" in own["logs"] and "err\x00\n" in own["logs"]
    assert sorted(r["result"] for r in listed(srv, "quiet")) == [0, 1, 2]
    logs = srv.client().get("/v1/functions/nul/logs").json()["entries"]
    assert "before\x00after" in logs[0]["logs"]

    queued = srv.invoke("nul", mode="async", expect=202)["invocation_id"]
    record = srv.wait_invocation(queued)
    assert record["status"] == "succeeded" and "before\x00after" in record["logs"]

    last = srv.invoke("nul")["invocation_id"]  # pending in the writer's batch when the server stops
    srv.stop()
    srv.start()
    assert last in {r["id"] for r in listed(srv, "nul")}
    assert len(listed(srv, "quiet")) == 3


UNSTORABLE_RECORDS = [
    {"n": 1e20},
    {"n": 2**64},
    {"n": -(2**63)},
    {"nested": {"deep": [1, 2, 1e19]}},
    {"text": "a\u0000b"},
    {"nested": {"k\u0000": 1}},
    {"list": ["ok", "\u0000"]},
]
UNSTORABLE_FILTERS = ['{"n": 1e20}', '{"n": {"gt": 1e20}}', '{"n": {"in": [1, 1e20]}}', '{"s": "\\u0000"}',
                      '{"s": {"contains": "a\\u0000"}}', '{"id": "\\u0000"}']


def test_records_and_filters_the_store_cannot_keep_are_refused(backend_server):
    """A record, patch or filter holding U+0000 or a number of magnitude 2**63 or more is a 400
    naming the problem; nothing is stored, and the table keeps listing what it holds."""
    srv = backend_server()
    api = srv.client()
    kept = api.post("/v1/tables/things/records", json={"n": 2**63 - 1, "m": -(2**63 - 1), "f": 9.2e18,
                                                       "s": "fine"}).json()["record"]
    for body in UNSTORABLE_RECORDS:
        raw = json.dumps(body)
        for response in (api.post("/v1/tables/things/records", content=raw),
                         api.patch(f"/v1/tables/things/records/{kept['id']}", content=raw)):
            assert response.status_code == 400, (body, response.text)
            message = response.json()["message"]
            assert "U+0000" in message or "2**63" in message, message
    for where in UNSTORABLE_FILTERS:
        response = api.get("/v1/tables/things/records", params={"where": where})
        assert response.status_code == 400, (where, response.text)
    assert api.get("/v1/tables/things/records/a%00b").status_code == 400
    listing = api.get("/v1/tables/things/records")
    assert listing.status_code == 200, listing.text
    (record,) = listing.json()["records"]
    assert (record["n"], record["m"], record["f"], record["s"]) == (2**63 - 1, -(2**63 - 1), 9.2e18, "fine")


def test_a_nul_bearing_result_reads_back_equal(backend_server):
    """A result holding U+0000 (in strings and keys) is answered, stored and read back equal."""
    srv = backend_server()
    srv.deploy("nulres", NUL_RESULT)
    expected = {"text": "a\x00b", "k\x00ey": ["\x00", 1], "big": 2**63 - 1}
    body = srv.invoke("nulres")
    assert body["result"] == expected
    listed(srv, "nulres")  # the listing flushes pending records to the store
    assert srv.invocation(body["invocation_id"])["result"] == expected


SDK_WRITER = {"index.py": """
from frazil_sdk import db
from frazil_sdk.errors import SdkError

def main(event, context):
    table = db.table("sdk_things")
    answers = []
    for record in ({"n": 1e20}, {"s": "a\\x00"}, {"n": 2**70}):
        try:
            table.insert(record)
            answers.append("stored")
        except SdkError as exc:
            answers.append(exc.type)
    table.insert({"n": 5})
    return {"answers": answers, "count": len(table.find({}))}
"""}


def test_the_sdk_gets_the_same_refusals(backend_server):
    """A function writing unstorable values through the SDK gets BadRequest errors at once
    (not a hang until its timeout), and its good writes go through."""
    srv = backend_server()
    srv.deploy("sdkw", SDK_WRITER, timeout=30)
    body = srv.invoke("sdkw")
    assert body["success"] is True, body
    assert body["result"] == {"answers": ["BadRequest"] * 3, "count": 1}
    assert body["duration_ms"] < 10_000


LEGACY_READER = {"index.py": """
from frazil_sdk import db

def main(event, context):
    return [r["n"] for r in db.table("legacy").find({})]
"""}


def test_numbers_stored_before_the_rule_stay_readable(private_database, server_factory):
    """JSONB records written before numbers were bounded (1e20, 10**23) read back as floats over
    HTTP and through the SDK, instead of breaking their table."""
    srv = server_factory(**{Settings.env_name("database_url"): private_database.url})
    api = srv.client()
    assert api.post("/v1/tables/legacy/records", json={"n": 1}).status_code == 200
    for n, text in enumerate(["1e20", "100000000000000000000000"]):
        private_database.execute(
            "INSERT INTO data_records (table_name, id, created_by, created_at, updated_at, data) "
            f"VALUES ('legacy', 'legacy{n}', NULL, 1, 1, '{{\"n\": {text}}}'::jsonb)")
    listing = api.get("/v1/tables/legacy/records")
    assert listing.status_code == 200, listing.text
    assert sorted(r["n"] for r in listing.json()["records"]) == [1, 1e20, 1e23]
    srv.deploy("legacyreader", LEGACY_READER)
    assert sorted(srv.invoke("legacyreader")["result"]) == [1, 1e20, 1e23]


def test_nul_in_url_parameters_is_not_a_500(backend_server):
    """U+0000 in a query parameter that reaches the database is the caller's error (400 on
    PostgreSQL, which refuses it; SQLite just finds nothing)."""
    srv = backend_server()
    srv.deploy("quiet", QUIET)
    for params in ({"before": "\x00"}, {"after": "a\x00"}):
        path = "/v1/functions/quiet/" + ("invocations" if "before" in params else "logs")
        response = srv.client().get(path, params=params)
        assert response.status_code in (200, 400), response.text
