"""Which handler a version runs, decided at deploy by looking at the function's module.

The module is user code, so it is never imported here: the runtime's own loop loads it, as
an instance would (same import path, layer and SDK resolution), in the build sandbox with
the function's code, layer and the runtimes mounted read-only (runner.FunctionView), and
writes what it found to a file in its build folder (frazil/runtimes/python/handlers.py,
frazil/runtimes/node/handlers.js; `--inspect-handler`). Its output goes to the build log.

Most deploys need no look: when the handler's module (the one given, else index.py/index.js)
plainly defines its function at the top level, read as text (`plainly_defines`), that is the
handler, as it always was. Otherwise the look decides:
- a handler given (`--handler`): it must exist in its module; else the deploy fails (400)
  with what the module exports. A module that fails to load keeps the old behaviour: the
  deploy goes on, the log says why, and calls fail with the module's error.
- none given: the runtime's `choose` (index.main first, then other platforms' names, see
  docs/moving.md); one candidate is used and named in the log, two are a 400 naming both,
  none is a 400 listing what the modules export. A module that fails to load: index.main
  when index.py/index.js exists (as before), else a 400 with the module's error.
- the module does not finish loading within the function's timeout (plus the sandbox's
  set-up): a 400 (every cold start would time out too).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from pathlib import Path
from typing import Callable, Protocol

from frazil.build.detect import DEFAULT_HANDLER, PYTHON_RUNTIME, check_handler, parse_handler
from frazil.build.layers import build_folder
from frazil.build.registries import BUILD_PATH, Registries
from frazil.build.runner import FunctionView, run_installer
from frazil.errors import BadBundle, BadRequest, BuildFailed, BuildTimedOut
from frazil.runtimes import RUNTIMES_ROOT, get_runtime
from frazil.settings import Settings

INSPECT_FLAG = "--inspect-handler"  # the loops' argument (handlers.INSPECT_FLAG there)
SPEC_FILE = "inspect.json"
RESULT_FILE = "result.json"
MAX_RESULT_BYTES = 256 * 1024  # what the inspection may write; it runs the function's code
SETUP_ALLOWANCE_S = 10.0  # the sandbox's own set-up, on top of the function's timeout
MAX_LISTED = 30  # exports named in an error message
PLAIN_SCAN_BYTES = 1024 * 1024  # a module read for a plain definition (larger ones are inspected)
PYTHON_DEFINES = (rb"^(?:async[ \t]+)?def[ \t]+NAME[ \t]*\(",)
NODE_DEFINES = (rb"^[ \t]*(?:module\.)?exports\.NAME[ \t]*=[^=]",
                rb"^export[ \t]+(?:async[ \t]+)?function\*?[ \t]+NAME[ \t]*\(",
                rb"^export[ \t]+(?:const|let|var)[ \t]+NAME[ \t]*=")
# The inspection runs the function's code, which can write the result file itself.
NONSENSE = "the handler inspection answered nonsense (the function's code may have written it)"


class InspectHandler(Protocol):
    async def __call__(self, settings: Settings, runtime: str, code_dir: Path, layer_dir: Path | None,
                       requested: str | None, env: dict[str, str], timeout_s: float,
                       log: Callable[[str], None]) -> str: ...


async def inspect_handler(settings: Settings, runtime: str, code_dir: Path, layer_dir: Path | None,
                          requested: str | None, env: dict[str, str], timeout_s: float,
                          log: Callable[[str], None]) -> str:
    """The handler version's calls will use (see the module's docstring); BuildFailed (400)
    when there is none, or more than one to choose from."""
    wanted = requested or DEFAULT_HANDLER
    if await asyncio.to_thread(plainly_defines, code_dir, runtime, wanted):
        log(f"handler: {wanted} ({'given' if requested else 'the default'}; its module defines it)")
        return wanted
    outcome = await _look(settings, runtime, code_dir, layer_dir, requested, env, timeout_s, log)
    return decide(outcome, requested, has_default_module=_has_default_module(code_dir, runtime), log=log)


def plainly_defines(code_dir: Path, runtime: str, handler: str) -> bool:
    """Whether the handler's module plainly defines its function at the top level (`def main(`,
    `exports.main =`, `export async function main`): then the deploy needs no look in the
    sandbox. Read as text, never run; a module too large, or a definition made any other way
    (or commented out in a way this misses), takes the sandboxed look or, at worst, the
    behaviour before handlers were checked at deploy: the first call reports the error."""
    function = parse_handler(handler)[1]
    if not re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", function):
        return False
    try:
        path = check_handler(code_dir, runtime, handler)  # a regular file inside the tree
    except BadBundle:
        return False
    try:
        with open(path, "rb") as f:
            text = f.read(PLAIN_SCAN_BYTES + 1)
    except OSError:
        return False
    if len(text) > PLAIN_SCAN_BYTES:
        return False
    name = re.escape(function).encode()
    patterns = PYTHON_DEFINES if runtime == PYTHON_RUNTIME else NODE_DEFINES
    return any(re.search(p.replace(b"NAME", name), text, re.M) for p in patterns)


def decide(outcome: dict, requested: str | None, *, has_default_module: bool, log: Callable[[str], None]) -> str:
    """The handler from what the inspection found (the rules of the module's docstring)."""
    if "load_error" in outcome:
        error = outcome["load_error"] if isinstance(outcome["load_error"], dict) else {}
        text = f"{error.get('type', 'Error')}: {error.get('message', '')}".strip()
        if requested or has_default_module:
            handler = requested or DEFAULT_HANDLER
            log(f"handler: {handler} (not checked: the module failed to load at deploy, {text[:2000]}; "
                "calls will fail with that error until it loads)")
            return handler
        raise BuildFailed(f"no handler was given and the function's module failed to load, so none could be "
                          f"found: {text[:2000]}")
    if "missing" in outcome:
        raise BuildFailed(f"{outcome['missing']}; {_exported(outcome.get('exports'))}")
    if "ambiguous" in outcome:
        names = [str(n)[:300] for n in outcome["ambiguous"]][:MAX_LISTED]
        raise BuildFailed(f"no handler was given and {' and '.join(names)} could each be it; say which one with "
                          f"--handler (e.g. --handler {names[0]})")
    if "none" in outcome:
        seen = outcome["none"] if isinstance(outcome["none"], dict) else {}
        listed = "; ".join(f"{str(module)[:300]} {_exported(exports)}" for module, exports in list(seen.items())[:10])
        raise BuildFailed("no handler was given and none was found (looked for main, handler, lambda_handler "
                          "and default exports; see docs/moving.md)" + (f": {listed}" if listed else "")
                          + "; give one with --handler module.function")
    handler = outcome.get("handler")
    if not isinstance(handler, str) or (requested and handler != requested) or not _well_formed(handler):
        raise BuildFailed(NONSENSE)
    if requested:
        style = outcome.get("arguments")
        shown = {0: "takes no arguments", 1: "takes the event alone", "callback": "takes a callback"}.get(style)
        log(f"handler: {handler} (given{'; it ' + shown if shown else ''})")
    else:
        log(f"handler: {handler} (found: {str(outcome.get('why', ''))[:200]}; --handler chooses another)")
    return handler


def _well_formed(handler: str) -> bool:
    try:
        parse_handler(handler)
        return True
    except BadRequest:
        return False


def _exported(exports) -> str:
    names = [str(n)[:100] for n in exports or []] if isinstance(exports, list) else []
    if not names:
        return "exports nothing"
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return "exports: " + ", ".join(names[:MAX_LISTED]) + more


def _has_default_module(code_dir: Path, runtime: str) -> bool:
    try:
        check_handler(code_dir, runtime, DEFAULT_HANDLER)
        return True
    except BadBundle:
        return False


async def _look(settings: Settings, runtime: str, code_dir: Path, layer_dir: Path | None, requested: str | None,
                env: dict[str, str], timeout_s: float, log: Callable[[str], None]) -> dict:
    """Run the inspection; its result file, or {"load_error": ...} when it left none."""
    kind = get_runtime(runtime)
    try:
        interpreter = str(kind.interpreter())
    except RuntimeError as exc:
        raise BuildFailed(str(exc)) from None
    view = FunctionView(Path(code_dir), Path(layer_dir) if layer_dir is not None else None)
    async with build_folder() as build_root:
        box = build_root / "box"
        for path in (box, box / "home", box / "home" / "tmp"):
            path.mkdir()

        def command(place: Callable[[Path], str]) -> tuple[list[str], str]:
            spec = {"code_dir": place(view.code_dir), "handler": requested, "env": env,
                    "layer_dirs": [place(view.layer_dir)] if view.layer_dir is not None else [],
                    "result": f"{place(box)}/{RESULT_FILE}"}
            (box / SPEC_FILE).write_text(json.dumps(spec))
            argv = kind.argv(interpreter, place(RUNTIMES_ROOT), settings.build_memory_mb)
            return argv + [INSPECT_FLAG, f"{place(box)}/{SPEC_FILE}"], "the handler's inspection"

        def environment(inside: str) -> dict[str, str]:
            return {"PATH": BUILD_PATH, "HOME": f"{inside}/home", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}

        limit = timeout_s + SETUP_ALLOWANCE_S
        try:
            await run_installer(settings, Registries.configured(settings.build_registries), kind, box=box,
                                rootfs_mountpoint=build_root / "root", interpreter=interpreter, log=log,
                                command=command, env=environment, view=view, timeout_s=limit, cwd="home",
                                describe="looking for the handler" if requested is None else "checking the handler")
        except BuildTimedOut:
            raise BuildTimedOut(f"the function's module did not finish loading within {limit:g} s (its timeout, "
                                f"plus {SETUP_ALLOWANCE_S:g} s): every cold start would time out too") from None
        except BuildFailed as exc:
            return {"load_error": {"type": "Error", "message": f"loading it ended the process ({exc.message})"}}
        return _read_result(box / RESULT_FILE)


def _read_result(path: Path) -> dict:
    # Written by the function's uid: never follow a link it made, never block on a FIFO.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {"load_error": {"type": "Error", "message": "loading it ended the process before it could say"}}
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BuildFailed(NONSENSE)
        data = f.read(MAX_RESULT_BYTES + 1)
    if len(data) > MAX_RESULT_BYTES:
        raise BuildFailed("the handler inspection answered more than it may (the function's code may have "
                          "written it)")
    try:
        outcome = json.loads(data)
    except ValueError:
        raise BuildFailed(NONSENSE) from None
    if not isinstance(outcome, dict):
        raise BuildFailed(NONSENSE)
    return outcome
