"""A Node project whose package-lock.json `npm ci` refuses (out of step with package.json, or
resolved against a registry the build may not reach) still deploys: the build says so and
retries once with `npm install`. Real npm, the real registry through the build's proxy."""
import json
import shutil

import pytest

pytestmark = [pytest.mark.registry,
              pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")]

HANDLER = ("const isNumber = require('is-number');\n"
           "exports.handler = async (event) => ({ number: isNumber(event.x) });\n")
PACKAGE = {"name": "lambda-style", "version": "1.0.0", "dependencies": {"is-number": "^7.0.0"}}


def lockfile(dependency: str, version: str, resolved: str) -> str:
    return json.dumps({
        "name": "lambda-style", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
        "packages": {
            "": {"name": "lambda-style", "version": "1.0.0", "dependencies": {dependency: f"^{version}"}},
            f"node_modules/{dependency}": {"version": version, "resolved": resolved},
        },
    })


@pytest.mark.parametrize("lock,reason,x,expected", [
    # package.json asks for is-number ^7, the lockfile still pins left-pad
    (lockfile("left-pad", "1.3.0", "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz"),
     "the lockfile does not match package.json", "42", True),
    # resolved against a mirror the build may not reach
    (lockfile("is-number", "7.0.0", "https://mirror.invalid/is-number/-/is-number-7.0.0.tgz"),
     "the lockfile names a registry", "x", False),
], ids=["stale", "unreachable-registry"])
def test_npm_ci_failure_retried_with_npm_install(server, unique_name, lock, reason, x, expected):
    """npm ci fails, the build log says why and that it retries, npm install works, the handler is found."""
    response = server.deploy(unique_name, {"index.js": HANDLER, "package.json": json.dumps(PACKAGE),
                                           "package-lock.json": lock})
    log = response.json()["build_log"]
    assert f"npm ci failed ({reason}" in log and "retrying once with npm install" in log
    assert response.json()["function"]["handler"] == "index.handler"
    assert server.invoke(unique_name, {"x": x})["result"] == {"number": expected}
