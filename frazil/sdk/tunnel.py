"""The two pieces every forward proxy of the platform shares (the SDK's egress proxy,
frazil.sdk.egress, and a dependency build's, frazil.build.registry_proxy): reading a CONNECT
target, and relaying bytes one way with back-pressure (at most CHUNK held at a time)."""
from __future__ import annotations

import asyncio

CHUNK = 64 * 1024


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until `reader` ends, then pass the end on; a broken side closes the writer."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or a bare host; raises ValueError when the port is not a number
    (its range is the caller's to judge)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        return host, int(port) if port else default_port
    except ValueError:
        raise ValueError(f"CONNECT {text}: not host:port") from None
