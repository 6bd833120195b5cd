"""Running one installer command for a dependency build: isolated, time-limited, its output
streamed line by line, its failure turned into a `BuildFailed` that carries its own words.

Isolation (see isolate.py): when the platform runs as root and the kernel allows a mount
namespace, the installer runs as an unprivileged user (`BUILD_UID`, "nobody") in a mount
namespace where the data dir is covered by an empty tmpfs; it can write only to its throwaway
build folder. Otherwise (not root, or no namespaces) it runs as the platform's own user; what
still holds in every mode: its working directory is the throwaway folder, HOME and TMPDIR
point into it, and its environment is built from an allow-list (no FRAZIL_* variable, no
secret of the platform's, only locale, CA/proxy settings and PIP_*/npm_config_* registry
settings). Builds use the host network: installers must reach their registries.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from frazil.errors import BuildFailed

BUILD_UID = 65534  # "nobody": owns no file of the platform's
BUILD_GID = 65534
TAIL_LINES = 50
ISOLATE_SCRIPT = Path(__file__).resolve().with_name("isolate.py")
ISOLATE_SETUP_FAILED = 125

# What the build may inherit from the platform's environment.
PASSTHROUGH_NAMES = frozenset({
    "LANG", "LC_ALL", "LC_CTYPE", "TZ",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
})
PASSTHROUGH_PREFIXES = ("PIP_", "npm_config_", "NPM_CONFIG_")


@dataclass(frozen=True)
class Isolation:
    """How to isolate a build: which paths to hide and which to keep reachable."""

    hide: tuple[str, ...]
    expose: tuple[str, ...]
    uid: int = BUILD_UID
    gid: int = BUILD_GID


def build_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a build: an allow-list of the platform's, plus throwaway dirs."""
    env = {name: value for name, value in os.environ.items()
           if (name in PASSTHROUGH_NAMES or name.startswith(PASSTHROUGH_PREFIXES)) and not name.startswith("FRAZIL_")}
    env.update({
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "LANG": env.get("LANG", "C.UTF-8"),
        "NO_COLOR": "1",
    })
    env.update(extra or {})
    return env


async def run_build(argv: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float,
                    log: Callable[[str], None], isolation: Isolation | None, hold_root: Path | None = None,
                    what: str | None = None) -> None:
    """Run `argv` to completion; raise BuildFailed on a non-zero exit or on timeout."""
    what = what or Path(argv[0]).name
    if isolation is not None:
        spec = {"argv": argv, "cwd": str(cwd), "uid": isolation.uid, "gid": isolation.gid,
                "hide": list(isolation.hide), "expose": list(isolation.expose), "hold_root": str(hold_root or cwd)}
        argv = [_platform_python(), "-I", "-S", str(ISOLATE_SCRIPT), json.dumps(spec)]
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def emit(line: str) -> None:
        tail.append(line)
        log(line)

    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        async with asyncio.timeout(timeout_s):
            await _pump(proc, emit)
            status = await proc.wait()
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        raise BuildFailed(f"the dependency build timed out after {timeout_s:g} s") from None
    except BaseException:
        _kill_group(proc.pid)
        await proc.wait()
        raise
    _kill_group(proc.pid)  # strays the installer left behind in its group
    if status == 0:
        return
    if isolation is not None and status == ISOLATE_SETUP_FAILED and any(l.startswith("frazil-isolate:") for l in tail):
        raise BuildFailed("the build sandbox could not be set up: " + tail[-1].removeprefix("frazil-isolate: "))
    reason = f"exited with status {status}" if status > 0 else f"was killed by signal {-status}"
    text = "\n".join(tail)
    raise BuildFailed(f"the dependency build failed ({what} {reason}):\n{text}", exit_status=status)


async def _pump(proc: asyncio.subprocess.Process, emit: Callable[[str], None]) -> None:
    """Read the output to EOF, one line at a time, without a line-length limit."""
    pending = b""
    while True:
        chunk = await proc.stdout.read(65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            emit(_text(line))
        if len(pending) > 65536:  # a line without end (a progress bar): show it in pieces
            emit(_text(pending))
            pending = b""
    if pending:
        emit(_text(pending))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _platform_python() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


# --- deciding whether isolation is available ---------------------------------------------------

_probe_cache: dict[tuple, str | None] = {}


async def probe_isolation(isolation: Isolation, interpreter: str, scratch: Path) -> str | None:
    """None when `interpreter` runs under `isolation` on this machine, else the reason not.
    Cached per isolation settings for the life of the process. `scratch` is a fresh folder
    the probe may use; it is removed."""
    key = (isolation, interpreter)
    if key in _probe_cache:
        shutil.rmtree(scratch, ignore_errors=True)
        return _probe_cache[key]
    if os.geteuid() != 0:
        reason = "the platform does not run as root"
    else:
        scratch.mkdir(parents=True, exist_ok=True)
        os.chown(scratch, isolation.uid, isolation.gid)
        lines: list[str] = []
        try:
            await run_build([interpreter, "-I", "-S", "-c", "pass"] if "python" in Path(interpreter).name
                            else [interpreter, "--version"],
                            cwd=scratch, env=build_env(scratch), timeout_s=30, log=lines.append,
                            isolation=isolation, hold_root=scratch)
            reason = None
        except BuildFailed as exc:
            reason = exc.message.splitlines()[0] + (f" ({lines[-1]})" if lines else "")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    _probe_cache[key] = reason
    return reason
