"""Entering the sandbox: the whole sequence from clone to exec, in one function.

`launch()` runs in a single-threaded Python process that has the `Prepared` pieces (the
launcher, for runtimes it execs; the Python zygote, for instances that run the loop it has
already imported). It clones a child and, in the child, goes through:

   clone(CLONE_PARENT | NEWPID | NEWIPC | NEWUTS [| NEWNET])
     The child is PID 1 of a new PID namespace and a direct child of the *platform*
     (CLONE_PARENT), so the platform reaps it, gets its real exit status, holds a pidfd
     on it, and PR_SET_PDEATHSIG follows the platform's death. NEWNET unless the platform
     sent a network namespace made ahead of time (`ChildFds.netns`: see helper/netns.py).
     With `ChildFds.cgroup_dir` (a cgroup v2 directory), clone3(CLONE_INTO_CGROUP): the
     child starts in that cgroup (cgroup_v1.py says why a v1 instance has one).
   1. join the instance's cgroups       write "0" to pre-opened join files (v1 "tasks",
                                         v2 "cgroup.procs"), first, so everything after is
                                         charged and limited (the cgroup it was cloned into,
                                         if any, it is in already)
   2. new session                       the platform's terminal signals do not reach it
   2b. network namespace                setns() into the one sent, whose `lo` is up; or, cloned
                                         with NEWNET, bring `lo` up: every instance has its
                                         own, loopback only (helper/netns.py says why)
   3. clone the code and layer trees     open_tree() while the host paths are still visible,
                                         made read-only, nosuid, nodev (skipped for a generic
                                         instance: see below)
   4. mount namespace                   setns() into the prebuilt template (rootfs.py), unless
                                         the caller already lives there (the zygote), and
                                         unshare(NEWNS | NEWCGROUP): a private copy of a
                                         handful of mounts, and /proc/self/cgroup says "/"
   5. per-instance mounts               /code and /layers/N (move_mount of the clones),
                                         a fresh /tmp tmpfs of tmp_mb, a fresh /proc
   6. hostname                          in its own UTS namespace
   7. rlimits                           CPU, FSIZE, NOFILE, CORE=0
   8. identity                          no groups, the instance's own gid and uid, then an
                                         explicit empty capability set (the bounding and
                                         ambient sets are already empty: the launcher emptied
                                         its own once, and the child inherits them)
   9. parent death signal               SIGKILL when the platform dies; set after the uid
                                         change (which clears it), then re-check the platform
  10. Landlock                          scope abstract Unix sockets and signals to the
                                         instance (when the kernel can; the network namespace
                                         already separates the sockets' names)
  11. seccomp                           no_new_privs + the prebuilt filter
  12. descriptors                       0 = /dev/null, 1 = 2 = output pipe, 3 = channel,
                                         [4 = go pipe, a generic instance's: a zygote child,
                                         a pre-started Node runtime, which closes it,] everything
                                         else close-on-exec (signal dispositions are inherited
                                         as the launcher set them: default)
  13. exec                              the runtime (or return, for a zygote's child)
Any failure writes "<step>: <error>" to the error pipe and exits 127; a successful exec
closes the error pipe (close-on-exec), which is how the platform learns it worked.

A generic instance (`Plan.code_dir` None) is built before anyone knows which function it
will run: /code and /layers/N stay empty mount points, and the platform attaches the code
later, from outside, once the instance is fully unprivileged (`frazil.sandbox.attach`).

PID 1: the runtime itself is PID 1 of its namespace; there is no separate init. That is
free (no extra process or fork) and gives the lifetime we want: when the runtime exits, the
kernel SIGKILLs everything else in the namespace, so nothing outlives it; SIGKILL from the
platform always works; signals sent from inside to PID 1 without a handler are dropped by
the kernel, so a function cannot SIGTERM its own runtime by accident. The cost: orphans
re-parented to PID 1 stay zombies until the instance ends (Python's subprocess reaps its
own children; only double-forked daemons are affected), and they count against the
instance's pids limit, so they can only hurt the instance that made them. A zygote child
could afford a tiny reaping init: it is a fork of a small idle process.

Standard library only (runs in the launcher).
"""
from __future__ import annotations

