"""The helper sub-package runs in the launcher and the zygote, started as `python -I -S`:
each of its modules must import nothing but the standard library and the sub-package.

Each module is imported in a fresh interpreter started as the launcher is (same interpreter,
same flags, the folder holding frazil/ put first on sys.path), which then lists every module
it has loaded that is neither the standard library's nor the sub-package's (nor the two
empty packages the sub-package sits in)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import frazil.sandbox.helper as helper
from frazil.sandbox.launcher_client import PACKAGE_PARENT

MODULES = sorted(p.stem for p in Path(helper.__file__).parent.glob("*.py") if p.stem != "__init__")

CHECK = '''
import sys
sys.path.insert(0, {root!r})
import importlib
importlib.import_module({module!r})
allowed_packages = {{"frazil", "frazil.sandbox", "frazil.sandbox.helper"}}
stdlib = sys.stdlib_module_names | set(sys.builtin_module_names) | {{"__main__"}}
foreign = sorted(name for name in sys.modules
                 if name.split(".")[0] not in stdlib and name not in allowed_packages
                 and not name.startswith("frazil.sandbox.helper."))
print(__import__("json").dumps(foreign))
'''


def test_the_sub_package_lists_every_helper_module():
    assert {"launcher", "zygote", "enter", "wire", "syscalls"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_a_helper_module_imports_only_the_standard_library(module):
    interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    script = CHECK.format(root=PACKAGE_PARENT, module=f"frazil.sandbox.helper.{module}")
    done = subprocess.run([interpreter, "-I", "-S", "-B", "-c", script], capture_output=True, text=True,
                          timeout=60, env={"LANG": "C.UTF-8"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [], f"{module} imports more than the standard library"
