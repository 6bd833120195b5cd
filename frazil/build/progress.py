"""What an installer is doing, read from its output as it streams into the build log.

`InstallerProgress.line` is the log callable handed to the installer's run: every line goes
on to the build log unchanged, and the lines pip writes as it works (`Collecting foo`,
`Downloading foo-1.0.tar.gz`, `Building wheel for foo`) keep `doing()` up to date, so a
build that runs out of time names the package it was on. A package pip will compile from
source (it got an sdist: no wheel fits this platform) is said in the log as soon as pip
downloads it, before the long compile starts. npm says too little at --loglevel=warn to
parse: for it, `doing()` is its last line of output, and `npm_ci_retry_reason()` says
whether a failed `npm ci` is worth one `npm install` (frazil.build.layers retries it).
"""
from __future__ import annotations

import re
from typing import Callable

SDIST_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar.xz", ".tar")
LAST_LINE_CHARS = 200

_COLLECTING = re.compile(r"^\s*(?:Collecting|Processing)\s+(\S+)")
_FETCHING = re.compile(r"^\s*(?:Downloading|Processing|Using cached)\s+(\S+)")
_BUILDING = re.compile(r"^\s*(?:Building wheel for|Running setup\.py install for)\s+(\S+)")
_INSTALLING = re.compile(r"^\s*Installing collected packages:\s*(.+)$")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")

# `npm ci` failures that `npm install` from package.json can get past: a lockfile that does
# not match package.json, or one whose resolved URLs name a registry the build cannot reach.
NPM_CI_RETRY_REASONS = (
    ("can only install packages when your package.json and package-lock.json", "the lockfile does not match package.json"),
    ("code EUSAGE", "the lockfile does not match package.json"),
    ("ENOTFOUND", "the lockfile names a registry that cannot be reached"),
    ("EAI_AGAIN", "the lockfile names a registry that cannot be reached"),
    ("ECONNREFUSED", "the lockfile names a registry that cannot be reached"),
    ("ECONNRESET", "the lockfile names a registry that cannot be reached"),
    ("ETIMEDOUT", "the lockfile names a registry that cannot be reached"),
    ("E403", "the lockfile names a registry the build may not reach"),
)


class InstallerProgress:
    def __init__(self, language: str, log: Callable[[str], None]):
        self._language = language
        self._log = log
        self._package: str | None = None  # pip: the package it is on
        self._doing: str | None = None
        self._told: set[str] = set()  # packages already announced as built from source
        self._npm_retry: str | None = None  # the first NPM_CI_RETRY_REASONS npm's output showed

    def line(self, text: str) -> None:
        self._log(text)
        if self._language != "python":
            if text.strip():
                self._doing = f"npm's last words were: {text.strip()[:LAST_LINE_CHARS]}"
            if self._npm_retry is None:
                self._npm_retry = next((why for needle, why in NPM_CI_RETRY_REASONS if needle in text), None)
            return
        if m := _COLLECTING.match(text):
            self._package = _package_name(m.group(1))
            self._doing = f"pip was fetching {self._package}"
        if (m := _FETCHING.match(text)) and m.group(1).lower().endswith(SDIST_SUFFIXES):
            self._source(self._package or _package_name(m.group(1).rsplit("/", 1)[-1]), m.group(1))
        elif m := _BUILDING.match(text):
            self._package = _package_name(m.group(1))
            self._doing = f"pip was building {self._package} from source"
        elif m := _INSTALLING.match(text):
            self._doing = f"pip was installing {m.group(1).strip()[:LAST_LINE_CHARS]}"

    def _source(self, package: str, file: str) -> None:
        self._doing = f"pip was building {package} from source"
        if package in self._told:
            return
        self._told.add(package)
        self._log(f"frazil: {package} has no wheel for this platform ({file.rsplit('/', 1)[-1]}): pip will "
                  "compile it from source, which can take minutes and needs a compiler for C code")

    def npm_ci_retry_reason(self) -> str | None:
        """Why a failed `npm ci` is worth one `npm install` (from what it wrote); None if it is not."""
        return self._npm_retry

    def doing(self) -> str | None:
        """What the installer was on, for an error message; None when it said nothing yet."""
        return self._doing


def _package_name(spec: str) -> str:
    m = _NAME.match(spec.rsplit("/", 1)[-1])
    name = m.group(1) if m else spec
    for suffix in SDIST_SUFFIXES + (".whl",):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            name = name.rsplit("-", 1)[0] if "-" in name else name  # foo-1.0 -> foo
    return name
