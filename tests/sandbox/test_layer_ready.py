"""Instances that imported a dependency layer's packages before their code (issue 15,
frazil.sandbox.layer_ready): a layer's first cold start takes the plain path and leaves one
ready; the next cold start with that layer gets it, the package already imported from
/layers/0 before its init; a layer whose import fails falls back to the plain path with a
log line. Layers are real tiny packages with the dist-info pip would have written."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from frazil.sandbox.base import InstanceShape, SandboxError
from tests.sandbox.conftest import DISPATCH_HANDLER, RuntimeClient, make_code_dir, prime_layer

LAYER_MB = 256
# Imported ahead, sys.path starts with the layers; imported by the function, with /code.
MARKER = '''import sys
IMPORTED_AHEAD = sys.path[0] == "/layers/0"
'''


def layer_files(name: str, body: str) -> dict[str, str]:
    return {f"{name}/__init__.py": body, f"{name}-1.0.dist-info/METADATA": f"Name: {name}\nVersion: 1.0\n",
            f"{name}-1.0.dist-info/RECORD": f"{name}/__init__.py,,\n{name}-1.0.dist-info/RECORD,,\n"}


@pytest.fixture
def settings(tmp_path):
    from frazil.settings import Settings

    return Settings(data_dir=tmp_path / "data", sandbox="isolated", sandbox_zygote=True, sandbox_prebuilt=0,
                    sandbox_prebuilt_node=0, sandbox_layer_prebuilt_mb=LAYER_MB)


async def wait_for(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def started(sandbox, spec) -> RuntimeClient:
    client = RuntimeClient(await sandbox.create(spec))
    await client.start()
    return client


async def test_the_second_cold_start_gets_an_instance_that_imported_the_layer(sandbox, spec_factory, tmp_path):
    layer = make_code_dir(tmp_path, layer_files("tinylayer", MARKER))
    first = await started(sandbox, spec_factory(layer_dirs=(layer,)))
    try:
        assert first.proc.stats["path"] == "zygote"
        assert await first.run("import tinylayer\nresult = tinylayer.IMPORTED_AHEAD") is False
    finally:
        await first.proc.destroy()
    shape = InstanceShape.of(spec_factory(layer_dirs=(layer,))).with_layers((layer,))
    await wait_for(lambda: sandbox.layer_ready.pool.ready_count(shape) >= 1, "a ready instance of the layer")
    second = await started(sandbox, spec_factory(layer_dirs=(layer,)))
    try:
        assert second.proc.stats["path"] == "layer"
        result = await second.run('''
import sys
result = [sys.modules["tinylayer"].IMPORTED_AHEAD, sys.modules["tinylayer"].__file__, sys.path[:2]]
''')
        assert result == [True, "/layers/0/tinylayer/__init__.py", ["/code", "/layers/0"]]
    finally:
        await second.proc.destroy()
    assert sandbox.layer_ready.cost_mb(shape) > 0


async def test_the_functions_own_module_wins_over_a_layer_module_of_its_name(sandbox, spec_factory, tmp_path):
    """A layer with a top-level `utils` (imported ahead) and a function with its own utils.py:
    the function's imports find its own, as on the plain path (the code is first on sys.path);
    the layer's other packages stay imported ahead."""
    layer = make_code_dir(tmp_path, {**layer_files("utils", "WHO = 'layer'\n"),
                                     **layer_files("otherlayer", MARKER)})
    code = make_code_dir(tmp_path, {"index.py": DISPATCH_HANDLER, "utils.py": "WHO = 'function'\n"})
    spec = spec_factory(code_dir=code, layer_dirs=(layer,))
    await prime_layer(sandbox, spec)
    client = await started(sandbox, spec_factory(code_dir=code, layer_dirs=(layer,)))
    try:
        assert client.proc.stats["path"] == "layer"
        assert await client.run("import utils, otherlayer\nresult = [utils.WHO, otherlayer.IMPORTED_AHEAD]") == [
            "function", True]
    finally:
        await client.proc.destroy()


