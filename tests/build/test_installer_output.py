"""Reading installers' output: pip's progress (what it is on, a compile from source said early)
and the `npm ci` failures worth one `npm install`."""
import re
from pathlib import Path

from frazil.build.detect import NODE_CANDIDATE_MODULES, PYTHON_CANDIDATE_MODULES
from frazil.build.progress import InstallerProgress

RUNTIMES = Path(__file__).resolve().parents[2] / "frazil" / "runtimes"


def feed(language, lines):
    logged = []
    progress = InstallerProgress(language, logged.append)
    for line in lines:
        progress.line(line)
    return progress, logged


class TestPipProgress:
    def test_an_sdist_is_announced_when_downloaded(self):
        """The compile from source is said right after the download line, once, naming the package."""
        progress, logged = feed("python", [
            "Collecting tinywheel==1.0 (from -r requirements.txt (line 1))",
            "  Downloading tinywheel-1.0-py3-none-any.whl (2 kB)",
            "Collecting slowpkg>=2 (from -r requirements.txt (line 2))",
            "  Downloading slowpkg-2.1.tar.gz (40 kB)",
            "  Installing build dependencies: started",
        ])
        notes = [line for line in logged if line.startswith("frazil:")]
        assert len(notes) == 1 and "slowpkg" in notes[0] and "from source" in notes[0]
        assert logged.index(notes[0]) == 4  # right after its download line, before the build starts
        assert progress.doing() == "pip was building slowpkg from source"

    def test_local_sdist_and_wheel_build(self):
        progress, logged = feed("python", [
            "Processing ./deps/localpkg-0.3.tar.gz",
            "Building wheels for collected packages: localpkg",
            "  Building wheel for localpkg (pyproject.toml): started",
        ])
        assert any("localpkg has no wheel" in line for line in logged)
        assert progress.doing() == "pip was building localpkg from source"

    def test_wheels_only_say_nothing_extra(self):
        progress, logged = feed("python", ["Collecting a", "  Downloading a-1-py3-none-any.whl (1 kB)",
                                           "Installing collected packages: a"])
        assert not [line for line in logged if line.startswith("frazil:")]
        assert progress.doing() == "pip was installing a"

    def test_npm_last_line(self):
        progress, _ = feed("node", ["npm warn deprecated x@1", "", "> native@1.0.0 install"])
        assert progress.doing() == "npm's last words were: > native@1.0.0 install"


class TestNpmCiRetry:
    def test_lockfile_out_of_sync(self):
        """The reason is found anywhere in the output (npm follows it with its whole usage text)."""
        progress, _ = feed("node", ["npm error code EUSAGE", "npm error",
                                    "npm error `npm ci` can only install packages when your package.json and "
                                    "package-lock.json or npm-shrinkwrap.json are in sync."] + ["npm error  --x"] * 80)
        assert progress.npm_ci_retry_reason() == "the lockfile does not match package.json"

    def test_unreachable_registry(self):
        progress, _ = feed("node", ["npm error code E403", "npm error 403 Forbidden - GET "
                                    "https://registry.npm.taobao.org/is-number/-/is-number-7.0.0.tgz"])
        assert progress.npm_ci_retry_reason() == "the lockfile names a registry the build may not reach"

    def test_other_failures_are_not_retried(self):
        progress, _ = feed("node", ["npm error code ETARGET", "npm error notarget No matching version"])
        assert progress.npm_ci_retry_reason() is None


def test_candidate_modules_agree_with_the_runtimes():
    """The deploy checks the same modules the runtimes' `choose` looks in, in the same order."""
    python = (RUNTIMES / "python" / "handlers.py").read_text()
    node = (RUNTIMES / "node" / "handlers.js").read_text()
    py_list = re.search(r"^CANDIDATE_MODULES = \((.*)\)$", python, re.M).group(1)
    js_list = re.search(r"^const CANDIDATE_MODULES = \[(.*)\];$", node, re.M).group(1)
    assert tuple(re.findall(r"\"([^\"]+)\"", py_list)) == PYTHON_CANDIDATE_MODULES
    assert tuple(re.findall(r"'([^']+)'", js_list)) == NODE_CANDIDATE_MODULES
