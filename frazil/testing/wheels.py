"""Wheels made in memory, as the wheel format describes (a zip with a `.dist-info` folder and a
RECORD of hashes): offline, deterministic and fast, unlike `pip wheel`, which needs setuptools'
`wheel` support or an index to fetch it from. For tests and benchmarks that deploy or install a
package without reaching a registry."""
from __future__ import annotations

import base64
import hashlib
import io
import zipfile


def make_wheel(name: str = "tinypkg", version: str = "1.0", body: str = "VALUE = 'tiny'\n", *,
               files: dict[str, str | bytes] | None = None, top_level: list[str] | None = None) -> bytes:
    """Bytes of a pure-Python wheel of distribution `name`: package `name` whose __init__.py is
    `body`, or exactly `files` (paths inside the wheel) when given; with a top_level.txt listing
    `top_level` when given (setuptools writes one; other build backends do not)."""
    info = f"{name}-{version}.dist-info"
    content = {path: data.encode() if isinstance(data, str) else data
               for path, data in (files if files is not None else {f"{name}/__init__.py": body}).items()}
    content[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    content[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: frazil-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if top_level is not None:
        content[f"{info}/top_level.txt"] = "".join(f"{n}\n" for n in top_level).encode()
    record = "".join(f"{path},sha256={_urlsafe_digest(data)},{len(data)}\n" for path, data in content.items())
    content[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in content.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
