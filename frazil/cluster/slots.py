"""Cluster mode: tier limits for the whole cluster, exactly (the cluster's SlotAdmission).

A tier's slots are leased to nodes in blocks, recorded in PostgreSQL (`tier_slot_leases`: one
row per tier and node: `slots`, `wanted`, `expires_at` on the database's clock), and used
locally through the TierSlots interface (try_take/take/give/waiting): a take or a give is a
counter change in the node, no database round trip. The database is touched only to lease more
(a caller found no room), to renew, and to give spare slots back.

Invariant (what "exactly" means here):
    for every tier, at every instant, the invocations running on all nodes together are at
    most the tier's limit.
It holds because of three rules:
1. The ledger: every change to a tier's rows is one transaction under the tier's advisory
   transaction lock (frazil.cluster.names.slot_lock_key). It reads the database clock after
   taking the lock, deletes the rows that have expired, and sets this node's row so that the
   sum of the live rows' `slots` is at most the limit. So, at every database instant, the
   unexpired rows of a tier hold at most `limit` slots; a row only ever counts as free once
   its `expires_at` has passed: the slots of a dead node come back after their expiry, never
   before.
2. Local use: a node runs at most `slots` invocations of the tier at once (`running` counts
   them from take to give), and only while its lease is in force: until
   `sent + lease_s - margin` on the node's monotonic clock, where `sent` is read *before* the
   transaction that granted or renewed it. The database set `expires_at` to its clock read
   *after* that, plus `lease_s`: the node's lease ends at least `margin` before the row
   expires (clocks run at the same rate; their offsets do not matter, no clock is compared
   with another node's).
3. Running work: an invocation starts only while its node's lease is in force (the invoker
   checks `in_force` just before it sends the event; nothing awaits in between). When a lease
   lapses (it could not be renewed: PostgreSQL unreachable, or too slow) the node takes no new
   work on it and kills the invocations running on it at once (`on_lapse`: their instances are
   killed, the invocations end `failed` with a message saying so), `margin` seconds before any
   other node may be granted those slots. A node that dies loses its instances with it (they
   die with their platform) and its rows expire after `lease_s`.
Assumed, as in every lease scheme without fencing at the resource: a node's event loop is never
stalled for longer than `margin` (the lapse timer must fire in time), and every node of a
cluster has the same tier limits (a node grants by its own limit).

Who owns a slot at each moment: free (no live row counts it) -> leased to a node (its row) ->
held by one running invocation on that node (counted in `running`, from take to give) -> back
to the node's spare block -> back to free when the node shrinks its row (idle for `idle_s`,
another node wants slots, a clean stop or start), or when the row expires.

Waiting across nodes: a node that cannot lease what its callers need writes how many it wants
in its row and NOTIFYs the other nodes (PostgreSQL LISTEN/NOTIFY on SLOTS_CHANNEL, delivered
at commit); a node holding spare slots gives them back at once and NOTIFYs that slots were
freed, and the waiting node leases again. Notifications are only a speed-up: a waiting node
also polls (with backoff up to POLL_MAX_S), and renewals read the `wanted` column too, so a
notification lost while the listening connection was down costs at most a poll. Polling alone
would make a waiter's latency the poll interval inside a 2 s sync retry window and cost every
waiting node a query per interval; LISTEN/NOTIFY is PostgreSQL's own mechanism for exactly
this, and it costs one idle connection per node.

PostgreSQL out of reach: a caller that finds no room waits for a lease, and a lease needs the
database. Once a lease transaction fails because PostgreSQL cannot be reached (frazil.outage
says which failures those are), the callers waiting for a lease are refused at once with
ServiceUnavailable naming PostgreSQL (a sync call: 503), and so is every later caller that
finds no room, each after one more lease attempt of its own (the attempt that ends the outage
serves it). A caller whose wait ends while a lease transaction has been out for HUNG_LEASE_S
(PostgreSQL hung) is refused the same way: "the tier is full" (429) is answered only when the
ledger said so. Exactness is untouched: nothing runs here without a lease in force, and the
slots of a lease still in force are used until it lapses.

Fairness: a freed slot goes first to this node's own waiters (FIFO, TierSlots), then back to
the cluster; nodes are not served in the order their callers came.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

import asyncpg
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from frazil.background import FailureLog
from frazil.cluster.names import SLOTS_CHANNEL, slot_lock_key
from frazil.errors import ServiceUnavailable
from frazil.outage import classify
from frazil.scheduler.admission import TierSlots
from frazil.settings import Settings
from frazil.store.schema import tier_slot_leases as leases

log = logging.getLogger(__name__)

POLL_MIN_S = 0.05  # a waiting node leases again after this, doubling...
POLL_MAX_S = 0.5  # ...up to this, unless a notification says slots were freed
LISTEN_RETRY_S = 2.0  # a lost listening connection is made again after this
# A try_take that found no room (the async dispatcher's) counts as a caller waiting for this
# long: it asks again at its next pass, so a full cluster is not polled for it forever.
TRY_TAKE_DEMAND_S = 5.0
# A lease transaction out this long means PostgreSQL is not answering (a full tier answers in
# milliseconds): a caller whose wait ends meanwhile is told so rather than "full".
HUNG_LEASE_S = 2.0


@dataclass(frozen=True)
class Grant:
    """What one ledger transaction left this node with, for one tier."""

    slots: int
    wanted: int  # what this node's callers need beyond `slots`, recorded in its row
    others_want: int  # slots other nodes of the cluster wait for
    in_force_until: float  # this node's monotonic clock (rule 2)
    free: int  # slots no live lease holds after this transaction (this node could lease them next)


@dataclass
class SlotLedger:
    """The `tier_slot_leases` rows of one node (rule 1). Every method is one transaction."""

    engine: AsyncEngine
    node: str
    lease_s: float  # a row expires this long after the transaction that wrote it
    margin_s: float  # the node stops using a lease this long before its row expires
    on_transaction: Callable[[int], None] = lambda memory_mb: None  # counts lease transactions (metrics)

    async def lease(self, memory_mb: int, limit: int, want: int, need: int) -> Grant:
        """Set this node's lease on the tier to `want` slots, or as many as the other nodes'
        live leases leave free, renewed for `lease_s`; `need` (what its callers need now) beyond
        the grant is recorded as wanted and announced."""
        self.on_transaction(memory_mb)
        sent = time.monotonic()  # before the database reads its clock (rule 2)
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": slot_lock_key(memory_mb)})
            now = float((await conn.execute(select(func.extract("epoch", func.clock_timestamp())))).scalar_one())
            expired = (await conn.execute(delete(leases).where(
                leases.c.tier_mb == memory_mb, leases.c.expires_at <= now))).rowcount
            rows = (await conn.execute(select(leases.c.node, leases.c.slots, leases.c.wanted)
                                       .where(leases.c.tier_mb == memory_mb))).all()
            held = sum(r.slots for r in rows if r.node == self.node)
            others = sum(r.slots for r in rows if r.node != self.node)
            others_want = sum(r.wanted for r in rows if r.node != self.node)
            granted = max(0, min(want, limit - others))
            wanted = max(0, need - granted)
            mine = leases.c.tier_mb == memory_mb, leases.c.node == self.node
            if granted == 0 and wanted == 0:
                await conn.execute(delete(leases).where(*mine))
            else:
                values = {"slots": granted, "wanted": wanted, "expires_at": now + self.lease_s}
                await conn.execute(pg_insert(leases).values(tier_mb=memory_mb, node=self.node, **values)
                                   .on_conflict_do_update(index_elements=["tier_mb", "node"], set_=values))
            if expired or granted < held:
                await self._notify(conn, "freed", memory_mb)
            if wanted:
                await self._notify(conn, "want", memory_mb)
        return Grant(granted, wanted, others_want, sent + self.lease_s - self.margin_s, limit - others - granted)

    async def release_all(self) -> None:
        """Give back every slot this node leases (a clean stop; a start, for a previous run's)."""
        async with self.engine.begin() as conn:
            tiers = (await conn.execute(delete(leases).where(leases.c.node == self.node)
                                        .returning(leases.c.tier_mb))).scalars().all()
            for memory_mb in sorted(set(tiers)):
                await self._notify(conn, "freed", memory_mb)

    async def _notify(self, conn, event: str, memory_mb: int) -> None:
        # Delivered to the listeners when the transaction commits, never before.
        await conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                           {"channel": SLOTS_CHANNEL, "payload": f"{event} {memory_mb} {self.node}"})


