"""A policy served by an OpenAI-compatible chat-completions endpoint, through the ``openai``
package's client.

Each turn becomes one request: the game's prompt and its picture (a base64 PNG data URL) in one
user message. This re-measures the paper's GPT-4V and Gemini rows against any such endpoint: a
hosted model, or a local vLLM or llama.cpp server. Requests run a few at a time; the client
times out, and retries with exponential backoff (or the server's Retry-After) on 408, 409,
429, 5xx, time-outs and broken connections. A reply that cannot be used (every retry failed, a
body that is not a completion) becomes an empty reply, which the game counts as a format
error. What no retry will change stops the evaluation at once, with one message: a rejected
key or an unknown endpoint or model (401, 403, 404), an endpoint that the first request
cannot reach, and no API key for OpenAI's own.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openai

from rlvlm.evaluation.protocol import Turn
from rlvlm.evaluation.replays import png_bytes

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Statuses that no retry will change and that every later request would meet too.
FATAL_STATUSES = frozenset({401, 403, 404})
TOKEN_COUNTS = ("prompt_tokens", "completion_tokens")


class ApiError(RuntimeError):
    """The endpoint refuses every request (a bad key, URL or model name) or cannot be reached."""


@dataclass(frozen=True)
class ApiSettings:
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None
    timeout: float = 60.0
    """Seconds one attempt may wait for the server (connecting, or between bytes)."""
    retries: int = 4
    """Further attempts after a failed one."""
    concurrency: int = 8
    """Requests in flight at once."""

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"the API base URL must start with http:// or https://, got {self.base_url!r}"
            )
        if self.timeout <= 0 or self.retries < 0 or self.concurrency < 1:
            raise ValueError("API timeout and concurrency must be positive, retries 0 or more")
        if self.api_key is None and self.base_url.rstrip("/") == DEFAULT_BASE_URL:
            raise ValueError(
                f"{DEFAULT_BASE_URL} needs an API key: set OPENAI_API_KEY or give --api-key"
            )

    @classmethod
    def from_environment(
        cls, base_url: str | None = None, api_key: str | None = None, **options: Any
    ) -> ApiSettings:
        """Settings from the arguments, else ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``."""
        return cls(
            base_url=base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or None,
            **options,
        )


class ApiPolicy:
    """Replies written by ``model`` behind an OpenAI-compatible endpoint.

    ``usage`` adds up what the endpoint reported: requests (every attempt), retries, failed
    requests, unusable replies and token counts, and the last error seen.
    """

    image_size = None

    def __init__(
        self,
        model: str,
        settings: ApiSettings | None = None,
        *,
        temperature: float = 0.2,
        max_tokens: int = 256,
    ):
        if not model:
            raise ValueError("api:<model> needs a model name, e.g. api:gpt-4o")
        self.model, self.name = model, f"api:{model}"
        self.settings = settings = settings or ApiSettings.from_environment()
        self.temperature, self.max_tokens = temperature, max_tokens
        counts = ("requests", "failed_requests", "unusable_replies", *TOKEN_COUNTS)
        self._usage: dict[str, Any] = dict.fromkeys(counts, 0)
        self._usage["last_error"] = None
        self._calls = 0
        self._answered = False  # whether any request has reached the endpoint
        self._lock = threading.Lock()
        self.client = openai.OpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key or "unused",  # a local server may want none
            timeout=settings.timeout,
            max_retries=settings.retries,
            default_headers={"User-Agent": "rlvlm"},
            http_client=openai.DefaultHttpx2Client(
                event_hooks={"request": [lambda request: self._count("requests")]}
            ),
        )

    @property
    def usage(self) -> dict[str, Any]:
        with self._lock:
            return self._usage | {"retries": self._usage["requests"] - self._calls}

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        if not turns:
            return []
        workers = min(self.settings.concurrency, len(turns))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api") as pool:
            return list(pool.map(self._reply, turns))

    # ------------------------------------------------------------------ one turn

    def _reply(self, turn: Turn) -> str:
        image = base64.b64encode(png_bytes(turn.image)).decode("ascii")
        content = [
            {"type": "text", "text": turn.prompt},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
        ]
        with self._lock:
            self._calls += 1
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": content}],
                temperature=self.temperature,
                max_tokens=self.max_tokens,
            )
        except openai.APIStatusError as error:
            self._answered = True
            detail = _error_detail(error)
            if error.status_code in FATAL_STATUSES:
                raise ApiError(
                    f"{self.settings.base_url} answered HTTP {error.status_code} for model "
                    f"{self.model!r}: {detail}"
                ) from None
            return self._failed(f"HTTP {error.status_code}: {detail}")
        except openai.APIConnectionError as error:  # time-outs too
            if not self._answered and not isinstance(error, openai.APITimeoutError):
                raise ApiError(f"cannot reach {self.settings.base_url}: {_cause(error)}") from None
            return self._failed(f"{type(error).__name__}: {_cause(error)}")
        self._answered = True
        text = reply_text(response)
        usage = getattr(response, "usage", None)
        with self._lock:
            if text is None:
                self._usage["unusable_replies"] += 1
                self._usage["last_error"] = "a response without a reply text"
            for key in TOKEN_COUNTS:
                if isinstance(getattr(usage, key, None), int):
                    self._usage[key] += getattr(usage, key)
        return text or ""

    def _failed(self, message: str) -> str:
        with self._lock:
            self._usage["failed_requests"] += 1
            self._usage["last_error"] = message
        return ""

    def _count(self, key: str) -> None:
        with self._lock:
            self._usage[key] += 1


def reply_text(response: Any) -> str | None:
    """The first choice's message text, or None if the response has none (the client returns
    a body that is not JSON as its text).

    >>> from openai.types.chat import ChatCompletion
    >>> reply_text(ChatCompletion.construct(choices=[{"message": {"content": "hi"}}]))
    'hi'
    >>> reply_text("<html>upstream error</html>") is None
    True
    """
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts, as some servers answer
        texts = [part.get("text") for part in content if isinstance(part, dict)]
        return "".join(text for text in texts if isinstance(text, str)) or None
    return None


def _error_detail(error: openai.APIStatusError) -> str:
    """The server's own message where its body has one, kept short."""
    body = error.body
    if isinstance(body, dict):
        body = body.get("error", body)
        body = body.get("message", body) if isinstance(body, dict) else body
    text = str(body if body is not None else error.response.text).strip()
    return (text.splitlines() or [""])[0][:200]


def _cause(error: openai.APIConnectionError) -> str:
    """What went wrong underneath the client's 'Connection error.'"""
    cause = error.__cause__
    return f"{error.message} ({cause})" if cause else error.message
