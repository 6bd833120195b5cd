"""Commands on invocations: invoke, invocation, invocations, logs."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from frazil.cli.app import app
from frazil.cli.client import Client
from frazil.cli.errors import ExitCode, UsageProblem
from frazil.cli.output import JSON_OPTION, out, print_json, print_table, show
from frazil.store.models import InvocationStatus

# The most records GET /v1/functions/{name}/invocations answers at once.
MAX_PAGE = 500


def read_event(data: str) -> str:
    """--data as given: JSON text, @file for a file's contents, @- for standard input."""
    if data == "@-":
        text = sys.stdin.read()
    elif data.startswith("@"):
        try:
            text = Path(data[1:]).read_text()
        except OSError as exc:
            raise UsageProblem(f"cannot read {data[1:]}: {exc.strerror}") from None
    else:
        text = data
    try:
        json.loads(text)
    except ValueError as exc:
        where = {"@-": "standard input"}.get(data, data[1:] if data.startswith("@") else "--data")
        raise UsageProblem(f"{where} is not valid JSON: {exc}") from None
    return text


@app.command()
def invoke(name: str = typer.Argument(..., help="Function name"),
           data: str = typer.Option("{}", "--data", "-d",
                                    help="Event JSON; @file reads it from a file, @- from standard input"),
           async_: bool = typer.Option(False, "--async", help="Queue it and print the invocation id"),
           delay: Optional[float] = typer.Option(None, "--delay", help="With --async: run no earlier than this "
                                                                       "many seconds from now"),
           as_json: bool = typer.Option(False, "--json", help="Accepted for uniformity: the envelope is JSON")):
    """Invoke a function and print the result envelope (exit 1 when it failed)."""
    event = read_event(data)
    if delay is not None and not async_:
        raise UsageProblem("--delay is for async invocations: add --async")
    params = {"mode": "async"} if async_ else None
    if delay is not None:
        params["delay_s"] = f"{delay:g}"
    _, body = Client().request("POST", f"/v1/functions/{name}/invoke", params=params,
                               content=event.encode(), headers={"content-type": "application/json"})
    print_json(body)
    if not body.get("success"):
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def retry(invocation_id: str = typer.Argument(..., help="The invocation whose event to replay"),
          as_json: bool = typer.Option(False, "--json", help="Accepted for uniformity: the answer is JSON")):
    """Replay an invocation's event as a new async invocation of the function's active version;
    prints the answer (the new invocation's id)."""
    print_json(Client().request("POST", f"/v1/invocations/{invocation_id}/retry")[1])


@app.command()
def invocation(invocation_id: str = typer.Argument(..., help="Invocation id"),
               as_json: bool = typer.Option(False, "--json", help="Accepted for uniformity: the record is JSON")):
    """Print one invocation record (JSON)."""
    print_json(Client().get(f"/v1/invocations/{invocation_id}")["invocation"])


@app.command()
def invocations(name: str = typer.Argument(..., help="Function name"),
                status: Optional[InvocationStatus] = typer.Option(None, help="Only invocations in this status"),
                limit: int = typer.Option(20, min=1, max=MAX_PAGE, help="How many to show"),
                as_json: bool = JSON_OPTION):
    """List a function's recent invocations, newest first."""
    # The route has no status filter yet: with --status, read the most recent page and filter
    # it here (older matches beyond that page are not shown).
    body = Client().get(f"/v1/functions/{name}/invocations", params={"limit": MAX_PAGE if status else limit})
    records = [r for r in body["invocations"] if status is None or r["status"] == status.value][:limit]
    if as_json:
        print_json({**body, "invocations": records})
        return
    print_table(["ID", "STATUS", "VERSION", "MODE", "COLD", "ATTEMPTS", "CREATED", "DURATION"],
                [[r["id"], r["status"], str(r["version"]), show(r.get("mode")), show(r["cold"]), str(r["attempts"]),
                  r["created_at"], "-" if r["duration_ms"] is None else f"{r['duration_ms']:.1f} ms"]
                 for r in records])


@app.command()
def logs(name: str = typer.Argument(..., help="Function name"),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new logs"),
         limit: int = typer.Option(20, min=1, max=1000, help="How many recent invocations to show"),
         as_json: bool = typer.Option(False, "--json", help="One JSON object per invocation, per line")):
    """Print the captured output of a function's recent invocations."""
    client = Client()
    cursor = None
    try:
        while True:
            params = {"limit": limit} if cursor is None else {"after": cursor, "limit": 1000}
            body = client.get(f"/v1/functions/{name}/logs", params=params)
            for entry in body["entries"]:
                if as_json:
                    sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
                else:
                    out.print(f"[dim]--- {entry['created_at']} {entry['invocation_id']} v{entry['version']} "
                              f"{entry['status']}[/dim]", highlight=False)
                    if entry["logs"]:
                        sys.stdout.write(entry["logs"] if entry["logs"].endswith("\n") else entry["logs"] + "\n")
                sys.stdout.flush()
            cursor = body.get("cursor") or cursor or ""
            if not follow:
                return
            time.sleep(1.0)  # the route has no long poll: ask again each second
    except KeyboardInterrupt:
        pass
