"""Running one installer command for a dependency build, contained, time-limited, its output
streamed (capped) into the build log, its failure a `BuildFailed` that carries its words.

Where it runs:
- in the build sandbox (`buildbox.BuildBox`, steps in frazil/sandbox/helper/build_jail.py) whenever the platform can
  make one: its own PID, mount, IPC, UTS and network namespaces, a uid of its own, a cgroup
  with memory/CPU/pids limits, a read-only host with only /build writable, the network
  only through the registry proxy, no credential in its environment;
- without any isolation only when the operator chose FRAZIL_SANDBOX=plain (development:
  functions run unisolated there too): a throwaway folder, a new session, the same
  environment (the proxy variables dropped: there is no proxy);
- otherwise the build is refused with the reason the sandbox is missing.
"""
from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from frazil.sandbox.helper import build_jail as jail
from frazil.build.buildbox import BuildBox, BuildLimits, BuildLog, _pump
from frazil.build.registries import Registries
from frazil.errors import BuildFailed, BuildTimedOut
from frazil.runtimes import RUNTIMES, RUNTIMES_ROOT, RuntimeKind
from frazil.sandbox.helper import rootfs
from frazil.settings import Settings

PLAIN = "plain"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "PIP_PROXY", "npm_config_proxy",
              "npm_config_https_proxy")

_boxes: dict[tuple, BuildBox] = {}


def build_box(settings: Settings, registries: Registries) -> BuildBox:
    key = (os.path.realpath(settings.data_dir), registries, settings.build_memory_mb, settings.build_cpu,
           settings.build_pids_max, settings.build_timeout_s, settings.log_cap_bytes)
    box = _boxes.get(key)
    if box is None:
        limits = BuildLimits(settings.build_memory_mb, settings.build_cpu, settings.build_pids_max,
                             settings.build_timeout_s)
        box = _boxes[key] = BuildBox(settings.data_dir, limits, registries, settings.log_cap_bytes)
    return box


@dataclass(frozen=True)
class FunctionView:
    """What a deploy's inspection of the function (frazil.build.handlers) sees besides the
    build folder, all read-only: the function's code, its dependency layer and the runtimes
    (the loops, the SDK), where an instance sees them."""

    code_dir: Path
    layer_dir: Path | None


def build_layout(interpreter: str, box: Path, view: FunctionView | None = None) -> rootfs.Layout:
    """The instance template's layout, minus /runtime, plus the build folder at /build (bound
    read-only there by the template, then covered by the writable clone: build_jail.py step 7).
    With a `view`: /runtime, /code and /layers/0 too, and the interpreter's own packages
    hidden, all as in an instance."""
    interpreters = [interpreter]
    for runtime in RUNTIMES.values():
        try:
            interpreters.append(str(runtime.interpreter()))
        except RuntimeError:
            pass
    base = rootfs.default_layout(interpreters, str(RUNTIMES_ROOT))
    binds = tuple(b for b in base.ro_binds if b[1] != rootfs.RUNTIME_DIR) + ((str(box), jail.BUILD_DIR),)
    if view is None:
        return rootfs.Layout(binds, base.top_level, max_layers=0)
    binds += ((str(view.code_dir.resolve()), rootfs.CODE_DIR),)
    if view.layer_dir is not None:
        binds += ((str(view.layer_dir.resolve()), rootfs.layer_dir(0)),)
    return rootfs.Layout(binds, base.top_level, max_layers=1, copies=base.copies, hidden=base.hidden)


def _places(box: Path, view: FunctionView | None, sandboxed: bool) -> Callable[[Path], str]:
    """Host path -> the path the installer (or the inspection) sees it at."""
    inside = {box: jail.BUILD_DIR, RUNTIMES_ROOT: rootfs.RUNTIME_DIR}
    if view is not None:
        inside[view.code_dir] = rootfs.CODE_DIR
        if view.layer_dir is not None:
            inside[view.layer_dir] = rootfs.layer_dir(0)
    return lambda path: inside[Path(path)] if sandboxed else str(path)


async def run_installer(settings: Settings, registries: Registries, kind: RuntimeKind, *, box: Path,
                        rootfs_mountpoint: Path, interpreter: str, log: Callable[[str], None],
                        command: Callable[[Callable[[Path], str]], tuple[list[str], str]],
                        env: Callable[[str], dict[str, str]], describe: str, view: FunctionView | None = None,
                        timeout_s: float | None = None, cwd: str = "work") -> None:
    """Run the installer `command(place)` builds (`place(host path)` is where the installer
    sees a path: the build folder, and with a `view` the function's code, layer and the
    runtimes); raise BuildFailed (BuildTimedOut past `timeout_s`, by default the build's
    limit). `cwd` is relative to the build folder."""
    sandbox = build_box(settings, registries)
    reason = sandbox.unavailable()
    timeout_s = settings.build_timeout_s if timeout_s is None else timeout_s
    if reason is None:
        argv, what = command(_places(box, view, sandboxed=True))
        log(f"{describe}: {_shown(kind, argv)}")
        rootfs_mountpoint.mkdir(mode=0o700, exist_ok=True)
        await sandbox.run(argv, box=box, mountpoint=rootfs_mountpoint, layout=build_layout(interpreter, box, view),
                          cwd=f"{jail.BUILD_DIR}/{cwd}", env=env(jail.BUILD_DIR), log=log, what=what,
                          timeout_s=timeout_s)
        return
    if settings.sandbox != PLAIN:
        raise BuildFailed(f"dependency builds need the build sandbox, which cannot run here: {reason} "
                          "(FRAZIL_SANDBOX=plain builds without isolation, for development only)")
    argv, what = command(_places(box, view, sandboxed=False))
    log(f"build sandbox: none (FRAZIL_SANDBOX=plain; {reason}); building as the platform's user")
    log(f"{describe}: {_shown(kind, argv)}")
    plain_env = {k: v for k, v in env(str(box)).items() if k not in PROXY_VARS}
    await run_plain(argv, cwd=box / cwd, env=plain_env, timeout_s=timeout_s,
                    out=BuildLog(log, settings.log_cap_bytes), what=what)


def _shown(kind: RuntimeKind, argv: list[str]) -> str:
    shown = ["python", *argv[2:]] if kind.language == "python" else [os.path.basename(argv[0]), *argv[1:]]
    return " ".join(shown)


async def run_plain(argv: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float, out: BuildLog,
                    what: str) -> None:
    """Unisolated (FRAZIL_SANDBOX=plain): a new session, killed as a group at the end."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        async with asyncio.timeout(timeout_s):
            await _pump(proc.stdout, out.line)
            status = await proc.wait()
    except TimeoutError:
        raise BuildTimedOut(f"the dependency build timed out after {timeout_s:g} s") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        await proc.wait()
        out.close()
    if status != 0:
        reason = f"exited with status {status}" if status > 0 else f"was killed by signal {-status}"
        raise BuildFailed(f"the dependency build failed ({what} {reason}):\n" + "\n".join(out.tail),
                          exit_status=status)
