"""The optional Nemotron call after assembly: a good answer is stored with the result, a bad one is an error."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripts.fixtures.sample_events import vehicle_event
from tests.reliability.conftest import report

pytestmark = pytest.mark.integration

ANSWERS = {
    "good": {"risk_score": 12, "risk_level": "low", "summary": "A bus passing.", "reasoning": "No person nearby."},
    "bad": "I think it is probably fine",
}


class FakeNemotron(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions that answers per the camera id in the prompt."""

    prompts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        self.prompts.append(prompt)
        answer = ANSWERS["bad"] if "cam-bad" in prompt else json.dumps(ANSWERS["good"])
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def nemotron():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeNemotron)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_risk_answer_is_stored_and_a_bad_answer_is_an_error(make_pool, nemotron):
    pool, _ = make_pool({"NEMOTRON_URL": nemotron, "NEMOTRON_TIMEOUT": "10"})
    good = pool.client.enrich(vehicle_event("risk-good") | {"camera_id": "cam-good"}, timeout=240)
    bad = pool.client.enrich(vehicle_event("risk-bad") | {"camera_id": "cam-bad"}, timeout=240)
    report("risk call", 2, {"risk-good": good, "risk-bad": bad})
    assert good["risk"] == ANSWERS["good"]
    assert pool.client.stored("risk-good")["risk"] == ANSWERS["good"], "the stored result carries the answer"
    assert bad["risk"] is None and "risk" in bad["errors"]
    assert bad["status"] == "complete", "a failed risk call does not undo the enrichment"
    assert any("cam-good" in p for p in FakeNemotron.prompts)
