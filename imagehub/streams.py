"""Streaming pieces shared by export, create and migrate.

Image data is never held whole in memory: it moves as an iterator of chunks of at most
``CHUNK_SIZE`` bytes, hashed on the way through (``Hasher``, ``hashing``), optionally
through a bounded queue that overlaps a reader and a writer thread (``overlap``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO

from .compat import StreamSpellings, accepts_seed_keywords
from .errors import BackendError, ChecksumMismatch, InvalidArgument, InvalidImageData, TransferError
from .writes import StagedFile, atomic_write, check_target, output_error

__all__ = [
    "CHUNK_SIZE",
    "DataSource",
    "Hasher",
    "ImageStream",
    "StreamPart",
    "as_file",
    "atomic_write",
    "cut_short",
    "hashing",
    "open_source",
    "overlap",
    "parse_checksum",
    "read_chunks",
    "safe_filename",
    "sized",
]

# Fixed-length digests hashlib always has (shake_* need a length, so are no checksum here).
_CHECKABLE = frozenset(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake"))
CHUNK_SIZE = 1 << 20  # 1 MiB: large enough for syscalls to vanish, small enough to stay flat

Source = str | os.PathLike[str] | BinaryIO | IO[bytes] | bytes | Iterable[bytes]
ProgressCallback = Callable[[int], None]


def parse_checksum(value: str) -> tuple[str, str]:
    """Split ``"algo:hex"``; a bare 32/64/128-hex value is md5/sha256/sha512."""
    if ":" in value:
        algo, _, digest = value.partition(":")
        return algo.lower(), digest.lower()
    guessed = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}.get(len(value))
    if guessed is None:
        raise ValueError(f"cannot tell the algorithm of checksum {value!r}")
    return guessed, value.lower()


class _HashWorker(threading.Thread):
    # hashlib drops the GIL on large buffers, so sha512 and md5 in two threads run at the
    # speed of the slower one instead of their sum.
    def __init__(self, algo: str) -> None:
        super().__init__(daemon=True, name=f"hash-{algo}")
        self.hash = hashlib.new(algo)
        # Two chunks in hand: enough to keep hashing busy, little added to an upload's RSS.
        self.inbox: queue.Queue[bytes | None] = queue.Queue(maxsize=2)

    def run(self) -> None:
        while (chunk := self.inbox.get()) is not None:
            self.hash.update(chunk)


class Hasher:
    """Several digests over one stream; with ``threads=True`` each runs in its own thread.

    A threaded Hasher hashes beside the thread that feeds it (one algorithm too), so a
    sender is not slowed by hashing; :meth:`close` (or a digest) ends its threads.
    """

    def __init__(self, algos: Iterable[str] = ("sha256",), *, threads: bool = False) -> None:
        self.algos = list(dict.fromkeys(a.lower() for a in algos))
        self._threads = threads and bool(self.algos)
        self._workers: dict[str, _HashWorker] = {}
        self._hashes: dict[str, Any] = {}
        if self._threads:
            # Started by the first chunk, so a Hasher never fed leaves no thread behind.
            self._workers = {a: _HashWorker(a) for a in self.algos}
        else:
            self._hashes = {a: hashlib.new(a) for a in self.algos}
        self.bytes = 0
        self._done = False
        self._started = False

    def update(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        if self._threads:
            if self._done:
                return  # closed: an abandoned stream's reader must not wait on dead threads
            if not self._started:
                self._started = True
                for w in self._workers.values():
                    w.start()
            for w in self._workers.values():
                w.inbox.put(chunk)
        else:
            for h in self._hashes.values():
                h.update(chunk)

    def _finish(self) -> None:
        if self._threads and not self._done:
            if self._started:
                for w in self._workers.values():
                    w.inbox.put(None)
                for w in self._workers.values():
                    w.join()
            self._hashes = {a: w.hash for a, w in self._workers.items()}
        self._done = True

    def close(self) -> None:
        """End the hashing threads, for a stream abandoned before its digests were read."""
        self._finish()

    def __enter__(self) -> Hasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hexdigest(self, algo: str) -> str:
        self._finish()
        return str(self._hashes[algo.lower()].hexdigest())

    def checksum(self, algo: str = "sha256") -> str:
        return f"{algo}:{self.hexdigest(algo)}"

    def verify(self, expected: str, what: str, *, backend: str | None = None) -> None:
        algo, digest = parse_checksum(expected)
        actual = self.hexdigest(algo)
        if actual != digest:
            raise ChecksumMismatch(what, f"{algo}:{digest}", f"{algo}:{actual}", backend=backend)


def hashing(chunks: Iterable[bytes], hasher: Hasher,
            progress: ProgressCallback | None = None) -> Iterator[bytes]:
    """Pass chunks through unchanged, feeding ``hasher`` (and ``progress``) on the way."""
    for chunk in chunks:
        if chunk:
            hasher.update(chunk)
            if progress is not None:
                progress(len(chunk))
            yield chunk


def _read_chunks(fileobj: IO[bytes], what: str,
                 chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    # A read error on the user's own file or pipe is theirs to fix, not the server's:
    # name the source, as an imagehub error (the CLI prints it as one line).
    done = 0
    try:
        for chunk in read_chunks(fileobj.read, chunk_size):
            done += len(chunk)
            yield chunk
    except OSError as exc:
        raise read_failed(what, done, exc) from exc


def read_failed(what: str, done: int, exc: OSError) -> TransferError:
    """The error for a read of the user's own file or pipe that failed after ``done`` bytes."""
    return TransferError(f"cannot read {what} after {done} bytes: {exc.strerror or exc}",
                         hint="check the disk or the program that feeds the data")


