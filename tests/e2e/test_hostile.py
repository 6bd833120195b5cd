"""Hostile functions against a real server in the isolated sandbox.

Each case deploys a function that attacks the platform, the host or other functions, and
checks that the attack ends with a clear result while a bystander function keeps answering.
Hostile code never runs without the sandbox: the whole module skips, saying why.
"""
import textwrap
import threading
import time

import pytest

from frazil.testing.hostile import FORK_STORM, fork_storm_was_bounded, function_running
from tests.conftest import SANDBOX_PROBLEM

pytestmark = pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=SANDBOX_PROBLEM or "")


fn = function_running


def denied(call: str) -> str:
    """Body that runs `call` and reports the OSError's errno name (or 'allowed')."""
    return f"""
    try:
        {call}
        result = 'allowed'
    except OSError as exc:
        result = errno.errorcode.get(exc.errno, str(exc.errno))
    """


def syscall_denied(expr: str) -> str:
    """Body for a raw libc call returning -1 with errno set."""
    return f"""
    rc = {expr}
    result = 'allowed' if rc != -1 else errno.errorcode.get(ctypes.get_errno(), '?')
    """


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    from tests.conftest import make_server

    srv = make_server(tmp_path_factory.mktemp("hostile") / "data", FRAZIL_SANDBOX="isolated",
                      FRAZIL_LOG_CAP_BYTES="4096")
    srv.start()
    srv.deploy("bystander", {"index.py": "def main(e, c):\n    return 'alive'\n"})
    yield srv
    srv.close()


def run_with_bystander(srv, name: str, event=None) -> dict:
    """Invoke the hostile function while the bystander is called over and over."""
    answers, stop = [], threading.Event()

    def bystander():
        try:
            while not stop.is_set():
                answers.append(srv.invoke("bystander")["result"])
        except Exception as exc:  # a bystander that fails is the finding: reported below
            answers.append(f"bystander failed: {exc!r}")

    thread = threading.Thread(target=bystander)
    thread.start()
    try:
        body = srv.invoke(name, event or {})
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "a bystander call did not return"
    answers.append(srv.invoke("bystander")["result"])
    assert set(answers) == {"alive"}, set(answers)
    return body


EPERM_OR_EACCES = {"EPERM", "EACCES"}
HIDDEN = {"ENOENT", "EACCES", "EPERM"}

