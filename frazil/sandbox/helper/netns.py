"""An instance's network namespace: loopback only, and up.

Every instance has a network namespace of its own, so that nothing keyed by it is shared
between instances: abstract Unix socket names (an instance could see another's in
/proc/net/unix, and squat a name another will bind: EADDRINUSE), loopback ports, and
/proc/net's view of them. A new namespace holds one device, `lo`, down; `loopback_up()`
brings it up, so a function can talk to itself over 127.0.0.1 and ::1, and reach the
platform's egress proxy, which listens on this loopback (frazil.sandbox.listen); its seccomp
filter refuses every socket family but AF_UNIX, AF_INET and AF_INET6 (see seccomp.py).

Where the namespaces come from (creating one is serialised in the kernel, so it stays off a
cold start's critical path where it can): the platform keeps a few made ahead of time
(`frazil.sandbox.netns.NetnsPool`) and hands one, as a descriptor, with each instance built
on demand, which setns() into it; an instance built ahead of time (its cost is paid while
nobody waits) and one built when the pool is empty are cloned with CLONE_NEWNET instead,
and bring their `lo` up themselves. See `frazil.sandbox.helper.enter`.

Standard library only (runs in the launcher; the platform imports it too).
"""
from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: the name, then ifr_flags (a short) in the 24-byte union


def loopback_up() -> None:
    """Bring `lo` up in the caller's network namespace (needs CAP_NET_ADMIN there); raises OSError."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        _, flags = struct.unpack(_IFREQ, fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0)))
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))