import errno
import fcntl
import gc
import os
import resource
import select
import signal
from dataclasses import dataclass

from frazil.sandbox.helper import landlock, netns, rootfs
from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.helper.seccomp import Filter

CHANNEL_FD = 3  # frazil.runtimes.CHANNEL_FD (not imported: the launcher stays minimal)
GO_FD = 4  # a generic instance's "go" pipe, when it has one: one byte once its code is in place
BASE_CLONE_FLAGS = sc.CLONE_PARENT | sc.CLONE_NEWPID | sc.CLONE_NEWIPC | sc.CLONE_NEWUTS | signal.SIGCHLD
EXIT_SETUP_FAILED = 127
_HIGH_FD = 10  # descriptors are moved above this before being put in place


@dataclass(frozen=True)
class Prepared:
    """What one launcher prepares once and every instance reuses."""

    template_fd: int | None  # the template mount namespace (rootfs.build_template); None: the
    # caller already lives in it (the zygote), so a child only unshares
    seccomp: Filter
    landlock_fd: int | None  # None: the kernel cannot scope IPC (signals are then scoped by
    # the PID namespace alone, abstract sockets by the network namespace alone)
    parent_pidfd: int | None  # the platform; readable once it has died

    def clone_flags(self, fds: "ChildFds") -> int:
        return BASE_CLONE_FLAGS | (0 if fds.netns is not None else sc.CLONE_NEWNET)

    def platform_exited(self) -> bool:
        """Whether the platform has died (its pidfd polls readable). Asked right after arming
        PR_SET_PDEATHSIG: a platform that died before that would send no signal."""
        if self.parent_pidfd is None:
            return False
        poller = select.poll()
        poller.register(self.parent_pidfd, select.POLLIN)
        return bool(poller.poll(0))


@dataclass(frozen=True)
class Plan:
    """One instance: everything is a plain value, resolved by the platform beforehand."""

    argv: tuple[str, ...]  # argv[0] is the interpreter's path as seen inside
    env: dict
    uid: int
    gid: int
    code_dir: str | None  # host paths (resolved, absolute); None: a generic instance, whose
    layer_dirs: tuple[str, ...]  # code and layers the platform attaches later (sandbox/attach.py)
    tmp_mb: int
    rlimits: tuple[tuple[int, int, int], ...]  # (resource.RLIMIT_*, soft, hard)
    hostname: str = rootfs.HOSTNAME


@dataclass(frozen=True)
class ChildFds:
    channel: int  # the runtime's end of the protocol socketpair
    output: int  # write end of the stdout+stderr pipe
    error: int  # write end of the error pipe (close-on-exec)
    cgroup_join: tuple[int, ...]  # one per hierarchy; see step 1
    go: int | None = None  # read end of the go pipe, put at GO_FD (a generic zygote child)
    netns: int | None = None  # a network namespace made ahead of time (None: clone a new one)
    cgroup_dir: int | None = None  # a cgroup v2 directory to clone the child into


