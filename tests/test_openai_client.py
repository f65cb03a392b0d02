"""OpenAI-compatible judge back end against a fake chat-completions server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from persona_jax.judges.openai_client import JudgeBackendError, OpenAICompatibleBackend

KEY_ENV = "PERSONA_JAX_TEST_JUDGE_KEY"
SECRET = "sk-test-7f3a9c-do-not-leak"
MAX_REQUESTS = 200  # the fake server refuses anything beyond this, so no test can loop forever


@dataclass
class Reply:
    status: int = 200
    content: str | None = "ok"
    body: bytes | None = None  # raw body instead of a chat completion
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[int, dict[str, Any], dict[str, str]], Reply]


class FakeServer:
    """Serves scripted replies; records every request and the peak number in flight."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.lock = threading.Lock()
        self.requests: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.attempts: Counter[str] = Counter()  # per last user message
        self.active = 0
        self.max_active = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = dict(self.headers.items())
                with server.lock:
                    server.requests.append((body, headers))
                    n = len(server.requests)
                    tag = body["messages"][-1]["content"]
                    server.attempts[tag] += 1
                    attempt = server.attempts[tag]
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    if self.path != "/v1/chat/completions" or n > MAX_REQUESTS:
                        reply = Reply(status=404 if n <= MAX_REQUESTS else 400, content=None)
                    else:
                        reply = server.responder(attempt, body, headers)
                    time.sleep(reply.delay_s)
                finally:
                    with server.lock:
                        server.active -= 1
                if reply.body is not None:
                    data = reply.body
                else:
                    message = {"role": "assistant", "content": reply.content}
                    data = json.dumps({"choices": [{"index": 0, "message": message}]}).encode()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Responder], FakeServer]]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    servers: list[FakeServer] = []

    def start(responder: Responder) -> FakeServer:
        servers.append(FakeServer(responder))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def backend(server: FakeServer, **kw: Any) -> OpenAICompatibleBackend:
    settings: dict[str, Any] = {
        "api_key_env": KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 4,
        "backoff_s": 0.001,
        "max_concurrency": 4,
    }
    settings.update(kw)
    return OpenAICompatibleBackend(server.base_url, "judge-model", **settings)


def prompts(n: int) -> list[list[dict[str, str]]]:
    return [
        [{"role": "system", "content": "judge"}, {"role": "user", "content": f"item-{i}"}]
        for i in range(n)
    ]


