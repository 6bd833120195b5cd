"""Run one command with the platform's data hidden and without privileges (standard library only).

Started as `python -I -S isolate.py SPEC_JSON` by `frazil.build.runner` (as root), it:
  1. enters a new mount namespace and makes every mount private (nothing leaks back to the host);
  2. re-exposes paths the build needs that sit under a folder other users cannot enter (the
     Python interpreter under /root/.pyenv, for instance): each is bind-mounted aside, a fresh
     tmpfs (0755) is mounted over the closed ancestor -- which hides the rest of it -- and the
     path is moved back to where it was, read-only, so RPATHs and prefixes keep working;
  3. mounts an empty, mode-000, read-only tmpfs over every path to hide (the data dir: its
     database, admin key, bundles, other layers, instance directories);
  4. sets no_new_privs, drops supplementary groups, gid and uid to the build user, umask 022;
  5. changes to the build's working directory and execs the command (environment inherited).
The build user owns nothing but the build's own throwaway folder, so it can write only there.

Any failure before exec prints one line "frazil-isolate: ..." on stderr and exits 125.
With "probe": true in the spec it stops before exec and exits 0 (used to test the machine).
"""
import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
SETUP_FAILED = 125

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(value):
    return None if value is None else os.fsencode(value)


def mount(source, target, fstype, flags, data=None):
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def closed_ancestor(path):
    """The topmost folder on the way to `path` that other users cannot enter, or None."""
    current = "/"
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        st = os.stat(current)
        if not st.st_mode & 0o001:
            return current
    return None


def expose(paths, hold_root):
    """Make each path reachable for every user, at its own location, read-only."""
    plans = []
    for index, path in enumerate(paths):
        ancestor = closed_ancestor(path)
        if ancestor is None:
            continue
        hold = os.path.join(hold_root, f"hold-{index}")
        os.mkdir(hold, 0o700)
        mount(path, hold, None, MS_BIND | MS_REC)
        plans.append((path, ancestor, hold))
    covered = set()
    for _, ancestor, _ in plans:
        if ancestor not in covered:
            mount("tmpfs", ancestor, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
            covered.add(ancestor)
    for path, _, hold in plans:
        os.makedirs(path, mode=0o755, exist_ok=True)
        mount(hold, path, None, MS_MOVE)
        mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.rmdir(hold)


def hide(paths):
    for path in paths:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=000,size=4k")


def main():
    spec = json.loads(sys.argv[1])
    try:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        expose(spec.get("expose", ()), spec["hold_root"])
        hide(spec.get("hide", ()))
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        os.setgroups([])
        os.setgid(spec["gid"])
        os.setuid(spec["uid"])
        os.umask(0o022)
        os.chdir(spec["cwd"])
    except (OSError, KeyError, ValueError) as exc:
        sys.stderr.write(f"frazil-isolate: {exc}\n")
        sys.stderr.flush()
        os._exit(SETUP_FAILED)
    if spec.get("probe"):
        os._exit(0)
    argv = spec["argv"]
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"frazil-isolate: cannot start {argv[0]}: {exc}\n")
        sys.stderr.flush()
        os._exit(SETUP_FAILED)


if __name__ == "__main__":
    main()
