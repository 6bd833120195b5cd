"""wrk, the load generator for throughput: one bounded run against 127.0.0.1, parsed."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from frazil.testing import HOST


_WRK_LUA = """wrk.method = {method}
wrk.body = {body}
{headers}
"""

# With several paths each connection's requests go round them (each wrk thread starts at its
# own offset, so the threads do not ask for the same path at the same moment).
_WRK_LUA_PATHS = """paths = {{{paths}}}
local next_path = 0
function setup(thread)
  thread:set("first", math.random(#paths))
end
function init(args)
  next_path = first or 1
end
function request()
  next_path = next_path % #paths + 1
  return wrk.format(nil, paths[next_path])
end
"""


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk(url: str, *, connections: int, threads: int | None = None, duration_s: float = 5, method: str = "GET",
        body: bytes = b"", headers: dict | None = None, paths: list[str] | None = None) -> dict:
    """One wrk run against 127.0.0.1; returns req/s, latency percentiles (ms), errors and the command.
    `paths`: requests go round these paths (on the url's host) rather than the url's own."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError("load generators only talk to 127.0.0.1")
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    threads = threads or min(connections, 2)
    header_lines = "\n".join(f"wrk.headers[{_lua_str(k)}] = {_lua_str(v)}" for k, v in (headers or {}).items())
    script = _WRK_LUA.format(method=_lua_str(method), body=_lua_str(body.decode()), headers=header_lines)
    if paths:
        script += _WRK_LUA_PATHS.format(paths=", ".join(map(_lua_str, paths)))
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
