"""The api:<model> policy against a real HTTP server on the loopback address.

The server's behaviour is chosen by the model name in each request: a model that reads the
picture and answers as the expert, one that writes nonsense, one whose responses are not
completions, slow, flaky, rate-limited, failing, hung and unauthorised ones.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

import rlvlm
from rlvlm.cli import main
from rlvlm.evaluation import ApiError, ApiPolicy, ApiSettings, run_episodes, summarize
from rlvlm.games.numberline import NumberLineView

SIZE = 64
DATA_URL_PREFIX = "data:image/png;base64,"
PROMPT_TOKENS, COMPLETION_TOKENS = 120, 30


def expert_replies(size: int) -> dict[str, str]:
    """The expert's reply for every NumberLine picture, by a hash of its pixels."""
    task = rlvlm.make("numberline").unwrapped.task
    top = task.max_position
    replies = {}
    for target in range(top + 1):
        for current in range(top + 1):
            view = NumberLineView(target, current)
            pixels = task.draw(view, size).tobytes()
            replies[hashlib.sha256(pixels).hexdigest()] = task.reply(view, task.oracle_action(view))
    return replies


class Behaviour:
    """What the server does, and what it saw."""

    def __init__(self):
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.attempts: dict[str, int] = {}
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.release = threading.Event()  # lets hung handlers go at teardown
        self.replies = expert_replies(SIZE)


class Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_POST(self):
        b = self.behaviour
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = body["model"]
        with b.lock:
            b.bodies.append(body)
            b.headers.append({key.lower(): value for key, value in self.headers.items()})
            attempt = b.attempts[model] = b.attempts.get(model, 0) + 1
        self.answer(model, attempt, body)

    def answer(self, model: str, attempt: int, body: dict) -> None:
        if model == "expert":
            return self.completion(self.expert_reply(body))
        if model == "slow-expert":  # counted in flight while it thinks, not while it answers:
            b = self.behaviour  # the client may send its next request before this one ends
            with b.lock:
                b.in_flight += 1
                b.max_in_flight = max(b.max_in_flight, b.in_flight)
            time.sleep(0.15)
            with b.lock:
                b.in_flight -= 1
            return self.completion(self.expert_reply(body))
        if model == "nonsense":
            return self.completion("I would rather describe the picture: it is lovely.")
        if model == "not-json":
            return self.send(200, b"<html>upstream error</html>", "text/html")
        if model == "no-choices":
            return self.send(200, json.dumps({"object": "chat.completion", "choices": []}))
        if model == "null-content":
            return self.send(200, json.dumps({"choices": [{"message": {"content": None}}]}))
        if model == "flaky-expert":  # two server errors, then an answer, again and again
            if attempt % 3:
                error = json.dumps({"error": {"message": "try again"}})
                return self.send(500, error, retry_after_ms="1")
            return self.completion(self.expert_reply(body))
        if model == "rate-limited-expert":
            if attempt % 2:
                return self.send(429, json.dumps({"error": "slow down"}), retry_after_ms="1")
            return self.completion(self.expert_reply(body))
        if model == "down":  # no Retry-After: the client backs off on its own
            return self.send(503, json.dumps({"error": "maintenance"}))
        if model == "down-for-a-millisecond":
            return self.send(503, json.dumps({"error": "maintenance"}), retry_after_ms="1")
        if model == "bad-request":
            return self.send(400, json.dumps({"error": "this model takes no images"}))
        if model == "hung":  # accepts the request and never answers
            self.behaviour.release.wait(timeout=10)
            return None
        if model == "unauthorized":
            return self.send(401, json.dumps({"error": {"message": "invalid api key"}}))
        return self.send(404, json.dumps({"error": f"no model {model}"}))

    def expert_reply(self, body: dict) -> str:
        content = body["messages"][0]["content"]
        url = next(part["image_url"]["url"] for part in content if part["type"] == "image_url")
        assert url.startswith(DATA_URL_PREFIX)
        png = base64.b64decode(url.removeprefix(DATA_URL_PREFIX))
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).tobytes()
        return self.behaviour.replies[hashlib.sha256(pixels).hexdigest()]

    def completion(self, text: str) -> None:
        response = {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS},
        }
        self.send(200, json.dumps(response))

    def send(self, status: int, payload, content_type="application/json", retry_after_ms=None):
        data = payload.encode() if isinstance(payload, str) else payload
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if retry_after_ms is not None:  # the client's own header for a Retry-After under 1 s
            self.send_header("Retry-After-Ms", retry_after_ms)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server(monkeypatch):
    """A fresh loopback server per test; its address and what it saw."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    behaviour = Behaviour()
    handler = type("BoundHandler", (Handler,), {"behaviour": behaviour})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield base_url, behaviour
    finally:
        behaviour.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def settings(base_url: str, **options) -> ApiSettings:
    return ApiSettings(base_url, api_key="sk-test", **({"timeout": 5.0} | options))


def play(policy: ApiPolicy, episodes: int = 6, batch_size: int = 4) -> dict:
    played = run_episodes(
        "numberline", policy, episodes, batch_size=batch_size, env_kwargs={"image_size": SIZE}
    )
    return summarize(played, "numberline", policy.name)


def test_the_picture_and_prompt_reach_the_server_and_correct_answers_win(server):
    base_url, behaviour = server
    policy = ApiPolicy("expert", settings(base_url), temperature=0.2, max_tokens=77)
    result = play(policy)
    assert result["success_rate"] == 1.0 and result["format_error_rate"] == 0.0
    steps = round(result["mean_length"] * result["episodes"])
    assert policy.usage["requests"] == steps == len(behaviour.bodies)
    assert policy.usage["prompt_tokens"] == PROMPT_TOKENS * steps
    assert policy.usage["completion_tokens"] == COMPLETION_TOKENS * steps
    assert policy.usage["retries"] == policy.usage["failed_requests"] == 0
    body = behaviour.bodies[0]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("expert", 0.2, 77)
    text = next(part["text"] for part in body["messages"][0]["content"] if part["type"] == "text")
    assert "number line" in text and '"action"' in text
    assert behaviour.headers[0]["authorization"] == "Bearer sk-test"


@pytest.mark.parametrize("model", ["nonsense", "not-json", "no-choices", "null-content"])
def test_unusable_replies_are_format_errors_not_crashes(server, model):
    base_url, _ = server
    policy = ApiPolicy(model, settings(base_url))
    result = play(policy, episodes=3)
    assert result["format_error_rate"] == 1.0
    assert policy.usage["failed_requests"] == policy.usage["retries"] == 0
    assert policy.usage["unusable_replies"] == (
        0 if model == "nonsense" else policy.usage["requests"]
    )


def test_slow_answers_arrive_and_concurrency_is_limited(server):
    base_url, behaviour = server
    policy = ApiPolicy("slow-expert", settings(base_url, concurrency=2))
    result = play(policy, episodes=6, batch_size=6)
    assert result["success_rate"] == 1.0
    assert behaviour.max_in_flight == 2  # six turns at once, two requests at a time


@pytest.mark.parametrize(
    ("model", "retries_per_reply"), [("flaky-expert", 2), ("rate-limited-expert", 1)]
)
def test_server_errors_and_rate_limits_are_retried(server, model, retries_per_reply):
    base_url, _ = server
    policy = ApiPolicy(model, settings(base_url, retries=2, concurrency=1))
    result = play(policy, episodes=3, batch_size=1)
    assert result["success_rate"] == 1.0 and result["format_error_rate"] == 0.0
    replies = round(result["mean_length"] * result["episodes"])
    assert policy.usage["retries"] == retries_per_reply * replies
    assert policy.usage["requests"] == (retries_per_reply + 1) * replies
    assert policy.usage["failed_requests"] == 0


def test_retries_back_off_exponentially(server):
    """The client's backoff: 0.5 s, then 1 s, each less up to a quarter at random."""
    base_url, behaviour = server
    policy = ApiPolicy("down", settings(base_url, retries=2))
    start = time.perf_counter()
    assert policy.replies(play_turns(1)) == [""]
    assert time.perf_counter() - start >= 0.75 * (0.5 + 1.0)
    assert behaviour.attempts["down"] == 3
    assert policy.usage["failed_requests"] == 1 and "HTTP 503" in policy.usage["last_error"]


