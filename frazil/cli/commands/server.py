"""`frazil server`: run the platform."""
from __future__ import annotations

from pathlib import Path

import typer

from frazil.cli.app import app
from frazil.cli.errors import CliError, UsageProblem
from frazil.cli.output import note
from frazil.settings import DEFAULT_DATA_DIR, ENV_DATA_DIR


@app.command()
def server(host: str = typer.Option("127.0.0.1", help="Address to listen on"),
           port: int = typer.Option(8080, help="Port to listen on"),
           data_dir: Path = typer.Option(Path(DEFAULT_DATA_DIR), "--data-dir", envvar=ENV_DATA_DIR,
                                         help="Where frazil keeps its data"),
           role: str = typer.Option("all", help="all (everything in one process), or in cluster mode "
                                                 "gateway (API) or invoker (sandboxes)"),
           log_level: str = typer.Option("info", help="uvicorn log level")):
    """Run the platform (embedded default: SQLite and a blob directory under --data-dir;
    cluster mode when FRAZIL_NATS_URL is set)."""
    import asyncio
    import logging

    import uvicorn

    from frazil.api.app import create_app
    from frazil.api.fastpath import FastPath
    from frazil.cluster.config import ServiceUnreachable, preflight
    from frazil.server_lock import DataDirInUse, DataDirLock
    from frazil.platform import Platform
    from frazil.sandbox.base import SandboxUnavailable
    from frazil.sandbox.select import make_sandbox
    from frazil.serving import connection_cap, protocol_class, raise_open_files_limit
    from frazil.settings import BadSetting, Role, Settings
    from frazil.store.datadir import DataDirError
    from frazil.wiring import check

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # First: the sandbox's helpers, started next, inherit the limit.
    open_files = raise_open_files_limit()
    # The order matters: the settings and the sandbox probe look only at the environment and the
    # machine; the data dir's lock comes before anything reads or writes the dir (the admin key,
    # the database, the sandbox's clean-up of instances a previous run left); `lock` is held
    # until this function returns, that is for the server's life.
    try:
        settings = Settings.from_env(host=host, port=port, data_dir=data_dir, role=role)
        check(settings)
    except BadSetting as exc:
        raise UsageProblem(f"frazil cannot start: {exc}") from None
    try:
        asyncio.run(preflight(settings))  # the services this node needs answer, or it says which does not
    except ServiceUnreachable as exc:
        raise CliError(f"frazil cannot start: {exc}") from None
    try:
        sandbox = make_sandbox(settings)
        lock = DataDirLock.acquire(settings.data_dir)  # noqa: F841 - held while the server runs
        platform = Platform(settings, sandbox=sandbox)
    except (BadSetting, SandboxUnavailable, DataDirInUse, DataDirError) as exc:
        raise UsageProblem(f"frazil cannot start: {exc}") from None
    except OSError as exc:  # the data dir cannot be made, or its lock file opened
        raise UsageProblem(f"frazil cannot start: {exc.filename or settings.data_dir}: {exc.strerror}") from None
    mode = f"cluster {settings.cluster!r}, role {settings.role.value}" if settings.clustered else "embedded"
    note(f"frazil listening on http://{host}:{port} ({mode}; node {platform.node_id}; data in {settings.data_dir}, "
         f"sandbox: {platform.sandbox.name})")
    app = create_app(settings, platform)
    if settings.role is not Role.INVOKER:
        app = FastPath(app)  # the invoke fast path: not on an invoker, which serves no invocations
    protocol = protocol_class(settings.server_header_timeout_s,
                              connection_cap(settings.server_max_connections, open_files))
    # No proxy-header rewriting: frazil does not trust X-Forwarded-* (and it costs per request).
    uvicorn.run(app, host=host, port=port, loop="uvloop", http=protocol,
                log_level=log_level, access_log=False, proxy_headers=False, timeout_graceful_shutdown=5,
                timeout_keep_alive=settings.server_keep_alive_s)
