"""The node's one NATS connection, with JetStream checked at connect."""
from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.client import Client

from frazil.cluster.config import CONNECT_TIMEOUT_S, ServiceUnreachable
from frazil.errors import reason_of
from frazil.settings import Settings

log = logging.getLogger(__name__)


def servers(settings: Settings) -> list[str]:
    return [s.strip() for s in (settings.nats_url or "").split(",") if s.strip()]


def shown(settings: Settings) -> str:
    """The NATS servers without credentials (nats://user:pass@host → nats://host)."""
    return ",".join(s.rsplit("@", 1)[-1] if "@" in s else s for s in servers(settings))


async def connect(settings: Settings) -> Client:
    """Connect to the cluster's NATS and check that JetStream answers; ServiceUnreachable
    otherwise. The first contact is made without retries (nats-py would retry an unreachable
    server for ever), then the node's connection is opened with reconnects for ever: after a
    successful start, NATS going away is an outage the node rides out (its heartbeats stop, so
    it drops out of the registry until it is back), not a reason to exit."""
    where = shown(settings)
    probe = await _open(settings, where, reconnect=False)
    await probe.close()
    nc = await _open(settings, where, reconnect=True)
    try:
        await asyncio.wait_for(nc.jetstream().account_info(), CONNECT_TIMEOUT_S)
    except Exception as exc:
        await nc.close()
        raise ServiceUnreachable("NATS JetStream", where, reason_of(exc)) from None
    return nc


async def _open(settings: Settings, where: str, *, reconnect: bool) -> Client:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)
        log.warning("NATS at %s: %s", where, reason_of(exc))

    try:
        return await nats.connect(servers=servers(settings), connect_timeout=CONNECT_TIMEOUT_S,
                                  allow_reconnect=reconnect, error_cb=on_error, name=f"frazil-{settings.cluster}",
                                  # the probe: one try per server (0 or less would retry for ever)
                                  max_reconnect_attempts=-1 if reconnect else 1,
                                  reconnect_time_wait=2.0 if reconnect else 0.1)
    except Exception as exc:
        raise ServiceUnreachable("NATS", where, reason_of(errors[-1] if errors else exc)) from None


async def unsubscribe(sub, what: str) -> None:
    """End a subscription at a node's stop; with NATS gone it went with the connection (logged)."""
    try:
        await sub.unsubscribe()
    except Exception as exc:  # noqa: BLE001 - the connection is closed or reconnecting
        log.warning("could not unsubscribe from %s (%s)", what, exc)
