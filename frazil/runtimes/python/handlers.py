"""Finding, loading and calling a Python function's handler (inside an instance or the
deploy's inspection; standard library only).

- A handler is "<module>.<function>"; the module part is a path under the code folder with
  `/` or `.` between packages (`src/app.handler`, `pkg.mod.main`).
- The module is loaded from its file (spec_from_file_location), never found by name on
  sys.path: a project's `__main__.py`, `loop.py` or `protocol.py` is the project's, whatever
  the runtime itself is called. It is registered under its own dotted name so that the
  project's other modules import the same copy, except when that name is already taken in
  sys.modules (`__main__`, a standard module the runtime imported): then under a private name.
- No handler given: `choose()` looks for the conventions of the platforms people move from
  (CANDIDATE_MODULES x CANDIDATE_FUNCTIONS, see docs/moving.md).
- How a handler is called follows its signature (`call_style`): `main(args)` (OpenWhisk)
  gets the event alone, `lambda_handler(event, context)` both.
"""
import importlib
import importlib.util
import os
import sys

DEFAULT_HANDLER = "index.main"
INSPECT_FLAG = "--inspect-handler"  # the loop's argument for the deploy's inspection
# The order the search goes; frazil/build/detect.py lists the same modules' files.
CANDIDATE_MODULES = ("index", "main", "lambda_function", "handler", "app", "__main__")
CANDIDATE_FUNCTIONS = ("main", "handler", "lambda_handler")
PRIVATE_PREFIX = "_frazil_handler_module_"
CO_VARARGS = 0x04


class HandlerNotFound(LookupError):
    """The module loads but has no such function; `exports` lists what it does have."""

    def __init__(self, message, exports=()):
        super().__init__(message)
        self.exports = list(exports)


def split(spec):
    """("pkg/mod", "main") from "pkg/mod.main" or "pkg.mod.main"; ValueError when malformed."""
    module_path, sep, attr = str(spec).rpartition(".")
    if not sep or not module_path or not attr:
        raise ValueError(f"handler {spec!r} must look like 'module.function'")
    return module_path, attr


def module_parts(module_path):
    return [p for p in module_path.replace("/", ".").split(".") if p]


def module_file(code_dir, module_path):
    """The file holding `module_path` (a module or a package's __init__.py), or None."""
    rel = os.path.join(*module_parts(module_path))
    for candidate in (rel + ".py", os.path.join(rel, "__init__.py")):
        path = os.path.join(code_dir, candidate)
        if os.path.isfile(path):
            return path
    return None


def load_module(code_dir, module_path):
    """Load the handler's module from its file; ModuleNotFoundError when there is none."""
    parts = module_parts(module_path)
    path = module_file(code_dir, module_path)
    if path is None:
        raise ModuleNotFoundError(f"no module {'.'.join(parts)!r} in the project (looked for "
                                  f"{'/'.join(parts)}.py and {'/'.join(parts)}/__init__.py)")
    name = ".".join(parts)
    if len(parts) > 1:
        importlib.import_module(".".join(parts[:-1]))  # its package first: relative imports need it
    existing = sys.modules.get(name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", None) or "") == os.path.abspath(path):
        return existing  # the project imported it already (as its own module)
    if existing is not None:
        name = PRIVATE_PREFIX + name.replace(".", "_")
    is_package = path.endswith("__init__.py")
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[os.path.dirname(path)] if is_package else None)
    module = importlib.util.module_from_spec(spec)
    if name.startswith(PRIVATE_PREFIX) and not is_package:
        module.__package__ = ".".join(parts[:-1])  # relative imports as under its own name
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def exports(module):
    """What a module offers a caller: its public names, callables marked."""
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    found = []
    for name in names:
        value = getattr(module, name, None)
        if callable(value):
            found.append(name + "()")
        else:
            found.append(name)
    return found


def get_function(module, module_path, attr):
    handler = getattr(module, attr, None)
    if handler is None:
        raise HandlerNotFound(f"module {'.'.join(module_parts(module_path))!r} has no function {attr!r}",
                              exports(module))
    if not callable(handler):
        raise HandlerNotFound(f"{'.'.join(module_parts(module_path))}.{attr} is not callable "
                              f"(it is a {type(handler).__name__})", exports(module))
    return handler


def load_handler(code_dir, spec):
    """The handler function named by `spec`."""
    module_path, attr = split(spec)
    return get_function(load_module(code_dir, module_path), module_path, attr)


def choose(code_dir):
    """The handler to use when none was given: {"handler": spec, "why": text} or
    {"ambiguous": [spec, spec, ...]} or {"none": {module: [exports]}}.

    index.main, the default, wins whenever it exists. Otherwise the first module of
    CANDIDATE_MODULES that defines any of CANDIDATE_FUNCTIONS decides: one such function is
    the handler; more than one (not the same object under two names) is ambiguous."""
    seen = {}
    for module_path in CANDIDATE_MODULES:
        if module_file(code_dir, module_path) is None:
            continue
        module = load_module(code_dir, module_path)
        found = []
        for attr in CANDIDATE_FUNCTIONS:
            value = getattr(module, attr, None)
            if callable(value) and not any(value is other for _, other in found):
                found.append((attr, value))
        if module_path == "index" and any(attr == "main" for attr, _ in found):
            return {"handler": DEFAULT_HANDLER, "why": "the default"}
        if len(found) == 1:
            return {"handler": f"{module_path}.{found[0][0]}",
                    "why": f"{module_path}.py defines {found[0][0]}()"}
        if found:
            return {"ambiguous": [f"{module_path}.{attr}" for attr, _ in found]}
        seen[module_path] = exports(module)
    return {"none": seen}


def call_style(handler):
    """How many of (event, context) the handler takes: 1 for `main(args)`, 0 for `main()`,
    else 2.

    Read from the code object (cheaper than importing `inspect` at every cold start): a
    plain function or a bound method with exactly one positional parameter and no *args
    gets the event alone; two or more, *args, or a callable object gets both."""
    func = getattr(handler, "__func__", handler)
    code = getattr(func, "__code__", None)
    if code is None:
        return 2
    positional = code.co_argcount - (1 if func is not handler else 0)
    if code.co_flags & CO_VARARGS:
        return 2
    return min(positional, 2)
