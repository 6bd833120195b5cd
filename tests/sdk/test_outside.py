"""The SDK as packages outside the platform: installed with pip / npm from the repository into a
fresh environment, imported by a function's own unit test, and served by a real `frazil server`
over its HTTP API (FRAZIL_URL, FRAZIL_TOKEN). Nothing is downloaded: both installs are offline."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_SDK = REPO / "frazil" / "runtimes" / "python"
NODE_SDK = REPO / "frazil" / "runtimes" / "node" / "frazil-sdk"

# A function and its unit test, as a developer would write them: index.py is deployable as is.
PY_FUNCTION = '''
from frazil_sdk import db, http, log


def main(event, context):
    notes = db.table(event["table"])
    rec = notes.insert({"text": event["text"], "seen": False})
    log.info("stored %s", rec["id"])
    upstream = http.get(event["url"], timeout=5)
    return {"id": rec["id"], "again": notes.get(rec["id"])["text"], "matching": notes.count({"text": event["text"]}),
            "found": [r["id"] for r in notes.find({"seen": {"ne": True}}, limit=10)],
            "upstream": upstream.status, "echoed": upstream.json()["path"]}
'''

PY_TEST = '''
import json, os, sys
import frazil_sdk
from frazil_sdk import SdkError, db
import index

class Ctx:
    invocation_id, function_name, version, memory_mb, cold = "test", "notes", 1, 128, True
    def remaining_ms(self):
        return 10_000

out = index.main({"table": os.environ["TABLE"], "text": "hi", "url": os.environ["UPSTREAM"] + "/echo"}, Ctx())
assert out["again"] == "hi" and out["matching"] == 1 and out["found"] == [out["id"]], out
assert out["upstream"] == 200 and out["echoed"] == "/echo", out
errors = {}
for name, call in [("get", lambda: db.table(os.environ["TABLE"]).get("no-such-id")),
                   ("update", lambda: db.table(os.environ["TABLE"]).update({"seen": False}, {"seen": True})),
                   ("delete", lambda: db.table(os.environ["TABLE"]).delete({"text": "hi"}))]:
    try:
        call()
    except SdkError as exc:
        errors[name] = [exc.type, exc.message]
out["errors"] = errors
out["sdk_file"] = frazil_sdk.__file__
print(json.dumps(out))
'''

NODE_FUNCTION = '''
const { db, http, log } = require('frazil-sdk');

exports.main = async (event, context) => {
  const notes = db.table(event.table);
  const rec = await notes.insert({ text: event.text, seen: false });
  log.info('stored %s', rec.id);
  const upstream = await http.get(event.url, { timeout: 5 });
  return {
    id: rec.id, again: (await notes.get(rec.id)).text, matching: await notes.count({ text: event.text }),
    found: (await notes.find({ seen: { ne: true } }, { limit: 10 })).map((r) => r.id),
    upstream: upstream.status, echoed: upstream.json().path,
  };
};
'''

NODE_TEST = '''
const assert = require('assert');
const { db, http } = require('frazil-sdk');
const index = require('./index');

(async () => {
  const context = { invocation_id: 'test', function_name: 'notes', getRemainingTimeInMillis: () => 10000 };
  const out = await index.main({ table: process.env.TABLE, text: 'hi', url: `${process.env.UPSTREAM}/echo` }, context);
  assert.deepStrictEqual([out.again, out.matching, out.found], ['hi', 1, [out.id]]);
  assert.deepStrictEqual([out.upstream, out.echoed], [200, '/echo']);
  const held = await http.get(`${process.env.UPSTREAM}/redirect?to=/echo`, { followRedirects: false });
  const followed = await http.get(`${process.env.UPSTREAM}/redirect?to=/echo`);
  const missing = await http.get(`${process.env.UPSTREAM}/nowhere`);
  const posted = (await http.post(`${process.env.UPSTREAM}/echo`, { json: { a: 1 } })).json();
  assert.deepStrictEqual([held.status, held.headers.location, followed.status, missing.status, missing.ok, posted.body],
    [302, '/echo', 200, 404, false, '{"a":1}']);
  out.errors = {};
  const calls = {
    get: () => db.table(process.env.TABLE).get('no-such-id'),
    update: () => db.table(process.env.TABLE).update({ seen: false }, { seen: true }),
  };
  for (const [name, call] of Object.entries(calls)) {
    await call().then(() => {}, (err) => { out.errors[name] = [err.type, err.message]; });
  }
  out.sdk_file = require.resolve('frazil-sdk');
  console.log(JSON.stringify(out));
})().catch((err) => { console.error(err); process.exit(1); });
'''


def run(cmd: list[str], *, cwd: Path, env: dict | None = None, timeout: float = 120) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def outside_env(server, **extra) -> dict:
    """A developer's environment: the server's URL and key, nothing of this repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAZIL_", "PYTHON", "NODE_"))}
    return {**env, "FRAZIL_URL": server.url, "FRAZIL_TOKEN": server.admin_key, **extra}


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory) -> Path:
    """A fresh venv with the Python SDK pip-installed from the repository (offline)."""
    venv = tmp_path_factory.mktemp("sdk-venv") / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    run([str(venv / "bin" / "pip"), "install", "--no-index", "--no-deps", "--disable-pip-version-check",
         str(PYTHON_SDK)], cwd=venv.parent)
    return venv


