"""Commands on functions: init, deploy, ls, describe, versions, rm."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.text import Text

from frazil.cli.app import app
from frazil.cli.bundle import Bundle, load_bundle
from frazil.cli.client import ApiError, Client
from frazil.cli.errors import CliError, UsageProblem
from frazil.cli.output import JSON_OPTION, err, note, out, print_json, print_table, show
from frazil.cli.scaffold import scaffold


@app.command()
def init(name: str = typer.Argument(..., help="Folder to create; its name is the function's"),
         runtime: str = typer.Option("python3.11", help="python3.11 or nodejs20")):
    """Create a folder NAME with a hello-world function."""
    path = scaffold(Path(name), runtime)
    note(f"created {path}/ — deploy it with: frazil deploy {path}")


def deploy_settings(bundle: Bundle, name, flags: dict, env: list[str] | None) -> tuple[str, dict]:
    """The function's name and the deploy config: frazil.toml's settings, then the flags."""
    config = {k: v for k, v in bundle.toml.items() if k != "name"}
    if "env" in config:
        if not isinstance(config["env"], dict):
            raise UsageProblem("frazil.toml: env must be a table of NAME = \"value\"")
        config["env"] = {str(k): str(v) for k, v in config["env"].items()}
    # `public` and `access` say the same thing: a flag for one overrides the file's other.
    if flags.get("public") is not None:
        config.pop("access", None)
    if flags.get("access") is not None:
        config.pop("public", None)
    config.update({k: v for k, v in flags.items() if v is not None})
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageProblem(f"--env wants KEY=VALUE, got {item!r}")
        config.setdefault("env", {})[key] = value
    return name or bundle.toml.get("name") or bundle.default_name, config


class BuildLogPrinter:
    """Prints one version's build log to stderr line by line, each line once, whether the lines
    come from polling during the build or from the final log after it (two threads call `show`)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._version: int | None = None
        self._shown = 0

    def show(self, version: int, text: str) -> None:
        with self._lock:
            if version != self._version:
                self._version, self._shown = version, 0
            lines = text.splitlines()
            for line in lines[self._shown:]:
                # soft_wrap: a long line stays one line (rich would fold it at the width).
                err.print(Text.assemble(("  build ", "dim"), line), highlight=False, soft_wrap=True)
            self._shown = max(self._shown, len(lines))


def _follow_build(client: Client, name: str, printer: BuildLogPrinter, done: threading.Event) -> None:
    """While the deploy is in flight: the log of the newest version that is building."""
    while not done.wait(0.5):
        try:
            versions = client.get(f"/v1/functions/{name}/versions")["versions"]
            building = [v for v in versions if v["status"] == "building"]
            if building:
                number = building[0]["version"]
                printer.show(number, client.get(f"/v1/functions/{name}/versions/{number}")["version"]["build_log"])
        except CliError:
            continue  # not created yet, or a moment's trouble: the final log is printed anyway


@app.command()
def deploy(path: Path = typer.Argument(..., exists=True, help="The function's folder, or a .zip/.tar.gz archive"),
           name: Optional[str] = typer.Option(None, help="Function name (default: the folder's or archive's name)"),
           runtime: Optional[str] = typer.Option(None, help="python3.11 or nodejs20 (default: detected)"),
           handler: Optional[str] = typer.Option(
               None, help="module.function (default: found at deploy, index.main first; docs/moving.md)"),
           memory: Optional[int] = typer.Option(None, help="Memory tier: 128 or 256 (MB)"),
           timeout: Optional[float] = typer.Option(None, help="Timeout in seconds (max 900)"),
           env: Optional[List[str]] = typer.Option(None, "--env", help="KEY=VALUE, repeatable"),
           resident: Optional[int] = typer.Option(None, help="Instances kept warm at all times"),
           public: Optional[bool] = typer.Option(None, "--public/--private", help="Invocable without a key"),
           access: Optional[str] = typer.Option(None, "--access",
                                                help="Who may invoke: admin (default), user or public"),
           http: Optional[bool] = typer.Option(None, "--http/--no-http", help="Also answer HTTP at /fn/NAME"),
           as_json: bool = JSON_OPTION):
    """Upload a folder or archive and build it as a new version; exits 0 only once it is active.

    Settings come from frazil.toml (in the folder, or at the archive's root); flags win.
    The build log is shown as it runs, to its last line."""
    bundle = load_bundle(path)
    flags = {"runtime": runtime, "handler": handler, "memory": memory, "timeout": timeout, "resident": resident,
             "public": public, "access": access, "http": http}
    fn_name, config = deploy_settings(bundle, name, flags, env)
    client = Client()
    printer = BuildLogPrinter()
    done = threading.Event()
    follower = threading.Thread(target=_follow_build, args=(Client(), fn_name, printer, done), daemon=True)
    if not as_json:
        note(f"uploading {fn_name}: {bundle.describe()}")
        follower.start()
    started = time.monotonic()
    try:
        _, body = client.request("PUT", f"/v1/functions/{fn_name}",
                                 files={"bundle": (bundle.filename, bundle.data, bundle.content_type)},
                                 data={"config": json.dumps(config)})
    except ApiError as exc:
        done.set()
        if as_json:
            print_json(exc.body)
        else:
            follower.join()
            _show_failed_build(client, fn_name, exc, printer)
        raise
    finally:
        done.set()
    if as_json:
        print_json(body)
        return
    follower.join()
    printer.show(body["version"], body.get("build_log") or "")
    fn = body["function"]
    err.print(f"[green]deployed[/green] {fn['name']} version {fn['version']} ({fn['runtime']}, {fn['memory']} MB) "
              f"in {time.monotonic() - started:.1f} s", highlight=False)


