"""What every benchmark shares: starting and stopping servers (and everything they start),
deploying, a keep-alive HTTP client for per-request latency, wrk for throughput, process
memory, percentile math, markdown tables and JSON results.

Cleanup rule: every process a benchmark starts is registered here and killed - with every
descendant it left behind - when the `with` block ends, on an exception, on Ctrl-C, on
SIGTERM and at interpreter exit. Load generators only ever talk to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import platform as _platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
FRAZIL = VENV_BIN / "frazil"
RESULTS_DIR = REPO / "bench" / "results"
HOST = "127.0.0.1"

# A directory holding another `frazil` package to benchmark instead of this checkout's
# (e.g. a worktree with a proposed fix), for before/after figures from the same scripts.
ENV_FRAZIL_SRC = "BENCH_FRAZIL_SRC"

if os.environ.get(ENV_FRAZIL_SRC):  # the in-process parts use that package too
    sys.path.insert(0, os.environ[ENV_FRAZIL_SRC])

# The function every benchmark runs: the smallest useful handler, no output.
HELLO_PY = 'def main(event, context):\n    return {"hello": event.get("name", "world")}\n'
EVENT = b'{"name":"bench"}'


# --- cleanup of everything we start ------------------------------------------------------

_owned: dict[int, "OwnedProcess"] = {}


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP end the benchmark like Ctrl-C does: through every `finally`."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a pid from a later process that reuses it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def process_table() -> dict[int, int]:
    """pid -> ppid for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        table[int(entry)] = int(stat[stat.rindex(b")") + 2:].split()[1])
    return table


def descendants(pid: int, table: dict[int, int] | None = None) -> list[int]:
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for child, parent in table.items():
        children.setdefault(parent, []).append(child)
    out, todo = [], list(children.get(pid, ()))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def direct_children(pid: int, table: dict[int, int] | None = None) -> list[int]:
    table = process_table() if table is None else table
    return sorted(c for c, p in table.items() if p == pid)


@dataclass
class OwnedProcess:
    """A process we started (in its own session) and must leave nothing of."""

    popen: subprocess.Popen
    what: str
    term_timeout_s: float = 15.0

    def __post_init__(self):
        _owned[self.popen.pid] = self

    def stop(self) -> None:
        pid = self.popen.pid
        if pid not in _owned:
            return
        # Remember the whole tree first: a graceful stop should take it down, and whatever
        # survives (orphans reparented away from the server) is killed by (pid, start time).
        tree = [(p, proc_start_time(p)) for p in descendants(pid)]
        if self.popen.poll() is None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(self.term_timeout_s)
            except subprocess.TimeoutExpired:
                pass
        if self.popen.poll() is None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(10)
        for p, started in tree + [(p, proc_start_time(p)) for p in descendants(pid)]:
            if started is not None and proc_start_time(p) == started:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _owned.pop(pid, None)


def stop_all() -> None:
    for owned in list(_owned.values()):
        try:
            owned.stop()
        except Exception as exc:  # keep stopping the others
            print(f"warning: stopping {owned.what} failed: {exc}", file=sys.stderr)


atexit.register(stop_all)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, owned: OwnedProcess, timeout_s: float, log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if owned.popen.poll() is not None:
            raise ServerFailed(f"{owned.what} exited with {owned.popen.returncode}" + _tail(log_path))
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServerFailed(f"{owned.what} did not listen on port {port} within {timeout_s:g} s" + _tail(log_path))
        time.sleep(0.05)


def _tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n" + "\n".join(text)


class ServerFailed(RuntimeError):
    pass


# --- the frazil server ---------------------------------------------------------------------


