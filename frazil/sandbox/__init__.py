"""Sandboxes: where function instances run. The interface is `base.py`; `select.py` picks an
implementation from the settings.

  base.py            the interface: Sandbox, SandboxProcess, SandboxSpec, InstanceShape, errors
  select.py          make_sandbox(settings): isolated, or plain (development only)
  plain.py           PlainSandbox: a child process, no isolation
  spawn.py           posix_spawn of a runtime, and waiting for a child through a pidfd
The isolated sandbox (the lightweight container), platform side:
  isolated.py        IsolatedSandbox, the façade: create() chooses a CreatePath
  instance.py        IsolatedProcess (one instance) and InstanceTable (every instance alive)
  build.py           BuildPlan and InstanceBuilder: building one instance
  handover.py        giving a generic instance its function's code
  attach.py          attaching code and layers inside an instance's mount namespace (and why it is safe)
  listen.py          a listening socket on an instance's own loopback (the egress proxy's)
  prebuilt.py        GenericPool: generic instances built ahead of time, per shape
  layer_ready.py     LayerReady: Python instances that imported a dependency layer ahead, per layer
  hostpaths.py       the layout shown inside; interpreters, code and layer dirs checked
  supervisor.py      the launcher and the zygote, restarted once when they died
  launcher_client.py the platform's end of the launcher's and the zygote's sockets
  cgroups.py         per-instance cgroups: the interface (cgroup_v1.py, cgroup_v2.py implement it)
  cgroupfs.py        reading and writing cgroup files; the hierarchies this machine mounts
  netns.py           NetnsPool: network namespaces made ahead of time, for instances built on demand
  disks.py           which whole disks hold what instances read (for disk bandwidth limits)
  uids.py            the block of uids instances run as
  probe.py           can this machine run the isolated sandbox, and which cgroup backend
  helper/            what runs inside the launcher, the zygote and an instance before exec
                     (standard library only; see helper/__init__.py)
"""
