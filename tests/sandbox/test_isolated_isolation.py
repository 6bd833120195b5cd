"""What a function inside an isolated instance can see and do: files, identity, network,
system calls, other processes. Each test runs real (hostile) code in the real Python loop."""
from __future__ import annotations

import errno
import os
import socket

import pytest

from frazil.sandbox.helper import rootfs

from tests.sandbox.conftest import ALL_PATHS

pytestmark = ALL_PATHS

OPEN_PROBE = '''
import os
def probe(path, mode="rb"):
    try:
        with open(path, mode) as f:
            if "r" in mode:
                f.read(1)
            else:
                f.write(b"x")
        return "ok"
    except OSError as exc:
        return type(exc).__name__
'''


class TestFiles:
    """The root is read-only and holds nothing of the host's secrets or of the platform."""

    async def test_host_secrets_and_data_dir_are_invisible(self, instance, settings):
        secret = settings.data_dir / "secret.txt"
        secret.write_text("platform secret")
        secret.chmod(0o644)
        client = await instance()
        result = await client.run(OPEN_PROBE + f'''
result = {{p: probe(p) for p in ["/etc/shadow", "/etc/gshadow", "/root/.bashrc", "/root/.profile",
                                 "/etc/ssl/private", {str(secret)!r}, {str(settings.data_dir)!r}]}}
try:
    os.listdir("/root")
    result["list /root"] = "ok"
except OSError as exc:
    result["list /root"] = type(exc).__name__
result["passwd"] = open("/etc/passwd").read()
result["data dir exists"] = os.path.exists({str(settings.data_dir)!r})
''')
        passwd = result.pop("passwd")
        assert all(v != "ok" for v in result.values() if isinstance(v, str)), result
        assert result["data dir exists"] is False
        assert "postgres" not in passwd and passwd.startswith("root:")

    async def test_other_functions_code_is_invisible(self, instance, code_factory):
        other = code_factory({"index.py": "SECRET = 1\n"})
        client = await instance()
        result = await client.run(f"import os\nresult = [os.path.exists({str(other)!r}), sorted(os.listdir('/code'))]")
        assert result == [False, ["index.py"]]

    async def test_only_tmp_is_writable(self, instance):
        client = await instance()
        result = await client.run(OPEN_PROBE + '''
result = {p: probe(p, "wb") for p in ["/code/new.py", "/code/index.py", "/x", "/usr/x", "/etc/passwd",
                                      "/runtime/x", "/dev/x", "/proc/x", "/root/x", "/tmp/x", "/dev/null"]}
try:
    os.chmod("/code/index.py", 0o777)
    result["chmod code"] = "ok"
except OSError as exc:
    result["chmod code"] = type(exc).__name__
''')
        assert result.pop("/tmp/x") == "ok"
        assert result.pop("/dev/null") == "ok"
        assert all(v != "ok" for v in result.values()), result

    async def test_layers_are_mounted_where_the_paths_say(self, instance, code_factory):
        layer = code_factory({"dep.py": "VALUE = 42\n"})
        client = await instance(layer_dirs=(layer,))
        assert client.proc.paths.layer_dirs == ("/layers/0",)
        result = await client.run("import dep\nresult = dep.VALUE")
        assert result == 42

    async def test_host_interpreters_installed_packages_are_hidden(self, instance, code_factory):
        """The host interpreter's site-packages look empty inside; the runtime (-S) and the
        function's own layers do not need them."""
        from frazil.runtimes import PYTHON

        hidden = rootfs.site_dirs(str(PYTHON.interpreter()))
        if not hidden:
            pytest.skip("the host interpreter has no site-packages directory")
        layer = code_factory({"dep.py": "VALUE = 42\n"})
        client = await instance(layer_dirs=(layer,))
        result = await client.run(f"""
import os, dep
result = {{"listings": {{d: os.listdir(d) for d in {hidden!r}}}, "dep": dep.VALUE}}
""")
        assert result == {"listings": {d: [] for d in hidden}, "dep": 42}

    async def test_mountinfo_names_no_host_path_but_the_system_binds_and_its_own_code(self, instance, code_factory,
                                                                                     sandbox):
        """/proc/self/mountinfo shows host paths only where a bind mount must: the read-only
        system binds (/usr, the interpreter's prefix at its own path, ...) and the instance's
        own code and layers (a bind shows its source's path within its file system); the
        platform's install (/runtime is a copy) and everything else are not named."""
        from frazil.sandbox.launcher_client import PACKAGE_PARENT

        layer = code_factory({"dep.py": "VALUE = 1\n"})
        client = await instance(layer_dirs=(layer,))
        mountinfo = await client.run("result = open('/proc/self/mountinfo').read()")
        assert PACKAGE_PARENT not in mountinfo
        allowed = {host for host, _ in sandbox.paths.layout.ro_binds} | {"/"}
        for line in mountinfo.splitlines():
            fields = line.split()
            root, point = fields[3], fields[4]
            if point in (rootfs.CODE_DIR, rootfs.layer_dir(0)):
                continue  # its own code and layer, by their paths in the host's file system
            assert root in allowed or any(root.startswith(h.rstrip("/") + "/") for h in allowed if h != "/"), line

    async def test_dev_is_minimal(self, instance):
        client = await instance()
        result = await client.run("import os\nresult = sorted(os.listdir('/dev'))")
        assert set(result) == set(rootfs.DEVICES) | set(rootfs.DEV_LINKS)


