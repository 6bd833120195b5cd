"""Entering the build sandbox: the whole sequence from the platform's fork to the installer's
exec, in one place (the platform's half is `frazil.build.buildbox`).

A dependency build runs code from the bundle (an npm install script, a setup.py) and from
whatever registry package it names, so it is contained like a function instance, reusing
the instance sandbox's parts (cgroups, the template root file system, the seccomp filter):

 platform (root, event loop; buildbox.py)
   a. a uid of its own for this build (BuildUids: no other build or instance has it)
   b. a cgroup of its own (memory, CPU, pids limits); join descriptors opened
   c. the build folder chowned to the uid (the only place it may write)
   d. this helper started as `python -I -S`, in a new session, stdout+stderr the log pipe,
      the control socket at fd 3; the spec and the cgroup join descriptors sent over it
 helper (root, still in the host's namespaces)
   1. join the cgroup                   first: everything after (and every process the
                                        build ever makes) is charged and limited
   2. parent death signal               the helper dies with the platform
   3. clone the build folder            open_tree() while the host path is visible:
                                        writable, nosuid, nodev
   4. unshare PID, network, IPC, UTS    then fork once: the child is PID 1 of the new PID
                                        namespace; the helper only waits for it and exits
                                        with its status
 PID 1 (root in the new namespaces)
   5. loopback up, proxy socket         the only network device is `lo`; a listening socket
                                        on 127.0.0.1:PROXY_PORT is made here and handed to
                                        the platform, whose event loop serves it (registry
                                        hosts only: registry_proxy.py)
   6. mount namespace                   rootfs.build_template: a read-only tmpfs root with
                                        the host's /usr, /lib*, the interpreter's prefix, a
                                        generated minimal /etc, /dev; no data dir, no /run,
                                        no /root, no other build; the host's root detached
   7. per-build mounts                  the build folder at /build (the only writable
                                        place), a private /tmp tmpfs, a fresh /proc
   8. hostname, rlimits                 core dumps off, open files bounded
   9. identity                          bounding set emptied, no groups, the build's gid and
                                        uid, capabilities cleared
  10. parent death signal again         (the uid change cleared it), then the helper checked
  11. seccomp                           no_new_privs + the instance filter, with IPv4/IPv6
                                        sockets allowed (they can only reach `lo`)
  12. hand over                         "ready" + the proxy socket to the platform; the
                                        control socket and the listener closed here
  13. fork the installer                0 = /dev/null, 1 = 2 = the log pipe, nothing else;
                                        it execs in /build/work
  PID 1 reaps every orphan and exits with the installer's status once the installer exits;
  the kernel then kills whatever the build left in the namespace (a setsid daemon too).
 platform, after the helper exits, fails, or the time limit passes (buildbox.py)
   e. kill the cgroup and wait until it is empty (not a process group: a daemon that
      left the group is still in the cgroup)
   f. stop serving the proxy socket, release the uid
Only then may the built tree become a layer (layers.py).

Any failure before step 12 sends {"type": "failed", "error": "<step>: <reason>"} and exits
SETUP_FAILED. The installer's outcome becomes the helper's: PID 1 passes the installer's wait
status up a pipe, and the helper exits with the same code or dies of the same signal.

Standard library only (runs as `python -I -S`, like the launcher).
"""
from __future__ import annotations

import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys

from frazil.sandbox.helper import rootfs, seccomp, wire
from frazil.sandbox.helper import syscalls as sc

