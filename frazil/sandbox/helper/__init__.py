"""Code that runs inside the sandbox's helper processes: the launcher (started by the
platform as `python -I -S -B`, see `frazil.sandbox.launcher_client`), the Python zygote it
clones, each instance between its clone and its exec, and the helper that contains one
dependency build (started by `frazil.build.buildbox`).

Invariant: every module here imports only the standard library and this sub-package (and
the empty `frazil` and `frazil.sandbox` packages it sits in), so that a helper is small,
starts fast and shares as little as possible with the platform; tests/sandbox/
test_helper_imports.py enforces it. The platform may import from here (constants, the wire,
`enter.readonly_tree`); nothing here may import from the platform's side.

  launcher.py    the launcher: prepares once, then serves "spawn"
  zygote.py      the Python zygote: forks instances that already imported the runtime loop
  zygote_child.py  a zygote's child, from its sandboxed fork to the runtime (and its warm-up)
  enter.py       the steps from clone to exec of one instance, in order
  rootfs.py      the read-only template root every instance starts from
  seccomp.py     the system call filter
  landlock.py    scoping of signals and abstract sockets
  syscalls.py    the raw system calls the above need (ctypes)
  visit.py       a thread inside another process's namespace for one step (the platform's too)
  wire.py        the messages between the platform and the helpers
  build_jail.py  one dependency build's containment, step by step (its own namespaces, root, uid)
"""
