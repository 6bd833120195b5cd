"""In-process fixtures (tests/inproc/harness.py): the real app, store, scheduler and pool
over a fake sandbox, driven through httpx.ASGITransport."""
from tests.inproc.harness import frazil, frazil_factory  # noqa: F401 - fixtures
