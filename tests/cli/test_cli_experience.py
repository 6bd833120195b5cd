"""The `frazil` command as a user meets it, against real servers: help and version, one-line
refusals for a wrong FRAZIL_URL or key, stdin events, frazil.toml typos, archives, build logs,
confirmation, --json everywhere, the listing commands, completion and exit statuses."""
import contextlib
import io
import json
import os
import pty
import re
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile

import pytest

from frazil.settings import ENV_DATA_DIR, ENV_TOKEN, ENV_URL
from frazil.testing.server import free_port, hermetic_environ
from frazil.testing.waiting import wait_until
from tests.conftest import FRAZIL

HELLO = {"index.py": "def main(event, context):\n    print('seen', event)\n    return event\n"}


def run(*args, env=None, cwd=None, input=None, stdin=None, timeout=120):
    """`frazil ARGS` with only the FRAZIL_* variables given in `env`."""
    return subprocess.run([FRAZIL, *args], env={**hermetic_environ(), **(env or {})}, cwd=cwd, input=input,
                          stdin=stdin, capture_output=True, text=True, timeout=timeout)


def as_admin(server):
    return {ENV_URL: server.url, ENV_TOKEN: server.admin_key}


def one_line(result) -> str:
    """The refusal's single stderr line (the test fails on anything more, a traceback above all)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def write(folder, files):
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return folder


def tiny_wheel() -> bytes:
    """A pure-Python wheel of `tinypkg`, written as the format describes (no index needed)."""
    import base64
    import hashlib

    info = "tinypkg-1.0.dist-info"
    files = {"tinypkg/__init__.py": b"VALUE = 'tiny'\n",
             f"{info}/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    digest = lambda d: base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()  # noqa: E731
    record = "".join(f"{p},sha256={digest(d)},{len(d)}\n" for p, d in files.items()) + f"{info}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in {**files, f"{info}/RECORD": record.encode()}.items():
            zf.writestr(path, data)
    return buf.getvalue()


class TestHelpVersionAndExitCodes:
    def test_version(self):
        result = run("--version")
        assert result.returncode == 0 and result.stdout.strip() == "frazil 0.1.0"

    def test_h_is_help_on_the_app_and_on_commands(self):
        for args in (["-h"], ["deploy", "-h"], ["records", "-h"]):
            short, long = run(*args), run(*args[:-1], "--help")
            assert short.returncode == 0 and short.stdout == long.stdout and "Usage" in short.stdout

    def test_help_states_the_exit_codes_once(self):
        assert "Exit status: 0 ok, 1" in run("-h").stdout

    def test_usage_errors_exit_2(self):
        assert run("ls", "--no-such-flag").returncode == 2
        assert run("invoke").returncode == 2  # missing NAME

    def test_completion_is_installable_and_completes_commands(self, tmp_path):
        # Typer finds the shell among the command's ancestors (shellingham): make bash its parent
        # (not exec'd away: a command follows), as the test run's own ancestors need not hold one.
        installed = subprocess.run(["bash", "-c", f'"{FRAZIL}" --install-completion; exit $?'], capture_output=True,
                                   text=True, timeout=120, env={**hermetic_environ(), "HOME": str(tmp_path)})
        assert installed.returncode == 0, installed.stdout + installed.stderr
        script = (tmp_path / ".bash_completions" / "frazil.sh").read_text()
        assert "_FRAZIL_COMPLETE=complete_bash" in script
        completed = run(env={"_FRAZIL_COMPLETE": "complete_bash", "COMP_WORDS": "frazil inv", "COMP_CWORD": "1"})
        assert completed.stdout.split() == ["invoke", "invocation", "invocations"]


class TestReachingTheServer:
    def test_url_without_a_scheme(self):
        result = run("ls", env={ENV_URL: "127.0.0.1:8080"})
        assert result.returncode == 2
        assert one_line(result) == ("error: FRAZIL_URL='127.0.0.1:8080' is not an http:// or https:// URL; "
                                    "did you mean http://127.0.0.1:8080?")

    def test_refused_connection(self):
        result = run("ls", env={ENV_URL: f"http://127.0.0.1:{free_port()}"})
        assert result.returncode == 1
        assert "cannot reach frazil" in one_line(result) and "Connection refused" in result.stderr

    def test_a_plain_http_server_is_not_frazil(self, tmp_path):
        (tmp_path / "index.html").write_text("<html><body>someone else's page</body></html>")
        port = free_port()
        other = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                 cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: _accepts(port), 20, what="http.server to listen")
            for args in (["ls"], ["invoke", "x"], ["versions", "x"]):
                result = run(*args, env={ENV_URL: f"http://127.0.0.1:{port}/"})
                assert result.returncode == 1
                line = one_line(result)
                assert "does not look like a frazil server" in line and "text/html" in line, line
                assert "<html" not in result.stderr and result.stdout == ""
        finally:
            other.kill()
            other.wait(5)

    def test_a_port_that_does_not_speak_http(self):
        """A service that greets with its own banner (as sshd does) and hangs up."""
        with canned_answer(b"SSH-2.0-OpenSSH_9.2\r\n") as url:
            result = run("ls", env={ENV_URL: url})
        assert result.returncode == 1
        assert "is FRAZIL_URL the address of a frazil server?" in one_line(result)

    def test_a_port_answering_a_web_page_with_200(self):
        """Say a router's login page: 200, HTML, on every path."""
        page = b"<html><body><form>Login</form></body></html>"
        answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(page), page))
        with canned_answer(answer) as url:
            result = run("describe", "x", env={ENV_URL: url})
        assert result.returncode == 1
        assert one_line(result) == (f"error: {url} does not look like a frazil server: GET /v1/functions/x "
                                    f"answered HTTP 200 with text/html; check FRAZIL_URL")