@pytest.fixture
def table() -> str:
    return "outside_" + secrets.token_hex(4)


class TestPythonPackage:
    def test_installed_copy_is_typed(self, sdk_venv, tmp_path):
        """The venv holds its own copy of frazil_sdk, with py.typed beside it for type checkers."""
        check = ("import frazil_sdk, frazil_sdk.aio, typing, importlib.resources as r, json; "
                 "print(json.dumps([frazil_sdk.__file__, r.files('frazil_sdk').joinpath('py.typed').is_file(), "
                 "str(typing.get_type_hints(frazil_sdk.Table.find)['return'])]))")
        path, typed, returns = json.loads(run([str(sdk_venv / "bin" / "python"), "-c", check], cwd=tmp_path))
        assert path.startswith(str(sdk_venv)) and typed, path
        assert returns.startswith("list[dict[str, typing.Any]]"), returns

    def test_unit_test_of_a_function_against_a_server(self, sdk_venv, tmp_path, server, upstream, table):
        """A function's unit test calls main(event, ctx); its records land in the server's table."""
        (tmp_path / "index.py").write_text(PY_FUNCTION)
        (tmp_path / "test_index.py").write_text(PY_TEST)
        env = outside_env(server, TABLE=table, UPSTREAM=upstream.url)
        out = json.loads(run([str(sdk_venv / "bin" / "python"), "test_index.py"], cwd=tmp_path, env=env))
        assert out["sdk_file"].startswith(str(sdk_venv))
        stored = server.client().get(f"/v1/tables/{table}/records").json()["records"]
        assert [(r["id"], r["text"]) for r in stored] == [(out["id"], "hi")]
        assert out["errors"]["get"][0] == "NotFound"
        for call in ("update", "delete"):
            kind, message = out["errors"][call]
            assert kind == "NotAvailableOutside" and f"db.table(...).{call}" in message, message

    def test_without_a_server_the_error_says_what_to_set(self, sdk_venv, tmp_path):
        script = "from frazil_sdk import db, SdkError\ntry:\n    db.table('x').find()\nexcept SdkError as e:\n" \
                 "    print(e.type, e.message)\n"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAZIL_")}
        out = run([str(sdk_venv / "bin" / "python"), "-c", script], cwd=tmp_path, env=env)
        assert out.startswith("NotInFunction") and "FRAZIL_URL" in out and "FRAZIL_TOKEN" in out

    def test_log_goes_to_stderr(self, sdk_venv, tmp_path):
        done = subprocess.run([str(sdk_venv / "bin" / "python"), "-c", "from frazil_sdk import log; log.info('hi %s', 1)"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "[INFO] hi 1\n")


class TestHttpOutside:
    """`http` outside the platform is a direct request answering the same Response as inside."""

    def test_redirects_statuses_and_bodies(self, sdk_venv, tmp_path, upstream):
        script = textwrap.dedent(f"""
            import json
            from frazil_sdk import http, SdkError
            base = {upstream.url!r}
            followed = http.get(base + "/redirect?to=/echo")
            held = http.get(base + "/redirect?to=/echo", follow_redirects=False)
            missing = http.get(base + "/nowhere")
            posted = http.post(base + "/echo", json={{"a": 1}}, headers={{"X-Test": "yes"}}).json()
            form = http.put(base + "/echo", data={{"b": "2"}}).json()
            raw = http.get(base + "/bytes")
            try:
                http.get("http://127.0.0.1:1/", timeout=2)
            except SdkError as exc:
                refused = exc.type
            print(json.dumps([followed.status, followed.url.endswith("/echo"), held.status, held.headers["location"],
                              missing.status, missing.ok, posted["body"], posted["headers"]["X-Test"],
                              posted["method"], form["body"], form["method"], raw.content == bytes(range(256)),
                              refused]))
        """)
        out = json.loads(run([str(sdk_venv / "bin" / "python"), "-c", script], cwd=tmp_path,
                             env={k: v for k, v in os.environ.items() if not k.startswith("FRAZIL_")}))
        assert out == [200, True, 302, "/echo", 404, False, '{"a":1}', "yes", "POST", "b=2", "PUT", True, "HttpError"]


class TestAsyncOutside:
    def test_aio_has_the_same_calls(self, sdk_venv, tmp_path, server, table):
        """`frazil_sdk.aio` answers coroutines outside too (each call on a worker thread)."""
        script = textwrap.dedent(f"""
            import asyncio, json
            from frazil_sdk import aio
            async def main():
                notes = aio.db.table({table!r})
                recs = await asyncio.gather(*(notes.insert({{"n": i}}) for i in range(3)))
                print(json.dumps([await notes.count(), await notes.count({{"n": {{"gte": 1}}}}), len(recs)]))
            asyncio.run(main())
        """)
        out = run([str(sdk_venv / "bin" / "python"), "-c", script], cwd=tmp_path, env=outside_env(server))
        assert json.loads(out) == [3, 2, 3]


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
class TestNodePackage:
    def test_unit_test_of_a_function_against_a_server(self, tmp_path, server, upstream, table):
        """`npm install <repo path>` (offline), then a node script runs main(event, context)."""
        (tmp_path / "package.json").write_text(json.dumps({"name": "notes", "version": "1.0.0", "private": True}))
        run(["npm", "install", "--offline", "--no-audit", "--no-fund", str(NODE_SDK)], cwd=tmp_path)
        assert json.loads((tmp_path / "node_modules" / "frazil-sdk" / "package.json").read_text())["types"] == "index.d.ts"
        (tmp_path / "index.js").write_text(NODE_FUNCTION)
        (tmp_path / "test.js").write_text(NODE_TEST)
        out = json.loads(run(["node", "test.js"], cwd=tmp_path, env=outside_env(server, TABLE=table, UPSTREAM=upstream.url)))
        stored = server.client().get(f"/v1/tables/{table}/records").json()["records"]
        assert [(r["id"], r["text"]) for r in stored] == [(out["id"], "hi")]
        assert out["errors"]["get"][0] == "NotFound"
        kind, message = out["errors"]["update"]
        assert kind == "NotAvailableOutside" and "db.table(...).update" in message, message

    def test_a_copied_package_works_without_the_bridge(self, tmp_path, server, table):
        """Installed as a copy (not a link into the repository) the SDK has no ../bridge.js and is outside."""
        (tmp_path / "package.json").write_text(json.dumps({"name": "copy", "version": "1.0.0", "private": True}))
        run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--install-links", str(NODE_SDK)], cwd=tmp_path)
        assert not (tmp_path / "node_modules" / "frazil-sdk").is_symlink()
        script = (f"require('frazil-sdk').db.table('{table}').insert({{a: 1}})"
                  ".then((r) => console.log(r.id), (e) => { console.error(e); process.exit(1); })")
        record_id = run(["node", "-e", script], cwd=tmp_path, env=outside_env(server)).strip()
        assert server.client().get(f"/v1/tables/{table}/records/{record_id}").json()["record"]["a"] == 1
