"""Pool fixtures: the in-process platform (tests/inproc/harness.py), and an `InstancePool`
alone over the fake sandbox for the tests that drive the pool directly."""
from __future__ import annotations

from pathlib import Path

import pytest

from frazil.pool.pool import InstancePool
from frazil.settings import Settings
from tests.inproc.fake_sandbox import FakeSandbox
from tests.inproc.harness import frazil, frazil_factory  # noqa: F401 - fixtures


async def _code_dir(version) -> Path:
    return Path("/code")


async def _no_layers(version) -> tuple:
    return ()


@pytest.fixture
async def pool_factory(tmp_path):
    """`pool_factory(**settings)` -> (pool, sandbox, events): an InstancePool over a fake
    sandbox, recording its (PoolEvent, instance id) events; closed after the test."""
    made = []

    def make(**overrides):
        sandbox = FakeSandbox()
        events = []
        pool = InstancePool(Settings(data_dir=tmp_path, **overrides), sandbox, code_dir=_code_dir,
                            layer_dirs=_no_layers, on_event=lambda event, inst: events.append((event, inst.id)))
        made.append((pool, sandbox))
        return pool, sandbox, events

    yield make
    for pool, sandbox in made:
        await pool.close()
        await sandbox.close()
