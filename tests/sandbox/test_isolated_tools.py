"""The host's ImageMagick, Ghostscript and fonts work inside an instance."""
from __future__ import annotations

import shutil

import pytest

from tests.sandbox.conftest import EXEC_AND_PREBUILT

pytestmark = EXEC_AND_PREBUILT


@pytest.mark.skipif(not shutil.which("convert", path="/usr/bin"), reason="ImageMagick is not installed on this host")
async def test_imagemagick_convert_runs_inside(instance):
    client = await instance()
    result = await client.run('''
import subprocess
p = subprocess.run(["convert", "-size", "20x10", "xc:red", "/tmp/red.png"], capture_output=True, text=True, timeout=30)
q = subprocess.run(["convert", "/tmp/red.png", "-format", "%w %h %[pixel:p{0,0}]", "info:"],
                   capture_output=True, text=True, timeout=30)
result = [p.returncode, p.stderr, q.stdout]
''', timeout=60)
    assert result[0] == 0, result[1]
    assert result[2].startswith("20 10 ") and ("red" in result[2] or "255,0,0" in result[2]), result


@pytest.mark.skipif(not shutil.which("gs", path="/usr/bin"), reason="Ghostscript is not installed on this host")
async def test_ghostscript_renders_with_fonts_inside(instance):
    client = await instance()
    result = await client.run('''
import subprocess
ps = b"/Helvetica findfont 24 scalefont setfont 10 10 moveto (frazil) show showpage\\n"
p = subprocess.run(["gs", "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=png16m", "-r20",
                    "-sOutputFile=/tmp/page.png", "-"], input=ps, capture_output=True, timeout=60)
result = [p.returncode, p.stderr.decode(errors="replace"), open("/tmp/page.png", "rb").read(8).hex()]
''', timeout=90)
    assert result[0] == 0, result[1]
    assert result[2] == "89504e470d0a1a0a"  # a PNG


@pytest.mark.skipif(not shutil.which("fc-list", path="/usr/bin"), reason="fontconfig tools are not installed")
async def test_fonts_are_visible_inside(instance):
    client = await instance()
    result = await client.run('''
import subprocess
result = subprocess.run(["fc-list"], capture_output=True, text=True, timeout=60).stdout.count("\\n")
''', timeout=90)
    assert result > 0
