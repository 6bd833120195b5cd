"""The instance's root file system: a template mount namespace built once per platform.

The template is a read-only tmpfs root holding:
  /usr                       the host's, bound read-only (ImageMagick, Ghostscript, fonts, libc)
  /bin /sbin /lib /lib64     symlinks into /usr on a merged-/usr host, else read-only binds
  <interpreter prefix>       e.g. /root/.pyenv/versions/3.11.7, bound read-only at the same
                             path (its rpath names it), when it lives outside /usr; the
                             directories above it are created 0711, so /root lists nothing
  /runtime                   a copy of frazil/runtimes (the loops and the in-sandbox SDK): a
                             copy, not a bind, so /proc/self/mountinfo does not name where the
                             platform is installed
  <interpreter site dirs>    the host interpreter's site-packages (and dist-packages) are
                             covered by an empty read-only tmpfs: a runtime runs with -S and
                             needs none of them, and a function sees its own layers instead
  /etc                       generated passwd/group/hosts/nsswitch.conf/hostname, plus
                             copies of the world-readable parts of a few host entries a
                             runtime needs (ld.so.cache, localtime, ssl, fonts, ImageMagick
                             without its policy.xml, Ghostscript, alternatives...); never
                             shadow, never sudoers
  /dev                       null zero full random urandom, fd/stdin/stdout/stderr links,
                             shm -> /tmp; no tty
  /var/cache/fontconfig      read-only when the host has it (fontconfig then starts warm)
  /code /layers/N /tmp /proc empty mount points, filled per instance

What /proc/self/mountinfo still names of the host, and why: each bind shows the path of its
source within the source's file system. The system binds (/usr, the interpreter's prefix,
/var/cache/fontconfig) are at the same paths inside, so that shows nothing new; an
instance's /code and /layers/N (binds of detached clones, see enter.readonly_tree) show
their paths in the data dir, which only a file system of their own would hide. Everything
else is a tmpfs, proc, or a copy, and shows "/".

Each instance gets a private copy of this namespace (setns + unshare(CLONE_NEWNS) copies a
handful of mounts instead of the host's whole table) and then mounts only its own code,
layers, /tmp and /proc: see `frazil.sandbox.helper.enter`.

Standard library only (runs in the launcher).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from frazil.sandbox.helper import syscalls as sc

CODE_DIR = "/code"
LAYERS_DIR = "/layers"
TMP_DIR = "/tmp"
RUNTIME_DIR = "/runtime"
HOSTNAME = "frazil"
MAX_LAYERS = 16
TEMPLATE_TMPFS = "size=32m,nr_inodes=16384,mode=0755"
ETC_COPY_BUDGET = 24 * 1024 * 1024
COPY_BUDGET = 8 * 1024 * 1024  # Layout.copies, all together (frazil/runtimes is far smaller)
HIDDEN_TMPFS = "size=4k,nr_inodes=1,mode=0555"

TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
ETC_COPIES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "ssl", "ca-certificates",
    "fonts", "ImageMagick-6", "ImageMagick-7", "ghostscript", "alternatives", "mime.types",
    "magic", "magic.mime", "papersize", "libpaper.d", "os-release", "debian_version",
    "services", "protocols", "gai.conf",
)
# Copied entries left out: ImageMagick merges every policy.xml it finds and Debian's forbids
# PDF/PS/EPS; an instance's policy is frazil's (runtimes/imagemagick, MAGICK_CONFIGURE_PATH).
ETC_LEFT_OUT = ("ImageMagick-6/policy.xml", "ImageMagick-7/policy.xml")
MAGICK_CONFIGURE_DIR = RUNTIME_DIR + "/imagemagick"
OPTIONAL_BINDS = ("/var/cache/fontconfig",)
ETC_GENERATED = {
    "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": "root:x:0:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    "hostname": HOSTNAME + "\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\nnetworks: files\nprotocols: files\nservices: files\n",
}
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9)}
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "shm": "/tmp"}
RO = sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV


def layer_dir(index: int) -> str:
    return f"{LAYERS_DIR}/{index}"


@dataclass(frozen=True)
class Layout:
    """What the template holds; everything here is a host path or a path inside."""

    ro_binds: tuple[tuple[str, str], ...]  # (host path, path inside)
    top_level: tuple[tuple[str, str, str], ...]  # (name, "link"|"bind", target)
    etc_copies: tuple[str, ...] = ETC_COPIES
    max_layers: int = MAX_LAYERS
    notes: list[str] = field(default_factory=list, compare=False)
    copies: tuple[tuple[str, str], ...] = ()  # (host dir, path inside): copied into the root
    hidden: tuple[str, ...] = ()  # paths inside (in a bind) covered by an empty read-only tmpfs

    def to_dict(self) -> dict:
        return {"ro_binds": [list(b) for b in self.ro_binds], "top_level": [list(t) for t in self.top_level],
                "etc_copies": list(self.etc_copies), "max_layers": self.max_layers,
                "copies": [list(c) for c in self.copies], "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        return cls(tuple(tuple(b) for b in d["ro_binds"]), tuple(tuple(t) for t in d["top_level"]),
                   tuple(d["etc_copies"]), d["max_layers"], copies=tuple(tuple(c) for c in d.get("copies", ())),
                   hidden=tuple(d.get("hidden", ())))


def interpreter_prefix(interpreter: str) -> str | None:
    """The install prefix to bind for an interpreter binary, or None when /usr covers it."""
    real = os.path.realpath(interpreter)
    if real.startswith("/usr/"):
        return None
    return os.path.dirname(os.path.dirname(real))  # <prefix>/bin/python3.11 -> <prefix>


def site_dirs(interpreter: str) -> list[str]:
    """Where a Python interpreter keeps installed packages (existing directories only): its
    prefix's site-packages/dist-packages, and Debian's shared ones for /usr's interpreter.
    Empty for any other interpreter (node)."""
    real = os.path.realpath(interpreter)
    name = os.path.basename(real)  # python3.11
    if not (name.startswith("python3.") and name[len("python3."):].isdigit()):
        return []
    prefix = os.path.dirname(os.path.dirname(real))
    found = [f"{prefix}/lib/{name}/site-packages", f"{prefix}/lib/{name}/dist-packages"]
    if prefix == "/usr":
        found += ["/usr/lib/python3/dist-packages", f"/usr/local/lib/{name}/dist-packages",
                  f"/usr/local/lib/{name}/site-packages"]
    return [d for d in found if os.path.isdir(d)]


def default_layout(interpreters: list[str], runtimes_root: str) -> Layout:
    binds: list[tuple[str, str]] = [("/usr", "/usr")]
    hidden: list[str] = []
    for interpreter in interpreters:
        prefix = interpreter_prefix(interpreter)
        if prefix and (prefix, prefix) not in binds:
            binds.append((prefix, prefix))
        hidden += [d for d in site_dirs(interpreter) if d not in hidden]
    binds += [(p, p) for p in OPTIONAL_BINDS if os.path.isdir(p)]
    top: list[tuple[str, str, str]] = []
    for name in TOP_LEVEL:
        host = "/" + name
        if os.path.islink(host):
            top.append((name, "link", os.readlink(host)))
        elif os.path.isdir(host):
            top.append((name, "bind", host))
    return Layout(tuple(binds), tuple(top), copies=((os.path.realpath(runtimes_root), RUNTIME_DIR),),
                  hidden=tuple(hidden))


# --- building (runs in a throw-away child of the launcher) -----------------------------

def build_template(layout: Layout, mountpoint: str) -> None:
    """Make the calling process's mount namespace the template. Call in a fresh child.

    Order: private namespace (nothing propagates to the host) -> tmpfs on `mountpoint` ->
    directories, /etc, /dev, copies -> read-only binds -> empty read-only tmpfs over the
    hidden paths -> pivot_root into the tmpfs and drop the old root -> make the root itself
    read-only."""
    sc.unshare(sc.CLONE_NEWNS)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    sc.mount("tmpfs", mountpoint, "tmpfs", sc.MS_NOSUID, TEMPLATE_TMPFS)
    root = mountpoint.rstrip("/")
    for d in ("etc", "dev", "proc", "tmp", "code", "layers", "usr", "var", "var/cache"):
        _mkdir(root + "/" + d)
    for i in range(layout.max_layers):
        _mkdir(root + layer_dir(i))
    for name, kind, target in layout.top_level:
        if kind == "link":
            os.symlink(target, f"{root}/{name}")
    _build_etc(root + "/etc", layout.etc_copies)
    _build_dev(root + "/dev")
    budget = [COPY_BUDGET]
    for host, inside in layout.copies:
        _makedirs(os.path.dirname(root + inside))
        _copy_entry(host, root + inside, budget)
        if budget[0] <= 0 or not os.path.isdir(root + inside):
            raise RuntimeError(f"{host} could not be copied into the sandbox root (unreadable, or over "
                               f"{COPY_BUDGET} bytes)")
    binds = list(layout.ro_binds) + [("/" + n, "/" + n) for n, kind, _ in layout.top_level if kind == "bind"]
    for host, inside in binds:
        target = root + inside
        _makedirs(target)
        sc.mount(host, target, None, sc.MS_BIND | sc.MS_REC)
        sc.mount_setattr(target, RO, flags=sc.AT_RECURSIVE)
    for inside in layout.hidden:
        if os.path.isdir(root + inside):
            sc.mount("tmpfs", root + inside, "tmpfs", sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC,
                     HIDDEN_TMPFS)
    os.chdir(root)
    sc.pivot_root(".", ".")  # the old root ends up stacked on "/"; detach it
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
    sc.mount_setattr("/", sc.MOUNT_ATTR_RDONLY | sc.MOUNT_ATTR_NOSUID)


def mount_private_tmp_and_proc(tmp_mb: int) -> None:
    """Inside the new root: a fresh tmpfs /tmp of `tmp_mb` (inodes in proportion) and a /proc
    of the process's own PID namespace; then cwd is /."""
    sc.mount("tmpfs", TMP_DIR, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, f"size={tmp_mb}m,nr_inodes={tmp_mb * 256},mode=1777")
    sc.mount("proc", "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    os.chdir("/")


def _mkdir(path: str, mode: int = 0o755) -> None:
    os.mkdir(path)
    os.chmod(path, mode)


def _makedirs(path: str) -> None:
    """Create `path` and its missing parents; parents are 0711 (traversable, not listable)."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        _makedirs(parent)
        os.chmod(parent, 0o711)
    if not os.path.isdir(path):
        _mkdir(path)


def _build_etc(etc: str, copies) -> None:
    for name, text in ETC_GENERATED.items():
        _write(f"{etc}/{name}", text.encode())
    budget = [ETC_COPY_BUDGET]
    for name in copies:
        _copy_entry(f"/etc/{name}", f"{etc}/{name}", budget)
    for rel in ETC_LEFT_OUT:
        if os.path.lexists(f"{etc}/{rel}"):
            os.unlink(f"{etc}/{rel}")


def _copy_entry(src: str, dst: str, budget: list[int]) -> None:
    """Copy symlinks as symlinks, and world-readable files and directories; skip the rest."""
    try:
        st = os.lstat(src)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(st.st_mode):
        if st.st_mode & 0o005 != 0o005:
            return  # e.g. /etc/ssl/private
        _mkdir(dst, 0o755)
        for entry in sorted(os.listdir(src)):
            _copy_entry(f"{src}/{entry}", f"{dst}/{entry}", budget)
    elif stat.S_ISREG(st.st_mode) and st.st_mode & 0o004 and st.st_size <= budget[0]:
        with open(src, "rb") as f:
            data = f.read()
        budget[0] -= len(data)
        _write(dst, data, 0o755 if st.st_mode & 0o111 else 0o644)


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, mode)


def _build_dev(dev: str) -> None:
    for name, (major, minor) in DEVICES.items():
        path = f"{dev}/{name}"
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{dev}/{name}")