CONTROL_FD = 3
BUILD_DIR = "/build"  # the build folder, inside
PROXY_PORT = 3128  # inside the build's own network namespace: nothing else can hold it
HOSTNAME = "frazil-build"
TMP_MB = 256
OPEN_FILES_LIMIT = 4096
SETUP_FAILED = 125
SIGNALLED = 128
STATUS_FD = 3  # PID 1's end of the pipe that carries the installer's wait status to the helper
READY = "ready"
FAILED = "failed"
UNSHARE_FLAGS = sc.CLONE_NEWPID | sc.CLONE_NEWNET | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS
BUILD_SOCKET_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def main() -> None:
    ctl = socket.socket(fileno=int(sys.argv[1]))
    del sys.argv[1:]
    step = "read the spec"
    try:
        data, fds = wire.recv(ctl)
        spec = json.loads(data)
        layout = rootfs.Layout.from_dict(spec["layout"])

        step = "join the cgroup"
        for fd in fds:
            os.write(fd, b"0")
            os.close(fd)

        step = "parent death signal"
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != spec["platform_pid"]:
            raise RuntimeError("the platform exited")

        step = "clone the build folder"
        tree = sc.open_tree(spec["build_dir"])
        sc.mount_setattr_fd(tree, sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV)

        step = "namespaces"
        sc.unshare(UNSHARE_FLAGS)
        life_r, life_w = os.pipe()
        status_r, status_w = os.pipe()
        pid = os.fork()
    except BaseException as exc:
        _fail(ctl, step, exc)
    if pid == 0:
        os.close(life_w)
        os.close(status_r)
        _pid1(ctl, spec, layout, tree, life_r, status_w)  # never returns
    os.close(life_r)
    os.close(status_w)
    os.close(tree)
    ctl.close()
    _, status = os.waitpid(pid, 0)
    reported = os.read(status_r, 64)
    _exit_like(int(reported) if reported else status)


def _exit_like(status: int) -> None:
    """Exit as the installer did: the same exit code, or killed by the same signal (the
    platform reads the helper's status as the installer's)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(SIGNALLED + sig)  # a signal that does not kill (none of those ends a process)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _pid1(ctl: socket.socket, spec: dict, layout: rootfs.Layout, tree: int, life_r: int, status_w: int) -> None:
    step = "start"
    try:
        step = "loopback"
        _loopback_up()
        step = "proxy socket"
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", PROXY_PORT))
        listener.listen(128)

        step = "mount namespace"
        rootfs.build_template(layout, spec["mountpoint"])

        step = "mount the build folder"
        sc.move_mount_fd(tree, BUILD_DIR)
        os.close(tree)
        step = "mount /tmp and /proc"
        rootfs.mount_private_tmp_and_proc(TMP_MB)

        step = "hostname"
        sc.sethostname(HOSTNAME)
        step = "rlimits"
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES_LIMIT, OPEN_FILES_LIMIT))

        step = "switch user"
        sc.drop_bounding_set(sc.last_capability())
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
        sc.clear_capabilities()

        step = "parent death signal"
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if _readable(life_r):  # the helper died before the signal was armed again
            os._exit(SETUP_FAILED)

        step = "seccomp"
        seccomp.Filter(seccomp.build_program(socket_families=BUILD_SOCKET_FAMILIES)).install()

        step = "hand over the proxy socket"
        wire.send(ctl, {"type": READY, "port": PROXY_PORT}, [listener.fileno()])
        listener.close()
        ctl.close()
        devnull = os.open("/dev/null", os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(status_w, STATUS_FD, inheritable=False)  # PID 1's alone: the installer never has it
        sc.close_from(STATUS_FD + 1)

        step = "start the installer"
        installer = os.fork()
    except BaseException as exc:
        _fail(ctl, step, exc)
    if installer == 0:
        try:
            os.chdir(spec["cwd"])
            os.execve(spec["argv"][0], spec["argv"], spec["env"])
        except BaseException as exc:
            os.write(2, f"frazil-build: cannot start {spec['argv'][0]}: {exc}\n".encode(errors="replace"))
        os._exit(SETUP_FAILED)
    _reap_until(installer)


def _reap_until(installer: int) -> None:
    """PID 1's job: reap every child (orphans end up here) until the installer is gone, then
    report its wait status to the helper and exit; the kernel kills the rest of the
    namespace as PID 1 exits."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(SETUP_FAILED)
        except InterruptedError:
            continue
        if pid == installer:
            os.write(STATUS_FD, str(status).encode())
            os._exit(0)


def _loopback_up() -> None:
    """Bring `lo` up in this (new) network namespace: it starts down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _fail(ctl: socket.socket, step: str, exc: BaseException):
    try:
        wire.send(ctl, {"type": FAILED, "error": f"{step}: {exc}"})
    finally:
        os._exit(SETUP_FAILED)


if __name__ == "__main__":
    main()