class _NoneFree(Exception):
    """A lease transaction found no free slot in the cluster (ends a zero-wait take's wait)."""


class LeasedTierSlots(TierSlots):
    """One tier's slots on one node: room = the block this node leases, while in force.

    `limit` is the tier's limit for the whole cluster; `granted` the slots leased here. Always
    `running <= granted` while the lease is in force (a take checks it); after a lapse
    `granted` is 0 and the invocations still counted in `running` are being killed."""

    def __init__(self, memory_mb: int, limit: int, ledger: SlotLedger, *, block: int, idle_s: float,
                 on_lapse: Callable[[int], None]):
        super().__init__(limit)
        self.memory_mb = memory_mb
        self.ledger = ledger
        self.block = block  # the least spare leased beyond what callers need now (0: no spare at all)
        self.idle_s = idle_s  # spare slots unused this long go back to the cluster
        self.granted = 0
        self.in_force_until = 0.0  # monotonic; rule 2
        self.on_lapse = on_lapse  # kills the invocations running on this tier here (rule 3)
        self._others_want = 0
        self._row = False  # this node has a row for the tier (slots or wanted)
        self._short_until = 0.0  # a try_take found no room: lease one more, then tell on_free
        self._cap: int | None = None  # while a lease transaction is out: at most this many run here
        self._last_take = 0.0
        self._peak = 0  # the most running here at once since _peak_since (sizes the spare)
        self._peak_since = 0.0
        self._peak_before = 0  # the same for the window before (a peak is kept for one more window)
        self._lock = asyncio.Lock()  # one ledger transaction of this tier at a time
        self._freed = asyncio.Event()  # another node gave slots back
        self._grower: asyncio.Task | None = None
        self._shrinker: asyncio.Task | None = None
        self._lapse_timer: asyncio.TimerHandle | None = None
        self.leasing = FailureLog(log, f"leasing {memory_mb} MB tier slots",
                                  "retrying, the lease lapses if this lasts")
        self.unreachable: str | None = None  # why the last one failed, when PostgreSQL was out of reach
        self._leasing_since: float | None = None  # monotonic start of the ledger transaction now out
        # Slots no lease held at the last transaction (none yet: assume some). While there are,
        # a caller that will not wait for a slot to free waits for this node's lease to grow.
        self._free = limit
        self._growing: set[asyncio.Future] = set()  # the waiters of such callers (`take` with 0)

    # --- the TierSlots hooks -------------------------------------------------------------------

    def has_room(self) -> bool:
        room = self.granted if self._cap is None else min(self.granted, self._cap)
        return self.running < room and self.in_force

    @property
    def in_force(self) -> bool:
        return time.monotonic() < self.in_force_until

    def _take_now(self) -> bool:
        if super()._take_now():
            self._took()
            return True
        return False

    def _took(self) -> None:
        self._last_take = time.monotonic()
        if self.running > self._peak:
            self._peak = self.running

    def try_take(self) -> bool:
        if self._take_now():
            return True
        self._short_until = time.monotonic() + TRY_TAKE_DEMAND_S  # the grower leases one for it
        self.short()
        return False

    def admit_waiters(self) -> int:
        admitted = super().admit_waiters()
        if admitted:
            self._took()
        return admitted

    async def take(self, timeout_s: float) -> bool:
        """As TierSlots.take, but a wait that a lease cannot end because PostgreSQL is out of
        reach (or hung) raises ServiceUnavailable rather than answering "full" (module docstring).

        A caller that will not wait for a slot to free (`timeout_s` 0: a gateway asking this
        invoker before the next, frazil.cluster.router) is refused only when the cluster has no
        free slot: while the last lease transaction left some free and no other node waits for
        slots, finding none leased here means this node's block is too small, not that the tier
        is full, so the caller waits in line while the lease grows into them (a transaction),
        and is refused once a lease finds none left. Refused at once instead, it would go to
        another invoker, most often as a cold start there, while this one holds its version warm."""
        if timeout_s <= 0 and self._free > 0 and not self._others_want and self.unreachable is None:
            timeout_s = HUNG_LEASE_S  # the longest a lease transaction may take, not a slot's wait
            took = await self._take_as_lease_grows()
        else:
            took = await super().take(timeout_s)
        if took:
            return True
        out_for = 0.0 if self._leasing_since is None else time.monotonic() - self._leasing_since
        if timeout_s > 0 and (self.unreachable is not None or out_for >= HUNG_LEASE_S):
            raise self._unavailable(out_for)
        return False

    async def _take_as_lease_grows(self) -> bool:
        """A slot for a caller that will not wait for one to free (`take`): this node's, or one
        its lease grows into; False once a lease transaction found no free slot in the cluster,
        or after HUNG_LEASE_S."""
        if self._take_now():
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._growing.add(waiter)
        try:
            return await self._wait_in_line(waiter, HUNG_LEASE_S)
        except _NoneFree:
            return False
        finally:
            self._growing.discard(waiter)

    def short(self) -> None:
        if self._grower is None or self._grower.done():
            self._grower = asyncio.get_running_loop().create_task(self._grow(), name=f"slots-{self.memory_mb}-lease")
        elif self.unreachable is not None:
            self._freed.set()  # the grower sleeps between attempts: try now, for this caller

    def _unavailable(self, out_for_s: float) -> ServiceUnavailable:
        # Any caller reads this (an anonymous one of a public function too): where the database
        # is and the driver's words go to the log (`leasing`), not into the answer.
        why = ("is unreachable" if self.unreachable is not None
               else f"has not answered a lease transaction for {out_for_s:.1f} s")
        return ServiceUnavailable(f"the platform's database (PostgreSQL) {why}: this node cannot lease "
                                  f"{self.memory_mb} MB tier slots, so it starts no invocation of that tier until "
                                  f"the database is back; try again later")

    def _refuse_waiters(self) -> None:
        """PostgreSQL is out of reach: the callers waiting for a lease are told so now."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(self._unavailable(0.0))

    def give(self) -> None:
        super().give()
        if self._others_want and self.granted > self._need():
            self.give_back_spare()  # another node waits: do not sit on slots until idle

    # --- the ledger ----------------------------------------------------------------------------

    @property
    def _short(self) -> bool:
        return time.monotonic() < self._short_until

    def _need(self) -> int:
        return self.running + len(self._waiters) + (1 if self._short else 0)

    def _spare(self) -> int:
        """Slots to hold beyond what callers need now: `block`, or as many as ran here at once
        lately if that is more (0 with a block of 0). A node whose load swings by more than a
        fixed block would otherwise find no room on every swing, and its sync calls would go
        to other nodes as cold starts while it leases one more slot per query."""
        if not self.block:
            return 0
        now = time.monotonic()
        if now - self._peak_since > self.idle_s:  # the peak of the last window or two, not of all time
            # A window ends: its peak is kept for one more. Forgotten at once, a renewal just
            # after would shrink the lease to what runs at that instant (mostly less than a
            # steady load's peak), and the next swing would need a lease transaction again.
            self._peak_before = self._peak if now - self._peak_since <= 2 * self.idle_s else 0
            self._peak, self._peak_since = self.running, now
        return max(self.block, self._peak, self._peak_before)

    def _want(self) -> int:
        """The lease to ask for: what callers need now, plus a spare while the tier is in use
        and no other node waits; never more than the limit, and never grown by a renewal."""
        need = self._need()
        if need > self.granted or not self.in_force:  # callers are here now: lease with a spare
            return min(self.limit, need + (0 if self._others_want else self._spare()))
        recently_used = time.monotonic() - self._last_take < self.idle_s
        spare = self._spare() if recently_used and not self._others_want else 0
        return min(self.granted, need + spare)

    async def refresh(self) -> None:
        """One ledger transaction: lease, renew or give back, as `_want` says. No query when
        this node neither holds nor wants anything of the tier."""
        async with self._lock:
            want, need = self._want(), self._need()
            if want == 0 and need == 0 and not self._row:
                return  # nothing held, nothing wanted: nothing to say
            # Until the answer is in, no more than `want` run here: a lease that shrinks must
            # not find more running than it keeps (`want` >= need: waiters still fit).
            self._cap = want
            self._leasing_since = time.monotonic()
            try:
                grant = await self.ledger.lease(self.memory_mb, self.limit, want, need)
            except BaseException as exc:
                # Whether it committed is unknown: keep the smaller of the two leases, and the
                # earlier end (the one already known).
                self.granted = min(self.granted, want)
                if isinstance(exc, Exception):  # not a cancellation
                    outage = classify(exc)
                    self.unreachable = outage.detail if outage is not None else None
                    self.leasing.failed(exc)
                raise
            finally:
                self._cap = None
                self._leasing_since = None
            self.leasing.worked()
            self.unreachable = None
            self._apply(grant)

    def _apply(self, grant: Grant) -> None:
        self.granted = grant.slots
        self._free = grant.free
        self._row = bool(grant.slots or grant.wanted)
        self._others_want = grant.others_want
        self.in_force_until = grant.in_force_until if grant.slots else 0.0
        if self._lapse_timer is not None:
            self._lapse_timer.cancel()
            self._lapse_timer = None
        if grant.slots:
            loop = asyncio.get_running_loop()
            self._lapse_timer = loop.call_at(loop.time() + (self.in_force_until - time.monotonic()), self._lapse)
        self.admit_waiters()
        if not self._free:  # the tier is full: those who would not wait for a slot to free are refused
            for waiter in self._growing:
                if not waiter.done():
                    waiter.set_exception(_NoneFree())
        if self._short and self.has_room():
            self._short_until = 0.0
            self.on_free()

    def _lapse(self) -> None:
        """The lease could not be renewed in time (rule 3): nothing more runs on it."""
        self._lapse_timer = None
        if self.in_force:  # the timer fired a hair early: look again when it is due
            loop = asyncio.get_running_loop()
            self._lapse_timer = loop.call_at(loop.time() + (self.in_force_until - time.monotonic()), self._lapse)
            return
        self.granted = 0
        if self.running:
            log.error("the lease on %d MB tier slots lapsed (PostgreSQL unreachable or too slow); killing the %d "
                      "invocations running on it", self.memory_mb, self.running)
            self.on_lapse(self.memory_mb)

    async def _grow(self) -> None:
        """Lease until this node's callers have room or stop waiting. Error policy: a failed
        transaction is retried with the same backoff as a full cluster; when PostgreSQL was out
        of reach, the callers waiting now are refused at once (ServiceUnavailable)."""
        pause = POLL_MIN_S
        while self._waiters or self._short:
            self._freed.clear()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # logged by refresh
                if self.unreachable is not None:
                    self._refuse_waiters()
            if not (self._waiters or self._short) or self.has_room():
                pause = POLL_MIN_S
                continue
            try:
                await asyncio.wait_for(self._freed.wait(), pause)
                pause = POLL_MIN_S
            except asyncio.TimeoutError:
                pause = min(pause * 2, POLL_MAX_S)

    def give_back_spare(self) -> None:
        """Another node wants slots: shrink this node's lease to what it needs, now."""
        if self._shrinker is None or self._shrinker.done():
            self._shrinker = asyncio.get_running_loop().create_task(self._quietly(self.refresh()),
                                                                   name=f"slots-{self.memory_mb}-give-back")

    @staticmethod
    async def _quietly(refresh) -> None:
        try:
            await refresh
        except asyncio.CancelledError:
            raise
        except Exception:
            pass  # logged by refresh; the next renewal tries again

    # --- notifications from other nodes ----------------------------------------------------------

    def wanted_elsewhere(self) -> None:
        self._others_want = max(self._others_want, 1)
        if self.granted > self._need():
            self.give_back_spare()

    def freed_elsewhere(self) -> None:
        self._freed.set()

    async def close(self) -> None:
        for task in (self._grower, self._shrinker):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._grower, self._shrinker) if t), return_exceptions=True)
        if self._lapse_timer is not None:
            self._lapse_timer.cancel()
        self.granted = 0
        self.in_force_until = 0.0


