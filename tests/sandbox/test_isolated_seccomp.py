"""The seccomp program, checked instruction by instruction with a small classic-BPF
interpreter (no kernel needed), so the policy is tested for every architecture and
argument the kernel could hand it, including ones a test cannot issue from Python."""
from __future__ import annotations

import errno
import socket
import struct

import pytest

from frazil.sandbox.helper import seccomp
from frazil.sandbox.helper import syscalls as sc

AUDIT_ARCH_I386 = 0x40000003
EPERM = seccomp.RET_ERRNO | errno.EPERM
ENOSYS = seccomp.RET_ERRNO | errno.ENOSYS


def run(program: bytes, nr: int, args=(0,) * 6, arch: int = seccomp.AUDIT_ARCH_X86_64) -> int:
    """Evaluate the filter on one seccomp_data; returns the action."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *args)
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    acc, pc, steps = 0, 0, 0
    while True:
        steps += 1
        assert steps <= len(insns), "a BPF program only jumps forward"
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code in (0x15, 0x35, 0x45):
            hit = acc == k if code == 0x15 else acc >= k if code == 0x35 else bool(acc & k)
            pc += 1 + (jt if hit else jf)
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


@pytest.fixture(scope="module")
def program() -> bytes:
    return seccomp.build_program()


class TestPolicy:
    def test_ordinary_calls_are_allowed(self, program):
        for nr in (0, 1, 2, 3, 9, 57, 59, 60, 231, 257):  # read write open close mmap fork execve exit...
            assert run(program, nr) == seccomp.RET_ALLOW, nr

    def test_only_unix_and_inet_sockets(self, program):
        """INET is allowed: the instance's namespace has only `lo` (the egress proxy listens there)."""
        for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
            assert run(program, seccomp.NR_SOCKET, (family, 1, 0, 0, 0, 0)) == seccomp.RET_ALLOW, family
        for family in (socket.AF_NETLINK, socket.AF_PACKET, 40, 38):
            assert run(program, seccomp.NR_SOCKET, (family, 1, 0, 0, 0, 0)) == EPERM, family

    def test_clone_without_namespaces_only(self, program):
        assert run(program, seccomp.NR_CLONE, (17, 0, 0, 0, 0, 0)) == seccomp.RET_ALLOW  # fork
        assert run(program, seccomp.NR_CLONE, (0x3D0F00, 0, 0, 0, 0, 0)) == seccomp.RET_ALLOW  # a thread
        for flag in (sc.CLONE_NEWUSER, sc.CLONE_NEWNS, sc.CLONE_NEWNET, sc.CLONE_NEWPID, sc.CLONE_NEWIPC,
                     sc.CLONE_NEWUTS, sc.CLONE_NEWCGROUP):
            assert run(program, seccomp.NR_CLONE, (flag | 17, 0, 0, 0, 0, 0)) == EPERM, hex(flag)

    def test_clone3_is_enosys_so_libc_falls_back(self, program):
        assert run(program, seccomp.NR_CLONE3) == ENOSYS

    @pytest.mark.parametrize("name", sorted(seccomp.DENIED))
    def test_denied_calls(self, program, name):
        assert run(program, seccomp.DENIED[name]) == EPERM

    def test_the_brief_list_is_covered(self):
        required = {"unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "ptrace", "process_vm_readv",
                    "process_vm_writev", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
                    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
                    "swapon", "swapoff", "io_uring_setup"}
        assert required <= set(seccomp.DENIED)

    def test_other_abis_are_denied(self, program):
        assert run(program, 0, arch=AUDIT_ARCH_I386) == EPERM
        assert run(program, seccomp.X32_SYSCALL_BIT | 0) == EPERM
        assert run(program, seccomp.X32_SYSCALL_BIT | seccomp.NR_SOCKET, (socket.AF_UNIX,) + (0,) * 5) == EPERM


class TestProgram:
    def test_is_short(self, program):
        assert len(program) % 8 == 0 and len(program) // 8 < 100

    def test_filter_object_wraps_the_program(self, program):
        assert len(seccomp.Filter(program)) == len(program) // 8