def zip_files(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


class FrazilServer:
    """`frazil server` on a free port with its own data dir, admin key and sandbox."""

    def __init__(self, sandbox: str, env: dict[str, str] | None = None):
        self.sandbox = sandbox
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.admin_key = secrets.token_urlsafe(24)
        self.data_dir = Path(tempfile.mkdtemp(prefix="frazil-bench-"))
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.owned: OwnedProcess | None = None
        self._http = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.owned.popen.pid

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def start(self, timeout_s: float = 30.0) -> "FrazilServer":
        env = {**os.environ, "FRAZIL_SANDBOX": self.sandbox, "FRAZIL_ADMIN_KEY": self.admin_key, **self.extra_env}
        command = [str(FRAZIL)]
        source = os.environ.get(ENV_FRAZIL_SRC)
        if source:  # A/B a patch: run the frazil package found in another checkout
            env["PYTHONPATH"] = source
            command = [str(PYTHON), "-P", "-c", "from frazil.cli.main import app; app()"]
        with open(self.log_path, "ab") as log:
            popen = subprocess.Popen(
                [*command, "server", "--port", str(self.port), "--data-dir", str(self.data_dir),
                 "--log-level", "warning"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.data_dir)
        self.owned = OwnedProcess(popen, f"frazil server ({self.sandbox}) on port {self.port}")
        try:
            wait_for_port(self.port, self.owned, timeout_s, self.log_path)
            status, body = self.request("GET", "/healthz")
            if status != 200:
                raise ServerFailed(f"/healthz answered {status}: {body[:200]!r}")
        except BaseException:
            self.stop(keep_log=True)
            raise
        return self

    def stop(self, keep_log: bool = False) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.owned is not None:
            self.owned.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if keep_log and self.log_path.exists():
            print(f"the server's log is kept in {self.log_path}", file=sys.stderr)
        else:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "FrazilServer":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(keep_log=exc_type is not None)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- HTTP API (setup only: measurements use KeepAliveClient or wrk) ---

    @property
    def http(self):
        if self._http is None:
            import httpx

            self._http = httpx.Client(base_url=self.url, headers=self.auth, timeout=120)
        return self._http

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        r = self.http.request(method, path, content=body or None)
        return r.status_code, r.content

    def deploy(self, name: str, files: dict[str, str | bytes] | bytes, config: dict | None = None) -> dict:
        bundle = files if isinstance(files, bytes) else zip_files(files)
        r = self.http.put(f"/v1/functions/{name}", files={"bundle": ("bundle.zip", bundle, "application/zip")},
                          data={"config": json.dumps(config or {"memory": 128})})
        if r.status_code != 200:
            raise RuntimeError(f"deploy of {name} failed: {r.status_code} {r.text[:500]}")
        return r.json()

    def deploy_many(self, names: list[str], files: dict[str, str | bytes], config: dict | None = None,
                    workers: int = 4) -> float:
        """Deploy the same bundle under many names; returns the seconds it took."""
        from concurrent.futures import ThreadPoolExecutor

        import httpx

        bundle = zip_files(files)
        started = time.perf_counter()

        def one(chunk: list[str]) -> None:
            with httpx.Client(base_url=self.url, headers=self.auth, timeout=120) as client:
                for name in chunk:
                    r = client.put(f"/v1/functions/{name}",
                                   files={"bundle": ("bundle.zip", bundle, "application/zip")},
                                   data={"config": json.dumps(config or {"memory": 128})})
                    if r.status_code != 200:
                        raise RuntimeError(f"deploy of {name} failed: {r.status_code} {r.text[:500]}")

        # The first deploy alone: it stores the blob and unpacks the code that the others
        # share (concurrent first stores of one blob race in frazil's BlobStore.put).
        one(names[:1])
        rest = names[1:]
        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(one, rest[i::workers]) for i in range(workers)]:
                f.result()
        return time.perf_counter() - started

    def metrics(self) -> dict[str, float]:
        status, body = self.request("GET", "/metrics")
        return parse_prometheus(body.decode())

    def invoke_request(self, name: str, event: bytes = EVENT) -> bytes:
        return http_request_bytes("POST", f"/v1/functions/{name}/invoke", self.port, body=event,
                                  headers={"Authorization": f"Bearer {self.admin_key}",
                                           "Content-Type": "application/json"})

    def instance_processes(self) -> tuple[dict[int, list[int]], list[int]]:
        """({instance pid: the pids of that instance}, [every other process of the server's]).

        Both sandboxes make each instance's runtime a direct child of the server (plain:
        posix_spawn; isolated: the launcher or the zygote clones with CLONE_PARENT). An instance
        is such a child running a runtime loop, with its descendants. The rest - the isolated
        sandbox's launcher and zygote, and generic instances built ahead of time that no
        function owns yet (cgroup `generic-*`) - is shared overhead, returned apart."""
        table = process_table()
        instances, others = {}, []
        for child in direct_children(self.pid, table):
            tree = [child, *descendants(child, table)]
            if is_runtime_process(child) and not is_spare_instance(child):
                instances[child] = tree
            else:
                others.extend(tree)
        return instances, others


def cmdline(pid: int) -> str:
    """The command line, arguments joined by spaces (a zygote-forked instance rewrites its
    argv area in place, so the NUL separators are not to be trusted)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def is_runtime_process(pid: int) -> bool:
    """Runs a runtime loop: `... /runtime/python/loop.py` or `... loop.js` as its last argument."""
    line = cmdline(pid)
    return line.endswith("/loop.py") or line.endswith("/loop.js")


def is_spare_instance(pid: int) -> bool:
    """A generic instance built ahead of time, not yet given to a function."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return any(line.rsplit("/", 1)[-1].startswith("generic-") for line in f.read().splitlines())
    except OSError:
        return False


def cgroup_file(pid: int, controller: str, v1_name: str, v2_name: str) -> Path | None:
    """The file `v1_name` of the v1 `controller` cgroup `pid` is in (or `v2_name` of its v2
    cgroup), when that cgroup is not the root and the file is there."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if path in ("/", ""):
            continue
        if controller in controllers.split(","):
            candidate = Path("/sys/fs/cgroup") / controller / path.lstrip("/") / v1_name
        elif controllers == "":
            candidate = Path("/sys/fs/cgroup") / path.lstrip("/") / v2_name
        else:
            continue
        if candidate.exists():
            return candidate
    return None


def cgroup_cpu_stat(pid: int) -> dict[str, int] | None:
    """cpu.stat of the CPU cgroup `pid` is in: nr_periods, nr_throttled, throttled_time (ns in
    v1; v2's throttled_usec)."""
    path = cgroup_file(pid, "cpu", "cpu.stat", "cpu.stat")
    try:
        return {k: int(v) for k, v in (x.split() for x in path.read_text().splitlines())} if path else None
    except (OSError, ValueError):
        return None


def throttle_summary(stats: list[dict | None]) -> dict:
    """How many of these cgroups' CPU quota throttled them, and for how long on average."""
    stats = [st for st in stats if st]
    throttled = [st for st in stats if st.get("nr_throttled", 0) > 0]
    ns = [st.get("throttled_time", st.get("throttled_usec", 0) * 1000) for st in throttled]
    return {"cgroups": len(stats), "throttled": len(throttled),
            "mean_throttled_ms": sum(ns) / len(ns) / 1e6 if ns else 0.0}


def memory_cgroup_usage_kb(pid: int) -> int | None:
    """What the kernel charges to the memory cgroup `pid` is in (v1 memory.usage_in_bytes,
    or v2 memory.current)."""
    path = cgroup_file(pid, "memory", "memory.usage_in_bytes", "memory.current")
    try:
        return int(path.read_text()) // 1024 if path else None
    except (OSError, ValueError):
        return None


def parse_prometheus(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def metric_sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    total = 0.0
    for key, value in metrics.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def choose_sandbox(requested: str) -> tuple[str, str]:
    """("isolated"|"plain", a note). `auto` = isolated if `frazil server` starts with it."""
    if requested != "auto":
        return requested, f"sandbox {requested} (as asked)"
    server = FrazilServer("isolated")
    try:
        server.start(timeout_s=20)
    except ServerFailed as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "it did not start"
        note = f"`frazil server` does not start with the isolated sandbox ({reason}); using plain"
        print(f"note: {note}", file=sys.stderr)
        return "plain", note
    finally:
        server.stop()
    return "isolated", "isolated sandbox (frazil server starts with it)"


# --- a tight keep-alive HTTP/1.1 client for per-request latency ---------------------------


def http_request_bytes(method: str, path: str, port: int, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: keep-alive"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_CL_RE = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class KeepAliveClient:
    """One persistent connection, blocking, TCP_NODELAY, no HTTP library: per-request cost
    on the client side is a send and one or two recvs (a few µs)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        buf = self._buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        head = buf[:end]
        m = _CL_RE.search(head)
        if m is None:
            raise ValueError(f"response without Content-Length: {head[:300]!r}")
        length = int(m.group(1))
        total = end + 4 + length
        while len(buf) < total:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        self._buf = buf[total:]
        return int(head[9:12]), buf[end + 4:total]

    def timed(self, request: bytes, n: int, check=None) -> list[float]:
        """n sequential round trips; latencies in ms. `check(status, body)` runs outside
        the timed region and may raise."""
        out = []
        clock = time.perf_counter_ns
        for _ in range(n):
            t0 = clock()
            status, body = self.roundtrip(request)
            out.append((clock() - t0) / 1e6)
            if check is not None:
                check(status, body)
        return out


def check_status_200(status: int, body: bytes) -> None:
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")


def envelope_checker(expect_cold: bool | None):
    import orjson

    def check(status: int, body: bytes) -> None:
        check_status_200(status, body)
        env = orjson.loads(body)
        if not env.get("success"):
            raise RuntimeError(f"invocation failed: {env}")
        if expect_cold is not None and env.get("cold") is not expect_cold:
            raise RuntimeError(f"expected cold={expect_cold}, got {env}")

    return check


# --- statistics and tables --------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": sum(values) / len(values), "min": min(values),
            "p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "max": max(values)}


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return f"{x:,}"
    if x != x:  # nan
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in cells[1:]:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(lines)


def print_table(title: str, headers: list[str], rows: list[list]) -> str:
    text = f"\n### {title}\n\n{markdown_table(headers, rows)}\n"
    print(text, flush=True)
    return text


# --- wrk ----------------------------------------------------------------------------------

_WRK_LUA = """wrk.method = {method}
wrk.body = {body}
{headers}
"""


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk(url: str, *, connections: int, threads: int | None = None, duration_s: float = 5, method: str = "GET",
        body: bytes = b"", headers: dict | None = None) -> dict:
    """One wrk run against 127.0.0.1; returns req/s, latency percentiles (ms), errors and the command."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError("load generators only talk to 127.0.0.1")
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    threads = threads or min(connections, 2)
    header_lines = "\n".join(f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}" for k, v in (headers or {}).items())
    script = _WRK_LUA.format(method=_lua_str(method), body=_lua_str(body.decode()), headers=header_lines)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-wrk-", delete=False) as f:
        f.write(script)
        lua = f.name
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s:g}s", "--latency",
           "-s", lua, url]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 30, check=True).stdout
    finally:
        os.unlink(lua)
    res = parse_wrk(out)
    res["command"] = " ".join(cmd[:-3] + ["-s", "<post.lua>" if method != "GET" else "<get.lua>", url])
    shown = script
    for value in (headers or {}).values():
        if value.startswith("Bearer "):
            shown = shown.replace(value, "Bearer <admin key>")
    res["lua"] = shown
    return res


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse_wrk(out: str) -> dict:
    res: dict = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    res["requests"] = int(m.group(1)) if m else 0
    for p in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{p}%\s+(\S+)", out, re.M)
        res[f"p{p}"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return res


# --- CPU time ----------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads) so far."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


# --- memory -------------------------------------------------------------------------------


def smaps_kb(pid: int, field_name: str = "Pss") -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_kb(pids: list[int], field_name: str = "Pss") -> int:
    return sum(smaps_kb(p, field_name) or 0 for p in pids)


def free_m() -> dict[str, int]:
    out = subprocess.run(["free", "-m"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("Mem:"):
            nums = [int(x) for x in line.split()[1:]]
            return dict(zip(["total", "used", "free", "shared", "buff_cache", "available"], nums))
    return {}


# --- a quiet machine -------------------------------------------------------------------------


def cpu_idle_fraction(interval_s: float = 1.0) -> float:
    """Share of all CPUs idle over `interval_s` (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            nums = [int(x) for x in f.readline().split()[1:]]
        return nums[3] + nums[4], sum(nums)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(interval_s)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(what: str, max_wait_s: float = 120.0, min_idle: float = 0.85) -> dict:
    """Wait (bounded) until other work on this machine leaves it mostly idle, so that a
    measurement does not share two CPUs with someone else's test suite. Records what it saw."""
    started = time.monotonic()
    idle = cpu_idle_fraction()
    told = False
    while idle < min_idle and time.monotonic() - started < max_wait_s:
        if not told:
            print(f"waiting up to {max_wait_s:g} s for a quiet machine before {what} "
                  f"(CPU idle {idle:.0%}, want {min_idle:.0%})", file=sys.stderr, flush=True)
            told = True
        time.sleep(2)
        idle = cpu_idle_fraction()
    quiet = idle >= min_idle
    if not quiet:
        print(f"warning: machine still busy before {what} (CPU idle {idle:.0%}); figures will be noisy",
              file=sys.stderr, flush=True)
    return {"phase": what, "cpu_idle": round(idle, 3), "quiet": quiet, "waited_s": round(time.monotonic() - started, 1),
            "loadavg": os.getloadavg()}


# --- run metadata and results ----------------------------------------------------------------


def machine_info() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git("rev-parse", "--short", "HEAD"),
        # Other people work in this tree: say which uncommitted frazil files were measured.
        "frazil_uncommitted": git("status", "--porcelain", "--", "frazil").splitlines(),
        "frazil_source": os.environ.get(ENV_FRAZIL_SRC) or f"{REPO / 'frazil'} (working tree)",
        "frazil_ref": os.environ.get("BENCH_FRAZIL_REF"),
        "cpus": os.cpu_count(),
        "kernel": _platform.release(),
        "python": sys.version.split()[0],
        "memory_mb": free_m().get("total"),
        "loadavg_at_start": os.getloadavg(),
    }


def save_results(name: str, data: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    text = json.dumps(data, indent=2, default=str)
    path.write_text(text)
    (RESULTS_DIR / f"{name}-latest.json").write_text(text)
    print(f"\nresults written to {path.relative_to(REPO)}", flush=True)
    return path


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sandbox", choices=["auto", "isolated", "plain"], default="auto",
                        help="instance sandbox (auto: isolated if `frazil server` starts with it, else plain)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (at most 10)")
    parser.add_argument("--frazil-ref", metavar="REF",
                        help="benchmark frazil as committed at this git ref (e.g. HEAD) instead of the working tree")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="seconds a run may wait, in all, for the CPUs to be >=85%% idle before its phases "
                             "(other people's test suites share this machine)")
    return parser


def check_duration(args) -> None:
    if not 0 < args.duration <= 10:
        raise SystemExit("--duration must be in (0, 10] seconds")
    if getattr(args, "frazil_ref", None):
        use_frazil_ref(args.frazil_ref)


def use_frazil_ref(ref: str) -> Path:
    """Benchmark the `frazil` package as committed at `ref` (servers and in-process parts
    alike), not this working tree, which other people edit while a run goes on."""
    dest = Path(tempfile.mkdtemp(prefix="bench-frazil-"))
    dest.chmod(0o755)
    atexit.register(shutil.rmtree, dest, True)
    archive = subprocess.run(["git", "archive", ref, "frazil"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    os.environ[ENV_FRAZIL_SRC] = str(dest)
    os.environ["BENCH_FRAZIL_REF"] = ref
    sys.path.insert(0, str(dest))
    for name in [m for m in sys.modules if m == "frazil" or m.startswith("frazil.")]:
        del sys.modules[name]  # nothing imported from the working tree may linger
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True).stdout
    print(f"note: benchmarking frazil at {ref} ({commit.strip()}), exported to {dest}", file=sys.stderr)
    return dest


@dataclass
class Report:
    """Collects the tables a benchmark prints, for its JSON results."""

    name: str
    data: dict = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)

    quiet_wait_s: float = 120.0

    def quiet(self, what: str) -> dict:
        """Wait for a quiet machine before a phase; the waits of one run share one budget."""
        seen = wait_for_quiet(what, max(0.0, self.quiet_wait_s))
        self.quiet_wait_s -= seen["waited_s"]
        self.data.setdefault("machine_state", []).append(seen)
        return seen

    def table(self, title: str, headers: list[str], rows: list[list]) -> None:
        self.tables.append(print_table(title, headers, rows))

    def save(self) -> Path:
        self.data["markdown"] = "\n".join(self.tables)
        return save_results(self.name, self.data)
