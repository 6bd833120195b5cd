"""The documentation in docs/ does what it says.

Runnable blocks: a fenced block whose info string is `sh runnable`, `python runnable` or
`js runnable` runs here, in the order of its page, against a real `frazil server` started for
this module on 127.0.0.1, and the test fails when one exits non-zero. The blocks of one page
share a fresh working directory (a block may use the files an earlier one wrote) and get:
  FRAZIL_URL, FRAZIL_TOKEN     the server and its admin key (so `frazil` and the SDKs reach it)
  FRAZIL_DATA_DIR              the server's data dir (the production page backs it up)
  PATH                         this venv's bin first (`frazil`, `python`)
  PYTHONPATH, NODE_PATH        the SDKs, as `pip install` / `npm install` of them would give
Blocks must stay fast and local: no network but 127.0.0.1.

Besides: the README links every page, pages link only pages that exist, and docs/limits.md
states the values the code has (see `test_limits_table_matches_the_code`).
"""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from frazil.settings import Settings
from tests.conftest import TEST_SANDBOX, make_server

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PAGES = ["concepts.md", "handlers.md", "moving.md", "sdk.md", "data.md", "limits.md", "production.md"]
VENV_BIN = Path(sys.executable).parent
BLOCK_TIMEOUT_S = 120

FENCE = re.compile(r"^```(\w+) runnable\s*$")
RUNNERS = {
    "sh": ["bash", "-euo", "pipefail", "-c"],
    "python": [sys.executable, "-c"],
    "js": ["node", "-e"],
}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str

    def __str__(self) -> str:
        return f"docs/{self.page}:{self.line} ({self.lang})"


def runnable_blocks(page: str) -> list[Block]:
    blocks, current, start, lang = [], None, 0, ""
    for number, line in enumerate((DOCS / page).read_text().splitlines(), 1):
        if current is None:
            match = FENCE.match(line)
            if match:
                assert match.group(1) in RUNNERS, f"docs/{page}:{number}: no runner for {match.group(1)!r}"
                current, start, lang = [], number, match.group(1)
        elif line.startswith("```"):
            blocks.append(Block(page, start, lang, "\n".join(current) + "\n"))
            current = None
        else:
            current.append(line)
    assert current is None, f"docs/{page}:{start}: the block is never closed"
    return blocks


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("docs") / "data").start()
    yield srv
    srv.close()


def block_env(server) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAZIL_", "PYTHON", "NODE_"))}
    return {**env, "FRAZIL_URL": server.url, "FRAZIL_TOKEN": server.admin_key, "FRAZIL_DATA_DIR": str(server.data_dir),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(REPO / "frazil" / "runtimes" / "python"),
            "NODE_PATH": str(REPO / "frazil" / "runtimes" / "node"),
            # a block that starts a server of its own runs it in the sandbox the tests use
            Settings.env_name("sandbox"): TEST_SANDBOX}


def run_block(block: Block, cwd: Path, env: dict) -> None:
    """Run one block; AssertionError with its code and output unless it exits 0."""
    done = subprocess.run([*RUNNERS[block.lang], block.code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S)
    assert done.returncode == 0, (f"{block} exited {done.returncode}\n--- code\n{block.code}--- stdout\n"
                                  f"{done.stdout}--- stderr\n{done.stderr}")


@pytest.mark.parametrize("page", PAGES)
def test_runnable_blocks_run(page, docs_server, tmp_path):
    """Each runnable block of the page exits 0, in order, in one working directory."""
    blocks = runnable_blocks(page)
    env = block_env(docs_server)
    for block in blocks:
        run_block(block, tmp_path, env)


@pytest.mark.parametrize("lang, code", [("sh", "true\nfalse\necho after\n"), ("python", "assert 1 == 2\n"),
                                        ("js", "process.exitCode = 3;\n")])
def test_a_failing_block_fails(lang, code, tmp_path):
    """A block fails at its first failing command (sh runs with -e and pipefail)."""
    with pytest.raises(AssertionError, match="exited"):
        run_block(Block("x.md", 1, lang, code), tmp_path, dict(os.environ))


def test_blocks_are_found():
    """The pages that teach by example have runnable blocks (a broken fence would hide them)."""
    for page in ("concepts.md", "handlers.md", "sdk.md", "data.md", "production.md"):
        assert runnable_blocks(page), page


def test_readme_links_every_page_and_links_resolve():
    readme = (REPO / "README.md").read_text()
    for page in [*PAGES, "cli.md"]:
        assert f"(docs/{page})" in readme, page
    for path in [REPO / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name} links {target}, which does not exist"


# --- docs/limits.md -----------------------------------------------------------------------

LIMIT_ROW = re.compile(r"^\| (?P<what>[^|]+) \| (?P<value>[^|]+) \| (?P<unit>[^|]*) \| `(?P<source>[^`]+)`")


def code_value(source: str):
    """The value `source` names: a `FRAZIL_…` variable (the setting's default), `Settings.a[128].b` (a
    fixed setting or a property, on default Settings) or `frazil.module.NAME[.attr]`."""
    if source.startswith("FRAZIL_"):
        field = source[len("FRAZIL_"):].lower()
        assert Settings.env_name(field) == source, source
        return Settings.model_fields[field].default
    if source.startswith("Settings."):
        value, rest = Settings(), source[len("Settings"):]
    else:
        parts = source.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                value = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            rest = "".join("." + p for p in parts[cut:])
            break
        else:
            raise AssertionError(f"{source}: no module")
    for attr, index in re.findall(r"\.(\w+)|\[(\d+)\]", rest):
        value = getattr(value, attr) if attr else value[int(index)]
    return value


def test_limits_table_matches_the_code():
    """Every row of docs/limits.md whose last column names where the number lives states that number."""
    rows = [m for m in map(LIMIT_ROW.match, (DOCS / "limits.md").read_text().splitlines()) if m]
    assert len(rows) >= 30, "the limits table went missing"
    for row in rows:
        stated = float(row["value"].split()[0].replace(",", ""))
        actual = code_value(row["source"])
        assert float(actual) == stated, f"limits.md says {row['what'].strip()} is {stated}; {row['source']} is {actual}"


def test_every_numeric_setting_is_in_the_limits_table():
    """A new number in Settings (read from the environment) needs its row in docs/limits.md."""
    text = (DOCS / "limits.md").read_text()
    for name, field in Settings.env_fields().items():
        if isinstance(field.default, (int, float)) and not isinstance(field.default, bool):
            assert f"`{Settings.env_name(name)}`" in text, Settings.env_name(name)
