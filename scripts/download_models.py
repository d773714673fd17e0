"""Fetch the real weights of every model in the zoo into MODELS_DIR, verify each loads, and report.

Where each model comes from is its registry entry's `source` (a Hub repository or one direct file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from workers.model_files import COMPLETE_MARKER, is_complete, model_dir
from workers.registry import MODELS, REGISTRY, DirectFile, HubRepo, ModelEntry
from workers.settings import ZooSettings

OFFLINE_ENV = "HF_HUB_OFFLINE"


# Other frameworks' copies of the same weights: never needed by the PyTorch loaders.
FOREIGN_WEIGHT_PATTERNS: tuple[str, ...] = (
    "*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "onnx/*", "*.tflite", "*.mlmodel", "coreml/*",
    "openvino/*", "*.gguf",
)


class FetchError(Exception):
    """A model could not be fetched; the message says why, for the report."""


def network_disabled() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def source_of(entry: ModelEntry) -> str:
    """Where a model's weights come from (its registry entry's source), as shown in the report."""
    return entry.source.url


def hub_ignore_patterns(repo_files: list[str]) -> list[str]:
    """Files of a Hub repo to skip: other frameworks' formats, and .bin weights duplicated as safetensors."""
    patterns = list(FOREIGN_WEIGHT_PATTERNS)
    if any(fnmatch(name, "model*.safetensors") for name in repo_files):
        patterns.append("pytorch_model*.bin")
    return patterns


def directory_mb(path: Path) -> float:
    """Size of a model directory's files (the Hub's download bookkeeping excluded)."""
    if not path.exists():
        return 0.0
    files = [p for p in path.rglob("*") if p.is_file() and ".cache" not in p.relative_to(path).parts]
    return sum(p.stat().st_size for p in files) / 2**20


def fetch_hub(repo_id: str, dest: Path) -> None:
    """Snapshot a Hub repo into dest (resumable; huggingface_hub shows progress bars)."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if network_disabled():
        raise FetchError(f"cannot fetch {repo_id} from the Hugging Face Hub: network access is disabled ({OFFLINE_ENV}=1)")
    try:
        ignore = hub_ignore_patterns(HfApi().list_repo_files(repo_id))
        snapshot_download(repo_id=repo_id, local_dir=dest, ignore_patterns=ignore)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as exc:
        raise FetchError(f"cannot fetch {repo_id} from the Hugging Face Hub: {exc}") from exc


def fetch_http(url: str, dest_file: Path) -> None:
    """GET url into dest_file, resuming a previous partial download (<file>.part) with a Range request."""
    import httpx
    from tqdm import tqdm

    part = dest_file.with_name(dest_file.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=60) as response:
        if response.status_code == 416 and start:  # the partial file already holds everything
            part.rename(dest_file)
            return
        response.raise_for_status()
        if start and response.status_code != 206:  # the server ignored the range: start over
            start = 0
        total = int(response.headers.get("content-length", 0)) + start
        with part.open("ab" if start else "wb") as out, tqdm(
            total=total or None, initial=start, unit="B", unit_scale=True, desc=dest_file.name
        ) as bar:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    part.rename(dest_file)


def fetch_direct(direct: DirectFile, dest: Path) -> None:
    """Download one weights file into dest."""
    if network_disabled():
        raise FetchError(f"cannot fetch {direct.url}: network access is disabled ({OFFLINE_ENV}=1)")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / direct.filename
    if target.exists():
        return
    try:
        if direct.via == "gdrive":
            import gdown

            if not gdown.download(direct.url, str(target), quiet=False, resume=True):
                raise FetchError(f"cannot fetch {direct.url}: Google Drive returned nothing")
        else:
            fetch_http(direct.url, target)
    except FetchError:
        raise
    except Exception as exc:  # network and HTTP failures of either client
        raise FetchError(f"cannot fetch {direct.url}: {exc}") from exc


def fetch(entry: ModelEntry, dest: Path) -> None:
    """Fetch one model's weights into dest, by the kind of its source."""
    if isinstance(entry.source, HubRepo):
        fetch_hub(entry.source.repo_id, dest)
    else:
        fetch_direct(entry.source, dest)


def verify(entry: ModelEntry, dest: Path, device: str) -> None:
    """Load the model through its own family and unload it again."""
    wrapper = entry.load_class()(dest, device, ZooSettings())
    wrapper.load()
    wrapper.unload()


def local_status(dest: Path) -> str:
    """What is on disk, without touching the network."""
    if is_complete(dest):
        return "present"
    return "partial" if dest.exists() and any(dest.iterdir()) else "missing"


@dataclass
class Outcome:
    """One row of the report."""

    name: str
    source: str
    path: Path
    status: str
    error: str | None = None


def process(entry: ModelEntry, models_dir: Path, skip_verify: bool, device: str) -> Outcome:
    """Fetch (unless complete) and verify one model; failures become the outcome's error."""
    dest = model_dir(entry, models_dir)
    source = source_of(entry)
    present = is_complete(dest)
    try:
        if not present:
            fetch(entry, dest)
    except FetchError as exc:
        return Outcome(entry.name, source, dest, "failed", str(exc))
    if skip_verify:
        return Outcome(entry.name, source, dest, "present" if present else "downloaded (not verified)")
    try:
        verify(entry, dest, device)
    except Exception as exc:  # any loader failure is reported, not raised
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Outcome(entry.name, source, dest, "failed", f"does not load: {type(exc).__name__}: {first_line}")
    if not present:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        (dest / COMPLETE_MARKER).write_text(f"downloaded from {source}\nverified {stamp}\n")
    return Outcome(entry.name, source, dest, "present, verified" if present else "downloaded, verified")


def report(console: Console, outcomes: list[Outcome]) -> None:
    table = Table("name", "source", "path", "size MB", "status")
    for outcome in outcomes:
        status = f"[red]{outcome.status}[/red]" if outcome.error else outcome.status
        table.add_row(outcome.name, outcome.source, str(outcome.path), f"{directory_mb(outcome.path):.1f}", status)
    console.print(table)
    for outcome in outcomes:
        if outcome.error:
            console.print(f"[red]error:[/red] {outcome.name}: {outcome.error}", soft_wrap=True)


app = typer.Typer(add_completion=False)


@app.command()
def main(
    models_dir: Path | None = typer.Option(
        None, "--models-dir", envvar="MODELS_DIR", help="Target directory (MODELS_DIR, default ./models)"
    ),
    only: list[str] = typer.Option([], "--only", help="Model name; repeat for several (default: all)"),
    list_only: bool = typer.Option(False, "--list", help="Show what would be fetched and what is present; no network"),
    skip_verify: bool = typer.Option(False, "--skip-verify", help="Do not load each model after fetching it"),
    device: str = typer.Option("cpu", help="Device to verify models on"),
) -> None:
    """Download every model of the zoo (or --only some) into MODELS_DIR/<name>, skipping complete ones."""
    console = Console()
    models_dir = Path(models_dir or "models")
    unknown = sorted(set(only) - set(REGISTRY))
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {unknown}; known: {sorted(REGISTRY)}", param_hint="--only")
    entries = [REGISTRY[name] for name in only] if only else list(MODELS)
    if list_only:
        dests = [model_dir(entry, models_dir) for entry in entries]
        outcomes = [
            Outcome(entry.name, source_of(entry), dest, local_status(dest)) for entry, dest in zip(entries, dests)
        ]
    else:
        models_dir.mkdir(parents=True, exist_ok=True)
        outcomes = [process(entry, models_dir, skip_verify, device) for entry in entries]
    report(console, outcomes)
    if any(outcome.error for outcome in outcomes):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
