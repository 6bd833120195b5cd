"""Who may read the data dir: the platform's user, and nobody else.

The data dir holds the SQLite database (function metadata, invocation records with their
events, results and logs, the BaaS tables with end users' password and token hashes), the
admin key and every uploaded bundle. So:

- the data dir itself is 0700: no other user can even traverse it;
- every database file (the database and SQLite's -wal, -shm and -journal files), the admin
  key and every blob file are 0600, and blob folders 0700, so each stays private on its own
  (a copy, a backup, a data dir opened up by hand);
- the database file is created 0600 before SQLite first opens it: SQLite creates its -wal and
  -shm files with the database file's mode, so they are born private too.

What still works under a 0700 data dir, and why:
- instances read their code and layers through detached mounts that the sandbox opens as root
  (open_tree, frazil/sandbox/attach.py): only the code and layer directories themselves
  must be readable by others (`IsolatedSandbox._readable_dir`), not their ancestors;
- dependency builds run as an unprivileged user in a throwaway folder outside the data dir,
  with the data dir hidden (frazil/build/layers.py); only root renames the result into place.

`secure_data_dir` runs at every start of the platform, so a data dir made by an older frazil
(0755, 0644) or loosened by hand is tightened before anything is served from it.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
BLOBS_DIR = "blobs"


class DataDirError(Exception):
    """The data dir cannot be made private (it belongs to someone else)."""


def secure_data_dir(data_dir: Path, *, sqlite_path: Path | None, private_files: tuple[str, ...] = ()) -> None:
    """Create `data_dir` if needed and tighten it: the dir 0700; the database at `sqlite_path`
    (created empty and 0600 when missing) and its companions, the files named in
    `private_files` and the blob tree private to the platform's user. Raises DataDirError
    when that is not allowed (the data dir belongs to another user)."""
    try:
        _secure(data_dir, sqlite_path, private_files)
    except PermissionError as exc:
        raise not_ours(data_dir, exc) from None


def not_ours(data_dir: Path, exc: PermissionError) -> DataDirError:
    """The refusal for a data dir this user may not make private (it belongs to another)."""
    return DataDirError(f"the data dir {data_dir} cannot be made private to uid {os.geteuid()} "
                        f"({exc.strerror}: {exc.filename}); run frazil as the data dir's owner")


def _secure(data_dir: Path, sqlite_path: Path | None, private_files: tuple[str, ...]) -> None:
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _chmod(Path(os.path.realpath(data_dir)), DIR_MODE)  # a data dir given as a link: its target
    for name in private_files:
        _chmod(data_dir / name, FILE_MODE)
    if sqlite_path is not None:
        prepare_sqlite_file(sqlite_path)
    blobs = data_dir / BLOBS_DIR
    if blobs.is_dir() and not blobs.is_symlink():
        _tighten_tree(blobs)


def prepare_sqlite_file(path: Path) -> None:
    """The database file exists and is 0600 (so are its -wal/-shm/-journal files, if any)."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE))
    for suffix in SQLITE_SUFFIXES:
        _chmod(Path(f"{path}{suffix}"), FILE_MODE)


def _tighten_tree(root: Path) -> None:
    _chmod(root, DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            _chmod(Path(dirpath, name), DIR_MODE)
        for name in filenames:
            _chmod(Path(dirpath, name), FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    """chmod `path` to `mode` when it is a file or folder with another mode; symlinks and
    missing paths are left alone (a link is never followed out of the data dir)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
        return
    os.chmod(path, mode)
