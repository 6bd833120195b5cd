"""Prometheus metrics of one platform (its own registry, so tests can run several)."""
from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from frazil.runtimes import RUNTIMES

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
SANDBOX_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.invocations = Counter("frazil_invocations", "Finished invocation attempts",
                                   ["function", "status"], registry=r)
        self.duration = Histogram("frazil_invocation_duration_seconds", "Handler run time",
                                  ["function"], buckets=LATENCY_BUCKETS, registry=r)
        self.cold_starts = Counter("frazil_cold_starts", "Invocations that needed a new instance",
                                   ["function"], registry=r)
        self.throttled_sync = Counter("frazil_throttled_sync", "Sync invocations refused with 429",
                                      ["function"], registry=r)
        self.running = Gauge("frazil_running_invocations", "Running invocations per tier", ["tier"], registry=r)
        self.queue_depth = Gauge("frazil_async_queue_depth", "Async invocations waiting in the queue", registry=r)
        self.instances = Gauge("frazil_instances", "Instances by state", ["state"], registry=r)
        self.sandbox_create = Histogram("frazil_sandbox_create_seconds", "Time to create an instance, to ready",
                                        buckets=SANDBOX_BUCKETS, registry=r)
        self.sandbox_creates = Counter("frazil_sandbox_creates", "Instances created, by how (`layer`: one that imported "
                                       "its dependency layer ahead, given its code; `prebuilt`: a generic instance "
                                       "built ahead of time given its code; `zygote`; `exec`)",
                                       ["path"], registry=r)
        self.sandbox_ready = Gauge("frazil_sandbox_ready_instances", "Generic instances built ahead of time, "
                                   "not yet given to a function", ["runtime"], registry=r)
        self.sandbox_layer_ready = Gauge("frazil_sandbox_layer_ready_instances", "Python instances that imported a "
                                         "dependency layer ahead, not yet given to a function", registry=r)
        self.sandbox_destroy = Histogram("frazil_sandbox_destroy_seconds", "Time to destroy an instance",
                                         buckets=SANDBOX_BUCKETS, registry=r)
        self.egress = Counter("frazil_egress_requests", "Requests and tunnels through the HTTP_PROXY of instances",
                              ["function", "outcome"], registry=r)  # outcome: carried, refused
        # Cluster mode. A gateway's asks of an invoker that did not start the call (it goes to the
        # next invoker): `full`, no tier slot free there at once; `gone`, nobody listened.
        self.router_refusals = Counter("frazil_router_refusals", "Asks of an invoker that did not start the "
                                       "call, by why (`full`: no tier slot free there at once; `gone`: nobody "
                                       "listened)", ["reason"], registry=r)
        self.slot_leases = Counter("frazil_slot_lease_transactions", "Tier slot lease transactions with "
                                   "PostgreSQL (a cluster node's: lease, renew, give back)", ["tier"], registry=r)
        self._children: dict[str, tuple] = {}

    def bind(self, admission, pool) -> None:
        """Gauges read live from their owners when scraped."""
        for runtime in RUNTIMES.values():
            self.sandbox_ready.labels(runtime=runtime.name).set_function(
                lambda rt=runtime: pool.sandbox.ready_instances(rt))
        self.sandbox_layer_ready.set_function(lambda: pool.sandbox.layer_ready_instances())
        for mb, slots in admission.tiers.items():
            self.running.labels(tier=str(mb)).set_function(lambda s=slots: s.running)
        self.instances.labels(state="idle").set_function(lambda: pool.counts()["idle"])
        self.instances.labels(state="busy").set_function(lambda: pool.counts()["busy"])
        ledger = getattr(admission, "ledger", None)  # a cluster node's (frazil.cluster.slots)
        if ledger is not None:
            ledger.on_transaction = lambda memory_mb: self.slot_leases.labels(str(memory_mb)).inc()

    # --- hooks called by the invoker --------------------------------------------------------

    def started(self, version) -> None:
        """An invocation of `version` is about to be sent to its instance: a function's first
        here gets its label children made at the event loop's next turn, while the instance
        works (a cold one loads its handler), rather than after its result (~50 µs)."""
        if version.function not in self._children:
            asyncio.get_running_loop().call_soon(self._children_of, version.function)

    def finished(self, version, record, outcome) -> None:
        duration, cold_starts, by_status = self._children_of(version.function)
        counter = by_status.get(outcome.status)
        if counter is None:  # made at the first such outcome: most functions only ever succeed
            counter = by_status[outcome.status] = self.invocations.labels(version.function, outcome.status.value)
        counter.inc()
        duration.observe(outcome.duration_ms / 1000)
        if record.cold:
            cold_starts.inc()

    def _children_of(self, name: str) -> tuple:
        """A function's label children (labels() costs a locked lookup: each is kept)."""
        children = self._children.get(name)
        if children is None:
            children = self._children[name] = (self.duration.labels(name), self.cold_starts.labels(name), {})
        return children

    def throttled(self, version) -> None:
        self.throttled_sync.labels(version.function).inc()
