"""Lambda Cloud's HTTP surface: one httpx client, its API key, pacing and bounded retries.

- **Limits**: 1 request/s in general, 1 launch per 12 s. The client paces itself so it
  never earns a 429; if one comes anyway (Cloudflare's plain-text "error code: 1015"), it
  is retried a bounded number of times honouring ``Retry-After``, then ``RateLimited``.
- **Retries**: 5xx and ``provider/*`` errors, cut connections and timeouts are retried
  with backoff only for requests that are safe to repeat. A launch is never repeated
  unless the server provably did not act on it (throttled at the edge, or never sent).
- **The API key** lives only inside the httpx auth hook: never in a repr, a log line, an
  error message or ``--debug`` output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any, NoReturn

import httpx
import tenacity

from imagehub import _redact
from imagehub._retry import retrying
from imagehub.errors import BackendError, ConfigError, ImageHubError, RateLimited

from .deadline import deadline, read_capped
from .deadline import transport as deadline_transport
from .errors import BACKEND, Failure, map_transport_errors, snippet, status_failure

# The package's name, as before the backend was split into modules, so logging set up
# for it keeps seeing the same records under the same name.
log = logging.getLogger(__package__)

# The spec's info.description: "Requests to the API are generally limited to one request
# per second. Requests to the /instance-operations/launch endpoint are limited to one
# request per 12 seconds, or five requests per minute."
GENERAL_INTERVAL = 1.0
LAUNCH_INTERVAL = 12.0
# Lambda's whole image list is a few hundred KiB; a body past this is not an answer, and
# parsing it would cost many times its size in memory.
MAX_BODY = 16 * 2**20
# Connecting gets its own, shorter limit: a host that does not accept within this is down.
CONNECT_TIMEOUT = 10.0


class Pacer:
    """Keeps requests at least ``interval`` seconds apart, across threads.

    A request may start ``interval`` after the previous one started *and* after it
    finished: waiting from the finish is what makes the spacing hold where the server
    measures it (arrivals), even when the first request paid for a TCP connect.
    ``clock`` and ``sleep`` are injectable so tests can run on a fake clock.
    """

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if interval < 0:
            raise ValueError("interval must be >= 0")
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next: float | None = None

    def __repr__(self) -> str:
        return f"Pacer(interval={self.interval})"

    @contextlib.contextmanager
    def slot(self) -> Iterator[float]:
        """Wait for a turn; yields the seconds waited."""
        with self._lock:
            now = self._clock()
            waited = 0.0
            if self._next is not None and now < self._next:
                waited = self._next - now
                self._sleep(waited)
            start = max(self._clock(), now + waited)
            self._next = start + self.interval
        try:
            yield waited
        finally:
            with self._lock:
                self._next = max(self._next or 0.0, self._clock() + self.interval)


# -- authentication -----------------------------------------------------------------------
class _BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <key>`` to each request and shows the key nowhere."""

    __slots__ = ("_header",)

    def __init__(self, key: str) -> None:
        _redact.register(key)
        self._header = f"Bearer {key}"

    def __repr__(self) -> str:
        return "<BearerAuth key=<hidden>>"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


def resolve_key(api_key: str | None, api_key_env: str) -> str:
    """The configured key, else the one in ``api_key_env``; ConfigError when neither."""
    if api_key:
        return api_key
    from_env = os.environ.get(api_key_env, "")
    if from_env:
        return from_env
    raise ConfigError(
        f"no Lambda Cloud API key: set 'api_key' in the cloud's config, or the "
        f"environment variable {api_key_env}", key="api_key",
        hint="create a key at https://cloud.lambda.ai/api-keys",
    )