async def test_the_layer_is_imported_under_the_functions_environment(sandbox, spec_factory, tmp_path):
    """A package may read a setting at import (OMP_NUM_THREADS and the like): imported ahead,
    it sees the function's environment, as on the plain path; a function with another
    environment does not get that instance."""
    layer = make_code_dir(tmp_path, layer_files("envlayer", "import os\nSEEN = os.environ.get('THREADS')\n"))
    spec = spec_factory(layer_dirs=(layer,), env=(("THREADS", "1"),))
    await prime_layer(sandbox, spec)
    client = await started(sandbox, spec_factory(layer_dirs=(layer,), env=(("THREADS", "1"),)))
    try:
        assert client.proc.stats["path"] == "layer"
        assert await client.run("import envlayer\nresult = envlayer.SEEN") == "1"
    finally:
        await client.proc.destroy()
    other = await started(sandbox, spec_factory(layer_dirs=(layer,), env=(("THREADS", "8"),)))
    try:
        assert other.proc.stats["path"] != "layer"
    finally:
        await other.proc.destroy()


async def test_an_instance_joins_the_pool_only_once_its_imports_are_done(sandbox, spec_factory, tmp_path):
    """A layer whose import takes a second and then fails: at no moment is an instance of it
    ready to be taken (a cold start would have inherited the failure), and the layer ends
    unfit."""
    layer = make_code_dir(tmp_path, layer_files("slowbroken", "import time\ntime.sleep(1)\nraise RuntimeError('late')\n"))
    spec = spec_factory(layer_dirs=(layer,))
    shape = sandbox.layer_ready.shape_for(spec)
    await (await sandbox.create(spec)).destroy()  # the plain path; asks for a ready instance
    most_ready, deadline = 0, time.monotonic() + 60
    while (str(layer),) not in sandbox.layer_ready.unfit:
        assert time.monotonic() < deadline, "the layer was not found unfit"
        most_ready = max(most_ready, sandbox.layer_ready.pool.ready_count(shape))
        await asyncio.sleep(0.01)
    assert most_ready == 0
    assert "RuntimeError: late" in sandbox.layer_ready.unfit[(str(layer),)]


async def test_a_layer_dir_is_checked_again_before_an_instance_imports_it(sandbox, spec_factory, tmp_path):
    """A ready instance is built some time after the cold start that asked for it: its layer
    dirs are checked then as every create checks them (here: no longer readable by others),
    and nothing is built."""
    layer = make_code_dir(tmp_path, layer_files("closedlayer", MARKER))
    spec = spec_factory(layer_dirs=(layer,))
    await (await sandbox.create(spec)).destroy()
    layer.chmod(0o700)
    before = set(sandbox.table.ids)
    with pytest.raises(SandboxError, match="must be readable by others"):
        await sandbox.layer_ready._build(sandbox.layer_ready.shape_for(spec))
    assert set(sandbox.table.ids) <= before  # no instance made for it


async def test_a_layer_whose_import_fails_falls_back_to_the_plain_path_with_a_log_line(sandbox, spec_factory,
                                                                                        tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="frazil.sandbox.layer_ready")
    layer = make_code_dir(tmp_path, layer_files("brokenlayer", "raise RuntimeError('no GPU here')\n"))
    first = await started(sandbox, spec_factory(layer_dirs=(layer,)))
    try:
        assert await first.run("result = 'fine without it'") == "fine without it"
    finally:
        await first.proc.destroy()
    await wait_for(lambda: (str(layer),) in sandbox.layer_ready.unfit, "the layer marked unfit")
    reason = sandbox.layer_ready.unfit[(str(layer),)]
    assert "importing brokenlayer from the dependency layer failed: RuntimeError: no GPU here" in reason
    assert any("take the plain path" in r.getMessage() and "no GPU here" in r.getMessage() for r in caplog.records)
    again = await started(sandbox, spec_factory(layer_dirs=(layer,)))
    try:
        assert again.proc.stats["path"] != "layer"
        assert await again.run("result = 'still fine'") == "still fine"
    finally:
        await again.proc.destroy()
    shape = InstanceShape.of(spec_factory(layer_dirs=(layer,))).with_layers((layer,))
    assert sandbox.layer_ready.pool.ready_count(shape) == 0