def _show_failed_build(client: Client, name: str, exc: ApiError, printer: BuildLogPrinter) -> None:
    """The whole log of a build that failed (its refusal names the version)."""
    error = exc.body.get("error") if isinstance(exc.body.get("error"), dict) else {}
    number = error.get("version")
    if not isinstance(number, int):
        return  # refused before a version was made (a bad bundle or config): nothing was built
    try:
        log_text = client.get(f"/v1/functions/{name}/versions/{number}")["version"].get("build_log") or ""
    except CliError:
        return
    printer.show(number, log_text)


def trigger_text(trigger: dict) -> str:
    """One trigger on one line: `schedule 0 * * * * (next 2026-...)`, `table orders on insert, delete`."""
    kind = trigger.get("type")
    if kind == "schedule":
        next_fire = f" (next {trigger['next_fire_at']})" if trigger.get("next_fire_at") else ""
        return f"schedule {trigger.get('cron')}{next_fire}"
    if kind == "table":
        return f"table {trigger.get('table')} on {', '.join(trigger.get('on') or [])}"
    return str(trigger)


def endpoint_url(client: Client, fn: dict) -> str | None:
    """The function's HTTP endpoint as a URL on the server the CLI talks to, or None."""
    return f"{client.url.rstrip('/')}{fn['endpoint']}" if fn.get("endpoint") else None


@app.command("ls")
def list_functions(as_json: bool = JSON_OPTION):
    """List functions: their settings, who may invoke them, what fires them, their HTTP endpoint."""
    client = Client()
    body = client.get("/v1/functions")
    if as_json:
        print_json(body)
        return
    print_table(["NAME", "VERSION", "RUNTIME", "MEMORY", "TIMEOUT", "RESIDENT", "ACCESS", "TRIGGERS", "ENDPOINT",
                 "DEPLOYED"],
                [[fn["name"], str(fn["version"]), fn["runtime"], f"{fn['memory']} MB", f"{fn['timeout']:g} s",
                  str(fn["resident"]), fn["access"],
                  "\n".join(trigger_text(t) for t in fn.get("triggers") or []) or "-",
                  show(endpoint_url(client, fn)), fn["deployed_at"]]
                 for fn in body["functions"]])


@app.command()
def describe(name: str = typer.Argument(..., help="Function name"), as_json: bool = JSON_OPTION):
    """Show a function's settings and its active version: who may invoke it (access), what
    fires it (triggers, with a schedule's next fire time) and its HTTP endpoint's URL."""
    client = Client()
    body = client.get(f"/v1/functions/{name}")
    if as_json:
        print_json(body)
        return
    fn = body["function"]
    fn["endpoint"] = endpoint_url(client, fn)
    width = max(len(key) for key in fn)
    for key, value in fn.items():
        if key == "env":
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
        elif key == "triggers":
            value = ("\n" + " " * (width + 2)).join(trigger_text(t) for t in value) or "-"
        out.print(f"{key + ':':<{width + 1}} {show(value)}", highlight=False, markup=False)


@app.command()
def versions(name: str = typer.Argument(..., help="Function name"), as_json: bool = JSON_OPTION):
    """List a function's versions, newest first; * marks the active one."""
    client = Client()
    body = client.get(f"/v1/functions/{name}/versions")
    if as_json:
        print_json(body)
        return
    try:
        active = client.get(f"/v1/functions/{name}")["function"]["version"]
    except ApiError as exc:
        if exc.status != 404:
            raise
        active = None  # no version was ever built successfully
    print_table(["VERSION", "STATUS", "RUNTIME", "MEMORY", "CREATED", "ERROR"],
                [[f"{v['version']}{' *' if v['version'] == active else ''}", v["status"], v["runtime"],
                  f"{v['memory']} MB", v["created_at"], show(v["error"])] for v in body["versions"]])


@app.command("rm")
def remove(name: str = typer.Argument(..., help="Function name"),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
           as_json: bool = JSON_OPTION):
    """Delete a function and all its versions (asks first, unless --yes)."""
    if not yes:
        if not sys.stdin.isatty():
            raise UsageProblem(f"not deleting {name}: no terminal to confirm on; pass --yes to delete it")
        if not typer.confirm(f"Delete function {name} and all its versions?", default=False, err=True):
            raise CliError(f"{name} was not deleted")
    body = Client().request("DELETE", f"/v1/functions/{name}")[1]
    if as_json:
        print_json(body)
        return
    note(f"deleted {name}")


@app.command()
def rollback(name: str = typer.Argument(..., help="Function name"),
             to: Optional[int] = typer.Option(None, "--to", help="Version number (default: the previous ready one)"),
             as_json: bool = JSON_OPTION):
    """Make an older ready version active again."""
    body = Client().request("POST", f"/v1/functions/{name}/rollback", json={} if to is None else {"version": to})[1]
    if as_json:
        print_json(body)
        return
    note(body["message"])
