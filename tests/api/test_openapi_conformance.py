"""The OpenAPI document against the real server: schemathesis generates requests for every
operation of /openapi.json (valid ones, and invalid ones, from the schema) and checks each answer
against what the document says - no 5xx, every status documented, every body matching its
schema, every content type and header as declared, 405 with the right `Allow` - on SQLite and
on PostgreSQL (a database of its own).

The server holds a deployed function, invocations, a table with a record and a user first, and
half of the generated path parameters are their names and ids, so that the 200 answers are
checked too, not only the 404s. Bounded: a few examples per operation, a time budget per run.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.reliability.conftest import backend_server, private_database  # noqa: F401 - fixtures

# Checks that hold for every operation. Left out: positive_data_acceptance (a schema cannot say
# that a bundle must be a zip, or a cron expression parse: such a "valid" request is rightly a
# 400), and the stateful checks that need links between operations.
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
          "unsupported_method", "allow_header_conformance"]
EXAMPLES_PER_OPERATION = 8
# What counts as rejecting an invalid request: schemathesis's own list, and 413, which the API
# answers (as documented) when an invalid body is also too large, e.g. a login whose fuzzed extra
# properties pass the credentials' byte limit before its password breaks maxLength.
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5XX"]
MAX_TIME_S = 25  # per database: the run stops generating when it is spent

FUNCTION = {"index.py": "def main(event, context):\n    return {'hello': event.get('name') if isinstance(event, dict) "
                        "else None}\n"}


def _seed(srv) -> dict[str, list]:
    """Data for the generated requests to find, by parameter name."""
    admin = srv.client()
    srv.deploy("hello", FUNCTION, http=True, access="public")
    sync_id = srv.invoke("hello", {"name": "a"})["invocation_id"]
    async_id = srv.invoke("hello", {"name": "b"}, mode="async", expect=202)["invocation_id"]
    srv.wait_invocation(async_id)
    assert admin.put("/v1/tables/notes", json={"acl": {"read": "public", "write": "public"}}).status_code == 200
    record = admin.post("/v1/tables/notes/records", json={"text": "hi"}).json()["record"]
    assert admin.post("/v1/auth/register", json={"username": "alice", "password": "correct horse"}
                      ).status_code == 200
    return {"name": ["hello"], "table": ["notes"], "invocation_id": [sync_id, async_id],
            "record_id": [record["id"]], "number": [1]}


def _config(known: dict[str, list]) -> str:
    """schemathesis.toml: each known value is used for its path parameter half of the time."""
    lines = ["[generation]", "max-examples = %d" % EXAMPLES_PER_OPERATION, "",
             "[checks.negative_data_rejection]", "expected-statuses = %s" % json.dumps(REJECTIONS), ""]
    for param, values in known.items():
        lines += [f"[dictionaries.{param}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    lines += [f'"path.{param}" = {{ dictionary = "{param}", probability = 0.5 }}' for param in known]
    return "\n".join(lines) + "\n"


def test_every_answer_matches_the_openapi_document(backend_server, tmp_path):  # noqa: F811
    srv = backend_server(FRAZIL_SANDBOX="plain")
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(_seed(srv)))
    st = Path(sys.executable).with_name("st")
    command = [str(st), "--config-file", str(config), "run", f"{srv.url}/openapi.json",
               "-H", f"Authorization: Bearer {srv.admin_key}", "--checks", ",".join(CHECKS),
               "--phases", "examples,coverage,fuzzing", "--max-time", str(MAX_TIME_S), "--workers", "1",
               "--seed", "1", "--no-shrink", "--request-timeout", "30", "--suppress-health-check", "all",
               "--warnings", "off"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=MAX_TIME_S * 4, cwd=tmp_path)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20_000:]
    assert "No issues found" in report, report[-5_000:]
    assert "InternalError" not in srv.log_text()
