"""The optional risk call against a small local OpenAI-compatible server started by each test."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.risk import RiskAssessment, RiskCallError, assess_risk, chat_url, extract_json_object
from workers.settings import NemotronSettings

GOOD = {"risk_score": 82, "risk_level": "high", "summary": "Masked person with a knife at the back door.",
        "reasoning": "Weapon detected at 87%, crouching posture, picking-lock action."}


class ChatServer:
    """Answers every POST with a chat-completions body whose content is `content` (after `delay` seconds)."""

    def __init__(self, content: str = "", status: int = 200, delay: float = 0.0, raw: str | None = None):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                outer.requests.append({"path": self.path,
                                       "body": json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
                time.sleep(delay)
                payload = raw if raw is not None else json.dumps(
                    {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
                data = payload.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    servers: list[ChatServer] = []

    def start(**kwargs) -> ChatServer:
        servers.append(ChatServer(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_good_answer_is_parsed_and_request_is_openai_shaped(serve):
    server = serve(content=json.dumps(GOOD))
    result = assess_risk("the prompt", server.url, model="nemotron-mini", timeout=5)
    assert result == RiskAssessment(**GOOD)
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "nemotron-mini"
    assert request["body"]["messages"] == [{"role": "user", "content": "the prompt"}]


def test_fenced_answer_with_thinking_and_prose_around_it(serve):
    content = ("<think>The schema is {\"risk_score\": ...}; weapon present {so high}.</think>\n"
               "Here is my assessment:\n```json\n" + json.dumps({**GOOD, "risk_level": "High"}) + "\n```\nStay safe.")
    result = assess_risk("p", serve(content=content).url, model="m", timeout=5)
    assert result.risk_score == 82 and result.risk_level == "high"


def test_bare_object_inside_text_is_found():
    text = 'Sure. {"note": "ignore me"} Final answer: ' + json.dumps(GOOD) + " That is all."
    assert extract_json_object(text) == GOOD


def test_non_json_answer_is_a_clear_error(serve):
    with pytest.raises(RiskCallError, match="no JSON object"):
        assess_risk("p", serve(content="I think the risk is moderate.").url, model="m", timeout=5)


def test_broken_json_answer_is_a_clear_error(serve):
    with pytest.raises(RiskCallError, match="no JSON object"):
        assess_risk("p", serve(content='{"risk_score": 40, "risk_level": "medium",').url, model="m", timeout=5)


def test_out_of_range_score_violates_the_schema(serve):
    with pytest.raises(RiskCallError, match="risk_score"):
        assess_risk("p", serve(content=json.dumps({**GOOD, "risk_score": 150})).url, model="m", timeout=5)


def test_unknown_risk_level_violates_the_schema(serve):
    with pytest.raises(RiskCallError, match="risk_level"):
        assess_risk("p", serve(content=json.dumps({**GOOD, "risk_level": "severe"})).url, model="m", timeout=5)


def test_missing_field_violates_the_schema(serve):
    answer = {k: v for k, v in GOOD.items() if k != "reasoning"}
    with pytest.raises(RiskCallError, match="reasoning"):
        assess_risk("p", serve(content=json.dumps(answer)).url, model="m", timeout=5)


def test_slow_answer_times_out(serve):
    server = serve(content=json.dumps(GOOD), delay=2.0)
    started = time.monotonic()
    with pytest.raises(RiskCallError, match="did not answer within 0.3 s"):
        assess_risk("p", server.url, model="m", timeout=0.3)
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RiskCallError, match="unreachable"):
        assess_risk("p", f"http://127.0.0.1:{port}", model="m", timeout=2)


def test_http_error_status_is_reported(serve):
    with pytest.raises(RiskCallError, match="HTTP 503"):
        assess_risk("p", serve(status=503, raw='{"error": "loading model"}').url, model="m", timeout=5)


def test_non_chat_response_is_reported(serve):
    with pytest.raises(RiskCallError, match="not a chat-completions response"):
        assess_risk("p", serve(raw="<html>proxy</html>").url, model="m", timeout=5)


@pytest.mark.parametrize("base", ["http://h:8091", "http://h:8091/", "http://h:8091/v1", "http://h:8091/v1/chat/completions"])
def test_chat_url_accepts_base_or_full_endpoint(base):
    assert chat_url(base) == "http://h:8091/v1/chat/completions"


def test_settings_from_environment(monkeypatch):
    monkeypatch.delenv("NEMOTRON_URL", raising=False)
    assert NemotronSettings().enabled is False
    monkeypatch.setenv("NEMOTRON_URL", "http://llm:8091")
    monkeypatch.setenv("NEMOTRON_MODEL", "nemotron-30b")
    monkeypatch.setenv("NEMOTRON_TIMEOUT", "12.5")
    assert NemotronSettings() == NemotronSettings(url="http://llm:8091", model="nemotron-30b", timeout=12.5)