class TestIdentity:
    """An unprivileged uid with no capabilities, no_new_privs and a seccomp filter."""

    async def test_unprivileged_without_capabilities(self, instance, sandbox):
        client = await instance()
        result = await client.run('''
import os, resource
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
result = {k: status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")}
result["ids"] = [os.getuid(), os.geteuid(), os.getgid(), os.getegid()]
result["groups"] = os.getgroups()
result["core"] = resource.getrlimit(resource.RLIMIT_CORE)
result["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)
result["fsize"] = resource.getrlimit(resource.RLIMIT_FSIZE)
result["cpu"] = resource.getrlimit(resource.RLIMIT_CPU)
''')
        uid = client.proc.uid
        assert uid != 0 and uid in sandbox.uids
        assert result["ids"] == [uid, uid, uid, uid]
        assert result["groups"] == []
        for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(result[key], 16) == 0, (key, result[key])
        assert result["NoNewPrivs"] == "1" and result["Seccomp"] == "2"
        assert result["core"] == [0, 0]
        assert result["fsize"][0] == (64 + 1) * 1024 * 1024
        assert 0 < result["cpu"][0] < 1 << 62 and 0 < result["nofile"][0] <= 65536

    async def test_each_instance_has_its_own_uid_and_namespaces(self, instance):
        code = '''
import os
result = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("pid", "mnt", "ipc", "uts", "net", "cgroup")}
result["uid"] = os.getuid()
'''
        a, b = await instance(), await instance()
        ra, rb = await a.run(code), await b.run(code)
        assert ra["uid"] != rb["uid"]
        for ns in ("pid", "mnt", "ipc", "uts", "net", "cgroup"):
            assert ra[ns] != rb[ns], ns
        host = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("pid", "mnt", "ipc", "uts", "net", "cgroup")}
        for ns, value in ra.items():
            if ns != "uid":
                assert value != host[ns], ns

    async def test_hostname_is_isolated(self, instance):
        client = await instance()
        assert await client.run("import socket\nresult = socket.gethostname()") == rootfs.HOSTNAME
        assert socket.gethostname() != rootfs.HOSTNAME  # the host keeps its own name


class TestNetwork:
    """No network device but loopback, and no socket family but AF_UNIX."""

    async def test_only_loopback(self, instance):
        client = await instance()
        result = await client.run('''
lines = open("/proc/net/dev").read().splitlines()[2:]
result = sorted(line.split(":")[0].strip() for line in lines)
''')
        assert result == ["lo"]

    async def test_inet_reaches_only_loopback_other_families_denied_unix_works(self, instance):
        client = await instance()
        result = await client.run('''
import socket, errno
result = {}
for address in (("192.0.2.1", 80), ("2001:db8::1", 80)):
    try:
        socket.create_connection(address, 1).close()
        result[address[0]] = "connected"
    except OSError as exc:
        result[address[0]] = exc.errno
for name in ("AF_NETLINK", "AF_PACKET"):
    try:
        socket.socket(getattr(socket, name), socket.SOCK_DGRAM if name == "AF_NETLINK" else socket.SOCK_STREAM).close()
        result[name] = "opened"
    except OSError as exc:
        result[name] = exc.errno
a, b = socket.socketpair()
a.sendall(b"ping")
result["socketpair"] = b.recv(4).decode()
server = socket.socket(socket.AF_UNIX)
server.bind("/tmp/s.sock")
server.listen()
client = socket.socket(socket.AF_UNIX)
client.connect("/tmp/s.sock")
conn, _ = server.accept()
client.sendall(b"unix")
result["unix"] = conn.recv(4).decode()
''')
        for name in ("AF_NETLINK", "AF_PACKET"):
            assert result[name] == errno.EPERM, (name, result[name])
        assert result["192.0.2.1"] == errno.ENETUNREACH
        assert result["2001:db8::1"] in (errno.ENETUNREACH, errno.EADDRNOTAVAIL)
        assert result["socketpair"] == "ping" and result["unix"] == "unix"

    async def test_abstract_sockets_do_not_cross_instances(self, instance, sandbox):
        a, b = await instance(), await instance()
        await b.run('''
import socket
global_server = socket.socket(socket.AF_UNIX)
global_server.bind("\\0frazil-test-abstract")
global_server.listen()
import builtins
builtins._keep = global_server
''')
        result = await a.run('''
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("\\0frazil-test-abstract")
    result = "connected"
except OSError as exc:
    result = exc.errno
''')
        assert result != "connected"
        # ...while inside one instance the name still works
        same = await b.run('''
import socket
s = socket.socket(socket.AF_UNIX)
s.connect("\\0frazil-test-abstract")
result = "connected"
''')
        assert same == "connected"


    async def test_loopback_is_up(self, instance):
        """Each instance's own `lo` is up: 127.0.0.1 is in its local routing table."""
        a, b = await instance(), await instance()
        code = 'result = "127.0.0.1" in open("/proc/net/fib_trie").read()'
        assert await a.run(code) is True and await b.run(code) is True

    async def test_abstract_names_are_per_instance(self, instance):
        """An abstract socket name bound in one instance is neither listed in another's
        /proc/net/unix nor taken there: the other binds the same name (no EADDRINUSE)."""
        a, b = await instance(), await instance()
        name = "frazil-squat-" + os.urandom(4).hex()
        listed = await b.run(f'''
import builtins, socket
server = socket.socket(socket.AF_UNIX)
server.bind("\\0{name}")
server.listen()
builtins._keep = server
result = "@{name}" in open("/proc/net/unix").read()
''')
        assert listed is True  # its owner sees it
        result = await a.run(f'''
import socket
result = {{"listed": "@{name}" in open("/proc/net/unix").read()}}
s = socket.socket(socket.AF_UNIX)
try:
    s.bind("\\0{name}")
    result["bind"] = "bound"
except OSError as exc:
    result["bind"] = exc.errno
''')
        assert result == {"listed": False, "bind": "bound"}


