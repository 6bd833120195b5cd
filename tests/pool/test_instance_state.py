"""`Instance` state: one transition table, one method that changes it, and the programmer
errors a forbidden change raises. Instances here run over the fake sandbox."""
from __future__ import annotations

import pytest

from frazil.pool.instance import TRANSITIONS, ForbiddenTransition, InitFailed, InitFrame, Instance, InstanceState as St
from frazil.runtimes import get_runtime
from frazil.sandbox.base import SandboxSpec
from frazil.store.models import InvocationStatus
from tests.inproc.fake_sandbox import BROKEN_HANDLER, FakeSandbox
from tests.inproc.harness import make_version


@pytest.fixture
async def new_instance(tmp_path):
    """`await new_instance(**version fields)`: an Instance over a fake sandbox, not started."""
    sandbox = FakeSandbox()
    made = []

    async def make(**fields) -> Instance:
        version = make_version(**fields)
        spec = SandboxSpec(instance_id=f"i{len(made)}", runtime=get_runtime(version.runtime), code_dir=tmp_path)
        init = InitFrame.make(version, sandbox.runtime_paths(spec), max_result_bytes=4096, platform_env={})
        instance = Instance(version, await sandbox.create(spec, init.frame), init, log_cap=4096)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        await instance.destroy()


class TestTable:
    """The table itself."""

    def test_every_state_can_die_and_nothing_leaves_death(self):
        """DEAD is reachable from every state, and its only transition is to itself."""
        assert set(TRANSITIONS) == set(St)
        assert all(St.DEAD in allowed for allowed in TRANSITIONS.values())
        assert TRANSITIONS[St.DEAD] == {St.DEAD}

    def test_leases(self):
        """Leases go IDLE -> BUSY -> IDLE, or STARTING -> BUSY for a cold instance (its first
        invocation goes right behind init: `Instance.lease` refuses one not given its init)."""
        assert TRANSITIONS[St.STARTING] == {St.IDLE, St.BUSY, St.DEAD}
        assert TRANSITIONS[St.IDLE] == {St.BUSY, St.DEAD}
        assert TRANSITIONS[St.BUSY] == {St.IDLE, St.DEAD}