class ClusterAdmission:
    """The slots of every tier on this node, leased from the cluster (module docstring).

    Renews every held lease each `renew_s` (a tenth of the lease), listens for the other nodes'
    notices, and gives everything back on start (a previous run's leases: its instances died
    with it) and on a clean stop."""

    def __init__(self, engine: AsyncEngine, node: str, limits: dict[int, int], *, block: int, idle_s: float,
                 lease_s: float):
        margin_s = lease_s / 4
        self.ledger = SlotLedger(engine, node, lease_s, margin_s)
        self.node = node
        self.renew_s = lease_s / 10
        self.tiers = {mb: LeasedTierSlots(mb, limit, self.ledger, block=block, idle_s=idle_s,
                                          on_lapse=lambda memory_mb: self.on_lapse(memory_mb))
                      for mb, limit in limits.items()}
        # Kills this node's running invocations of a tier whose lease lapsed (rule 3); the
        # platform sets it to its pool's.
        self.on_lapse: Callable[[int], None] = lambda memory_mb: None
        self.listening = asyncio.Event()  # the notice connection is up (tests wait for it)
        self._tasks: list[asyncio.Task] = []

    @classmethod
    def from_settings(cls, settings: Settings, engine: AsyncEngine, node: str) -> "ClusterAdmission":
        return cls(engine, node, {mb: tier.concurrency for mb, tier in settings.tiers.items()},
                   block=settings.slot_block, idle_s=settings.slot_idle_s, lease_s=settings.slot_lease_s)

    def slots(self, memory_mb: int) -> LeasedTierSlots:
        return self.tiers[memory_mb]

    async def start(self) -> None:
        await self.ledger.release_all()
        self._tasks = [asyncio.create_task(self._renew_forever(), name="slots-renew"),
                       asyncio.create_task(self._listen_forever(), name="slots-listen")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for slots in self.tiers.values():
            await slots.close()
        try:
            await self.ledger.release_all()
        except Exception as exc:  # PostgreSQL gone: the rows expire by themselves
            log.warning("could not give back the tier slots of node %s (%s); they expire by themselves",
                        self.node, exc)

    async def renew_once(self) -> None:
        """One renewal of every tier (the drain mode for tests)."""
        for slots in self.tiers.values():
            await slots.refresh()

    async def _renew_forever(self) -> None:
        # Error policy: a failed renewal is logged by the tier (once per outage) and tried again
        # at the next tick; the lease lapses by its timer if none succeeds in time (rule 3).
        while True:
            await asyncio.sleep(self.renew_s)
            for slots in self.tiers.values():
                try:
                    await slots.refresh()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    pass

    async def _listen_forever(self) -> None:
        # Error policy: a lost listening connection is made again after LISTEN_RETRY_S; the
        # waiting nodes poll meanwhile (module docstring), so a lost notice only costs time.
        url = self.ledger.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        listening = FailureLog(log, "listening for tier slot notices", "waiting nodes poll meanwhile")
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(url, timeout=5)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(SLOTS_CHANNEL, self._on_notice)
                listening.worked()
                self.listening.set()
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                listening.failed(exc)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(LISTEN_RETRY_S)

    def _on_notice(self, _conn, _pid, _channel, payload: str) -> None:
        try:
            event, memory_mb, node = payload.split(" ", 2)
            slots = self.tiers.get(int(memory_mb))
        except ValueError:
            return
        if slots is None or node == self.node:
            return
        if event == "want":
            slots.wanted_elsewhere()
        elif event == "freed":
            slots.freed_elsewhere()