def launch(plan: Plan, prepared: Prepared, fds: ChildFds, *, exec_runtime: bool = True) -> int:
    """Clone the instance; returns its pid (as the platform sees it) in the caller.

    In the child this never returns when `exec_runtime` (it execs or exits 127); without
    it, the child returns 0 fully sandboxed, with fd 3 the channel (for a zygote)."""
    if fds.cgroup_dir is not None:
        pid = sc.clone_into_cgroup(prepared.clone_flags(fds), fds.cgroup_dir)
    else:
        pid = sc.clone(prepared.clone_flags(fds))
    if pid:
        return pid
    gc.disable()  # a collection would touch (copy) every object page shared with the parent
    step = "start"
    error_fd = fds.error
    try:
        error_fd = fcntl.fcntl(fds.error, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)

        step = "join cgroups"
        for fd in fds.cgroup_join:
            os.write(fd, b"0")
        if os.getpriority(os.PRIO_PROCESS, 0) != 0:  # a zygote forking in the background, the launcher
            os.setpriority(os.PRIO_PROCESS, 0, 0)  # serving above 0 (still privileged: may raise it back)

        step = "new session"
        os.setsid()

        step = "network namespace"
        if fds.netns is not None:
            sc.setns(fds.netns, sc.CLONE_NEWNET)
            os.close(fds.netns)
        else:
            netns.loopback_up()

        trees = []
        if plan.code_dir is not None:
            step = "clone code tree"
            trees.append(readonly_tree(plan.code_dir))
            step = "clone layer trees"
            trees += [readonly_tree(d) for d in plan.layer_dirs]

        step = "mount namespace"
        if prepared.template_fd is not None:
            sc.setns(prepared.template_fd, sc.CLONE_NEWNS)
        sc.unshare(sc.CLONE_NEWNS | sc.CLONE_NEWCGROUP)

        step = "mount code and layers"
        for tree, target in zip(trees, code_targets(len(plan.layer_dirs))):
            sc.move_mount_fd(tree, target)
            os.close(tree)
        step = "mount /tmp and /proc"
        rootfs.mount_private_tmp_and_proc(plan.tmp_mb)

        step = "hostname"
        sc.sethostname(plan.hostname)

        step = "rlimits"
        for res, soft, hard in plan.rlimits:
            resource.setrlimit(res, (soft, hard))

        step = "switch user"
        os.setgroups([])
        os.setresgid(plan.gid, plan.gid, plan.gid)
        os.setresuid(plan.uid, plan.uid, plan.uid)
        sc.clear_capabilities()
        if not exec_runtime:
            # Changing uid made the process non-dumpable (its /proc/self files root's); exec
            # would make a runtime dumpable again, so a child that does not exec says so.
            sc.prctl(sc.PR_SET_DUMPABLE, 1)

        step = "parent death signal"
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if prepared.platform_exited():
            os._exit(EXIT_SETUP_FAILED)  # the platform died before the signal was armed

        if prepared.landlock_fd is not None:
            step = "landlock"
            landlock.restrict_self(prepared.landlock_fd)

        step = "seccomp"
        prepared.seccomp.install()

        step = "descriptors"
        devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        sources = (devnull, fds.output, fds.channel) + (() if fds.go is None else (fds.go,))
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD) for fd in sources]
        targets = {0: moved[0], 1: moved[1], 2: moved[1], CHANNEL_FD: moved[2]}
        if fds.go is not None:
            targets[GO_FD] = moved[3]
        for target, fd in targets.items():
            os.dup2(fd, target)  # dup2 clears close-on-exec on the target
        first_free = max(targets) + 1
        sc.cloexec_from(first_free)
        if not exec_runtime:
            sc.close_from(first_free)  # the error pipe too: its EOF means "ready"
            return 0

        step = f"exec {plan.argv[0]}"
        os.execve(plan.argv[0], list(plan.argv), plan.env)
    except BaseException as exc:  # report whatever happened; the child must never return
        try:
            os.write(error_fd, f"{step}: {exc}".encode(errors="replace")[:4000])
        finally:
            os._exit(EXIT_SETUP_FAILED)
    os._exit(EXIT_SETUP_FAILED)  # not reached: execve does not return


_open_tree_attr = [True]  # until the kernel says it lacks open_tree_attr (before 6.15)


def readonly_tree(host_path: str) -> int:
    """A detached, read-only, nosuid, nodev bind of `host_path` (seen from here) as an fd."""
    if _open_tree_attr[0]:
        try:
            return sc.open_tree_attr(host_path, rootfs.RO)
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            _open_tree_attr[0] = False
    tree = sc.open_tree(host_path)
    try:
        sc.mount_setattr_fd(tree, rootfs.RO)
    except BaseException:
        os.close(tree)
        raise
    return tree


def code_targets(layers: int) -> list[str]:
    """Where the code and each layer appear inside, in the order trees are given."""
    return [rootfs.CODE_DIR] + [rootfs.layer_dir(i) for i in range(layers)]
