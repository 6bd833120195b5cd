"""A layer's top-level import names come from its distributions' metadata (top_level.txt, else
RECORD), on layers installed for real with `pip install --target` from wheels the test writes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from frazil.sandbox.helper.toplevel import top_level_names
from frazil.testing.wheels import make_wheel


def install(layer: Path, tmp_path: Path, *wheels: tuple[str, bytes]) -> Path:
    paths = []
    for filename, data in wheels:
        path = tmp_path / filename
        path.write_bytes(data)
        paths.append(str(path))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--disable-pip-version-check", "--target", str(layer), *paths], check=True, timeout=120)
    return layer


def test_names_from_record_when_there_is_no_top_level_txt(tmp_path):
    # As a meson-built wheel (numpy, pandas): a package, a lone module, a folder of vendored
    # libraries that is not importable, and a script installed outside the layer.
    wheel = make_wheel("meshy", files={
        "meshy/__init__.py": "", "meshy/core.py": "", "meshy_single.py": "X = 1\n",
        "meshy.libs/libfoo.so": b"\0", "meshy-1.0.data/scripts/meshy-tool": "#!/bin/sh\n",
    })
    layer = install(tmp_path / "layer", tmp_path, ("meshy-1.0-py3-none-any.whl", wheel))
    assert not list(layer.glob("*.dist-info/top_level.txt"))
    assert top_level_names(layer) == ["meshy", "meshy_single"]


def test_names_from_top_level_txt_and_several_distributions(tmp_path):
    pil = make_wheel("pillowish", files={"PIL/__init__.py": "", "PIL/Image.py": ""}, top_level=["PIL"])
    plain = make_wheel("plainpkg")
    layer = install(tmp_path / "layer", tmp_path, ("pillowish-1.0-py3-none-any.whl", pil),
                    ("plainpkg-1.0-py3-none-any.whl", plain))
    assert top_level_names(layer) == ["PIL", "plainpkg"]


def test_a_name_no_file_backs_and_unimportable_names_are_left_out(tmp_path):
    # A stale top_level.txt (a name the distribution no longer installs), a dashed name and
    # a blank line: only what an import could find is kept.
    info = tmp_path / "layer" / "odd-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "top_level.txt").write_text("odd\ngone\nnot-a-module\n\n")
    (tmp_path / "layer" / "odd").mkdir()
    (tmp_path / "layer" / "odd" / "__init__.py").write_text("")
    assert top_level_names(tmp_path / "layer") == ["odd"]


def test_an_extension_module_at_the_top_counts(tmp_path):
    info = tmp_path / "layer" / "speedy-1.0.dist-info"
    info.mkdir(parents=True)
    so = "_speedy.cpython-311-x86_64-linux-gnu.so"
    (info / "RECORD").write_text(f"{so},,\nspeedy-1.0.dist-info/RECORD,,\n")
    (tmp_path / "layer" / so).write_bytes(b"\0")
    assert top_level_names(tmp_path / "layer") == ["_speedy"]


def test_a_folder_without_distributions_has_no_names(tmp_path):
    (tmp_path / "layer" / "loose").mkdir(parents=True)
    (tmp_path / "layer" / "loose" / "__init__.py").write_text("")
    assert top_level_names(tmp_path / "layer") == []