# name -> (function files, check on the envelope)
CASES = {
    "read-etc-shadow": (fn(denied("open('/etc/shadow').read()")), lambda b: b["result"] in HIDDEN),
    "read-root-home": (fn(denied("os.listdir('/root')")), lambda b: b["result"] in HIDDEN),
    "read-host-ssh-keys": (fn(denied("open('/etc/ssh/ssh_host_rsa_key').read()")), lambda b: b["result"] in HIDDEN),
    "write-outside-tmp": (fn(denied("open('/etc/evil', 'w').write('x')")),
                          lambda b: b["result"] in {"EROFS", "EACCES", "EPERM", "ENOENT"}),
    "write-usr": (fn(denied("open('/usr/bin/evil', 'w').write('x')")), lambda b: b["result"] in {"EROFS", "EACCES"}),
    "write-own-code": (fn(denied("open(os.path.abspath('index.py'), 'a').write('# pwned')")),
                       lambda b: b["result"] in {"EROFS", "EACCES"}),
    # INET sockets open (the egress proxy listens on the instance's own loopback) but lead nowhere else.
    "connect-outside": (fn(denied("socket.create_connection(('192.0.2.1', 80), 1)")),
                        lambda b: b["result"] in {"ENETUNREACH", "EHOSTUNREACH"}),
    "connect-outside-v6": (fn(denied("socket.create_connection(('2001:db8::1', 80), 1)")),
                           lambda b: b["result"] in {"ENETUNREACH", "EHOSTUNREACH", "EADDRNOTAVAIL"}),
    "socket-netlink": (fn(denied("socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)")),
                       lambda b: b["result"] in EPERM_OR_EACCES),
    "socket-packet": (fn(denied("socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)")),
                      lambda b: b["result"] in EPERM_OR_EACCES),
    "connect-platform-port": (fn(denied("socket.create_connection(('127.0.0.1', int(event['port'])), 1)")),
                              lambda b: b["result"] in EPERM_OR_EACCES | {"ECONNREFUSED", "ENETUNREACH"}),
    "only-loopback-device": (fn("result = sorted(l.split(':')[0].strip() for l in open('/proc/net/dev')"
                                ".read().splitlines()[2:])"), lambda b: b["result"] in ([], ["lo"])),
    "signal-the-platform": (fn(denied("os.kill(int(event['server_pid']), signal.SIGKILL)")),
                            lambda b: b["result"] in {"ESRCH", "EPERM"}),
    "ptrace-attach": (fn(syscall_denied("libc.ptrace(16, 1, 0, 0)")), lambda b: b["result"] in EPERM_OR_EACCES),
    "unshare-user": (fn(syscall_denied("libc.unshare(0x10000000)")), lambda b: b["result"] in EPERM_OR_EACCES),
    "unshare-mount": (fn(syscall_denied("libc.unshare(0x00020000)")), lambda b: b["result"] in EPERM_OR_EACCES),
    "mount-proc": (fn(syscall_denied("libc.mount(b'proc', b'/tmp', b'proc', 0, None)")),
                   lambda b: b["result"] in EPERM_OR_EACCES),
    "setns": (fn("fd = os.open('/proc/self/ns/net', os.O_RDONLY)\n" + textwrap.dedent(syscall_denied("libc.setns(fd, 0)"))),
              lambda b: b["result"] in EPERM_OR_EACCES),
    "chroot": (fn(syscall_denied("libc.chroot(b'/tmp')")), lambda b: b["result"] in EPERM_OR_EACCES),
    "setuid-root": (fn(denied("os.setuid(0)")), lambda b: b["result"] in EPERM_OR_EACCES),
    "bpf": (fn(syscall_denied("libc.syscall(321, 0, 0, 0)")), lambda b: b["result"] in EPERM_OR_EACCES),
    "keyctl": (fn(syscall_denied("libc.syscall(250, 0, 0, 0, 0, 0)")), lambda b: b["result"] in EPERM_OR_EACCES),
    "process-vm-readv": (fn(syscall_denied("libc.syscall(310, 1, 0, 0, 0, 0, 0)")),
                         lambda b: b["result"] in EPERM_OR_EACCES),
    "unprivileged-identity": (fn("status = open('/proc/self/status').read()\n"
                                 "result = dict(uid=os.getuid(), caps=[l.split()[1] for l in status.splitlines()"
                                 " if l.startswith(('CapEff', 'CapBnd'))], nnp=[l.split()[1] for l in "
                                 "status.splitlines() if l.startswith('NoNewPrivs')])"),
                              lambda b: b["result"]["uid"] != 0 and set(b["result"]["caps"]) == {"0000000000000000"}
                              and b["result"]["nnp"] == ["1"]),
    "proc-shows-only-itself": (fn("result = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())"),
                               lambda b: len(b["result"]) <= 3 and 1 in b["result"]),
    "proc-root-escape": (fn(denied("os.listdir('/proc/1/root/root')")), lambda b: b["result"] in HIDDEN),
    "sysrq-trigger": (fn(denied("open('/proc/sysrq-trigger', 'w').write('b')")),
                      lambda b: b["result"] in {"EROFS", "EACCES", "EPERM", "ENOENT"}),
    "data-dir-invisible": (fn(denied("os.listdir(event['data_dir'])")), lambda b: b["result"] in HIDDEN),
    "fork-storm": (fn(FORK_STORM), lambda b: fork_storm_was_bounded(b["result"])),
    "memory-bomb": (fn("blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))\nresult = 0"),
                    lambda b: b["success"] is False and b["error"]["type"] == "MemoryLimitExceeded"),
    "busy-loop": (fn("while True:\n    pass\nresult = 0"),
                  lambda b: b["success"] is False and b["error"]["type"] == "Timeout"),
    "fill-tmp": (fn("""
        written = 0
        try:
            with open('/tmp/fill', 'wb') as f:
                while True:
                    f.write(b'x' * 1024 * 1024)
                    f.flush()
                    written += 1
        except OSError as exc:
            result = {'mb': written, 'error': errno.errorcode.get(exc.errno)}
        os.unlink('/tmp/fill')
        """), lambda b: b["result"]["error"] in {"ENOSPC", "EFBIG"} and 50 <= b["result"]["mb"] <= 64),
    "stdout-flood": (fn("for _ in range(2000):\n    sys.stdout.write('z' * 10000)\nresult = 'flooded'"),
                     lambda b: b["success"] and b["result"] == "flooded"),
    # kill(-1) reaches every process the caller may signal except itself and PID 1: in its own
    # PID namespace, where the runtime is PID 1, there is nobody else (ESRCH).
    "kill-everything": (fn(denied("os.kill(-1, signal.SIGKILL)")),
                        lambda b: b["result"] == "ESRCH" or b["error"]["type"] == "RuntimeExited"),
    "dev-is-minimal": (fn("result = sorted(os.listdir('/dev'))"),
                       lambda b: {"null", "zero", "urandom"} <= set(b["result"]) and "sda" not in b["result"]
                       and "vda" not in b["result"] and "kvm" not in b["result"] and "mem" not in b["result"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_function_is_contained(isolated, case):
    files, check = CASES[case]
    name = f"h-{case}"[:63]
    isolated.deploy(name, files, timeout=3 if case != "fork-storm" else 20)
    event = {"port": isolated.port, "server_pid": isolated.process.pid, "data_dir": str(isolated.data_dir)}
    body = run_with_bystander(isolated, name, event)
    assert check(body), body


def test_another_functions_tmp_is_invisible(isolated):
    """Two functions each have their own /tmp: a secret written by one is not seen by another."""
    isolated.deploy("tmp-writer", fn("open('/tmp/secret', 'w').write('s3cret')\nresult = os.listdir('/tmp')"))
    isolated.deploy("tmp-reader", fn("result = os.listdir('/tmp')"))
    assert "secret" in isolated.invoke("tmp-writer")["result"]
    assert isolated.invoke("tmp-reader")["result"] == []


def test_output_flood_is_capped_in_the_record(isolated):
    """20 MB of output keeps only the cap (4 KiB here), marked as truncated."""
    isolated.deploy("flooder", fn("for _ in range(2000):\n    sys.stdout.write('z' * 10000)\nresult = 'flooded'"))
    body = isolated.invoke("flooder")
    assert body["result"] == "flooded"
    logs = isolated.invocation(body["invocation_id"])["logs"]
    assert len(logs) < 5000 and "more bytes dropped" in logs


def cpu_share_of_a_busy_loop(seconds: float) -> float:
    """CPU seconds per wall second of a busy loop in this (unlimited) test process."""
    start_wall, start_cpu = time.monotonic(), time.process_time()
    while time.monotonic() - start_wall < seconds:
        pass
    return (time.process_time() - start_cpu) / (time.monotonic() - start_wall)


@pytest.mark.parametrize("memory,share", [(128, 0.5), (256, 0.75)])
def test_cpu_quota_holds(isolated, memory, share):
    """A busy loop gets about its tier's share of a CPU: 0.5 for 128 MB, 0.75 for 256 MB.

    The quota is a ceiling, asserted always. The floor ("about") is asserted only when an
    unlimited busy loop in this process gets nearly a whole CPU, i.e. the machine is quiet."""
    name = f"cpu-{memory}"
    isolated.deploy(name, fn("""
        start_wall, start_cpu = time.monotonic(), time.process_time()
        while time.monotonic() - start_wall < 2.0:
            pass
        result = (time.process_time() - start_cpu) / (time.monotonic() - start_wall)
        """), memory=memory, timeout=10)
    quiet = cpu_share_of_a_busy_loop(0.5) >= 0.9
    ratio = isolated.invoke(name)["result"]
    assert ratio <= share + 0.08, ratio
    if quiet:
        assert ratio >= share - 0.12, ratio


def test_imagemagick_ghostscript_and_fonts_inside(isolated):
    """The host's convert, gs and fonts are usable inside the sandbox."""
    isolated.deploy("tools", fn("""
        subprocess.run(['convert', '-size', '64x64', 'xc:red', '/tmp/red.png'], check=True)
        gs = subprocess.run(['gs', '--version'], capture_output=True, text=True, check=True).stdout.strip()
        fonts = subprocess.run(['fc-list'], capture_output=True, text=True).stdout
        result = dict(png=os.path.getsize('/tmp/red.png'), gs=gs,
                      dejavu='DejaVu' in fonts, liberation='Liberation' in fonts,
                      cjk=any(k in fonts for k in ('WenQuanYi', 'Noto Sans CJK', 'Droid Sans Fallback')))
        """), timeout=20)
    body = isolated.invoke("tools")
    assert body["success"], body
    r = body["result"]
    assert r["png"] > 0 and r["gs"] and r["dejavu"] and r["liberation"] and r["cjk"], r
