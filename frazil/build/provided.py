"""Packages the platform provides itself inside an instance, whatever a bundle brings.

A Node function's `require('frazil-sdk')` and `require('wx-server-sdk')` resolve to the
platform's own modules (frazil/runtimes/node/loop.js maps the names before Node looks in any
node_modules), so a copy in the bundle's node_modules, or one a build would install from
package.json, is never loaded. The deploy's build log says so (`notes`), and a package.json
whose only dependencies are provided ones needs no dependency layer at all (manifest.py): a
WeChat cloud function's usual package.json, `{"dependencies": {"wx-server-sdk": "~2.6.3"}}`,
deploys without reaching a registry.
"""
from __future__ import annotations

import json
from pathlib import Path

from frazil.runtimes import RuntimeKind

NODE_PROVIDED = {
    "frazil-sdk": "frazil's SDK",
    "wx-server-sdk": "frazil's implementation of WeChat's server SDK over its data tables and functions",
}


def provided(runtime: RuntimeKind, name: str) -> bool:
    return runtime.language == "node" and name in NODE_PROVIDED


def notes(runtime: RuntimeKind, code_dir: Path) -> list[str]:
    """Build-log lines for each provided package the bundle holds or declares."""
    if runtime.language != "node":
        return []
    declared = _declared(code_dir)
    lines = []
    for name, what in NODE_PROVIDED.items():
        bundled = (code_dir / "node_modules" / name).is_dir()
        if not bundled and name not in declared:
            continue
        where = "node_modules/" + name + " in the bundle" if bundled else "package.json's " + name
        lines.append(f"{name}: the platform provides it ({what}); require('{name}') loads the platform's, "
                     f"not {where}")
    return lines


def _declared(code_dir: Path) -> set[str]:
    """Dependency names in package.json (empty when there is none or it is not an object)."""
    try:
        package = json.loads((code_dir / "package.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return set()
    if not isinstance(package, dict):
        return set()
    names = set()
    for section in ("dependencies", "optionalDependencies"):
        deps = package.get(section)
        if isinstance(deps, dict):
            names.update(deps)
    return names
