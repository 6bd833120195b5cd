"""Turning an uploaded bundle into something that can run.

- `unpack`   -- `unpack_bundle(data, dest, limits, handler=)`: safe zip / tar.gz / tar unpacking.
- `detect`   -- `detect_runtime(code_dir, handler)`, `check_handler(code_dir, runtime, handler)`.
- `manifest` -- which files decide a project's dependencies, and the layer key; references
                that leave the bundle are refused.
- `layers`   -- `ensure_layer(settings, runtime, code_dir, log)`: build or reuse a dependency layer.
- `integrity`-- a finished layer's digest, recorded once built, checked before use.
- `runner`   -- runs one installer: in the build sandbox (or, FRAZIL_SANDBOX=plain, without one).
- `buildbox` -- the build sandbox, the platform's half: uid, cgroup, helper, proxy, capped log.
- `jail`     -- the build sandbox, the helper's half (stdlib only): every containment step, in order.
- `registries` -- which registries builds may reach; the credential-free build environment.
- `registry_proxy` -- the forward proxy a build reaches its registries through.
"""
