"""``--executor`` specs: where sync's transfers run (threads, processes, a Dask cluster)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import os
from collections.abc import Iterator
from typing import Any

from ..errors import BackendUnavailable, InvalidArgument, ServerUnreachable

SPECS = "threads[:N], processes[:N] or dask://HOST:PORT"
# How long connecting to a scheduler may take before the CLI gives up.
CONNECT_TIMEOUT = 30.0


def _count(spec: str, rest: str) -> int | None:
    if not rest:
        return None
    try:
        n = int(rest)
    except ValueError:
        n = 0
    if n < 1:
        raise InvalidArgument(f"executor {spec!r}: {rest!r} is not a positive count",
                              hint=f"use {SPECS}")
    return n


@contextlib.contextmanager
def open_executor(spec: str | None, jobs: int = 1, config_path: str | None = None
                  ) -> Iterator[concurrent.futures.Executor | None]:
    """The executor ``spec`` names (None: sync's own thread pool), shut down on exit.

    Local worker processes read ``config_path`` (the CLI's ``--config``) when given; a
    Dask cluster's workers read their own configuration.
    """
    if spec is None:
        yield None
        return
    kind, _, rest = spec.partition(":")
    if kind == "threads":
        with concurrent.futures.ThreadPoolExecutor(
                _count(spec, rest) or jobs, thread_name_prefix="imagehub-sync") as pool:
            yield pool
        return
    if kind == "processes":
        with concurrent.futures.ProcessPoolExecutor(
                _count(spec, rest) or jobs, initializer=_use_config,
                initargs=(os.path.abspath(config_path) if config_path else None,)
        ) as procs:
            yield procs
        return
    if kind == "dask" and rest.startswith("//") and len(rest) > 2:
        with _dask(rest[2:]) as executor:
            yield executor
        return
    raise InvalidArgument(f"unknown executor {spec!r}", hint=f"use {SPECS}")


def _use_config(path: str | None) -> None:
    if path:
        os.environ["IMAGEHUB_CONFIG"] = path


@contextlib.contextmanager
def _dask(address: str) -> Iterator[concurrent.futures.Executor]:
    try:
        distributed: Any = importlib.import_module("distributed")
    except ImportError as exc:
        raise BackendUnavailable(
            f"--executor dask://{address} needs Dask's distributed scheduler, which is "
            f"not installed ({exc})", backend="dask",
            hint="pip install 'imagehub[dask]'") from None
    try:
        client = distributed.Client(f"tcp://{address}", timeout=CONNECT_TIMEOUT,
                                    set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ServerUnreachable(f"cannot reach the Dask scheduler at {address}: {exc}",
                                backend="dask",
                                hint="check HOST:PORT and that 'dask scheduler' runs "
                                     "there") from None
    try:
        executor: concurrent.futures.Executor = client.get_executor()
        yield executor
    finally:
        client.close()
