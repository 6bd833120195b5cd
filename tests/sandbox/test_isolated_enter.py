"""`enter.launch()` without exec: the path a zygote will use (issue 4). A helper process
plays the zygote; its clone returns in a fully sandboxed Python child that reports over
fd 3 and exits. The child is the test's own child (CLONE_PARENT), so the test reaps it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from frazil.runtimes import RUNTIMES_ROOT, PYTHON
from frazil.sandbox.helper import rootfs

REPO = Path(__file__).resolve().parents[2]

ZYGOTE = textwrap.dedent('''
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    from frazil.sandbox.helper.enter import ChildFds, Plan, launch
    from frazil.sandbox.helper.launcher import prepare

    config = json.loads(sys.argv[2])
    channel, output, error = (int(x) for x in sys.argv[3:6])
    prepared = prepare(config)
    plan = Plan(argv=("unused",), env={}, uid=config["uid"], gid=config["uid"], code_dir=config["code"],
                layer_dirs=(), tmp_mb=8, rlimits=())
    pid = launch(plan, prepared, ChildFds(channel, output, error, ()), exec_runtime=False)
    if pid == 0:  # the sandboxed child: no exec, Python goes on
        status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
        report = {"pid": os.getpid(), "uid": os.getuid(), "code": sorted(os.listdir("/code")),
                  "seccomp": status["Seccomp"].strip(), "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
                  "ignored": int(status["SigIgn"], 16), "blocked": int(status["SigBlk"], 16)}
        os.write(3, json.dumps(report).encode())
        os._exit(0)
    print(pid, flush=True)
''')


def test_launch_without_exec_returns_sandboxed(tmp_path, sandbox_factory, settings, code_factory):
    sandbox_factory(settings)  # skips when the machine cannot sandbox
    code = code_factory({"hello.txt": "hi"})
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    layout = rootfs.default_layout([str(PYTHON.interpreter())], str(RUNTIMES_ROOT))
    config = {"layout": layout.to_dict(), "mountpoint": str(mountpoint), "platform_pid": os.getpid(),
              "code": str(code), "uid": 10_999_999}
    ours, theirs = socket.socketpair()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    fds = [theirs.fileno(), out_w, err_w]
    zygote = subprocess.run([sys.executable, "-c", ZYGOTE, str(REPO), json.dumps(config), *map(str, fds)],
                            pass_fds=fds, capture_output=True, text=True, timeout=30)
    theirs.close()
    os.close(out_w)
    os.close(err_w)
    assert zygote.returncode == 0, zygote.stderr
    pid = int(zygote.stdout.split()[0])
    _, status = os.waitpid(pid, 0)  # ours to reap
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.read(err_r, 4096) == b""  # the error pipe was closed, with nothing in it
    ours.settimeout(10)
    report = json.loads(ours.recv(65536))
    # Python ignores SIGPIPE and SIGXFSZ; the launcher gives them back their default, so
    # neither a zygote's child nor an exec'd runtime inherits the ignore
    assert report.pop("ignored") & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)) == 0
    assert report == {"pid": 1, "uid": 10_999_999, "code": ["hello.txt"], "seccomp": "2", "blocked": 0,
                      "fds": [0, 1, 2, 3, report["fds"][-1]]}  # + the fd listing /proc/self/fd
    ours.close()
    os.close(out_r)
    os.close(err_r)
