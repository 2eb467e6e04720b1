"""Folders whose contents this process later runs or serves (Triton's model repository, the copy of the wheel's
tritonserver): created 0700 where missing, refused where another user could have put something in them
(security review M4, local multi-user hosts and shared CI runners: /tmp names are predictable)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeDirectory(ValueError):
    pass


def private_dir(path: Path | str) -> Path:
    """`path`, created with mode 0700 (parents as usual) if missing; an existing one must be a real directory of
    this user that neither group nor others may write."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{path} is a symlink or not a directory; remove it or choose another folder")
    if info.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} belongs to uid {info.st_uid}, not to this user ({os.getuid()}): another user "
                              "could change what is served from it; remove it or choose another folder")
    if info.st_mode & 0o022:
        raise UnsafeDirectory(f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
                              "chmod go-w it or choose another folder")
    return path


def open_lock(path: Path | str) -> int:
    """A lock file's descriptor: never through a symlink, never truncating (a planted link cannot empty a file)."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
