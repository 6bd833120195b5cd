"""The `frazil` command against a real server: deploy, invoke, ls, rm, logs, invocation, init."""
import json
import os
import stat
import subprocess

import httpx
import pytest

from frazil.testing.server import HTTP_TIMEOUT_S
from tests.conftest import FRAZIL


def write(folder, files):
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return folder


def test_deploy_folder_with_toml_and_flags(server, tmp_path, unique_name):
    """frazil.toml supplies settings, flags win, and `deploy` exits 0 once the version is active."""
    fn = write(tmp_path / "myfn", {
        "index.py": "import os\nfrom util import twice\n"
                    "def main(event, context):\n    return {'n': twice(event['n']), 'env': os.environ.get('MODE')}\n",
        "util.py": "def twice(x):\n    return 2 * x\n",
        "frazil.toml": f'name = "{unique_name}"\nmemory = 256\ntimeout = 5\n[env]\nMODE = "toml"\n',
        "__pycache__/junk.pyc": "ignored",
    })
    result = server.cli("deploy", str(fn), "--timeout", "7", "--env", "MODE=flag")
    assert result.returncode == 0, result.stderr
    assert f"deployed {unique_name} version 1" in result.stderr
    fn_view = server.client().get(f"/v1/functions/{unique_name}").json()["function"]
    assert fn_view["memory"] == 256 and fn_view["timeout"] == 7 and fn_view["env"] == {"MODE": "flag"}
    out = server.cli("invoke", unique_name, "--data", '{"n": 21}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"] == {"n": 42, "env": "flag"}
    again = server.cli("deploy", str(fn), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["version"] == 2


def test_name_defaults_to_folder_and_runtime_is_detected(server, tmp_path, unique_name):
    fn = write(tmp_path / unique_name, {"index.py": "def main(e, c):\n    return 'detected'\n"})
    assert server.cli("deploy", str(fn)).returncode == 0
    view = server.client().get(f"/v1/functions/{unique_name}").json()["function"]
    assert view["runtime"] == "python3.11" and view["handler"] == "index.main"


def test_invoke_exit_status_data_file_and_async(server, tmp_path, unique_name):
    write(tmp_path / "f", {"index.py": "def main(e, c):\n    if e.get('fail'):\n        raise ValueError('nope')\n"
                                      "    return e\n"})
    assert server.cli("deploy", str(tmp_path / "f"), "--name", unique_name).returncode == 0
    (tmp_path / "event.json").write_text('{"from": "file"}')
    ok = server.cli("invoke", unique_name, "--data", f"@{tmp_path / 'event.json'}")
    assert ok.returncode == 0 and json.loads(ok.stdout)["result"] == {"from": "file"}
    failed = server.cli("invoke", unique_name, "-d", '{"fail": true}')
    assert failed.returncode == 1 and json.loads(failed.stdout)["error"]["type"] == "ValueError"
    bad = server.cli("invoke", unique_name, "-d", "{oops")
    assert bad.returncode != 0 and "not valid JSON" in bad.stderr
    queued = server.cli("invoke", unique_name, "--async", "-d", '{"a": 1}')
    invocation_id = json.loads(queued.stdout)["invocation_id"]
    server.wait_invocation(invocation_id)
    shown = server.cli("invocation", invocation_id)
    assert shown.returncode == 0 and json.loads(shown.stdout)["result"] == {"a": 1}


def test_ls_logs_rm(server, tmp_path, unique_name):
    write(tmp_path / "f", {"index.py": "def main(e, c):\n    print('hello from the log')\n    return 1\n"})
    assert server.cli("deploy", str(tmp_path / "f"), "--name", unique_name).returncode == 0
    server.invoke(unique_name)
    listed = server.cli("ls", "--json")
    assert unique_name in [f["name"] for f in json.loads(listed.stdout)["functions"]]
    assert unique_name in server.cli("ls").stdout
    logs = server.cli("logs", unique_name)
    assert logs.returncode == 0 and "hello from the log" in logs.stdout
    assert server.cli("rm", unique_name, "--yes").returncode == 0
    gone = server.cli("invoke", unique_name)
    assert gone.returncode == 1 and "does not exist" in gone.stderr and "404" in gone.stderr


def test_logs_follow_prints_new_output(server, tmp_path, unique_name):
    """`logs --follow` keeps printing output of new invocations."""
    write(tmp_path / "f", {"index.py": "def main(e, c):\n    print('line', e['n'])\n    return 1\n"})
    assert server.cli("deploy", str(tmp_path / "f"), "--name", unique_name).returncode == 0
    env = dict(os.environ, FRAZIL_URL=server.url, FRAZIL_TOKEN=server.admin_key)
    follower = subprocess.Popen([FRAZIL, "logs", unique_name, "--follow"], env=env, stdout=subprocess.PIPE,
                                text=True)
    try:
        server.invoke(unique_name, {"n": 1})
        seen = ""
        while "line 1" not in seen:
            seen += follower.stdout.readline()
        server.invoke(unique_name, {"n": 2})
        while "line 2" not in seen:
            seen += follower.stdout.readline()
    finally:
        follower.kill()
        follower.wait(5)


def test_init_scaffolds_a_deployable_function(server, tmp_path):
    for runtime in ("python3.11",):
        created = subprocess.run([FRAZIL, "init", "scaffolded", "--runtime", runtime], cwd=tmp_path,
                                 capture_output=True, text=True)
        assert created.returncode == 0, created.stderr
        assert (tmp_path / "scaffolded" / "frazil.toml").exists()
        assert server.cli("deploy", str(tmp_path / "scaffolded")).returncode == 0
        body = json.loads(server.cli("invoke", "scaffolded", "-d", '{"name": "you"}').stdout)
        assert body["result"]["hello"] == "you"
    again = subprocess.run([FRAZIL, "init", "scaffolded"], cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_client_without_server_says_so(tmp_path):
    env = dict(os.environ, FRAZIL_URL="http://127.0.0.1:9", FRAZIL_TOKEN="x")
    result = subprocess.run([FRAZIL, "ls"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1 and "cannot reach frazil" in result.stderr


def test_admin_key_file_and_env(server_factory):
    """Without FRAZIL_ADMIN_KEY a key is generated into <data-dir>/admin.key with mode 0600."""
    srv = server_factory()
    key_file = srv.data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert srv.client().get("/v1/functions").status_code == 200
    chosen = server_factory(FRAZIL_ADMIN_KEY="my-chosen-key")
    assert chosen.admin_key == "my-chosen-key"
    assert chosen.client().get("/v1/functions").status_code == 200
    assert chosen.client(token=srv.admin_key).get("/v1/functions").status_code == 401


def test_openapi_document_lists_the_routes(server):
    doc = httpx.get(f"{server.url}/openapi.json", timeout=HTTP_TIMEOUT_S).json()
    for path in ("/v1/functions/{name}", "/v1/functions/{name}/invoke", "/v1/invocations/{invocation_id}",
                 "/v1/functions/{name}/logs", "/v1/functions/{name}/invocations", "/healthz", "/metrics"):
        assert path in doc["paths"], path


def test_server_refuses_to_start_without_the_privileges_it_needs(tmp_path):
    """Run as an unprivileged user, `frazil server` stops at once, saying what is missing."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user for the check")
    data_dir = tmp_path / "data"
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", FRAZIL, "server",
                             "--port", "9", "--data-dir", str(data_dir)], capture_output=True, text=True,
                            timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("FRAZIL_")})
    assert result.returncode == 2, result.stderr
    assert "cannot start" in result.stderr and "root is required" in result.stderr
    assert not data_dir.exists()


def test_server_with_a_bad_setting_stops_with_one_line(tmp_path):
    """A FRAZIL_* variable that does not validate: exit 2 and one line naming it, no traceback."""
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAZIL_")}
    result = subprocess.run([FRAZIL, "server", "--port", "9", "--data-dir", str(data_dir)], capture_output=True,
                            text=True, timeout=60, env={**env, "FRAZIL_KEEP_ALIVE_S": "soon"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == ["error: frazil cannot start: FRAZIL_KEEP_ALIVE_S='soon': Input should be "
                                          "a valid number, unable to parse string as a number"]
    assert not data_dir.exists()
