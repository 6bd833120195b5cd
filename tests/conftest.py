"""Shared fixtures: real `frazil server` processes (`frazil.testing.LocalServer`, the harness
the benchmarks use too), and what tests of the sandbox need to look at the host.

`server_factory(**env)` starts a server in its own data dir on a free port and closes it
(and everything it started) at the end of the test; `server` is one shared default server
for tests that only deploy and invoke. Nothing here sleeps to wait: readiness is polled
with a deadline.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from frazil.settings import ENV_REQUIRE_SERVICES, ENV_TEST_SANDBOX, Settings
from frazil.testing import LocalServer
from frazil.testing.server import default_command


def pytest_configure(config):
    config.addinivalue_line("markers", "registry: installs a real package from a public registry "
                                       "(deselect with -m 'not registry')")


FRAZIL = default_command()[0]  # the CLI the servers run, for tests that call it themselves
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def isolated_sandbox_problem() -> str | None:
    """Why the isolated sandbox cannot run here, or None when it can."""
    from frazil.sandbox.select import make_sandbox
    from frazil.settings import Settings

    try:
        make_sandbox(Settings(sandbox="isolated"))
    except Exception as exc:  # SandboxUnavailable, with the probe's message
        return f"the isolated sandbox is not available: {exc}"
    return None


SANDBOX_PROBLEM = isolated_sandbox_problem()
# Ordinary tests run in the real sandbox wherever it works; hostile tests demand it.
TEST_SANDBOX = os.environ.get(ENV_TEST_SANDBOX) or ("plain" if SANDBOX_PROBLEM else "isolated")
needs_sandbox = pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=SANDBOX_PROBLEM or "")


def require_service(reason: str):
    """Skip for a missing external service, unless CI demands the services exist."""
    if os.environ.get(ENV_REQUIRE_SERVICES) == "1":
        pytest.fail(f"{reason} (and {ENV_REQUIRE_SERVICES}=1)")
    pytest.skip(reason)


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def host_mounts_mentioning(text: str) -> list[str]:
    """This process's mount table lines that mention `text` (a leaked mount shows here)."""
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if text in line]


def make_server(data_dir: Path, **env) -> LocalServer:
    """A server (not started yet) on `data_dir`, in the tests' sandbox unless `env` names another;
    the caller closes it."""
    return LocalServer(data_dir, env={Settings.env_name("sandbox"): TEST_SANDBOX, **env})


@pytest.fixture
def server_factory(tmp_path_factory):
    """Start real servers: `server_factory(FRAZIL_KEEP_ALIVE_S=1, ...)`; all closed after the test."""
    started: list[LocalServer] = []

    def start(data_dir: Path | None = None, **env) -> LocalServer:
        srv = make_server(data_dir or tmp_path_factory.mktemp("frazil") / "data", **env)
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One default server shared by the tests that only deploy and invoke."""
    srv = make_server(tmp_path_factory.mktemp("frazil-shared") / "data").start()
    yield srv
    srv.close()


@pytest.fixture
def unique_name(request) -> str:
    """A function name unique to this test (the shared server outlives tests)."""
    import re
    import secrets

    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    return f"t-{base}-{secrets.token_hex(3)}"
