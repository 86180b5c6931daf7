"""Writing exported bytes to local files the way ``cp`` would, minus its surprises.

- Bytes go to a temp file beside the target (``.NAME.imagehub-XXXXXXXX.part``) that is
  renamed into place only once they are verified, so no partial file ever has the name.
- Without ``force`` the target is claimed with ``link()``, which fails if anything appeared
  there meanwhile: no-clobber holds even against a file created during the download.
- With ``force`` only a regular file is replaced (a symlink is followed to one, as ``cp``
  writes through it); a FIFO, device, socket or directory is refused with the reason.
- The file gets the user's umask (or the mode of the regular file it replaces).
- A temp file holds an ``flock`` while it is written; a later export to the same target
  removes stale ones (killed exports) and never a live one.
- Every OS error becomes one OutputError naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import InvalidArgument, OutputError

__all__ = ["TEMP_MARK", "StagedFile", "atomic_write", "check_target", "output_error",
           "temp_prefix", "umask"]

TEMP_MARK = ".imagehub-"
# Bytes of the target's name kept in a temp name: with the mark, 8 random characters and
# ".part", a temp name stays under NAME_MAX (255) whatever the target's name.
_NAME_ROOM = 200

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket",
          stat.S_IFDIR: "a directory"}



def _needs_force(message: str, path: str, todo: str) -> OutputError:
    """An OutputError whose way out is ``force``, said as Python and as the CLI says it."""
    error = OutputError(message, path=path, hint=f"pass force=True {todo}")
    error.cli_hint = f"pass --force {todo}"
    return error

def output_error(exc: OSError, path: str | os.PathLike[str] | None, doing: str = "write"
                 ) -> OutputError:
    """One line for an OS error while writing ``path``, with what to do."""
    where = str(path) if path is not None else (exc.filename or "the output")
    hint = {
        errno.ENOENT: "create the directory first",
        errno.ENOTDIR: "a component of the path is not a directory",
        errno.EACCES: "check the permissions of the file and its directory",
        errno.EPERM: "check the permissions of the file and its directory",
        errno.EROFS: "the file system is read-only; choose another place",
        errno.ENOSPC: "free some space, or choose another place",
        errno.EDQUOT: "free some space, or choose another place",
        errno.EPIPE: "the reader went away before the image was complete",
    }.get(exc.errno or 0)
    reason = exc.strerror or str(exc)
    return OutputError(f"cannot {doing} {where!r}: {reason}", path=where, hint=hint)


def umask() -> int:
    """The process umask, read without changing it where the system allows."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_target(target: Path, force: bool) -> tuple[Path, int | None]:
    """The path to write (symlinks followed) and the mode of a file it replaces."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        if target.is_symlink():
            if not force:  # as cp: "not writing through dangling symlink"
                raise _needs_force(f"{str(target)!r} is a symlink to a missing file",
                                   str(target), "to write where it points") from None
            return Path(os.path.realpath(target)), None
        return target, None
    except OSError as exc:
        raise output_error(exc, target) from exc
    except ValueError as exc:  # an embedded NUL: no file system takes it
        raise InvalidArgument(f"cannot write {str(target)!r}: {exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise OutputError(f"{str(target)!r} is {kind}; imagehub writes only regular files",
                          path=str(target),
                          hint="write to it with '-o -' and a shell redirection, or "
                               "choose a file path")
    if not force:
        raise _needs_force(f"{str(target)!r} already exists", str(target), "to overwrite it")
    # Permission bits only: a set-id bit must not carry over to new content.
    return Path(os.path.realpath(target)), stat.S_IMODE(st.st_mode) & 0o777


def temp_prefix(name: str) -> str:
    """The temp-file prefix for target ``name``: ``.NAME.imagehub-``, with NAME cut short
    enough that the temp name still fits where the target's own (up to 255 bytes) fits."""
    head = os.fsdecode(os.fsencode(f".{name}")[:_NAME_ROOM])
    return f"{head}{TEMP_MARK}"


