"""Writing export files into a directory without ever leaving it, and without leaving a partial file.

What lives here and why: both exports (``export --format events`` to a file and
``export --format jsonl`` into a directory) write files where a user, or someone
else, may have planted a symbolic link. Every write here works relative to an
open directory: the bytes go to a fresh temporary file created with
``O_EXCL | O_NOFOLLOW``, which is synced and then renamed (or hard-linked, when
nothing may be replaced) onto its name. So a symlink at a target is never
followed, a reader never sees half a file, and a failed write (a full disk)
leaves no temporary, empty or partial file behind.

A write killed midway (SIGKILL, a power loss) cannot remove its temporary
file, so opening a directory to write into removes such leftovers: files of
the temporaries' exact name pattern, regular, this user's, and not locked. A
write holds an exclusive ``flock`` on its temporary file from its creation
until it is renamed into place, and the kernel drops that lock when its
process dies: a locked one belongs to a write still under way, and is kept.

A target that is a symbolic link or not a regular file is refused
(``UnsafeTarget``); an existing regular file is replaced only when asked
(``TargetExists`` otherwise).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ._errors import EventStoreError, InvalidArgument

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["TargetExists", "UnsafeTarget", "WriteFailed", "atomic_file", "atomic_write", "check_target",
           "open_directory", "path_text", "remove_abandoned"]

#: A write's temporary file: ``.eventstore-`` and 16 lowercase hexadecimal digits (a random token), ``.tmp``.
_TEMPORARY = re.compile(r"\.eventstore-[0-9a-f]{16}\.tmp")
#: File systems that cannot hard-link: a no-replace write falls back to check-then-rename there.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}


class UnsafeTarget(InvalidArgument):
    """A file to be written is a symbolic link or not a regular file; it was neither followed nor replaced."""


class TargetExists(InvalidArgument):
    """A file to be written exists, and replacing it was not allowed."""


class WriteFailed(EventStoreError, OSError):
    """Writing a file failed (a full disk, say); no partial file was left behind. ``errno`` is the cause's."""

    def __str__(self) -> str:
        return str(self.strerror)  # the sentence, without OSError's "[Errno N]" prefix


def path_text(path: Path) -> str:
    """A path as valid text, for a name the store keeps (an import receipt's source): a file name's bytes that are
    not UTF-8 (lone surrogates in Python's ``str``, which the store refuses) as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, for messages: ``"a FIFO"``, ``"a symbolic link"``, ``"a regular file"``..."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def check_target(directory_fd: int, name: str, shown: Path, *, replace: bool) -> None:
    """Refuse a target that must not be written: a symlink or non-regular file, or (unless ``replace``) any file.

    Raises:
        UnsafeTarget: ``name`` is a symbolic link (dangling or not) or not a regular file.
        TargetExists: ``name`` is a regular file and ``replace`` is false.
    """
    try:
        found = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WriteFailed(exc.errno, f"cannot check {shown}: {exc.strerror}") from None
    if not stat.S_ISREG(found.st_mode):
        raise UnsafeTarget(f"{shown} is {file_kind(found.st_mode)}; it is neither followed nor replaced")
    if not replace:
        raise TargetExists(f"{shown} exists; pass --force to replace it")


@contextlib.contextmanager
def open_directory(path: Path, *, create: bool = False) -> Iterator[int]:
    """An open descriptor of the directory ``path`` (made first if ``create``), synced when the block ends; the
    temporary files that writes killed midway left there are removed first (``remove_abandoned``).

    Raises:
        UnsafeTarget: ``path`` is not a directory.
        WriteFailed: it cannot be made or opened.
    """
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileExistsError, NotADirectoryError):
        raise UnsafeTarget(f"{path} is not a directory") from None
    except OSError as exc:
        raise WriteFailed(exc.errno, f"cannot open the directory {path}: {exc.strerror}") from None
    try:
        remove_abandoned(fd)
        yield fd
        with contextlib.suppress(OSError):  # some file systems cannot sync a directory; the files are synced
            os.fsync(fd)
    finally:
        os.close(fd)


def remove_abandoned(directory_fd: int) -> int:
    """Remove the temporary files that writes killed midway left in the open directory; return how many.

    Only a regular file of the temporaries' name pattern, owned by this user and
    that no write holds locked is removed. Whatever cannot be checked (a file
    system without ``flock``, a file this user may not open) is left alone.
    """
    try:
        with os.scandir(directory_fd) as entries:
            names = [entry.name for entry in entries if _TEMPORARY.fullmatch(entry.name)]
    except OSError:
        return 0  # housekeeping: a directory that cannot be listed is still written into
    removed = 0
    for name in names:
        try:  # O_NONBLOCK: opening a FIFO of that name must not wait for a writer
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory_fd)
        except OSError:
            continue  # a symbolic link, gone meanwhile, or not ours to read
        try:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode) or found.st_uid != os.geteuid():
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            named = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
            if (named.st_dev, named.st_ino) == (found.st_dev, found.st_ino):  # the name still holds what we locked
                os.unlink(name, dir_fd=directory_fd)
                removed += 1
        except OSError:
            continue  # locked by a write under way, or gone meanwhile
        finally:
            os.close(fd)
    return removed


def _temporary_file(directory_fd: int, shown: Path) -> tuple[str, int]:
    """A new temporary file in the open directory, its name and its descriptor, locked (see the module's
    docstring) until the descriptor is closed.

    Raises:
        WriteFailed: it cannot be created.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        temporary = f".eventstore-{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(temporary, flags, 0o666, dir_fd=directory_fd)
        except OSError as exc:
            raise WriteFailed(exc.errno, f"cannot write into {shown.parent}: {exc.strerror}") from None
        with contextlib.suppress(OSError):  # without flock, no sweep can lock it either, so none removes it
            fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            return temporary, fd
        os.close(fd)  # a sweep removed it between its creation and the lock: take another