# -- the client ---------------------------------------------------------------------------
class LambdaClient:
    """Calls Lambda's API: every request paced, retried within bounds, errors mapped."""

    def __init__(
        self,
        *,
        base_url: str,
        key: str,
        timeout: float,
        max_retries: int,
        transport: httpx.BaseTransport | None,
        pacer: Pacer,
        launch_pacer: Pacer,
        sleep: Callable[[float], None],
        backoff: float,
        max_retry_wait: float,
        verify: bool | str = True,
        max_body: int = MAX_BODY,
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self._pacer = pacer
        self._launch_pacer = launch_pacer
        self._sleep = sleep
        self._backoff = backoff
        self._max_retry_wait = max_retry_wait
        self._max_body = max_body
        # One client: keep-alive across calls, and the key sealed in its auth hook. The
        # deadline transport makes ``timeout`` a bound on the whole request, not per read.
        self._http = httpx.Client(
            base_url=base_url,
            auth=_BearerAuth(key),
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
            transport=transport if transport is not None else deadline_transport(verify=verify),
            headers={"Accept": "application/json", "User-Agent": "imagehub-lambda"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return _redact.redact(f"<LambdaClient base_url={self.base_url!r}>")

    @property
    def auth(self) -> httpx.Auth | None:
        """The auth hook; its repr hides the key."""
        return self._http.auth

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
             idempotent: bool, launch: bool = False) -> Any:
        """One API call with pacing, bounded retries and error mapping; returns the
        envelope's ``data``."""
        pacers = [self._pacer, self._launch_pacer] if launch else [self._pacer]
        attempts = 0

        def once() -> Any:
            nonlocal attempts
            attempts += 1
            return self._attempt(method, path, body, pacers, idempotent, launch, attempts)

        def retry_if(exc: BaseException) -> bool:
            return isinstance(exc, Failure) and exc.retry and not self._too_long(exc)

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, Failure) and exc.wait is not None:
                return exc.wait
            return float(min(30.0, self._backoff * 2 ** (state.attempt_number - 1)))

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            error = exc.error if isinstance(exc, Failure) else exc
            log.debug("%s %s failed (%s); retry %d/%d in %.2fs", method, path,
                      type(error).__name__, state.attempt_number, self.max_retries,
                      state.upcoming_sleep)

        try:
            return retrying(attempts=self.max_retries + 1, retry_if=retry_if, wait=wait,
                            sleep=self._sleep, before_sleep=before_sleep)(once)
        except Failure as failure:
            self._give_up(failure, attempts)

    def _attempt(self, method: str, path: str, body: Mapping[str, Any] | None,
                 pacers: list[Pacer], idempotent: bool, launch: bool, attempt: int) -> Any:
        with contextlib.ExitStack() as stack:
            for pacer in pacers:
                stack.enter_context(pacer.slot())
            started = time.monotonic()
            with map_transport_errors(method, path, self.base_url, self.timeout, idempotent):
                response = self._request(method, path, body)
            log.debug("%s %s -> HTTP %s in %.3fs (attempt %d)", method, path,
                      response.status_code, time.monotonic() - started, attempt)
        if not response.is_success:
            raise status_failure(response, method, path, idempotent=idempotent, launch=launch)
        try:
            doc = response.json()
        except ValueError as exc:
            raise Failure(BackendError(
                f"Lambda Cloud sent malformed JSON for {method} {path} (HTTP "
                f"{response.status_code}): {exc}", backend=BACKEND,
                status_code=response.status_code, server_message=snippet(response) or None),
                retry=False, cause=exc) from exc
        if not isinstance(doc, dict) or "data" not in doc:
            raise Failure(BackendError(
                f"Lambda Cloud's answer to {method} {path} has no 'data' field",
                backend=BACKEND, server_message=snippet(response) or None), retry=False)
        return doc["data"]

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None
                 ) -> httpx.Response:
        """The response, its body read whole but never past ``max_body`` bytes, all within
        ``timeout`` seconds."""
        with deadline(self.timeout), self._http.stream(method, path, json=body) as streamed:
            content = read_capped(streamed.iter_bytes(), self._max_body)
            if content is None:
                raise Failure(BackendError(
                    f"Lambda Cloud's answer to {method} {path} is larger than "
                    f"{self._max_body // 2**20} MiB; not reading it",
                    backend=BACKEND, status_code=streamed.status_code,
                    hint="check base_url: Lambda's answers are far smaller"), retry=False)
        # Already decoded: the copy must not claim a content-encoding any more.
        headers = [(k, v) for k, v in streamed.headers.raw
                   if k.lower() not in (b"content-encoding", b"content-length",
                                        b"transfer-encoding")]
        return httpx.Response(streamed.status_code, headers=headers, content=content,
                              request=streamed.request)

    def _too_long(self, failure: Failure) -> bool:
        return failure.wait is not None and failure.wait > self._max_retry_wait

    def _give_up(self, failure: Failure, attempts: int) -> NoReturn:
        """Raise the mapped error of the last attempt, saying why retrying stopped."""
        error = failure.error
        if isinstance(error, RateLimited):
            error.message += (f"; Retry-After {failure.wait:g}s exceeds the "
                              f"{self._max_retry_wait:g}s this client waits"
                              if self._too_long(failure) else
                              f"; gave up after {attempts} attempt(s)")
        self._raise(error, failure.cause)

    @staticmethod
    def _raise(error: ImageHubError, cause: BaseException | None) -> NoReturn:
        raise error from cause