class TestLifeCycle:
    """A real Instance moving through its states."""

    async def test_start_lease_invoke_end_lease(self, new_instance):
        """STARTING -> IDLE on ready; the lease holds across the invocation until end_lease()."""
        instance = await new_instance()
        assert instance.state is St.STARTING
        await instance.start(init_timeout_s=5)
        assert instance.state is St.IDLE
        instance.lease()
        outcome = await instance.invoke("inv1", b'{"return": 7}', cold=True, timeout_s=5)
        assert outcome.status is InvocationStatus.SUCCEEDED and outcome.result == 7
        assert instance.state is St.BUSY  # still leased: only the pool ends a lease
        instance.end_lease()
        assert instance.state is St.IDLE and instance.invocations == 1

    async def test_forbidden_changes_raise(self, new_instance):
        """Leasing before start, ending a lease never taken, invoking unleased: each raises."""
        instance = await new_instance()
        with pytest.raises(ForbiddenTransition):
            instance.lease()
        await instance.start(init_timeout_s=5)
        with pytest.raises(ForbiddenTransition):
            instance.end_lease()
        with pytest.raises(ForbiddenTransition):
            await instance.invoke("inv1", b"{}", cold=True, timeout_s=5)
        instance.lease()
        with pytest.raises(ForbiddenTransition):
            instance.lease()
        assert instance.state is St.BUSY  # a refused change changes nothing

    async def test_the_state_is_not_assignable(self, new_instance):
        """Only _become() changes the state: a plain assignment is refused."""
        instance = await new_instance()
        with pytest.raises(AttributeError):
            instance.state = St.IDLE

    async def test_death_is_final_and_idempotent(self, new_instance):
        """destroy() twice is fine; a destroyed instance cannot be leased again."""
        instance = await new_instance()
        await instance.start(init_timeout_s=5)
        await instance.destroy()
        await instance.destroy()
        assert instance.state is St.DEAD and not instance.alive
        with pytest.raises(ForbiddenTransition):
            instance.lease()

    async def test_timeout_kills_a_leased_instance(self, new_instance):
        """An invocation past its time ends `timeout` and leaves the instance DEAD, its runtime killed."""
        instance = await new_instance()
        await instance.start(init_timeout_s=5)
        instance.lease()
        outcome = await instance.invoke("inv1", b'{"gate": "never"}', cold=True, timeout_s=0.05)
        assert outcome.status is InvocationStatus.TIMEOUT and outcome.error["type"] == "Timeout"
        assert instance.state is St.DEAD and instance.death == "timed out"
        assert (await instance.proc.wait()).signal == 9

    async def test_a_runtime_that_exits_mid_invocation(self, new_instance):
        """The channel closing during an invocation fails it with RuntimeExited; the instance is DEAD."""
        instance = await new_instance()
        await instance.start(init_timeout_s=5)
        instance.lease()
        outcome = await instance.invoke("inv1", b'{"exit": 3}', cold=True, timeout_s=5)
        assert outcome.status is InvocationStatus.FAILED
        assert outcome.error["type"] == "RuntimeExited" and "status 3" in outcome.error["message"]
        assert instance.state is St.DEAD

    async def test_init_error(self, new_instance):
        """A handler that does not load: start() raises InitFailed with the runtime's error."""
        instance = await new_instance(handler=BROKEN_HANDLER)
        with pytest.raises(InitFailed) as failed:
            await instance.start(init_timeout_s=5)
        assert failed.value.error["type"] == "AttributeError"
        assert instance.state is St.DEAD  # killed: nothing may run on it; whoever started it destroys it
        await instance.destroy()
        assert instance.state is St.DEAD


class TestInvokeBehindInit:
    """A cold instance is leased with its init in flight; its first invoke goes right behind init."""

    async def test_an_invoke_sent_before_inits_answer_is_served(self, new_instance):
        """begin() -> lease (STARTING -> BUSY) -> invoke: the invocation runs once the runtime is
        ready, and its result is the invocation's."""
        instance = await new_instance()
        await instance.begin(init_timeout_s=5)
        assert instance.init_pending and instance.state is St.STARTING
        instance.lease()
        outcome = await instance.invoke("inv1", b'{"return": 7, "print": "hi"}', cold=True, timeout_s=5)
        assert outcome.status is InvocationStatus.SUCCEEDED and outcome.result == 7
        assert outcome.logs == "hi"
        assert instance.state is St.BUSY and not instance.init_pending and instance.invocations == 1
        instance.end_lease()
        instance.lease()
        warm = await instance.invoke("inv2", b'{"return": 8}', cold=False, timeout_s=5)
        assert warm.status is InvocationStatus.SUCCEEDED and warm.result == 8

    async def test_an_init_failure_is_the_invocations_init_error(self, new_instance):
        """The handler does not load: invoke raises InitFailed with the runtime's error (what the
        invoker reports as the invocation's failure), nothing ran, and the instance is DEAD."""
        instance = await new_instance(handler=BROKEN_HANDLER)
        await instance.begin(init_timeout_s=5)
        instance.lease()
        with pytest.raises(InitFailed) as failed:
            await instance.invoke("inv1", b'{"return": 7}', cold=True, timeout_s=5)
        assert failed.value.error["type"] == "AttributeError"
        assert instance.state is St.DEAD and instance.current_invocation is None and instance.invocations == 0

    async def test_a_lease_needs_init_sent(self, new_instance):
        """STARTING -> BUSY only once init went out (begin())."""
        instance = await new_instance()
        with pytest.raises(ForbiddenTransition):
            instance.lease()
