"""Turning an uploaded bundle into something that can run.

- `unpack`   -- `unpack_bundle(data, dest, limits, handler=)`: safe zip / tar.gz / tar unpacking.
- `detect`   -- `detect_runtime(code_dir, handler)`, `check_handler(code_dir, runtime, handler)`.
- `manifest` -- which files decide a project's dependencies, and the layer key.
- `layers`   -- `ensure_layer(settings, runtime, code_dir, log)`: build or reuse a dependency layer.
- `runner`   -- runs one installer: isolated, time-limited, output streamed.
- `isolate`  -- the stdlib-only wrapper that hides the data dir and drops privileges.
"""
