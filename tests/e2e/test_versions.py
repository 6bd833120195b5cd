"""Versions without uploads, against a real server: rollback to an older ready version, and
a settings-only PATCH that makes a new version from the active version's code."""
from __future__ import annotations

import json

import pytest

from frazil.deploy.config import RESERVED_ENV_PREFIXES
from frazil.testing.waiting import wait_until


def code(tag: str) -> dict:
    return {"index.py": (
        "import os\n"
        "def main(event, context):\n"
        f"    return {{'code': {tag!r}, 'version': context.version, 'memory': context.memory_mb,\n"
        "            'greeting': os.environ.get('GREETING')}\n")}


BROKEN = {"index.py": "def main(event, context):\n    return 1\n", "requirements.txt": "no-such-package-frazil==0\n"}


def active(server, name: str) -> dict:
    return server.client().get(f"/v1/functions/{name}").json()["function"]


def versions(server, name: str) -> list[dict]:
    return server.client().get(f"/v1/functions/{name}/versions").json()["versions"]


class TestRollback:
    def test_default_is_the_previous_ready_version(self, server, unique_name):
        """Without a body the previous ready version serves again; then back with {"version": N}."""
        server.deploy(unique_name, code("one"))
        server.deploy(unique_name, code("two"))
        assert server.invoke(unique_name)["result"]["code"] == "two"
        response = server.client().post(f"/v1/functions/{unique_name}/rollback")
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 1 and active(server, unique_name)["version"] == 1
        assert server.invoke(unique_name)["result"] == {"code": "one", "version": 1, "memory": 128, "greeting": None}
        again = server.client().post(f"/v1/functions/{unique_name}/rollback", json={"version": 2})
        assert again.status_code == 200 and server.invoke(unique_name)["result"]["code"] == "two"

    def test_failed_builds_are_skipped_and_refused(self, server, unique_name):
        """The default skips a failed version; naming a failed one is 409, a missing one 404."""
        server.deploy(unique_name, code("one"))
        failed = server.deploy(unique_name, BROKEN, expect=400)
        assert "version 2" in failed.json()["message"]
        server.deploy(unique_name, code("three"))
        refused = server.client().post(f"/v1/functions/{unique_name}/rollback", json={"version": 2})
        assert refused.status_code == 409 and "failed" in refused.json()["message"]
        missing = server.client().post(f"/v1/functions/{unique_name}/rollback", json={"version": 9})
        assert missing.status_code == 404
        assert active(server, unique_name)["version"] == 3
        server.client().post(f"/v1/functions/{unique_name}/rollback").raise_for_status()
        assert active(server, unique_name)["version"] == 1
        nothing_before = server.client().post(f"/v1/functions/{unique_name}/rollback")
        assert nothing_before.status_code == 409 and active(server, unique_name)["version"] == 1

    @pytest.mark.parametrize("body", [{"version": "2"}, {"version": 0}, {"version": True}, {"to": 1}, [1]])
    def test_bad_body_is_400(self, server, unique_name, body):
        """A version that is not a positive integer, or another field, is a 400 naming it."""
        server.deploy(unique_name, code("one"))
        server.deploy(unique_name, code("two"))
        response = server.client().post(f"/v1/functions/{unique_name}/rollback", json=body)
        assert response.status_code == 400, response.text
        assert any(word in response.json()["message"] for word in ("version", "to", "object"))
        assert active(server, unique_name)["version"] == 2

    def test_cli_rollback_to(self, server, unique_name):
        """`frazil rollback NAME --to N`."""
        server.deploy(unique_name, code("one"))
        server.deploy(unique_name, code("two"))
        done = server.cli("rollback", unique_name, "--to", "1", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["version"] == 1 and active(server, unique_name)["version"] == 1
        failed = server.cli("rollback", unique_name, "--to", "7")
        assert failed.returncode != 0 and "no version 7" in failed.stderr


class TestPatch:
    def test_settings_make_a_new_version_from_the_same_code(self, server, unique_name):
        """Memory, env and access change in a new version; code and layer are reused, not rebuilt,
        and the next invocation runs the new version."""
        server.deploy(unique_name, code("one"))
        assert server.invoke(unique_name)["result"]["version"] == 1
        response = server.client().patch(f"/v1/functions/{unique_name}", json={
            "memory": 256, "env": {"GREETING": "patched"}, "access": "public", "http": True})
        assert response.status_code == 200, response.text
        fn = response.json()["function"]
        assert (fn["version"], fn["memory"], fn["env"], fn["access"], fn["http"]) == (
            2, 256, {"GREETING": "patched"}, "public", True)
        new, old = versions(server, unique_name)[:2]
        assert new["bundle_sha256"] == old["bundle_sha256"] and new["layer"] == old["layer"]
        assert new["status"] == "ready"
        log = server.client().get(f"/v1/functions/{unique_name}/versions/2").json()["version"]["build_log"]
        assert "reused" in log
        result = server.invoke(unique_name, token=None)["result"]  # public now
        assert result == {"code": "one", "version": 2, "memory": 256, "greeting": "patched"}

    def test_absent_settings_stay(self, server, unique_name):
        """Only the settings given change."""
        server.deploy(unique_name, code("one"), memory=256, timeout=30, env={"GREETING": "hi"})
        fn = server.client().patch(f"/v1/functions/{unique_name}", json={"timeout": 5}).json()["function"]
        assert (fn["memory"], fn["timeout"], fn["env"]) == (256, 5, {"GREETING": "hi"})

    @pytest.mark.parametrize("body, field", [
        ({"handler": "other.main"}, "handler"), ({"timeout": 5000}, "timeout"), ({"access": "nobody"}, "access"),
        ({"memory": 512}, "memory"), ({"env": {RESERVED_ENV_PREFIXES[0] + "X": "1"}}, "env"), ({}, "at least one"),
    ])
    def test_bad_settings_are_400_and_change_nothing(self, server, unique_name, body, field):
        """A setting that is not allowed or not valid is a 400 naming it; no version is made."""
        server.deploy(unique_name, code("one"))
        response = server.client().patch(f"/v1/functions/{unique_name}", json=body)
        assert response.status_code == 400, response.text
        assert field in response.json()["message"]
        assert [v["version"] for v in versions(server, unique_name)] == [1]

    def test_unknown_function_is_404(self, server):
        """PATCH and rollback of a function that does not exist are 404."""
        assert server.client().patch("/v1/functions/no-such-fn", json={"timeout": 3}).status_code == 404
        assert server.client().post("/v1/functions/no-such-fn/rollback").status_code == 404


ECHO = {"index.py": "def main(event, context):\n    return event\n"}
EVERY_SECOND = {"type": "schedule", "cron": "* * * * * *", "event": {"job": "tick"}}


def patch(server, name: str, body: dict):
    return server.client().patch(f"/v1/functions/{name}", json=body)


def fired(server, name: str, trigger: str) -> list[dict]:
    """`name`'s records fired by `trigger`, newest first (queued ones too)."""
    body = server.client().get("/v1/invocations", params={"function": name, "limit": 500}).json()
    return [r for r in body["invocations"] if r["trigger"] == trigger]


class TestPatchTriggers:
    """`triggers` in a PATCH replaces the whole list, validated as a deploy's, and takes effect on
    activation as a deploy's would."""

    def test_a_patched_schedule_fires_and_an_empty_list_removes_it(self, server, unique_name):
        server.deploy(unique_name, ECHO, env={"KEEP": "1"})
        response = patch(server, unique_name, {"triggers": [EVERY_SECOND]})
        assert response.status_code == 200, response.text
        fn = active(server, unique_name)
        assert (fn["version"], fn["env"]) == (2, {"KEEP": "1"})
        (schedule,) = fn["triggers"]
        assert schedule["cron"] == EVERY_SECOND["cron"] and schedule["next_fire_at"] is not None

        record = wait_until(lambda: next(iter(fired(server, unique_name, "schedule")), None), timeout=30,
                            what="a tick of the patched schedule")
        assert record["version"] == 2
        done = server.wait_invocation(record["id"])
        assert (done["status"], done["result"]) == ("succeeded", {"job": "tick"})

        response = patch(server, unique_name, {"triggers": []})
        assert response.status_code == 200, response.text
        fn = active(server, unique_name)
        assert (fn["version"], fn["triggers"], fn["env"]) == (3, [], {"KEEP": "1"})

    def test_a_patched_table_trigger_replaces_the_old_one(self, server, unique_name):
        """A write fires what the active version listens to, from the PATCH's answer on: the
        invocations are queued in the write's own transaction, so the write's answer is enough to
        look (frazil.scheduler.table_events)."""
        old, new = (f"{unique_name.replace('-', '_')}_{t}" for t in ("old", "new"))
        admin = server.client()
        server.deploy(unique_name, ECHO, triggers=[{"type": "table", "table": old}])

        def write(table: str) -> None:
            assert admin.post(f"/v1/tables/{table}/records", json={"n": 1}).status_code == 200

        write(old)
        assert len(fired(server, unique_name, "table")) == 1
        response = patch(server, unique_name, {"triggers": [{"type": "table", "table": new, "on": ["insert"]}]})
        assert response.status_code == 200, response.text
        assert [(t["type"], t["table"], t["on"]) for t in response.json()["function"]["triggers"]] == [
            ("table", new, ["insert"])]
        write(old)
        assert len(fired(server, unique_name, "table")) == 1  # the old trigger is gone
        write(new)
        (latest, _) = fired(server, unique_name, "table")
        assert latest["version"] == 2
        assert server.wait_invocation(latest["id"])["result"]["table"] == new

        assert patch(server, unique_name, {"triggers": []}).status_code == 200
        write(new)
        assert len(fired(server, unique_name, "table")) == 2  # nothing fires any more

    @pytest.mark.parametrize("triggers, field", [
        ([{"type": "schedule", "cron": "61 * * * *"}], "triggers.0.cron"),
        ([{"type": "webhook", "cron": "* * * * *"}], "triggers.0.type"),
        ([EVERY_SECOND, {"type": "table", "table": "1-bad"}], "triggers.1.table"),
        ({"type": "schedule", "cron": "* * * * *"}, "triggers"),
    ])
    def test_bad_triggers_are_400_naming_the_field_and_change_nothing(self, server, unique_name, triggers, field):
        yearly = {"type": "schedule", "cron": "0 0 1 1 *", "event": {}}
        server.deploy(unique_name, ECHO, triggers=[yearly])
        response = patch(server, unique_name, {"timeout": 3, "triggers": triggers})
        assert response.status_code == 400, response.text
        assert field in response.json()["message"]
        assert [v["version"] for v in versions(server, unique_name)] == [1]
        fn = active(server, unique_name)
        assert (fn["version"], fn["timeout"], [t["cron"] for t in fn["triggers"]]) == (1, 10, ["0 0 1 1 *"])
