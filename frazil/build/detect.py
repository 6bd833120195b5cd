"""What an unpacked project is: its runtime, and where its handler's module lives.

Handlers are "<module>.<function>"; when none is given, the deploy looks for one
(frazil/build/handlers.py) in the modules `candidate_files` lists. The module part is a path relative to the code dir with
`/` separators (`src/index.main`); for Python, dots in it are package separators too
(`pkg.mod.main` -> pkg/mod.py), exactly as the Python loop imports it. For Node the module part
is a file path whose candidates are tried in `node_module_files` order, exactly as the Node
loop resolves it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from frazil.errors import BadBundle, BadRequest

PYTHON_RUNTIME = "python3.11"
NODE_RUNTIME = "nodejs20"
DEFAULT_HANDLER = "index.main"

HANDLER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.[A-Za-z_$][A-Za-z0-9_$]*$")
MAX_HANDLER_CHARS = 256


def parse_handler(handler: str) -> tuple[str, str]:
    """("src/index", "main") from "src/index.main"; BadRequest when it is malformed."""
    if (not isinstance(handler, str) or len(handler) > MAX_HANDLER_CHARS or not HANDLER_RE.match(handler)
            or "//" in handler or any(p in ("", ".", "..") for p in handler.rpartition(".")[0].split("/"))):
        raise BadRequest(f"handler {handler!r} must look like 'module.function' (e.g. 'index.main' or "
                         "'src/index.main'), relative to the project folder")
    module, _, function = handler.rpartition(".")
    return module, function


def python_module_files(handler: str) -> tuple[str, ...]:
    module, _ = parse_handler(handler)
    rel = "/".join(p for p in module.replace("/", ".").split(".") if p)
    return (f"{rel}.py", f"{rel}/__init__.py")


def node_module_files(handler: str) -> tuple[str, ...]:
    module, _ = parse_handler(handler)
    if module.endswith((".js", ".cjs", ".mjs")):
        return (module,)
    return (f"{module}.js", f"{module}/index.js", f"{module}.cjs", f"{module}.mjs")


# Modules that may hold the handler when none is given, in the order the runtimes' `choose`
# tries them (frazil/runtimes/python/handlers.py, frazil/runtimes/node/handlers.js).
PYTHON_CANDIDATE_MODULES = ("index", "main", "lambda_function", "handler", "app", "__main__")
NODE_CANDIDATE_MODULES = ("index", "main", "handler", "app")


MAX_PACKAGE_JSON_BYTES = 1024 * 1024


def package_main(code_dir: Path) -> str | None:
    """The module package.json's "main" names (OpenWhisk and Google Cloud Functions take the
    handler from there), without its extension: a candidate after index (the Node runtime's
    `choose` reads it the same way); None when there is none or it is not a plain path."""
    path = Path(code_dir) / "package.json"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PACKAGE_JSON_BYTES + 1)
        main = json.loads(data).get("main") if len(data) <= MAX_PACKAGE_JSON_BYTES else None
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(main, str):
        return None
    main = re.sub(r"\.(?:c|m)?js$", "", main.strip().removeprefix("./")).rstrip("/")
    try:
        parse_handler(f"{main}.main")
    except BadRequest:
        return None
    return main


def candidate_files(runtime: str | None = None, code_dir: Path | None = None) -> tuple[str, ...]:
    """Files that may hold the handler when none is given (of one runtime, or of both; with
    `code_dir`, package.json's "main" too)."""
    found: list[str] = []
    if runtime in (None, PYTHON_RUNTIME):
        found += [f for m in PYTHON_CANDIDATE_MODULES for f in python_module_files(f"{m}.main")]
    if runtime in (None, NODE_RUNTIME):
        main = package_main(code_dir) if code_dir is not None else None
        found += [f for m in NODE_CANDIDATE_MODULES + ((main,) if main else ()) for f in node_module_files(f"{m}.main")]
    return tuple(found)


def module_files(runtime: str, handler: str) -> tuple[str, ...]:
    """Relative paths that can hold the handler's module, in the order the loop tries them."""
    if runtime == PYTHON_RUNTIME:
        return python_module_files(handler)
    if runtime == NODE_RUNTIME:
        return node_module_files(handler)
    raise BadRequest(f"unknown runtime {runtime!r}; choose one of {PYTHON_RUNTIME}, {NODE_RUNTIME}")


def handler_candidates(handler: str) -> tuple[str, ...]:
    """Module files for either runtime (used before the runtime is known)."""
    try:
        return python_module_files(handler) + node_module_files(handler)
    except BadRequest:
        return ()


def detect_runtime(code_dir: Path, handler: str | None = DEFAULT_HANDLER) -> str | None:
    """"python3.11" or "nodejs20" from the project's files; None when it cannot tell.

    The handler's own module decides first (index.py -> Python, index.js -> Node); then
    package.json means Node and requirements.txt means Python. Both kinds of handler module
    present (index.py and index.js) is ambiguous: None, so the user must say --runtime.
    No handler given (None): index.py/index.js first, then the other modules a handler is
    looked for in (lambda_function.py, app.js, ...), then the manifests."""
    code_dir = Path(code_dir)
    try:
        has_py = any(_is_file(code_dir, f) for f in python_module_files(handler or DEFAULT_HANDLER))
        has_js = any(_is_file(code_dir, f) for f in node_module_files(handler or DEFAULT_HANDLER))
    except BadRequest:
        has_py = has_js = False
    if has_py != has_js:
        return PYTHON_RUNTIME if has_py else NODE_RUNTIME
    if has_py and has_js:
        return None
    has_pkg = _is_file(code_dir, "package.json")
    has_req = _is_file(code_dir, "requirements.txt")
    if has_pkg != has_req:
        return NODE_RUNTIME if has_pkg else PYTHON_RUNTIME
    if handler is None and not has_pkg:
        has_py = any(_is_file(code_dir, f) for f in candidate_files(PYTHON_RUNTIME))
        has_js = any(_is_file(code_dir, f) for f in candidate_files(NODE_RUNTIME))
        if has_py != has_js:
            return PYTHON_RUNTIME if has_py else NODE_RUNTIME
    return None


def check_handler(code_dir: Path, runtime: str, handler: str = DEFAULT_HANDLER) -> Path:
    """The handler module's path inside `code_dir`; BadBundle (400) naming the missing file."""
    candidates = module_files(runtime, handler)
    code_dir = Path(code_dir)
    for rel in candidates:
        if _is_file(code_dir, rel):
            return code_dir / rel
    wanted = " or ".join(candidates[:2]) if runtime == PYTHON_RUNTIME else candidates[0]
    present = sorted(p.name + ("/" if p.is_dir() else "") for p in code_dir.iterdir())[:20] if code_dir.is_dir() else []
    listing = ", ".join(present) if present else "nothing"
    raise BadBundle(f"the handler {handler!r} needs the file {wanted} in the bundle, but there is no such "
                    f"file (the bundle's top level holds: {listing})")


def check_candidates(code_dir: Path, runtime: str) -> None:
    """No handler given: BadBundle (400) unless some module a handler is looked for in exists."""
    code_dir = Path(code_dir)
    files = candidate_files(runtime, code_dir)
    if any(_is_file(code_dir, rel) for rel in files):
        return
    shown = ", ".join(dict.fromkeys(f for f in files if "/" not in f))
    present = sorted(p.name + ("/" if p.is_dir() else "") for p in code_dir.iterdir())[:20] if code_dir.is_dir() else []
    raise BadBundle(f"no handler was given and the bundle has none of the files a handler is looked for in "
                    f"({shown}); give the handler (--handler module.function). The bundle's top level holds: "
                    f"{', '.join(present) or 'nothing'}")


def _is_file(root: Path, rel: str) -> bool:
    path = root / rel
    # Only regular files inside the tree count (an in-tree symlink to a file is fine).
    try:
        resolved = path.resolve(strict=True)
        return resolved.is_file() and resolved.is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False
