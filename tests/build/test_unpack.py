"""Safe bundle unpacking: every hostile archive is refused, every honest one unpacks."""
from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from frazil.build.unpack import UnpackLimits, detect_archive, unpack_bundle
from frazil.errors import BadBundle

# --- archive factories --------------------------------------------------------------------


def make_zip(entries: dict[str, bytes | str], *, symlinks: dict[str, str] | None = None,
             modes: dict[str, int] | None = None, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.create_system = 3
            mode = (modes or {}).get(name, 0o40755 if name.endswith("/") else 0o100644)
            info.external_attr = mode << 16
            zf.writestr(info, content)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def tar_member(name: str, content: bytes = b"", *, type=tarfile.REGTYPE, linkname: str = "",
               mode: int = 0o644, size: int | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = type
    info.mode = mode
    info.linkname = linkname
    info.mtime = 1_700_000_000
    if type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(content) if size is None else size
        return info, content
    return info, None


def make_tar(members: list, *, gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tf:
        for info, content in members:
            tf.addfile(info, io.BytesIO(content) if content is not None else None)
    return buf.getvalue()


def files_tar(entries: dict[str, bytes | str], gz: bool = True) -> bytes:
    return make_tar([tar_member(n, c.encode() if isinstance(c, str) else c) for n, c in entries.items()], gz=gz)


def tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_text()
    return out


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "out" / "code"


def assert_refused(data: bytes, dest: Path, *needles: str, limits: UnpackLimits = UnpackLimits()) -> str:
    with pytest.raises(BadBundle) as info:
        unpack_bundle(data, dest, limits)
    message = info.value.message
    for needle in needles:
        assert needle in message, message
    # Nothing is left behind: no destination, no staging directory.
    assert not dest.exists()
    if dest.parent.exists():
        assert list(dest.parent.iterdir()) == [], list(dest.parent.iterdir())
    return message


# --- good bundles ---------------------------------------------------------------------------


class TestGoodBundles:
    def test_zip_with_nested_folders(self, dest):
        """A zip unpacks with its folders, and the report counts files and bytes."""
        data = make_zip({"index.js": "exports.main = () => 1", "lib/x.js": "x", "models/user.js": "u",
                         "empty/": ""})
        report = unpack_bundle(data, dest)
        assert tree(dest) == {"index.js": "exports.main = () => 1", "lib/x.js": "x", "models/user.js": "u"}
        assert (dest / "empty").is_dir()
        assert report.files == 3 and report.total_bytes == 24 and report.archive == "zip"
        assert report.stripped_prefix is None

    def test_tar_gz_and_plain_tar(self, tmp_path):
        """tar.gz and plain tar both unpack; './' prefixes are normalised."""
        for gz in (True, False):
            dest = tmp_path / f"code-{gz}"
            report = unpack_bundle(files_tar({"./index.py": "def main(e, c): pass", "./pkg/mod.py": "X = 1"},
                                             gz=gz), dest)
            assert tree(dest) == {"index.py": "def main(e, c): pass", "pkg/mod.py": "X = 1"}
            assert report.archive == ("tar.gz" if gz else "tar")

    def test_single_top_folder_is_stripped(self, dest):
        """Zipping a folder puts everything under it: that folder is removed."""
        data = make_zip({"myfunc/": "", "myfunc/index.py": "a", "myfunc/lib/util.py": "b"})
        report = unpack_bundle(data, dest)
        assert tree(dest) == {"index.py": "a", "lib/util.py": "b"}
        assert report.stripped_prefix == "myfunc"

    def test_macosx_junk_is_skipped_before_stripping(self, dest):
        """macOS's __MACOSX folder does not defeat the strip and is not unpacked."""
        data = make_zip({"f/index.js": "a", "__MACOSX/f/._index.js": "junk"})
        unpack_bundle(data, dest)
        assert tree(dest) == {"index.js": "a"}

    def test_lone_folder_without_project_is_kept(self, dest):
        """A lone folder that is not a project (no index/package files) stays."""
        unpack_bundle(make_zip({"data/a.txt": "a"}), dest)
        assert tree(dest) == {"data/a.txt": "a"}

    def test_handler_decides_strip(self, tmp_path):
        """With handler 'src/index.main' a lone src/ folder is the project's own layout: kept."""
        data = make_zip({"src/index.js": "a"})
        unpack_bundle(data, tmp_path / "a", handler="src/index.main")
        assert tree(tmp_path / "a") == {"src/index.js": "a"}
        unpack_bundle(data, tmp_path / "b", handler="index.main")
        assert tree(tmp_path / "b") == {"index.js": "a"}

    def test_permissions_are_regular(self, dest):
        """setuid/world-writable bits are dropped; executables stay executable."""
        data = make_zip({"run.sh": "#!/bin/sh", "index.py": "x", "w.txt": "w"},
                        modes={"run.sh": 0o104777, "index.py": 0o100666, "w.txt": 0o100600})
        unpack_bundle(data, dest)
        assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
        assert stat.S_IMODE((dest / "index.py").stat().st_mode) == 0o644
        assert stat.S_IMODE((dest / "w.txt").stat().st_mode) == 0o644
        assert stat.S_IMODE(dest.stat().st_mode) == 0o755
        tar = make_tar([tar_member("index.py", b"x", mode=0o6777), tar_member("d", type=tarfile.DIRTYPE, mode=0o1777)])
        unpack_bundle(tar, dest.parent / "t")
        assert stat.S_IMODE((dest.parent / "t" / "index.py").stat().st_mode) == 0o755
        assert stat.S_IMODE((dest.parent / "t" / "d").stat().st_mode) == 0o755

    def test_in_tree_symlinks_are_kept(self, dest):
        """Relative symlinks that stay inside the bundle are allowed (zip and tar)."""
        data = make_zip({"index.js": "a", "lib/real.js": "r"}, symlinks={"lib/alias.js": "real.js",
                                                                          "top.js": "lib/../index.js"})
        report = unpack_bundle(data, dest)
        assert (dest / "lib/alias.js").read_text() == "r" and (dest / "top.js").read_text() == "a"
        assert report.symlinks == 2
        tar = make_tar([tar_member("index.py", b"x"), tar_member("sub/link.py", type=tarfile.SYMTYPE,
                                                                  linkname="../index.py")])
        unpack_bundle(tar, dest.parent / "t")
        assert (dest.parent / "t/sub/link.py").read_text() == "x"

    def test_symlinks_checked_after_strip(self, dest):
        """A link to the stripped folder's own name would leave the final tree: refused."""
        data = make_zip({"p/index.js": "a"}, symlinks={"p/x.js": "../p/index.js"})
        assert_refused(data, dest, "'p/x.js'", "leaves the bundle")

    def test_tar_hardlink_in_tree_becomes_copy(self, dest):
        """A tar hard link to an earlier file is materialised as an independent copy."""
        tar = make_tar([tar_member("index.py", b"hello"), tar_member("copy.py", type=tarfile.LNKTYPE,
                                                                      linkname="index.py")])
        report = unpack_bundle(tar, dest)
        assert (dest / "copy.py").read_text() == "hello"
        assert (dest / "copy.py").stat().st_ino != (dest / "index.py").stat().st_ino
        assert report.files == 2 and report.total_bytes == 10

    def test_stored_zip_and_empty_dirs(self, dest):
        """Uncompressed (stored) zips work too."""
        unpack_bundle(make_zip({"index.py": "x"}, compression=zipfile.ZIP_STORED), dest)
        assert tree(dest) == {"index.py": "x"}

    def test_dest_must_not_exist(self, dest):
        """An existing destination is a programmer error, and is left untouched."""
        dest.mkdir(parents=True)
        (dest / "keep").write_text("k")
        with pytest.raises(FileExistsError):
            unpack_bundle(make_zip({"index.py": "x"}), dest)
        assert tree(dest) == {"keep": "k"}

    def test_unicode_names(self, dest):
        """Non-ASCII names (UTF-8 flagged in zip) are fine."""
        unpack_bundle(make_zip({"index.py": "x", "données/é.txt": "e"}), dest)
        assert (dest / "données" / "é.txt").read_text() == "e"


# --- archive kind -----------------------------------------------------------------------------


class TestArchiveKind:
    def test_detect_by_magic(self):
        """Magic bytes decide, not names."""
        assert detect_archive(make_zip({"a": "b"})) == "zip"
        assert detect_archive(files_tar({"a": "b"})) == "tar.gz"
        assert detect_archive(files_tar({"a": "b"}, gz=False)) == "tar"
        assert detect_archive(b"hello world" * 100) is None

    @pytest.mark.parametrize("data", [b"", b"not an archive", b"\x7fELF" + b"\0" * 600, b"Rar!\x1a\x07\x00"])
    def test_neither_zip_nor_tar(self, dest, data):
        """Anything else is refused with the one clear message."""
        assert_refused(data, dest, "the bundle is neither a zip nor a tar.gz archive")


# --- hostile names -----------------------------------------------------------------------------


class TestHostileNames:
    @pytest.mark.parametrize("name,needle", [
        ("/etc/passwd", "absolute"),
        ("../evil.py", "'..'"),
        ("a/../../evil.py", "'..'"),
        ("a/b/../../../evil", "'..'"),
        ("C:/windows/evil", "drive-letter"),
        ("a\\..\\evil", "backslash"),
        ("bad\x01name", "control character"),
        ("bad\nname", "control character"),
        ("x" * 300, "longer than 255 bytes"),
        ("/".join(["d"] * 70) + "/f", "deeper than 64"),
        ("/".join(["d" * 200] * 6), "longer than 1024 bytes"),
    ])
    def test_zip_names(self, dest, name, needle):
        """zip-slip and friends are refused, naming the entry."""
        data = make_zip({"index.py": "x", name: "pwned"})
        message = assert_refused(data, dest, needle)
        assert "entry" in message

    @pytest.mark.parametrize("name,needle", [
        ("/abs/evil", "absolute"),
        ("../evil", "'..'"),
        ("ok/../../evil", "'..'"),
        ("bad\x1bname", "control character"),
        ("a\\b", "backslash"),
    ])
    def test_tar_names(self, dest, name, needle):
        """The same rules hold for tar members (pax headers carry any name)."""
        data = make_tar([tar_member("index.py", b"x"), tar_member(name, b"pwned")])
        assert_refused(data, dest, needle)

    def test_nul_in_zip_name(self, dest):
        """zipfile truncates names at NUL; whatever remains must still be safe."""
        data = make_zip({"index.py": "x"})
        # Patch a NUL into the stored name of a second, crafted archive.
        crafted = make_zip({"index.py": "x", "abcXdef": "y"}).replace(b"abcXdef", b"../\x00def")
        with pytest.raises(BadBundle):
            unpack_bundle(crafted, dest)
        assert not dest.exists()
        unpack_bundle(data, dest)

    def test_duplicate_entries(self, dest):
        """The same path twice is refused (zip and tar), './a' and 'a' count as the same."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("index.py", "one")
            with pytest.warns(UserWarning):
                zf.writestr("index.py", "two")
        assert_refused(buf.getvalue(), dest, "'index.py' appears more than once")
        tar = make_tar([tar_member("./index.py", b"1"), tar_member("index.py", b"2")])
        assert_refused(tar, dest, "'index.py' appears more than once")

    def test_file_used_as_directory(self, dest):
        """A file cannot also be a folder."""
        tar = make_tar([tar_member("index.py", b"1"), tar_member("index.py/x", b"2")])
        assert_refused(tar, dest, "'index.py/x' is inside 'index.py', which is a file")


# --- links and special entries ------------------------------------------------------------------


class TestLinksAndSpecialEntries:
    @pytest.mark.parametrize("target", ["/etc/passwd", "../../etc/passwd", "..", "a/../../..",
                                        "sub/../../x"])
    def test_zip_symlink_leaving_tree(self, dest, target):
        """A zip symlink entry whose target leaves the tree is refused."""
        data = make_zip({"index.py": "x"}, symlinks={"link": target})
        assert_refused(data, dest, "'link'")

    @pytest.mark.parametrize("target", ["/etc/passwd", "../outside", "a/../../b"])
    def test_tar_symlink_leaving_tree(self, dest, target):
        data = make_tar([tar_member("index.py", b"x"),
                         tar_member("link", type=tarfile.SYMTYPE, linkname=target)])
        assert_refused(data, dest, "'link'")

    def test_write_through_symlink_is_refused(self, dest):
        """A symlinked folder followed by a file 'inside' it never writes through the link."""
        data = make_tar([tar_member("index.py", b"x"),
                         tar_member("sub", type=tarfile.SYMTYPE, linkname="."),
                         tar_member("sub/evil.py", b"e")])
        assert_refused(data, dest, "inside 'sub', which is a link")
        outside = dest.parent.parent / "escape"
        data = make_tar([tar_member("index.py", b"x"),
                         tar_member("esc", type=tarfile.SYMTYPE, linkname="../escape"),
                         tar_member("esc/evil.py", b"e")])
        assert_refused(data, dest, "'esc'")
        assert not outside.exists()

    def test_symlink_chain_resolved_for_real(self, dest):
        """Links that are each fine lexically but escape through each other are caught."""
        # deep -> a/b ; up -> deep/../.. (lexically 'up' points at the root's parent... refused);
        # chain: x -> y/z where y -> . makes x really point at z: fine and allowed.
        data = make_zip({"index.py": "i", "z": "zz"}, symlinks={"y": ".", "x": "y/z"})
        unpack_bundle(data, dest)
        assert (dest / "x").read_text() == "zz"

    @pytest.mark.parametrize("linkname", ["/etc/passwd", "../x", "missing.py"])
    def test_tar_hardlink_not_in_tree(self, dest, linkname):
        """Hard links may only name an earlier regular file of the same archive."""
        data = make_tar([tar_member("index.py", b"x"),
                         tar_member("h", type=tarfile.LNKTYPE, linkname=linkname)])
        assert_refused(data, dest, "hard link")

    @pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
    def test_tar_devices_and_fifos(self, dest, kind):
        data = make_tar([tar_member("index.py", b"x"), tar_member("dev", type=kind)])
        assert_refused(data, dest, "'dev'", "device")

    @pytest.mark.parametrize("mode", [stat.S_IFCHR | 0o644, stat.S_IFIFO | 0o644, stat.S_IFBLK | 0o600])
    def test_zip_devices_and_fifos(self, dest, mode):
        data = make_zip({"index.py": "x", "dev": ""}, modes={"dev": mode})
        assert_refused(data, dest, "'dev'", "device")

    def test_encrypted_zip_entry(self, dest):
        data = bytearray(make_zip({"index.py": "x"}, compression=zipfile.ZIP_STORED))
        # Set the "encrypted" flag in both the local header and the central directory.
        for sig in (b"PK\x03\x04", b"PK\x01\x02"):
            pos = data.find(sig)
            off = pos + (6 if sig == b"PK\x03\x04" else 8)
            flags = struct.unpack_from("<H", data, off)[0] | 1
            struct.pack_into("<H", data, off, flags)
        assert_refused(bytes(data), dest, "encrypted")


# --- sizes and bombs ----------------------------------------------------------------------------------


class TestLimits:
    def test_too_many_files(self, dest):
        data = make_zip({f"f{i}.py": "" for i in range(30)})
        assert_refused(data, dest, "more than 20 entries", limits=UnpackLimits(max_files=20))
        tar = files_tar({f"f{i}.py": "" for i in range(30)})
        assert_refused(tar, dest, "more than 20 entries", limits=UnpackLimits(max_files=20))

    def test_default_file_limit_uses_declared_count_early(self, dest):
        """A zip declaring 10,001 entries is refused before its directory is parsed."""
        data = make_zip({f"{i}": "" for i in range(10_001)}, compression=zipfile.ZIP_STORED)
        start = time.perf_counter()
        assert_refused(data, dest, "more than 10000 entries")
        assert time.perf_counter() - start < 1.0

    def test_single_entry_over_limit(self, dest):
        data = make_zip({"index.py": "x", "big.bin": b"\0" * 5000})
        assert_refused(data, dest, "'big.bin' is larger than 4096 bytes", limits=UnpackLimits(max_file_bytes=4096))

    def test_total_bytes_over_limit(self, dest):
        data = files_tar({f"f{i}": b"a" * 1000 for i in range(10)})
        assert_refused(data, dest, "unpacks to more than 5000 bytes", limits=UnpackLimits(max_total_bytes=5000))

    def test_zip_bomb_stops_early(self, dest, tmp_path):
        """A 256 MiB entry of zeros (a ~250 KB zip) stops at the 8 MiB limit: fast, disk clean."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            with zf.open("bomb.bin", "w", force_zip64=True) as out:
                chunk = b"\0" * (1 << 20)
                for _ in range(256):
                    out.write(chunk)
        data = buf.getvalue()
        assert len(data) < 2 << 20
        start = time.perf_counter()
        assert_refused(data, dest, "bomb.bin", limits=UnpackLimits(max_total_bytes=8 << 20, max_file_bytes=1 << 30))
        assert time.perf_counter() - start < 2.0

    def test_zip_lying_about_size(self, dest):
        """A zip whose declared size is small but whose data is big is caught (CRC/size), not trusted."""
        data = bytearray(make_zip({"index.py": "x" * 100_000}, compression=zipfile.ZIP_DEFLATED))
        # Rewrite the declared uncompressed size (local header and central directory) to 10.
        lh = data.find(b"PK\x03\x04")
        struct.pack_into("<I", data, lh + 22, 10)
        cd = data.find(b"PK\x01\x02")
        struct.pack_into("<I", data, cd + 24, 10)
        assert_refused(bytes(data), dest, "corrupt")

    def test_tar_gz_bomb_stops_early(self, dest):
        """A tar.gz of one huge file of zeros stops while streaming."""
        raw = io.BytesIO()
        size = 128 << 20
        info = tarfile.TarInfo("bomb.bin")
        info.size = size
        with tarfile.open(fileobj=raw, mode="w") as tf:
            tf.addfile(info, _Zeros(size))
        data = gzip.compress(raw.getvalue(), compresslevel=1)
        start = time.perf_counter()
        assert_refused(data, dest, "more than 4 MiB",
                       limits=UnpackLimits(max_total_bytes=4 << 20, max_file_bytes=1 << 30))
        assert time.perf_counter() - start < 2.0

    def test_declared_tar_size_over_limit(self, dest):
        """A tar header declaring a huge member is refused before reading it."""
        info, _ = tar_member("big", b"", size=10 << 30)
        data = make_tar([tar_member("index.py", b"x")], gz=False)[:1024] + info.tobuf() + b"\0" * 4096
        assert_refused(data, dest, "'big' is larger than")


class _Zeros(io.RawIOBase):
    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


# --- corrupt and empty ------------------------------------------------------------------------------------


class TestCorruptAndEmpty:
    def test_truncated_zip(self, dest):
        data = make_zip({"index.py": "x" * 10_000, "b.py": "y" * 10_000})
        assert_refused(data[: len(data) // 2], dest, "corrupt")

    def test_zip_bad_crc(self, dest):
        data = bytearray(make_zip({"index.py": "hello world"}, compression=zipfile.ZIP_STORED))
        pos = data.find(b"hello world")
        data[pos] = ord("H")
        assert_refused(bytes(data), dest, "corrupt")

    def test_truncated_tar_gz(self, dest):
        data = files_tar({"index.py": os.urandom(20_000).hex()})
        assert_refused(data[: len(data) // 2], dest, "corrupt")

    def test_gzip_of_not_a_tar(self, dest):
        assert_refused(gzip.compress(b"just text, not a tar" * 100), dest, "corrupt")

    def test_garbage_after_zip_magic(self, dest):
        assert_refused(b"PK\x03\x04" + os.urandom(500), dest, "corrupt")

    def test_empty_zip(self, dest):
        assert_refused(make_zip({}), dest, "empty")

    def test_only_folders(self, dest):
        assert_refused(make_zip({"a/": "", "a/b/": ""}), dest, "empty")
        assert_refused(make_tar([tar_member("d", type=tarfile.DIRTYPE)]), dest, "empty")