SYSCALL_PROBE = '''
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if rc == 0 and nr == 56:  # a clone that went through: never let the child run on
        os._exit(0)
    return errno.errorcode.get(ctypes.get_errno(), rc) if rc == -1 else rc
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x20000, 0x40000000, 17
netns = os.open("/proc/self/ns/net", os.O_RDONLY)
result = {
    "unshare user": call(272, CLONE_NEWUSER),
    "unshare mnt": call(272, CLONE_NEWNS),
    "setns": call(308, netns, 0),
    "mount": call(165, b"none", b"/tmp", b"tmpfs", 0, None),
    "umount2": call(166, b"/tmp", 0),
    "pivot_root": call(155, b"/tmp", b"/tmp"),
    "chroot": call(161, b"/tmp"),
    "clone newuser": call(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
    "clone newnet": call(56, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0),
    "clone3": call(435, 0, 0),
    "ptrace traceme": call(101, 0, 0, 0, 0),
    "process_vm_readv": call(310, 1, 0, 0, 0, 0, 0),
    "keyctl": call(250, 0, 0, 0, 0, 0),
    "add_key": call(248, 0, 0, 0, 0, 0),
    "bpf": call(321, 0, 0, 0),
    "perf_event_open": call(298, 0, 0, -1, -1, 0),
    "io_uring_setup": call(425, 1, 0),
    "userfaultfd": call(323, 0),
    "init_module": call(175, 0, 0, 0),
    "kexec_load": call(246, 0, 0, 0, 0),
    "reboot": call(169, 0, 0, 0, 0),
    "swapon": call(167, b"/tmp/x", 0),
    "open_tree": call(428, -100, b"/tmp", 1),
}
pid = os.fork()  # plain fork (clone without namespace flags) still works
if pid == 0:
    os._exit(7)
result["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
'''


class TestSyscalls:
    """The seccomp filter answers EPERM (ENOSYS for clone3) and the rest keeps working."""

    async def test_dangerous_calls_are_denied(self, instance):
        client = await instance()
        result = await client.run(SYSCALL_PROBE)
        assert result.pop("fork") == 7
        assert result.pop("clone3") == "ENOSYS"
        assert all(v == "EPERM" for v in result.values()), result


class TestProcesses:
    """An instance sees only its own processes and cannot signal or trace anyone else."""

    async def test_own_pid_namespace(self, instance):
        client = await instance()
        result = await client.run('''
import os, signal
os.kill(1, signal.SIGTERM)  # PID 1 without a handler: the kernel drops it
result = {"pid": os.getpid(), "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
''')
        assert result == {"pid": 1, "procs": [1]}
        assert await client.run("result = 'still alive'") == "still alive"

    async def test_cannot_signal_or_trace_other_processes(self, instance):
        a, b = await instance(), await instance()
        targets = [os.getpid(), b.proc.pid, 1]
        result = await a.run(f'''
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
result = {{}}
for pid in {targets[:2]!r}:
    try:
        os.kill(pid, signal.SIGKILL)
        result[pid] = "signalled"
    except OSError as exc:
        result[pid] = type(exc).__name__
    ctypes.set_errno(0)
    rc = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    result[f"ptrace {{pid}}"] = ctypes.get_errno() if rc == -1 else "attached"
''')
        assert result[str(targets[0])] == "ProcessLookupError"
        assert result[str(targets[1])] == "ProcessLookupError"
        assert result[f"ptrace {targets[0]}"] == errno.EPERM
        assert result[f"ptrace {targets[1]}"] == errno.EPERM
        assert await b.run("result = 'alive'") == "alive"
