"""Test helpers shipped with frazil, for its own tests, its benchmarks and anyone who tests
functions against a real server: `LocalServer` runs a real `frazil server` process on a free
port with its own data dir, deploys, invokes and cleans up after itself.

- `frazil.testing.server`: `LocalServer`, `free_port`, the harness's exceptions;
- `frazil.testing.processes`: the process tree from /proc, and stopping a process's session
  so that nothing of it is left;
- `frazil.testing.bundles`: zip / tar.gz bundles made in memory, from files or a folder;
- `frazil.testing.waiting`: `wait_until`, polling with a deadline (never a bare sleep), and its `TimedOut`.
"""
from frazil.testing.bundles import folder_files, tar_files, zip_files
from frazil.testing.server import HOST, LocalServer, ServerFailed, UnexpectedStatus, free_port
from frazil.testing.waiting import TimedOut, wait_until

__all__ = ["HOST", "LocalServer", "ServerFailed", "TimedOut", "UnexpectedStatus", "folder_files", "free_port",
           "tar_files", "wait_until", "zip_files"]