def echo(delay: Callable[[int], float] = lambda i: 0.0) -> Responder:
    def respond(attempt: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        tag = body["messages"][-1]["content"]
        return Reply(content=f"reply to {tag}", delay_s=delay(int(tag.split("-")[1])))

    return respond


def test_results_keep_input_order_under_concurrency(serve) -> None:
    n = 8
    # Earlier items answer last, so completion order is the reverse of input order.
    server = serve(echo(lambda i: 0.03 * (n - i)))
    out = backend(server, max_concurrency=4).complete(prompts(n))
    assert out == [f"reply to item-{i}" for i in range(n)]
    assert server.max_active >= 2  # the requests really overlapped
    body, headers = server.requests[0]
    assert body["model"] == "judge-model"
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 256
    assert body["messages"][0] == {"role": "system", "content": "judge"}
    assert headers["Content-Type"] == "application/json"


def test_empty_batch_sends_nothing(serve) -> None:
    server = serve(echo())
    assert backend(server).complete([]) == []
    assert server.requests == []


def test_retries_after_500_and_429_then_succeeds(serve, caplog) -> None:
    script = {1: 500, 2: 429, 3: 503}

    def respond(attempt: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        status = script.get(attempt, 200)
        return Reply(status=status, content=f"done after {attempt}" if status == 200 else None)

    server = serve(respond)
    with caplog.at_level(logging.WARNING, logger="persona_jax.judges.openai_client"):
        out = backend(server).complete(prompts(2))
    assert out == ["done after 4", "done after 4"]
    assert server.attempts == Counter({"item-0": 4, "item-1": 4})
    retries = [r.getMessage() for r in caplog.records]
    assert len(retries) == 6
    assert any("HTTP 429" in m for m in retries)
    assert all(server.base_url in m for m in retries)


def test_retry_after_header_is_honoured(serve) -> None:
    def respond(attempt: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        if attempt == 1:
            return Reply(status=429, content=None, headers={"Retry-After": "0.4"})
        return Reply(content="fine")

    server = serve(respond)
    start = time.monotonic()
    assert backend(server, backoff_s=0.001).complete(prompts(1)) == ["fine"]
    assert time.monotonic() - start >= 0.4


def test_gives_up_after_max_retries_with_clear_error(serve) -> None:
    server = serve(lambda attempt, body, headers: Reply(status=503, content=None))
    with pytest.raises(JudgeBackendError) as err:
        backend(server, max_retries=2).complete(prompts(1))
    assert server.attempts["item-0"] == 3
    message = str(err.value)
    assert f"{server.base_url}/chat/completions" in message
    assert "3 attempts" in message
    assert "HTTP 503" in message


def test_unreachable_server_error_names_the_url() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and now has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    client = OpenAICompatibleBackend(url, "m", max_retries=2, backoff_s=0.001, timeout_s=2)
    with pytest.raises(JudgeBackendError) as err:
        client.complete(prompts(3))
    message = str(err.value)
    assert f"{url}/chat/completions" in message
    assert "3 attempts" in message
    assert "cannot connect" in message


def test_timeout_is_retried_then_reported(serve) -> None:
    server = serve(lambda attempt, body, headers: Reply(content="late", delay_s=1.0))
    with pytest.raises(JudgeBackendError, match="2 attempts"):
        backend(server, timeout_s=0.2, max_retries=1).complete(prompts(1))
    assert server.attempts["item-0"] == 2


def test_no_retry_on_400(serve) -> None:
    server = serve(
        lambda attempt, body, headers: Reply(status=400, body=b'{"error": "unknown model"}')
    )
    with pytest.raises(JudgeBackendError) as err:
        backend(server).complete(prompts(1))
    assert server.attempts["item-0"] == 1
    assert "HTTP 400" in str(err.value)
    assert "unknown model" in str(err.value)


def test_malformed_reply_is_an_error_not_a_retry(serve) -> None:
    server = serve(lambda attempt, body, headers: Reply(body=b'{"result": "YES"}'))
    with pytest.raises(JudgeBackendError, match="not a chat completion"):
        backend(server).complete(prompts(1))
    assert server.attempts["item-0"] == 1


def test_null_content_reads_as_empty_text(serve) -> None:
    server = serve(lambda attempt, body, headers: Reply(content=None))
    assert backend(server).complete(prompts(1)) == [""]


def test_authorization_header_comes_from_env_at_request_time(serve, monkeypatch) -> None:
    server = serve(echo())
    client = backend(server)
    client.complete(prompts(1))
    assert "Authorization" not in server.requests[-1][1]  # unset: keyless local server
    monkeypatch.setenv(KEY_ENV, SECRET)  # set after construction: read per request
    client.complete(prompts(1))
    assert server.requests[-1][1]["Authorization"] == f"Bearer {SECRET}"


def test_key_never_appears_in_repr_config_logs_or_errors(serve, monkeypatch, caplog) -> None:
    monkeypatch.setenv(KEY_ENV, SECRET)

    def respond(attempt: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        if body["messages"][-1]["content"] == "item-0":
            return Reply(status=500 if attempt == 1 else 200, content="fine")
        # A server that echoes the credentials it was given in its error body.
        return Reply(status=401, body=f"bad key {headers['Authorization']}".encode())

    server = serve(respond)
    client = backend(server, max_concurrency=1)
    with caplog.at_level(logging.DEBUG, logger="persona_jax.judges"):
        assert client.complete(prompts(1)) == ["fine"]
        with pytest.raises(JudgeBackendError) as err:
            client.complete(prompts(2)[1:])
    assert server.requests[0][1]["Authorization"] == f"Bearer {SECRET}"
    assert len(caplog.records) >= 2  # the retry warning and the debug lines were emitted
    for record in caplog.records:
        assert SECRET not in record.getMessage()
    assert SECRET not in str(err.value)
    assert "HTTP 401" in str(err.value)
    assert KEY_ENV in str(err.value)
    assert SECRET not in repr(client)
    assert SECRET not in str(client)
    config = client.to_config()
    assert SECRET not in json.dumps(config)
    assert config["api_key_env"] == KEY_ENV
    assert config["model"] == "judge-model"
    assert SECRET not in repr(vars(client))


def test_concurrency_cap_is_respected_across_calls(serve) -> None:
    server = serve(echo(lambda i: 0.1))
    client = backend(server, max_concurrency=3)
    assert client.complete(prompts(9)) == [f"reply to item-{i}" for i in range(9)]
    assert server.max_active == 3

    # Two batches at once from two threads still share one cap.
    server.max_active = 0
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(client.complete(prompts(6))))]
    threads.append(threading.Thread(target=lambda: results.append(client.complete(prompts(6)))))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 2
    assert server.max_active == 3


@pytest.mark.parametrize(
    ("url", "kw", "match"),
    [
        ("localhost:8000/v1", {}, "http"),
        ("http://user:pw@host/v1", {}, "credentials"),
        ("http://host/v1", {"max_concurrency": 0}, "max_concurrency"),
        ("http://host/v1", {"max_retries": -1}, "max_retries"),
        ("http://host/v1", {"timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_settings_are_refused(url: str, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OpenAICompatibleBackend(url, "m", **kw)
