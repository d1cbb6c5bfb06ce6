"""A policy served by an OpenAI-compatible chat-completions endpoint.

Each turn becomes one request: the game's prompt and its picture (a base64 PNG data URL)
in one user message. This re-measures the paper's GPT-4V and Gemini rows against any such
endpoint: a hosted model, or a local vLLM or llama.cpp server. Requests run a few at a time,
with a timeout, and are retried with exponential backoff on 429, 5xx, time-outs and broken
connections. A reply that cannot be used (every retry failed, a body that is not a
completion) becomes an empty reply, which the game counts as a format error; only a
rejected key or an unknown endpoint or model (401, 403, 404) stops the evaluation.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from rlvlm.evaluation.protocol import Turn
from rlvlm.evaluation.replays import png_bytes

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Statuses worth another try: rate limits and server-side failures.
RETRY_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))
#: Statuses that no retry will change and that every later request would meet too.
FATAL_STATUSES = frozenset({401, 403, 404})
MAX_BACKOFF_SECONDS = 30.0


class ApiError(RuntimeError):
    """The endpoint refuses every request (a bad key, URL or model name)."""


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
    backoff: float = 1.0
    """Seconds before the first retry; doubled for each next one (capped at 30 s)."""

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"the API base URL must start with http:// or https://, got {self.base_url!r}"
            )
        if self.timeout <= 0 or self.retries < 0 or self.concurrency < 1 or self.backoff < 0:
            raise ValueError(
                "API timeout and concurrency must be positive, retries and backoff 0 or more"
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

    ``usage`` adds up what the endpoint reported: requests, retries, failed requests,
    unusable replies and token counts, and the last error seen.
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
        self.settings = settings or ApiSettings.from_environment()
        self.temperature, self.max_tokens = temperature, max_tokens
        self.url = self.settings.base_url.rstrip("/") + "/chat/completions"
        self.usage: dict[str, Any] = dict.fromkeys(
            (
                "requests",
                "retries",
                "failed_requests",
                "unusable_replies",
                "prompt_tokens",
                "completion_tokens",
            ),
            0,
        )
        self.usage["last_error"] = None
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener()  # honours the usual proxy variables

    def replies(self, turns: Sequence[Turn]) -> list[str]:
        if not turns:
            return []
        workers = min(self.settings.concurrency, len(turns))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api") as pool:
            return list(pool.map(self._reply, turns))

    # ------------------------------------------------------------------ one turn

    def _reply(self, turn: Turn) -> str:
        response = self._post(self._request(turn))
        if response is None:
            return ""
        text = reply_text(response)
        usage = response.get("usage") if isinstance(response, dict) else None
        with self._lock:
            if text is None:
                self.usage["unusable_replies"] += 1
                self.usage["last_error"] = "a response without a reply text"
            if isinstance(usage, dict):
                for key in ("prompt_tokens", "completion_tokens"):
                    if isinstance(usage.get(key), int):
                        self.usage[key] += usage[key]
        return text or ""

    def _request(self, turn: Turn) -> bytes:
        image = base64.b64encode(png_bytes(turn.image)).decode("ascii")
        content = [
            {"type": "text", "text": turn.prompt},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
        ]
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        return json.dumps(body).encode()

    def _post(self, body: bytes) -> Any:
        """The decoded JSON response, or None when every attempt failed."""
        headers = {"Content-Type": "application/json", "User-Agent": "rlvlm"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        for attempt in range(self.settings.retries + 1):
            self._count("requests")
            wait = self.settings.backoff * 2**attempt
            try:
                request = urllib.request.Request(self.url, body, headers, method="POST")
                with self._opener.open(request, timeout=self.settings.timeout) as response:
                    payload = response.read()
                try:
                    return json.loads(payload)
                except ValueError:  # a body that is not JSON: a reply that cannot be used
                    return {}
            except urllib.error.HTTPError as error:
                detail = _error_detail(error)
                if error.code in FATAL_STATUSES:
                    raise ApiError(
                        f"{self.url} answered HTTP {error.code} for model {self.model!r}: {detail}"
                    ) from None
                self._note_error(f"HTTP {error.code}: {detail}")
                if error.code not in RETRY_STATUSES:
                    break
                wait = _retry_after(error.headers.get("Retry-After"), wait)
            except (urllib.error.URLError, HTTPException, OSError) as error:  # incl. time-outs
                self._note_error(f"{type(error).__name__}: {getattr(error, 'reason', error)}")
            if attempt < self.settings.retries:
                self._count("retries")
                time.sleep(min(wait, MAX_BACKOFF_SECONDS))
        self._count("failed_requests")
        return None

    def _count(self, key: str) -> None:
        with self._lock:
            self.usage[key] += 1

    def _note_error(self, message: str) -> None:
        with self._lock:
            self.usage["last_error"] = message


def reply_text(response: Any) -> str | None:
    """The first choice's message text, or None if the response has none.

    >>> reply_text({"choices": [{"message": {"content": "hi"}}]})
    'hi'
    >>> reply_text({"choices": [{"message": {"content": [{"type": "text", "text": "hi"}]}}]})
    'hi'
    >>> reply_text({"error": "overloaded"}) is None
    True
    """
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts, as some servers answer
        texts = [part.get("text") for part in content if isinstance(part, dict)]
        return "".join(text for text in texts if isinstance(text, str)) or None
    return None


def _retry_after(header: str | None, default: float) -> float:
    """The server's Retry-After in seconds when it gives a number, else ``default``."""
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The first line of an error body, kept short."""
    try:
        text = error.read().decode("utf-8", "replace").strip()
    except (OSError, HTTPException):
        text = ""
    return (text.splitlines() or [error.reason or ""])[0][:200]
