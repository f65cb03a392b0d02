"""A judge back end for any server that speaks the OpenAI chat-completions protocol.

This covers hosted APIs and local servers alike (vLLM, llama.cpp, text-generation
inference expose the same ``POST {base_url}/chat/completions``). It uses only the standard
library, so the judge adds no dependency to the training stack.

Behaviour that matters for long evaluation runs:

- a batch is sent with at most ``max_concurrency`` requests in flight (a thread pool plus a
  per-instance semaphore, so concurrent ``complete`` calls share the cap) and the
  completions come back in input order;
- timeouts, connection errors, HTTP 429 and 5xx are retried with exponential backoff
  (honouring ``Retry-After``); other 4xx are caller errors and fail at once, since
  repeating a bad request cannot fix it;
- when retries run out, :class:`JudgeBackendError` names the URL and the last cause.

The API key is read from the environment variable ``api_key_env`` on every request and
only ever placed in the ``Authorization`` header: it is never stored on the instance, never
logged, and absent from ``repr()`` and :meth:`OpenAICompatibleBackend.to_config` (the dict
saved with run configs). Error text quoting a server reply has the key masked, in case the
server echoes it.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from persona_jax.judges.llm import JudgeBackendError
from persona_jax.judges.prompts import Message

__all__ = ["JudgeBackendError", "OpenAICompatibleBackend"]

logger = logging.getLogger(__name__)

_SNIPPET_CHARS = 300
_MASK = "***"


class _Retryable(Exception):
    """One failed attempt that a later attempt may get past."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


def _retry_after(headers: Any) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (HTTP dates are ignored)."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


class OpenAICompatibleBackend:
    """Chat completions from an OpenAI-compatible server, batched, bounded and retried.

    ``base_url`` is the API root (``https://api.openai.com/v1``, ``http://localhost:8000/v1``);
    requests go to ``{base_url}/chat/completions``. ``api_key_env`` names the environment
    variable that holds the key; when it is unset (or ``api_key_env`` is None) no
    ``Authorization`` header is sent, which is what keyless local servers expect.
    ``max_retries`` counts retries, so a request is tried at most ``max_retries + 1`` times.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_concurrency: int = 8,
        temperature: float = 0.0,
        max_tokens: int = 256,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"base_url must be an http(s) URL such as http://host:8000/v1, got {base_url!r}"
            )
        if parts.username or parts.password:
            raise ValueError("base_url must not carry credentials; put the key in api_key_env")
        if not model:
            raise ValueError("model name is empty")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff_s < 0 or max_backoff_s < 0:
            raise ValueError(f"backoff times must be >= 0, got {backoff_s} and {max_backoff_s}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_concurrency = int(max_concurrency)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        # Built once so that proxy settings are read at construction, not per request.
        self._opener = urllib.request.build_opener()

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def to_config(self) -> dict[str, Any]:
        """The settings, for saving with a run's config: the key's variable, never its value."""
        return {
            "kind": "openai_compatible",
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "backoff_s": self.backoff_s,
            "max_backoff_s": self.max_backoff_s,
            "max_concurrency": self.max_concurrency,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "kind")
        return f"{type(self).__name__}({settings})"

    def complete(self, batch: Sequence[list[Message]]) -> list[str]:
        """One completion per message list, in input order; raises :class:`JudgeBackendError`
        for the first (in input order) request that failed for good."""
        bodies = [self._body(messages) for messages in batch]
        workers = min(self.max_concurrency, len(bodies))
        if workers <= 1:
            return [self._post_with_retries(body) for body in bodies]
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge-http")
        try:
            futures = [pool.submit(self._post_with_retries, body) for body in bodies]
            return [future.result() for future in futures]
        finally:
            # On failure, requests not yet started are dropped; those in flight finish
            # (each is bounded by timeout_s and the retry budget).
            pool.shutdown(wait=True, cancel_futures=True)

    def _body(self, messages: list[Message]) -> bytes:
        payload = {
            "model": self.model,
            "messages": list(messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        return json.dumps(payload).encode("utf-8")

    def _api_key(self) -> str | None:
        if self.api_key_env is None:
            return None
        return os.environ.get(self.api_key_env) or None

    def _delay(self, retry: int, retry_after_s: float | None) -> float:
        delay = min(self.backoff_s * (2**retry), self.max_backoff_s)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_backoff_s))
        return delay

    def _post_with_retries(self, body: bytes) -> str:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._post_once(body)
            except _Retryable as failure:
                if attempt + 1 == attempts:
                    raise JudgeBackendError(
                        f"judge server at {self.url} (model {self.model!r}) gave no answer "
                        f"after {attempts} attempts; last error: {failure.reason}. "
                        "Is the server running and reachable?"
                    ) from None
                delay = self._delay(attempt, failure.retry_after_s)
                logger.warning(
                    "judge request to %s failed (%s); retry %d of %d in %.2fs",
                    self.url,
                    failure.reason,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _post_once(self, body: bytes) -> str:
        key = self._api_key()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._slots, self._opener.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:  # before URLError: it is a subclass
            snippet = _mask(_read_snippet(err), key)
            if err.code == 429 or err.code >= 500:
                reason = f"HTTP {err.code}: {snippet[:100]}"
                raise _Retryable(reason, _retry_after(err.headers)) from None
            hint = ""
            if err.code in (401, 403):
                hint = f" (check the key in ${self.api_key_env})" if self.api_key_env else ""
            raise JudgeBackendError(
                f"judge server at {self.url} refused the request with HTTP {err.code}{hint}: "
                f"{snippet}"
            ) from None
        except urllib.error.URLError as err:
            raise _Retryable(f"cannot connect: {err.reason}") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as err:
            raise _Retryable(f"{type(err).__name__}: {err}") from None
        logger.debug("judge request to %s answered (%d bytes)", self.url, len(raw))
        return self._content(raw, key)

    def _content(self, raw: bytes, key: str | None) -> str:
        """The first choice's message text. A null content (e.g. a refusal) reads as "",
        which the verdict parsers count as unreadable."""
        try:
            payload = json.loads(raw)
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            snippet = _mask(raw[:_SNIPPET_CHARS].decode("utf-8", "replace"), key)
            raise JudgeBackendError(
                f"judge server at {self.url} sent a reply that is not a chat completion "
                f"({type(err).__name__}: {err}): {snippet}"
            ) from None
        if content is None:
            return ""
        if not isinstance(content, str):
            raise JudgeBackendError(
                f"judge server at {self.url} sent non-text content of type {type(content).__name__}"
            )
        return content


def _read_snippet(err: urllib.error.HTTPError) -> str:
    try:
        return err.read(_SNIPPET_CHARS).decode("utf-8", "replace").strip() or "<empty body>"
    except (OSError, http.client.HTTPException):
        return "<no body>"
    finally:
        err.close()


def _mask(text: str, key: str | None) -> str:
    return text.replace(key, _MASK) if key else text
