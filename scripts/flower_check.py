"""Flower against a running pool: basic auth turns strangers away, its API lists the pool's workers, and a
headless Chromium renders the workers page to a PNG.

Chromium is given the credentials in the URL (http://user:password@host/workers). It still honours them for
the page and its same-origin requests; the page's rendered DOM is checked for the workers' names, so a
Chromium that stopped doing so would fail the check with Flower's "Access denied" instead of passing quietly.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import typer

from tasks.local_pool import free_port

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1280,900", "--virtual-time-budget=5000",  # let the page's requests finish before capture
]
REPO = Path(__file__).resolve().parents[1]


class CheckFailed(Exception):
    """One of the checks did not hold; the message says which."""


@dataclass
class FlowerReport:
    url: str
    unauthenticated_status: int
    wrong_password_status: int
    authenticated_status: int
    api_workers: list[str]
    page_workers: list[str]
    screenshot: str
    screenshot_bytes: int


def chromium_binary() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def http_status(url: str, credentials: str | None = None, timeout: float = 30) -> tuple[int, bytes]:
    """GET url, with HTTP basic auth when credentials ('user:password') are given; (status, body)."""
    headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()} if credentials else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start_flower(redis_url: str, port: int, credentials: str, log_path: Path) -> subprocess.Popen:
    """`model-zoo flower` (the README's way: it refuses to start without basic auth) on loopback, for the pool."""
    command = [sys.executable, "-m", "tasks.cli", "--redis-url", redis_url, "flower", f"--port={port}",
               "--address=127.0.0.1"]
    env = os.environ | {"FLOWER_BASIC_AUTH": credentials, "PYTHONUNBUFFERED": "1"}  # the only credentials
    with log_path.open("ab") as log:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_up(process: subprocess.Popen, base_url: str, log_path: Path, timeout: float) -> None:
    """Flower's unauthenticated /healthcheck answers, or the reason it did not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CheckFailed(f"flower exited with code {process.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            if http_status(base_url + "/healthcheck", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise CheckFailed(f"flower did not answer on {base_url} within {timeout:g}s")


def wait_for_workers(base_url: str, credentials: str, expected: list[str], minimum: int, timeout: float) -> list[str]:
    """Online workers from Flower's API once every expected name (and at least `minimum`) is listed."""
    deadline = time.monotonic() + timeout
    online: list[str] = []
    while time.monotonic() < deadline:
        status, body = http_status(base_url + "/api/workers?status=true", credentials)
        if status != 200:
            raise CheckFailed(f"GET /api/workers with credentials answered {status}")
        online = sorted(name for name, up in json.loads(body).items() if up)
        if set(expected) <= set(online) and len(online) >= minimum:
            return online
        time.sleep(0.5)
    raise CheckFailed(f"Flower lists {online or 'no workers'} after {timeout:g}s; expected {expected or minimum}")


def run_chromium(binary: str, url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium with a throwaway profile."""
    with tempfile.TemporaryDirectory(prefix="mz-chromium-") as profile:
        result = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                                capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise CheckFailed(f"chromium exited with {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def check(redis_url: str, out: Path, expected: list[str], minimum: int = 1, timeout: float = 60,
          port: int | None = None) -> FlowerReport:
    """Start Flower for the pool at redis_url, run every check, leave the screenshot at `out`, stop Flower."""
    binary = chromium_binary()
    if binary is None:
        raise CheckFailed(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}); apt-get install chromium")
    port = port or free_port()
    credentials = f"operator:{secrets.token_urlsafe(12)}"
    base_url = f"http://127.0.0.1:{port}"
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".flower.log")
    flower = start_flower(redis_url, port, credentials, log_path)
    try:
        wait_until_up(flower, base_url, log_path, timeout)
        anonymous = http_status(base_url + "/")[0]
        wrong = http_status(base_url + "/", credentials + "x")[0]
        signed_in = http_status(base_url + "/", credentials)[0]
        api_anonymous = http_status(base_url + "/api/workers")[0]
        if (anonymous, wrong, api_anonymous) != (401, 401, 401) or signed_in != 200:
            raise CheckFailed(f"basic auth not enforced: / anonymous {anonymous}, wrong password {wrong}, "
                              f"with credentials {signed_in}; /api/workers anonymous {api_anonymous}")
        online = wait_for_workers(base_url, credentials, expected, minimum, timeout)
        page_url = f"http://{credentials}@127.0.0.1:{port}/workers"
        dom = run_chromium(binary, page_url, "--dump-dom").stdout
        page_workers = sorted(name for name in online if name in dom)
        if page_workers != online:
            hint = " (Flower answered 'Access denied')" if "Access denied" in dom else ""
            raise CheckFailed(f"the rendered workers page lists {page_workers}, not {online}{hint}")
        out.unlink(missing_ok=True)
        run_chromium(binary, page_url, f"--screenshot={out}")
        if not out.exists():
            raise CheckFailed(f"chromium wrote no screenshot at {out}")
        return FlowerReport(
            url=base_url + "/workers", unauthenticated_status=anonymous, wrong_password_status=wrong,
            authenticated_status=signed_in, api_workers=online, page_workers=page_workers,
            screenshot=str(out), screenshot_bytes=out.stat().st_size,
        )
    finally:
        flower.terminate()
        try:
            flower.wait(timeout=15)
        except subprocess.TimeoutExpired:
            flower.kill()
            flower.wait()


def main(
    redis_url: str = typer.Option(..., envvar="REDIS_URL", help="The running pool's broker (REDIS_URL)"),
    out: Path = typer.Option(REPO / "var" / "flower" / "workers.png", help="Where the screenshot goes"),
    worker: list[str] = typer.Option([], "--worker", help="A node name Flower must list, e.g. router@host; repeat"),
    minimum: int = typer.Option(1, "--min-workers", help="At least this many online workers"),
    timeout: float = typer.Option(60.0, help="Seconds to wait for Flower and for the workers to show up"),
    port: int = typer.Option(0, help="Flower's port (0: a free one)"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON"),
) -> None:
    """Start Flower for a running pool and check auth, the API's worker list and the rendered workers page."""
    try:
        report = check(redis_url, out, worker, minimum, timeout, port or None)
    except CheckFailed as exc:
        typer.echo(f"flower check failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(asdict(report)))
        return
    typer.echo(f"Flower at {report.url}: anonymous {report.unauthenticated_status}, wrong password "
               f"{report.wrong_password_status}, with credentials {report.authenticated_status}")
    typer.echo(f"workers online (API and rendered page): {', '.join(report.api_workers)}")
    typer.echo(f"screenshot: {report.screenshot} ({report.screenshot_bytes} bytes)")


if __name__ == "__main__":
    typer.run(main)