@contextlib.contextmanager
def canned_answer(answer: bytes):
    """A TCP server on 127.0.0.1 that sends `answer` to each connection and hangs up; yields
    its URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)  # the request, if any, before the answer
                except OSError:
                    pass
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class TestTheKey:
    def test_a_wrong_token_names_frazil_token(self, server):
        result = run("ls", env={ENV_URL: server.url, ENV_TOKEN: "wrong"})
        assert result.returncode == 1
        assert "refused the key in FRAZIL_TOKEN (HTTP 401)" in one_line(result)

    def test_no_key_names_where_it_was_looked_for(self, server, tmp_path):
        result = run("ls", env={ENV_URL: server.url}, cwd=tmp_path)
        assert result.returncode == 1
        line = one_line(result)
        assert "no admin key (HTTP 401)" in line and "FRAZIL_TOKEN" in line and ENV_DATA_DIR in line
        assert str(tmp_path / ".frazil" / "admin.key") in line

    def test_another_servers_key_file_is_named(self, server, tmp_path):
        write(tmp_path, {".frazil/admin.key": "someone-elses-key\n"})
        result = run("ls", env={ENV_URL: server.url}, cwd=tmp_path)
        assert result.returncode == 1
        assert f"refused the key from {tmp_path / '.frazil' / 'admin.key'}" in one_line(result)

    def test_frazil_data_dir_finds_the_servers_key(self, server, tmp_path):
        result = run("ls", "--json", env={ENV_URL: server.url, ENV_DATA_DIR: str(server.data_dir)}, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["success"] is True

    def test_the_key_file_of_the_default_data_dir(self, server_factory, tmp_path):
        """A server started here with the default data dir, and a client in the same folder."""
        srv = server_factory(data_dir=tmp_path / ".frazil")
        result = run("ls", env={ENV_URL: srv.url}, cwd=tmp_path)
        assert result.returncode == 0, result.stderr


class TestInvokeData:
    def test_data_from_stdin(self, server, tmp_path, unique_name):
        server.deploy(unique_name, HELLO)
        result = run("invoke", unique_name, "--data", "@-", env=as_admin(server), input='{"from": "stdin"}')
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["result"] == {"from": "stdin"}

    def test_bad_json_on_stdin_is_a_usage_error(self, server, unique_name):
        result = run("invoke", unique_name, "-d", "@-", env=as_admin(server), input="{nope")
        assert result.returncode == 2
        assert one_line(result).startswith("error: standard input is not valid JSON")


class TestDeploy:
    def test_a_typo_in_frazil_toml_is_refused_naming_the_key(self, server, tmp_path, unique_name):
        fn = write(tmp_path / "f", {**HELLO, "frazil.toml": f'name = "{unique_name}"\nmemroy = 256\n'})
        result = run("deploy", str(fn), env=as_admin(server))
        assert result.returncode == 2
        assert "unknown key 'memroy' (did you mean 'memory'?)" in one_line(result)
        assert server.client().get(f"/v1/functions/{unique_name}").status_code == 404

    def test_a_typo_in_a_function_table_too(self, server, tmp_path):
        fn = write(tmp_path / "f", {**HELLO, "frazil.toml": '[function]\ntimout = 5\n'})
        result = run("deploy", str(fn), env=as_admin(server))
        assert result.returncode == 2 and "'timout' (did you mean 'timeout'?)" in one_line(result)

    @pytest.mark.parametrize("kind", ["zip", "tar.gz"])
    def test_an_archive_with_its_toml(self, server, tmp_path, unique_name, kind):
        """`deploy fn.zip`: sent as it is; frazil.toml inside it (under the archive's lone top
        folder, as `zip -r fn.zip fn/` makes) gives the settings."""
        files = {f"fn/{k}": v for k, v in {**HELLO, "frazil.toml": "memory = 256\n"}.items()}
        archive = tmp_path / f"{unique_name}.{kind}"
        if kind == "zip":
            with zipfile.ZipFile(archive, "w") as zf:
                for name, text in files.items():
                    zf.writestr(name, text)
        else:
            with tarfile.open(archive, "w:gz") as tf:
                for name, text in files.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(text.encode())
                    tf.addfile(info, io.BytesIO(text.encode()))
        result = run("deploy", str(archive), env=as_admin(server))
        assert result.returncode == 0, result.stderr
        assert f"deployed {unique_name} version 1" in result.stderr
        assert server.client().get(f"/v1/functions/{unique_name}").json()["function"]["memory"] == 256
        assert server.invoke(unique_name, {"n": 1})["result"] == {"n": 1}

    def test_a_file_that_is_no_archive(self, server, tmp_path):
        (tmp_path / "notes.txt").write_text("hello")
        result = run("deploy", str(tmp_path / "notes.txt"), env=as_admin(server))
        assert result.returncode == 2 and "neither a folder nor a .zip" in one_line(result)

    def test_a_failed_build_shows_its_whole_log(self, server, tmp_path, unique_name):
        fn = write(tmp_path / "f", {**HELLO, "requirements.txt": "--no-index\nno-such-package-frazil==0.0.1\n"})
        result = run("deploy", str(fn), "--name", unique_name, env=as_admin(server))
        assert result.returncode == 1
        assert result.stderr.splitlines()[-1].startswith("error: version 1 of")
        log = server.client().get(f"/v1/functions/{unique_name}/versions/1").json()["version"]["build_log"]
        shown = [line.removeprefix("  build ") for line in result.stderr.splitlines() if line.startswith("  build ")]
        assert shown == log.splitlines() and any(line.startswith("build failed:") for line in shown)

    def test_a_successful_build_shows_its_whole_log(self, server, tmp_path, unique_name):
        fn = write(tmp_path / "f", {"index.py": "import tinypkg\ndef main(e, c):\n    return tinypkg.VALUE\n",
                                    "requirements.txt": "./wheels/tinypkg-1.0-py3-none-any.whl\n",
                                    "wheels/tinypkg-1.0-py3-none-any.whl": tiny_wheel()})
        result = run("deploy", str(fn), "--name", unique_name, env=as_admin(server))
        assert result.returncode == 0, result.stderr
        log = server.client().get(f"/v1/functions/{unique_name}/versions/1").json()["version"]["build_log"]
        shown = [line.removeprefix("  build ") for line in result.stderr.splitlines() if line.startswith("  build ")]
        assert log.strip() and shown == log.splitlines()
        assert "ready in" in shown[-2]  # the layer's last line
        assert shown[-1] == "handler: index.main (the default; its module defines it)"  # then the handler's


class TestRemove:
    def test_without_a_terminal_rm_wants_yes(self, server, unique_name):
        server.deploy(unique_name, HELLO)
        result = run("rm", unique_name, env=as_admin(server), stdin=subprocess.DEVNULL)
        assert result.returncode == 2
        assert one_line(result) == f"error: not deleting {unique_name}: no terminal to confirm on; pass --yes to delete it"
        assert server.client().get(f"/v1/functions/{unique_name}").status_code == 200
        gone = run("rm", unique_name, "--yes", env=as_admin(server), stdin=subprocess.DEVNULL)
        assert gone.returncode == 0 and server.client().get(f"/v1/functions/{unique_name}").status_code == 404

    @pytest.mark.parametrize("answer, deleted", [("n", False), ("y", True)])
    def test_at_a_terminal_rm_asks(self, server, unique_name, answer, deleted):
        server.deploy(unique_name, HELLO)
        primary, secondary = pty.openpty()
        proc = subprocess.Popen([FRAZIL, "rm", unique_name], env={**hermetic_environ(), **as_admin(server)},
                                stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(secondary)
        try:
            os.write(primary, f"{answer}\n".encode())
            _, stderr = proc.communicate(timeout=60)
        finally:
            os.close(primary)
        assert f"Delete function {unique_name} and all its versions? [y/N]" in stderr
        assert proc.returncode == (0 if deleted else 1), stderr
        status = server.client().get(f"/v1/functions/{unique_name}").status_code
        assert status == (404 if deleted else 200)


class TestListingCommands:
    def test_versions_describe_invocations(self, server, tmp_path, unique_name):
        env = as_admin(server)
        server.deploy(unique_name, {"index.py": "def main(e, c):\n    if e.get('fail'):\n        raise ValueError('no')\n"
                                                "    return 1\n"})
        server.deploy(unique_name, HELLO, memory=256)
        versions = run("versions", unique_name, env=env)
        assert versions.returncode == 0, versions.stderr
        assert re.search(r"\b2 \*", versions.stdout) and not re.search(r"\b1 \*", versions.stdout)
        as_json = json.loads(run("versions", unique_name, "--json", env=env).stdout)
        assert [v["version"] for v in as_json["versions"]] == [2, 1]

        described = run("describe", unique_name, env=env)
        assert described.returncode == 0 and "memory:" in described.stdout and "256" in described.stdout
        assert json.loads(run("describe", unique_name, "--json", env=env).stdout)["function"]["version"] == 2

        server.deploy(unique_name, {"index.py": "def main(e, c):\n    if e.get('fail'):\n        raise ValueError('no')\n"
                                                "    return 1\n"})
        ok = server.invoke(unique_name)["invocation_id"]
        bad = server.invoke(unique_name, {"fail": True})["invocation_id"]
        failed = json.loads(run("invocations", unique_name, "--status", "failed", "--json", env=env).stdout)
        assert [r["id"] for r in failed["invocations"]] == [bad]
        table = run("invocations", unique_name, env=env)
        assert table.returncode == 0 and ok in table.stdout and bad in table.stdout
        wrong = run("invocations", unique_name, "--status", "sleeping", env=env)
        assert wrong.returncode == 2

    def test_tables_and_records(self, server, unique_name):
        env = as_admin(server)
        table = unique_name.replace("-", "_")
        client = server.client()
        assert client.put(f"/v1/tables/{table}", json={"acl": {"read": "public", "write": "admin"}}).status_code == 200
        for age in (10, 30):
            assert client.post(f"/v1/tables/{table}/records", json={"age": age}).status_code == 200
        listed = run("tables", env=env)
        assert listed.returncode == 0 and table in listed.stdout and "public" in listed.stdout
        assert table in [t["name"] for t in json.loads(run("tables", "--json", env=env).stdout)["tables"]]
        found = json.loads(run("records", table, "--where", '{"age": {"gte": 18}}', "--json", env=env).stdout)
        assert [r["age"] for r in found["records"]] == [30]
        shown = run("records", table, "--limit", "1", env=env)
        assert shown.returncode == 0 and shown.stdout.count('"age"') == 1
        bad = run("records", table, "--where", "{age", env=env)
        assert bad.returncode == 2 and "--where is not valid JSON" in one_line(bad)

    def test_every_data_command_speaks_json(self, server, tmp_path, unique_name):
        env = as_admin(server)
        fn = write(tmp_path / unique_name, HELLO)
        deployed = run("deploy", str(fn), "--json", env=env)
        assert json.loads(deployed.stdout)["version"] == 1
        server.invoke(unique_name, {"x": 1})
        for args in (["ls"], ["describe", unique_name], ["versions", unique_name], ["invocations", unique_name],
                     ["tables"], ["invoke", unique_name]):
            result = run(*args, "--json", env=env)
            assert result.returncode == 0, (args, result.stderr)
            assert json.loads(result.stdout)["success"] is True, args
        logs = run("logs", unique_name, "--json", env=env)
        assert [json.loads(line)["status"] for line in logs.stdout.splitlines()] == ["succeeded", "succeeded"]
        removed = run("rm", unique_name, "--yes", "--json", env=env)
        assert json.loads(removed.stdout)["success"] is True
