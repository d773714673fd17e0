"""Each worker's HTTP face on its metrics port: /metrics for Prometheus, /healthz (the process answers) and /readyz
(ready for work: its broker answers and, on a device worker, warm-up and PRELOAD_MODELS are done).

`python -m workers.health [--live]` asks this worker's own /readyz (or /healthz) on 127.0.0.1:METRICS_PORT and exits
0 or 1: what the compose healthchecks run.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from prometheus_client import CollectorRegistry, make_wsgi_app

from workers.settings import MetricsSettings
from workers.state import WORKER_STATE_PREFIX

log = logging.getLogger(__name__)

Check = Callable[[], str | None]  # None when fine, else why not
CHECK_TIMEOUT_SECONDS = 2.0


def broker_check(client: redis.Redis) -> Check:
    """The broker answers PING (the client should carry a short socket timeout)."""

    def check() -> str | None:
        try:
            client.ping()
        except redis.RedisError as exc:
            return f"broker unreachable: {exc}"
        return None

    return check


def device_start_check(client: redis.Redis, worker: str) -> Check:
    """The device worker's published state says warm-up and preload are done.

    The state is what the process holding the models publishes (a prefork child, or the threads pool's process),
    so the parent serving /readyz reads it from Redis like everyone else; it expires three heartbeats after that
    process stops publishing.
    """

    def check() -> str | None:
        try:
            raw = client.get(WORKER_STATE_PREFIX + worker)
        except redis.RedisError as exc:
            return f"broker unreachable: {exc}"
        if raw is None:
            return f"no state published for {worker}: its model process has not started (or stopped publishing)"
        state = json.loads(raw)
        if not state.get("ready"):
            return f"starting: {state.get('start_up', 'warm-up and preload not done')}"
        return None

    return check


def run_checks(checks: Mapping[str, Check]) -> dict[str, str]:
    """Each check's outcome: "ok", or why not (a check that raises counts as failed)."""
    outcomes = {}
    for name, check in checks.items():
        try:
            problem = check()
        except Exception as exc:  # noqa: BLE001 - a broken check is a failed one, reported
            problem = f"{type(exc).__name__}: {exc}"
        outcomes[name] = "ok" if problem is None else problem
    return outcomes


class Endpoints:
    """The WSGI app: /metrics from the registry, /healthz always 200 while the process answers, /readyz 200 or 503."""

    def __init__(self, registry: CollectorRegistry, worker: str, checks: Mapping[str, Check]):
        self.metrics = make_wsgi_app(registry)
        self.worker = worker
        self.checks = checks

    def __call__(self, request: dict, start_response: Callable) -> list[bytes]:
        path = request.get("PATH_INFO", "/")  # the WSGI environ of this request
        if path == "/healthz":
            return self.reply(start_response, 200, {"worker": self.worker, "alive": True})
        if path == "/readyz":
            outcomes = run_checks(self.checks)
            ready = all(value == "ok" for value in outcomes.values())
            return self.reply(start_response, 200 if ready else 503,
                              {"worker": self.worker, "ready": ready, "checks": outcomes})
        return self.metrics(request, start_response)

    @staticmethod
    def reply(start_response: Callable, status: int, body: dict) -> list[bytes]:
        data = json.dumps(body).encode()
        reason = {200: "OK", 503: "Service Unavailable"}[status]
        start_response(f"{status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scrape never holds the worker's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:  # one line per scrape would flood the worker's log
        pass


def serve(settings: MetricsSettings, registry: CollectorRegistry, worker: str,
          checks: Mapping[str, Check]) -> int | None:
    """Serve /metrics, /healthz and /readyz on METRICS_ADDR:METRICS_PORT from a daemon thread; the port, or None
    when METRICS_PORT is unset or cannot be bound (logged: the worker runs on without them)."""
    if settings.port is None:
        return None
    try:
        server = make_server(settings.addr, settings.port, Endpoints(registry, worker, checks),
                             server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        log.warning("metrics port %s:%s is taken or cannot be bound (%s): this worker serves no /metrics, /healthz "
                    "or /readyz; another pool on this host? set METRICS_PORT_BASE to a free range (0: none)",
                    settings.addr, settings.port, exc.strerror or exc)
        return None
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info("metrics, health and readiness on %s:%s (/metrics, /healthz, /readyz)", settings.addr, settings.port)
    return settings.port


def probe(port: int, path: str, timeout: float = 5.0) -> tuple[bool, str]:
    """GET http://127.0.0.1:<port><path>: whether it answered 200, and its body (or why it did not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status == 200, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode(errors="replace")
    except OSError as exc:
        return False, f"no answer on 127.0.0.1:{port}{path}: {exc}"


def main(argv: list[str] | None = None) -> int:
    """This worker's readiness (or, with --live, liveness) as an exit code, for a container healthcheck."""
    args = sys.argv[1:] if argv is None else argv
    port = MetricsSettings().port
    if port is None:
        print("METRICS_PORT is not set: this worker serves no /readyz", file=sys.stderr)
        return 1
    ok, body = probe(port, "/healthz" if "--live" in args else "/readyz")
    print(body)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