def read_chunks(read: Callable[[int], bytes], chunk_size: int = CHUNK_SIZE
                ) -> Iterator[bytes]:
    """``read(chunk_size)`` until it returns nothing: a file, a socket or an HTTP body."""
    while chunk := read(chunk_size):
        yield chunk


def cut_short(name: str, got: int, expected: int, *, backend: str | None,
              incoming: bool = False) -> TransferError:
    """The error for a part that moved ``got`` of its ``expected`` bytes."""
    if incoming:
        return TransferError(f"{name}: received {got} of {expected} bytes; the transfer was "
                             "cut short", backend=backend)
    return TransferError(f"{name}: read {got} of {expected} bytes; the source changed or "
                         "was cut short", backend=backend)


def sized(chunks: Iterable[bytes], size: int | None, name: str, *, backend: str | None,
          incoming: bool = False) -> Iterator[bytes]:
    """Pass chunks through; at the end, raise :func:`cut_short` unless exactly ``size``
    bytes went by (no check when ``size`` is None)."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        yield chunk
    if size is not None and seen != size:
        raise cut_short(name, seen, size, backend=backend, incoming=incoming)


@dataclass
class DataSource:
    """One input part for ``create``: chunks on demand, size when it can be known."""

    name: str
    size: int | None
    _open: Callable[[], Iterator[bytes]]
    path: Path | None = None

    def chunks(self) -> Iterator[bytes]:
        # Paths and files name themselves in a TransferError when a read fails (see
        # _read_chunks); an iterable's own exceptions reach the caller unchanged.
        return self._open()


class UnreadableSource(InvalidImageData, TypeError):
    """Image data of a type imagehub cannot read (an int, a str of text ...): the caller's
    wrong-typed argument, so also a TypeError as the Python API promises."""


def open_source(data: Source, name: str = "image") -> DataSource:
    """Normalise a path, binary file object, bytes or iterable of bytes."""
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        try:
            st = path.stat()
        except OSError as exc:
            raise InvalidImageData(f"cannot read {str(path)!r}: {exc.strerror}",
                                   hint="check the file path") from exc
        if not path.is_file():
            raise InvalidImageData(f"{str(path)!r} is not a regular file")

        def from_path() -> Iterator[bytes]:
            try:
                fh = path.open("rb")
            except OSError as exc:  # readable at stat() time, not any more (or never)
                raise InvalidImageData(f"cannot read {str(path)!r}: {exc.strerror}",
                                       hint="check the file's permissions") from exc
            with fh:
                yield from _read_chunks(fh, repr(str(path)))

        return DataSource(name=name, size=st.st_size, _open=from_path, path=path)
    if isinstance(data, bytes | bytearray | memoryview):
        blob = bytes(data)
        return DataSource(name=name, size=len(blob), _open=lambda: iter([blob] if blob else []))
    if hasattr(data, "read"):
        fh: IO[bytes] = data  # type: ignore[assignment]
        if isinstance(fh, io.TextIOBase):
            raise UnreadableSource("image data must be opened in binary mode ('rb')")
        size: int | None = None
        with contextlib.suppress(OSError, AttributeError, ValueError):
            size = os.fstat(fh.fileno()).st_size - fh.tell()
        used = False

        def from_file() -> Iterator[bytes]:
            nonlocal used
            if used:
                raise TransferError("a file object can be read once; pass a path to retry")
            used = True
            return _read_chunks(fh, f"the {name} file object")

        return DataSource(name=name, size=size, _open=from_file)
    if isinstance(data, Iterable):
        chunks_once: list[Iterable[bytes]] = [data]

        def from_iter() -> Iterator[bytes]:
            if not chunks_once:
                raise TransferError("an iterator can be read once; pass a path to retry")
            for chunk in chunks_once.pop():
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise UnreadableSource(
                        f"image data iterables must yield bytes, got {type(chunk).__name__}")
                yield bytes(chunk)

        # An iterable may declare its length with an int ``size`` (an ImageStream does):
        # backends can then send it sized (Content-Length) rather than chunked.
        declared = getattr(data, "size", None)
        known = declared if isinstance(declared, int) and not isinstance(declared, bool) \
            else None
        return DataSource(name=name, size=known, _open=from_iter)
    raise UnreadableSource(f"cannot read image data from {type(data).__name__}",
                           hint="pass a path, a binary file object or an iterable of bytes")


@dataclass
class StreamPart:
    """One file of an exported image (most images have one; LXD split images two)."""

    name: str
    chunks: Iterator[bytes]
    size: int | None = None
    filename: str | None = None
    checksum: str | None = None


class ImageStream(StreamSpellings):
    """A streamed export: iterate it, or ``save()`` it. Use it as a context manager.

    ``checksum`` is what the backend promised (``algo:hex``) and is verified as the bytes
    pass; ``expected`` may hold more promises (Glance gives sha512 and md5). After a full
    iteration ``sha256`` is the content's sha256 whatever the backend promised; ``save()``
    computes it only when it was promised, to spare the CPU.
    """

    @accepts_seed_keywords("disk_format")
    def __init__(
        self,
        parts: Sequence[StreamPart],
        *,
        checksum: str | None = None,
        expected: Sequence[str] = (),
        size: int | None = None,
        disk_format: str | None = None,
        image: Any = None,
        on_close: Callable[[], None] | None = None,
        backend: str | None = None,
        hash_threads: bool = False,
    ) -> None:
        self.parts = list(parts)
        self.checksum = checksum
        self.expected = [c for c in [checksum, *expected] if c]
        known = [p.size for p in self.parts]
        self.size = size if size is not None else (
            sum(s for s in known if s is not None) if None not in known else None)
        self.disk_format = disk_format
        self.image = image
        self.backend = backend
        self._on_close = on_close
        self._hash_threads = hash_threads
        self._consumed = False
        self.sha256: str | None = None

    def __enter__(self) -> ImageStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._file_closed = True
        for part in self.parts:
            closer = getattr(part.chunks, "close", None)
            if closer is not None:
                closer()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def _take(self) -> None:
        if self._consumed:
            raise TransferError("an ImageStream can be read once; export again to re-read")
        self._consumed = True

    def _algorithm(self, checksum: str) -> str:
        # What a server (or a damaged record) promised must be checkable, or the export is
        # refused in one line: a promise imagehub cannot check is no verification at all.
        try:
            algo = parse_checksum(checksum)[0]
        except ValueError:
            algo = ""
        if algo not in _CHECKABLE:
            raise BackendError(f"the image's checksum {checksum!r} is not one imagehub can "
                               "check (ALGO:HEX with ALGO one of "
                               f"{', '.join(sorted(_CHECKABLE))})", backend=self.backend,
                               hint="the record is damaged or the server misbehaves; "
                                    "nothing was written")
        return algo

    def iter_parts(self, progress: ProgressCallback | None = None, *, sha256: bool = True
                   ) -> Iterator[tuple[StreamPart, Iterator[bytes]]]:
        """Yield each part with a verifying chunk iterator; the whole is verified at the end.

        ``sha256=False`` skips the content sha256 when nothing promised one: hashing is
        CPU-bound, and a Glance download already checks sha512 and md5.
        """
        self._take()
        algos = {self._algorithm(c) for c in self.expected} | ({"sha256"} if sha256 else set())
        # One digest is cheaper inline than handed to a thread while the caller writes.
        whole = Hasher(algos, threads=self._hash_threads and len(algos) > 1)
        for part in self.parts:
            part_hasher = Hasher([self._algorithm(part.checksum)]) if part.checksum else None

            def chunks(part: StreamPart = part, ph: Hasher | None = part_hasher
                       ) -> Iterator[bytes]:
                seen = 0
                for chunk in hashing(part.chunks, whole, progress):
                    seen += len(chunk)
                    if ph is not None:
                        ph.update(chunk)
                    yield chunk
                if part.size is not None and seen != part.size:
                    raise cut_short(part.name, seen, part.size, backend=self.backend,
                                    incoming=True)
                if ph is not None and part.checksum:
                    ph.verify(part.checksum, part.name, backend=self.backend)

            yield part, chunks()
        for promised in self.expected:
            whole.verify(promised, "image", backend=self.backend)
        if "sha256" in whole.algos:
            self.sha256 = whole.checksum("sha256")

    def __iter__(self) -> Iterator[bytes]:
        """All parts' bytes, in order (for split LXD images: metadata then rootfs)."""
        for _part, chunks in self.iter_parts():
            yield from chunks

    def iter_bytes(self, progress: ProgressCallback | None = None, *, sha256: bool = True
                   ) -> Iterator[bytes]:
        for _part, chunks in self.iter_parts(progress, sha256=sha256):
            yield from chunks

    def save(self, target: str | os.PathLike[str] | IO[bytes], *, force: bool = False,
             progress: ProgressCallback | None = None) -> list[Path]:
        """Save to a path, a directory (one file per part) or a binary file object.

        Nothing partial is left behind: files appear only once their bytes are verified.
        """
        try:
            if hasattr(target, "write"):
                if len(self.parts) > 1:
                    raise InvalidImageData(
                        f"this image has {len(self.parts)} parts; save it to a directory")
                fh: IO[bytes] = target  # type: ignore[assignment]
                name = getattr(fh, "name", None)
                where = "standard output" if name == "<stdout>" else (
                    str(name) if isinstance(name, str | os.PathLike) else "the output stream")
                try:
                    for chunk in self.iter_bytes(progress, sha256=False):
                        fh.write(chunk)
                    fh.flush()
                except OSError as exc:
                    raise output_error(exc, where) from exc
                return []
            if not os.fspath(target):
                raise InvalidArgument("the output path is empty",
                                      hint="name a file or directory, or '-' for stdout")
            dest = Path(target)
            # "out/" names a directory, as it does to cp: never the file "out".
            as_dir = os.fspath(target).endswith(("/", os.sep))
            if len(self.parts) > 1 or as_dir or dest.is_dir():
                return self._save_dir(dest, force=force, progress=progress)
            with atomic_write(dest, force=force) as out:
                for chunk in self.iter_bytes(progress, sha256=False):
                    out.write(chunk)
            return [dest]
        finally:
            self.close()

    def _save_dir(self, directory: Path, *, force: bool,
                  progress: ProgressCallback | None) -> list[Path]:
        made = _missing_ancestor(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(exc, directory, "create the directory") from exc
        except ValueError as exc:
            raise InvalidArgument(f"cannot write {str(directory)!r}: {exc}") from None
        names = _part_filenames(self.parts)
        staged: list[StagedFile] = []
        try:
            for name in names:
                # Refuse before any byte moves: a clash found only at the end would leave
                # the parts placed before it behind, half an image.
                check_target(directory / name, force)
            for index, (_part, chunks) in enumerate(self.iter_parts(progress, sha256=False)):
                out = StagedFile(directory / names[index], force=force)
                staged.append(out)
                for chunk in chunks:
                    out.write(chunk)
                out.finish()
            # iter_parts has now verified the whole image. Place every part, or none: a
            # name that appeared meanwhile takes back the parts already placed.
            for out in staged:
                out.place()
        except BaseException:
            for out in staged:
                out.take_back()
                out.discard()
            if made is not None:
                _remove_empty_dirs(directory, made)
            raise
        return [directory / name for name in names]


def _missing_ancestor(directory: Path) -> Path | None:
    """The outermost directory of ``directory``'s path that does not exist yet."""
    missing = None
    with contextlib.suppress(OSError, ValueError):
        for path in (directory, *directory.parents):
            if os.path.lexists(path):
                break
            missing = path
    return missing


def _remove_empty_dirs(directory: Path, top: Path) -> None:
    # Only what this export created, and only while empty: nothing half-made is left.
    with contextlib.suppress(OSError):
        for path in (directory, *directory.parents):
            path.rmdir()
            if path == top:
                return


def _part_filenames(parts: Sequence[StreamPart]) -> list[str]:
    """One distinct, safe file name per part.

    Two parts may carry the same file name (a split image uploaded from two files called
    ``image``); the later ones get their part name in front, so no part overwrites another.
    """
    names: list[str] = []
    for part in parts:
        base = safe_filename(part.filename or part.name)
        candidate, n = base, 1
        while candidate in names:
            candidate = safe_filename(f"{part.name}-{base}" if n == 1 else f"{n}-{base}")
            n += 1
        names.append(candidate)
    return names


def safe_filename(name: str) -> str:
    """A server-supplied name as one file name in the chosen directory, never a path."""
    cleaned = os.path.basename(name.replace("\\", "/"))
    if cleaned in ("", ".", "..") or "\0" in cleaned:
        raise InvalidImageData(f"refusing unsafe part file name {name!r}")
    return cleaned


_DONE = object()


@contextlib.contextmanager
def overlap(chunks: Iterable[bytes], depth: int = 8) -> Iterator[Iterator[bytes]]:
    """Read ``chunks`` in a thread, ``depth`` chunks ahead of the consumer.

    Memory is bounded by ``depth x chunk size``. An error on the reading side re-raises in
    the consumer; leaving the block early stops the reader.
    """
    buf: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        buf.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buf.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            buf.put(exc)
        finally:
            closer = getattr(chunks, "close", None)
            if closer is not None and stop.is_set():
                with contextlib.suppress(Exception):
                    closer()

    thread = threading.Thread(target=reader, name="imagehub-reader", daemon=True)
    thread.start()

    def consume() -> Iterator[bytes]:
        while True:
            item = buf.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    try:
        yield consume()
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                buf.get_nowait()
        thread.join(timeout=5)


class _IterReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._rest))
        b[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def as_file(chunks: Iterable[bytes]) -> BinaryIO:
    """A read-only binary file object over chunks, for SDKs that insist on ``read()``."""
    return io.BufferedReader(_IterReader(iter(chunks)), buffer_size=CHUNK_SIZE)
