"""The `frazil` command. Client commands are thin: they call the HTTP API through one Client."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from frazil.cli.bundle import read_toml, zip_folder
from frazil.cli.client import CliError, Client
from frazil.cli.scaffold import scaffold

app = typer.Typer(help="frazil: self-hosted serverless cloud functions.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
# Piped output is not a terminal: give tables room instead of cutting names short.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def _fail(message: str, code: int = 1):
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@app.command()
def server(host: str = typer.Option("127.0.0.1", help="Address to listen on"),
           port: int = typer.Option(8080, help="Port to listen on"),
           data_dir: Path = typer.Option(Path(".frazil"), "--data-dir", help="Where frazil keeps its data"),
           log_level: str = typer.Option("info", help="uvicorn log level")):
    """Run the platform (embedded default: SQLite and a blob directory under --data-dir)."""
    import logging

    import uvicorn

    from frazil.api.app import create_app
    from frazil.api.fastpath import FastPath
    from frazil.platform import Platform
    from frazil.sandbox.base import SandboxUnavailable
    from frazil.settings import Settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(host=host, port=port, data_dir=data_dir)
    try:
        platform = Platform(settings)
    except SandboxUnavailable as exc:
        _fail(f"frazil cannot start: {exc}", 2)
    err.print(f"frazil listening on http://{host}:{port} (data in {settings.data_dir}, sandbox: "
              f"{platform.sandbox.name})", highlight=False)
    # No proxy-header rewriting: frazil does not trust X-Forwarded-* (and it costs per request).
    uvicorn.run(FastPath(create_app(settings, platform)), host=host, port=port, loop="uvloop", http="httptools",
                log_level=log_level, access_log=False, proxy_headers=False, timeout_graceful_shutdown=5)


def _settings_from(path: Path, name, runtime, handler, memory, timeout, env, resident, public) -> tuple[str, dict]:
    toml = read_toml(path)
    config: dict = {}
    for key in ("runtime", "handler", "memory", "timeout", "resident", "public"):
        if key in toml:
            config[key] = toml[key]
    if "env" in toml:
        config["env"] = {str(k): str(v) for k, v in dict(toml["env"]).items()}
    flags = {"runtime": runtime, "handler": handler, "memory": memory, "timeout": timeout, "resident": resident,
             "public": public}
    config.update({k: v for k, v in flags.items() if v is not None})
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--env wants KEY=VALUE, got {item!r}")
        config.setdefault("env", {})[key] = value
    return name or toml.get("name") or path.resolve().name, config


def _follow_build(client: Client, name: str, done: threading.Event) -> None:
    """Show the build log of the deploy in flight (the newest version that is building)."""
    shown = 0
    while not done.wait(0.5):
        try:
            versions = client.get(f"/v1/functions/{name}/versions")["versions"]
        except CliError:
            continue
        building = [v for v in versions if v["status"] == "building"]
        if not building:
            continue
        log_text = client.get(f"/v1/functions/{name}/versions/{building[0]['version']}")["version"]["build_log"]
        lines = log_text.splitlines()
        for line in lines[shown:]:
            err.print(Text.assemble(("  build ", "dim"), line), highlight=False)
        shown = len(lines)


@app.command()
def deploy(path: Path = typer.Argument(..., exists=True, file_okay=False, help="The function's folder"),
           name: Optional[str] = typer.Option(None, help="Function name (default: the folder's name)"),
           runtime: Optional[str] = typer.Option(None, help="python3.11 or nodejs20 (default: detected)"),
           handler: Optional[str] = typer.Option(None, help="module.function (default: index.main)"),
           memory: Optional[int] = typer.Option(None, help="Memory tier: 128 or 256 (MB)"),
           timeout: Optional[float] = typer.Option(None, help="Timeout in seconds (max 900)"),
           env: Optional[List[str]] = typer.Option(None, "--env", help="KEY=VALUE, repeatable"),
           resident: Optional[int] = typer.Option(None, help="Instances kept warm at all times"),
           public: Optional[bool] = typer.Option(None, "--public/--private", help="Invocable without a key"),
           as_json: bool = typer.Option(False, "--json", help="Print the server's answer as JSON")):
    """Upload a folder and build it as a new version; exits 0 only once it is active."""
    try:
        fn_name, config = _settings_from(path, name, runtime, handler, memory, timeout, env, resident, public)
        data, count = zip_folder(path)
        client = Client()
        if not as_json:
            err.print(f"uploading {fn_name}: {count} files, {len(data) / 1024:.1f} KiB", highlight=False)
        done = threading.Event()
        follower = threading.Thread(target=_follow_build, args=(Client(), fn_name, done), daemon=True)
        if not as_json:
            follower.start()
        started = time.monotonic()
        try:
            _, body = client.request("PUT", f"/v1/functions/{fn_name}",
                                     files={"bundle": ("bundle.zip", data, "application/zip")},
                                     data={"config": json.dumps(config)})
        finally:
            done.set()
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    if as_json:
        _print_json(body)
        return
    fn = body["function"]
    err.print(f"[green]deployed[/green] {fn['name']} version {fn['version']} ({fn['runtime']}, {fn['memory']} MB) "
              f"in {time.monotonic() - started:.1f} s", highlight=False)


@app.command()
def invoke(name: str = typer.Argument(..., help="Function name"),
           data: str = typer.Option("{}", "--data", "-d", help="Event JSON, or @file to read it from a file"),
           async_: bool = typer.Option(False, "--async", help="Queue it and print the invocation id")):
    """Invoke a function and print the result envelope (exit 1 when it failed)."""
    try:
        if data.startswith("@"):
            try:
                data = Path(data[1:]).read_text()
            except OSError as exc:
                raise CliError(f"cannot read {data[1:]}: {exc.strerror}") from None
        try:
            json.loads(data)
        except ValueError as exc:
            raise CliError(f"--data is not valid JSON: {exc}") from None
        client = Client()
        _, body = client.request("POST", f"/v1/functions/{name}/invoke", params={"mode": "async"} if async_ else None,
                                 content=data.encode(), headers={"content-type": "application/json"})
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    _print_json(body)
    if not body.get("success"):
        raise typer.Exit(1)


@app.command("ls")
def list_functions(as_json: bool = typer.Option(False, "--json")):
    """List functions."""
    try:
        body = Client().get("/v1/functions")
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    if as_json:
        _print_json(body)
        return
    table = Table("NAME", "VERSION", "RUNTIME", "MEMORY", "TIMEOUT", "RESIDENT", "PUBLIC", "DEPLOYED")
    for fn in body["functions"]:
        table.add_row(fn["name"], str(fn["version"]), fn["runtime"], f"{fn['memory']} MB", f"{fn['timeout']:g} s",
                      str(fn["resident"]), "yes" if fn["public"] else "no", fn["deployed_at"])
    out.print(table)


@app.command("rm")
def remove(name: str):
    """Delete a function and all its versions."""
    try:
        Client().request("DELETE", f"/v1/functions/{name}")
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    err.print(f"deleted {name}")


@app.command()
def logs(name: str, follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new logs"),
         limit: int = typer.Option(20, help="How many recent invocations to show")):
    """Print the captured output of a function's recent invocations."""
    client = Client()
    cursor = None
    try:
        while True:
            params = {"limit": limit} if cursor is None else {"after": cursor, "limit": 1000}
            body = client.get(f"/v1/functions/{name}/logs", params=params)
            for entry in body["entries"]:
                out.print(f"[dim]--- {entry['created_at']} {entry['invocation_id']} v{entry['version']} "
                          f"{entry['status']}[/dim]", highlight=False)
                if entry["logs"]:
                    sys.stdout.write(entry["logs"] if entry["logs"].endswith("\n") else entry["logs"] + "\n")
                    sys.stdout.flush()
            cursor = body.get("cursor") or cursor or ""
            if not follow:
                return
            time.sleep(1.0)
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        pass


@app.command()
def invocation(invocation_id: str):
    """Print one invocation record."""
    try:
        body = Client().get(f"/v1/invocations/{invocation_id}")
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    _print_json(body["invocation"])


@app.command()
def init(name: str, runtime: str = typer.Option("python3.11", help="python3.11 or nodejs20")):
    """Create a folder NAME with a hello-world function."""
    try:
        path = scaffold(Path(name), runtime)
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    err.print(f"created {path}/ — deploy it with: frazil deploy {path}")


if __name__ == "__main__":
    app()
