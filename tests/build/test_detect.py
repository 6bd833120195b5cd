"""Runtime detection and the handler-file check."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from frazil.build.detect import (check_candidates, check_handler, detect_runtime, module_files, package_main,
                                 parse_handler)
from frazil.errors import BadBundle, BadRequest


def project(root: Path, *files: str) -> Path:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    return root


class TestDetectRuntime:
    @pytest.mark.parametrize("files,expected", [
        (["index.py"], "python3.11"),
        (["index.py", "requirements.txt"], "python3.11"),
        (["index.js"], "nodejs20"),
        (["package.json"], "nodejs20"),
        (["package.json", "lib/x.js"], "nodejs20"),
        (["requirements.txt", "app.py"], "python3.11"),
        (["index.py", "package.json"], "python3.11"),  # the handler module decides first
        (["index.js", "requirements.txt"], "nodejs20"),
        (["index.py", "index.js"], None),  # ambiguous: the user must say
        (["README.md"], None),
        ([], None),
    ])
    def test_default_handler(self, tmp_path, files, expected):
        """index.py -> Python, index.js / package.json -> Node."""
        assert detect_runtime(project(tmp_path, *files)) == expected

    def test_custom_handler(self, tmp_path):
        """The handler's module file decides for a non-default handler."""
        assert detect_runtime(project(tmp_path, "src/app.js"), "src/app.main") == "nodejs20"
        assert detect_runtime(project(tmp_path / "p", "pkg/mod.py"), "pkg.mod.main") == "python3.11"

    @pytest.mark.parametrize("files,expected", [
        (["lambda_function.py"], "python3.11"),
        (["__main__.py"], "python3.11"),
        (["index.mjs"], "nodejs20"),
        (["app.js", "lib/util.py"], "nodejs20"),
        (["app.py", "app.js"], None),  # ambiguous: the user must say
        (["index.py", "app.js"], "python3.11"),  # index.py first, as with the default handler
    ])
    def test_no_handler_given(self, tmp_path, files, expected):
        """No handler given: the modules a handler is looked for in decide after index.*."""
        assert detect_runtime(project(tmp_path, *files), None) == expected

    @pytest.mark.parametrize("main,expected", [
        ("./lib/action.js", "lib/action"), ("server.mjs", "server"), ("lib/", "lib"),
        ("../outside.js", None), ("/etc/passwd", None), (3, None),
    ])
    def test_package_main(self, tmp_path, main, expected):
        """package.json's "main" (OpenWhisk, Google Cloud Functions) is a module inside the project, or nothing."""
        (tmp_path / "package.json").write_text(json.dumps({"main": main}))
        assert package_main(tmp_path) == expected

    def test_no_candidate_module_is_a_bad_bundle(self, tmp_path):
        check_candidates(project(tmp_path / "ok", "handler.py"), "python3.11")
        with pytest.raises(BadBundle, match="lambda_function.py.*README.md"):
            check_candidates(project(tmp_path / "no", "README.md", "lib.py"), "python3.11")

    def test_a_folder_named_index_py_is_not_a_file(self, tmp_path):
        (tmp_path / "index.py").mkdir()
        assert detect_runtime(tmp_path) is None


class TestCheckHandler:
    @pytest.mark.parametrize("runtime,handler,file", [
        ("python3.11", "index.main", "index.py"),
        ("python3.11", "src/index.main", "src/index.py"),
        ("python3.11", "pkg.mod.main", "pkg/mod.py"),
        ("python3.11", "pkg.main", "pkg/__init__.py"),
        ("nodejs20", "index.main", "index.js"),
        ("nodejs20", "src/index.main", "src/index.js"),
        ("nodejs20", "lib.main", "lib/index.js"),
        ("nodejs20", "index.main", "index.cjs"),
        ("nodejs20", "handlers/http.get", "handlers/http.js"),
    ])
    def test_found(self, tmp_path, runtime, handler, file):
        """The module file is found where the runtime's loop will look for it."""
        project(tmp_path, file)
        assert check_handler(tmp_path, runtime, handler) == tmp_path / file

    @pytest.mark.parametrize("runtime,handler,needle", [
        ("python3.11", "index.main", "index.py"),
        ("python3.11", "pkg.mod.main", "pkg/mod.py"),
        ("nodejs20", "index.main", "index.js"),
        ("nodejs20", "src/index.main", "src/index.js"),
    ])
    def test_missing(self, tmp_path, runtime, handler, needle):
        """A missing module file is a 400 that names the file and shows what is there."""
        project(tmp_path, "other.txt", "lib/a.js")
        with pytest.raises(BadBundle) as info:
            check_handler(tmp_path, runtime, handler)
        assert info.value.status == 400
        assert needle in info.value.message and repr(handler) in info.value.message
        assert "other.txt" in info.value.message and "lib/" in info.value.message

    def test_symlink_out_of_tree_does_not_count(self, tmp_path):
        code = tmp_path / "code"
        code.mkdir()
        (tmp_path / "outside.py").write_text("")
        os.symlink("../outside.py", code / "index.py")
        with pytest.raises(BadBundle):
            check_handler(code, "python3.11", "index.main")

    @pytest.mark.parametrize("handler", ["main", "index.", ".main", "../x.main", "/abs/x.main", "a//b.main",
                                         "a b.main", "index.ma-in", "", "x" * 300 + ".main", "./index.main"])
    def test_malformed_handler(self, tmp_path, handler):
        with pytest.raises(BadRequest):
            check_handler(tmp_path, "python3.11", handler)

    def test_parse_and_candidates(self):
        assert parse_handler("src/index.main") == ("src/index", "main")
        assert module_files("python3.11", "a.b.c") == ("a/b.py", "a/b/__init__.py")
        assert module_files("nodejs20", "a/b.c") == ("a/b.js", "a/b/index.js", "a/b.cjs", "a/b.mjs")
        with pytest.raises(BadRequest):
            module_files("ruby", "index.main")