def _remove_stale(parent: Path, name: str) -> None:
    # Temp files of killed exports to this same target: unlocked means nobody writes them.
    prefix = temp_prefix(name)
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            if not (entry.name.startswith(prefix) and entry.name.endswith(".part")):
                continue
            try:
                fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_ino == os.stat(entry, follow_symlinks=False).st_ino:
                    entry.unlink()
            except OSError:
                pass
            finally:
                os.close(fd)


class StagedFile:
    """A locked temp file beside ``path`` that becomes ``path`` only on ``place()``.

    Split exports stage every part first and place them only once the whole image has
    verified, so a failure (a checksum, a name that appeared meanwhile) leaves none.
    """

    def __init__(self, path: str | os.PathLike[str], *, force: bool = False) -> None:
        self.requested = Path(path)
        self.force = force
        self.target, mode = check_target(self.requested, force)
        self.claimed = False  # placed on a name nothing held: ours to take back
        parent = self.target.parent if str(self.target.parent) else Path(".")
        _remove_stale(parent, self.target.name)
        fd = self._locked_temp(parent)
        try:
            os.fchmod(fd, mode if mode is not None else 0o666 & ~umask())
            self.file: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            raise

    def _locked_temp(self, parent: Path) -> int:
        # Between mkstemp and flock the new file is unlocked, and a concurrent export to
        # the same target may take it for a stale one and unlink it; then start over.
        while True:
            try:
                fd, self.tmp = tempfile.mkstemp(prefix=temp_prefix(self.target.name),
                                                suffix=".part", dir=parent)
            except OSError as exc:
                raise output_error(exc, self.requested) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.tmp)
                raise output_error(exc, self.requested) from exc
            try:
                if os.stat(self.tmp).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def write(self, chunk: bytes) -> None:
        try:
            self.file.write(chunk)
        except OSError as exc:
            raise output_error(exc, self.requested) from exc

    def finish(self) -> None:
        """Flush and fsync the bytes. The file stays open, and so locked, until it is
        placed or discarded: unlocked, a concurrent export to the same target would take
        it for a killed export's leftover and remove it."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as exc:
            raise output_error(exc, self.requested) from exc

    def place(self) -> None:
        self.claimed = _place(self.tmp, self.target, self.requested, self.force)
        self.tmp = ""
        with contextlib.suppress(OSError):
            self.file.close()

    def discard(self) -> None:
        """Drop the temp file unless it was placed."""
        with contextlib.suppress(OSError):
            self.file.close()
        if self.tmp:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = ""

    def take_back(self) -> None:
        """Remove a placed file that took a free name, when its image could not be whole."""
        if self.claimed:
            with contextlib.suppress(OSError):
                os.unlink(self.target)
            self.claimed = False


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[BinaryIO]:
    """Write to a locked temp file beside ``path``; put it in place only on success."""
    staged = StagedFile(path, force=force)
    try:
        try:
            yield staged.file
        except OSError as exc:
            raise output_error(exc, staged.requested) from exc
        staged.finish()
        staged.place()
    finally:
        staged.discard()


def _place(tmp: str, target: Path, requested: Path, force: bool) -> bool:
    claimed = not force
    try:
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise _needs_force(
                    f"{str(requested)!r} appeared while the image was downloading; it was "
                    "kept and the download discarded", str(requested),
                    "to overwrite it") from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK,
                                     errno.ENOSYS):
                    raise
                # No hard links here (some FUSE, vfat): claim the name with O_EXCL.
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                os.replace(tmp, target)
            else:
                os.unlink(tmp)
    except FileExistsError:
        raise _needs_force(f"{str(requested)!r} appeared while the image was downloading; "
                           "it was kept and the download discarded", str(requested),
                           "to overwrite it") from None
    except OSError as exc:
        raise output_error(exc, requested) from exc
    with contextlib.suppress(OSError):
        dfd = os.open(target.parent if str(target.parent) else ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return claimed