class _RawFile(io.RawIOBase):
    """A descriptor as a raw stream for ``io.BufferedWriter``; writes go through ``os.write``.

    ``abandon`` makes every later write fail, so that a buffer being discarded
    after a failure never writes to the descriptor (closed, maybe reused).
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        if self.fd < 0:
            raise OSError(errno.EBADF, "the file was abandoned")
        return os.write(self.fd, data)

    def abandon(self) -> None:
        self.fd = -1


def _commit(directory_fd: int, temporary: str, name: str, shown: Path, replace: bool) -> None:
    if replace:
        check_target(directory_fd, name, shown, replace=True)  # refuse a symlink planted while we wrote
        os.rename(temporary, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
        return
    try:
        os.link(temporary, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd, follow_symlinks=False)
    except FileExistsError:
        check_target(directory_fd, name, shown, replace=False)  # says what is there
        raise TargetExists(f"{shown} exists; pass --force to replace it") from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        check_target(directory_fd, name, shown, replace=False)
        os.rename(temporary, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
        return
    os.unlink(temporary, dir_fd=directory_fd)


@contextlib.contextmanager
def atomic_write(directory_fd: int, name: str, shown: Path, *, replace: bool) -> Iterator[IO[bytes]]:
    """A binary stream whose bytes become the file ``name`` in the open directory when the block ends.

    ``shown`` is the path used in messages. The target is checked first (see
    ``check_target``); the bytes go to a temporary file beside it, which is
    synced and put in place only if the block and every write succeed.
    Otherwise the temporary file is removed and the target is untouched.

    Raises:
        UnsafeTarget, TargetExists: see ``check_target``.
        WriteFailed: a write, sync or rename failed (``errno`` says why).
    """
    check_target(directory_fd, name, shown, replace=replace)
    temporary, fd = _temporary_file(directory_fd, shown)
    raw = _RawFile(fd)
    stream = io.BufferedWriter(raw, 1 << 16)
    try:
        yield stream
        stream.close()
        os.fsync(fd)
        _commit(directory_fd, temporary, name, shown, replace)  # still locked: no sweep takes it meanwhile
        fd, committed = -1, fd
        os.close(committed)
    except BaseException as exc:
        raw.abandon()
        with contextlib.suppress(OSError, ValueError):
            stream.close()
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=directory_fd)
        if isinstance(exc, OSError) and not isinstance(exc, EventStoreError):
            raise WriteFailed(exc.errno, f"cannot write {shown}: {exc.strerror or exc}") from None
        raise


@contextlib.contextmanager
def atomic_file(path: Path, *, replace: bool) -> Iterator[IO[bytes]]:
    """``atomic_write`` for one file given by its path (its directory must exist)."""
    with open_directory(path.parent) as directory_fd, \
            atomic_write(directory_fd, path.name, path, replace=replace) as stream:
        yield stream