@pytest.mark.parametrize("model", ["down-for-a-millisecond", "bad-request"])
def test_a_failing_endpoint_gives_format_errors(server, model):
    base_url, behaviour = server
    policy = ApiPolicy(model, settings(base_url, retries=1))
    result = play(policy, episodes=2, batch_size=2)
    assert result["format_error_rate"] == 1.0
    assert policy.usage["failed_requests"] == round(result["mean_length"] * 2)
    expected_attempts = 1 if model == "bad-request" else 2  # a 400 is not retried
    assert behaviour.attempts[model] == expected_attempts * policy.usage["failed_requests"]


def test_a_hung_connection_times_out(server):
    base_url, behaviour = server
    policy = ApiPolicy("hung", settings(base_url, timeout=0.3, retries=1))
    start = time.perf_counter()
    assert policy.replies(play_turns(2)) == ["", ""]
    assert time.perf_counter() - start < 3  # two attempts of 0.3 s and a backoff, side by side
    assert behaviour.attempts["hung"] == 4
    assert policy.usage["failed_requests"] == 2 and policy.usage["retries"] == 2
    assert "timed out" in policy.usage["last_error"]


def test_a_rejected_key_stops_the_evaluation(server):
    base_url, behaviour = server
    policy = ApiPolicy("unauthorized", settings(base_url))
    with pytest.raises(ApiError, match=r"HTTP 401.*invalid api key"):
        policy.replies(play_turns(1))
    assert behaviour.attempts["unauthorized"] == 1  # never retried


def test_an_endpoint_that_cannot_be_reached_stops_at_the_first_request():
    """A mistyped host: one message, not minutes of retries ending in fallback actions."""
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = ApiPolicy("expert", settings(f"http://127.0.0.1:{port}/v1", retries=0))
    with pytest.raises(ApiError, match=rf"cannot reach http://127\.0\.0\.1:{port}/v1"):
        play(policy, episodes=2)


def test_openais_own_endpoint_needs_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="needs an API key: set OPENAI_API_KEY"):
        ApiSettings.from_environment()
    assert ApiSettings("http://localhost:8000/v1").api_key is None  # a local server may not


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    from_env = ApiSettings.from_environment()
    assert (from_env.base_url, from_env.api_key) == ("http://127.0.0.1:9/v1", "sk-env")
    given = ApiSettings.from_environment("http://localhost:8000/v1", "sk-flag")
    assert (given.base_url, given.api_key) == ("http://localhost:8000/v1", "sk-flag")
    monkeypatch.delenv("OPENAI_BASE_URL")
    default = ApiSettings.from_environment()
    assert default.base_url == "https://api.openai.com/v1" and default.api_key == "sk-env"
    with pytest.raises(ValueError, match="http:// or https://"):
        ApiSettings("localhost:8000")


def test_cli_evaluates_an_api_model(server, tmp_path, capsys, monkeypatch):
    base_url, _ = server
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    out = tmp_path / "api.json"
    args = [
        "eval",
        "--game",
        "numberline",
        "--policy",
        "api:expert",
        "--episodes",
        "4",
        "--image-size",
        str(SIZE),
        "--compare-paper",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["policy"] == "api:expert" and result["success_rate"] == 1.0
    assert result["usage"]["prompt_tokens"] == PROMPT_TOKENS * result["usage"]["requests"]
    printed = capsys.readouterr().out
    assert "GPT-4V" in printed and "65.5%" in printed


def test_cli_one_line_errors_for_the_api(server, capsys):
    base_url, _ = server
    base = ["eval", "--game", "numberline", "--episodes", "2", "--api-base", base_url]
    assert main([*base, "--policy", "api:unauthorized"]) == 2
    assert main([*base, "--policy", "api:whatever", "--api-base", "ftp://x"]) == 2
    assert main([*base, "--policy", "api:"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all(line.startswith("rlvlm eval: error:") for line in errors)
    assert "HTTP 401" in errors[0] and "http://" in errors[1] and "model name" in errors[2]


def play_turns(count: int):
    """``count`` turns of NumberLine episodes, as the episode runner builds them."""
    from rlvlm.evaluation import Turn
    from rlvlm.games.wrappers import TextActions

    turns = []
    for seed in range(count):
        env = TextActions(rlvlm.make("numberline", image_size=SIZE))
        image, info = env.reset(seed=seed)
        turns.append(Turn(image, info["prompt"], env.game.task, env.game.view()))
    return turns
