"""Fetch the real weights of every model in the zoo into MODELS_DIR, verify them against their pins, check each loads,
and report.

Where each model comes from is its registry entry's `source` (a Hub repository or one direct file), and what it is
pinned to: a Hub commit (`HubRepo.revision`) or a SHA-256 (`DirectFile.sha256`). A model the registry does not pin
is pinned by its first download: the commit or digest found then is kept in the lock file (MODELS_DIR/weights.lock.json,
or --lock), and every later download (another host given the same lock file, a directory fetched again) must match it.

Each fetched file is checked: a Hub file against the SHA-256 (LFS) or git blob id the Hub records for it at that
commit, a direct file against its pin. A mismatch is refused, with both digests named; nothing unverified is marked
complete. Each model directory gets a record (.weights.json: source, pin, every file's SHA-256) that device workers
check before loading it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from workers.model_files import (
    COMPLETE_MARKER,
    WeightsRecord,
    WeightsRefused,
    compare_digests,
    file_digests,
    is_complete,
    is_generated,
    model_dir,
    read_record,
    registry_pin,
    sha256_file,
    weight_files,
    write_record,
)
from workers.registry import MODELS, REGISTRY, DirectFile, HubRepo, ModelEntry
from workers.settings import ZooSettings

OFFLINE_ENV = "HF_HUB_OFFLINE"
LOCK_NAME = "weights.lock.json"


# Other frameworks' copies of the same weights: never needed by the PyTorch loaders.
FOREIGN_WEIGHT_PATTERNS: tuple[str, ...] = (
    "*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "onnx/*", "*.tflite", "*.mlmodel", "coreml/*",
    "openvino/*", "*.gguf",
)


class FetchError(Exception):
    """A model could not be fetched, or what came was refused; the message says why, for the report."""


def network_disabled() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def short(pin: str | None) -> str:
    return pin[:12] if pin else "unpinned"


def source_of(entry: ModelEntry, lock: Lock | None = None) -> str:
    """Where a model's weights come from and what pins them, as shown in the report: url@pin (lock: pinned by the
    lock file; unpinned: the next download pins it)."""
    pin = registry_pin(entry)
    if pin:
        return f"{entry.source.url}@{short(pin)}"
    locked = lock.pin(entry) if lock else None
    return f"{entry.source.url}@{short(locked)} (lock)" if locked else f"{entry.source.url} (unpinned)"


# -- the lock file ----------------------------------------------------------------------------------------------

class Lock:
    """MODELS_DIR/weights.lock.json: each fetched model's record (source, pin, files' SHA-256), kept across downloads
    and hosts. The registry's pin, where it has one, overrides the lock's."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.models: dict[str, WeightsRecord] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self.models = {name: WeightsRecord.from_json(json.dumps(record))
                               for name, record in data.get("models", {}).items()}
            except (ValueError, KeyError, TypeError) as exc:
                raise typer.BadParameter(f"{self.path} is not a weights lock file ({exc})", param_hint="--lock") from exc

    def pin(self, entry: ModelEntry) -> str | None:
        """The pin this lock holds for entry (only for the same source: a model moved elsewhere starts afresh)."""
        record = self.models.get(entry.name)
        return record.pin if record and record.source == entry.source.url else None

    def files(self, entry: ModelEntry, pin: str) -> dict[str, str] | None:
        record = self.models.get(entry.name)
        return record.files if record and record.source == entry.source.url and record.pin == pin else None

    def update(self, name: str, record: WeightsRecord) -> None:
        self.models[name] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"comment": "Pins of the weights scripts/download_models.py fetched; give it to other hosts with --lock.",
                "models": {n: json.loads(r.to_json()) for n, r in sorted(self.models.items())}}
        self.path.write_text(json.dumps(data, indent=2) + "\n")


def pin_for(entry: ModelEntry, lock: Lock) -> str | None:
    """What a download must match: the registry's pin, else the lock's (None: the first download, which pins it)."""
    return registry_pin(entry) or lock.pin(entry)


# -- the Hugging Face Hub ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HubFile:
    """What the Hub records for one file at one commit: its SHA-256 when stored in LFS, else its git blob id."""

    sha256: str | None
    blob_id: str | None


def hub_ignore_patterns(repo_files: list[str]) -> list[str]:
    """Files of a Hub repo to skip: other frameworks' formats, and .bin weights duplicated as safetensors."""
    patterns = list(FOREIGN_WEIGHT_PATTERNS)
    if any(fnmatch(name, "model*.safetensors") for name in repo_files):
        patterns.append("pytorch_model*.bin")
    return patterns


def hub_listing(repo_id: str, revision: str | None) -> tuple[str, dict[str, HubFile]]:
    """The commit `revision` names (None: the default branch's head now) and every file's digest there."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    return info.sha, {s.rfilename: HubFile(s.lfs.sha256 if s.lfs else None, s.blob_id) for s in info.siblings or []}


def hub_snapshot(repo_id: str, commit: str, dest: Path, ignore: list[str]) -> None:
    """Snapshot the repo at commit into dest (resumable; huggingface_hub shows progress bars)."""
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=repo_id, revision=commit, local_dir=dest, ignore_patterns=ignore)


def git_blob_id(path: Path) -> str:
    """A file's git object id, as the Hub records files not stored in LFS."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def hub_differences(dest: Path, listing: dict[str, HubFile]) -> list[str]:
    """Files in dest whose bytes differ from what the Hub records for them (or that it does not list)."""
    wrong = []
    for name, path in weight_files(dest).items():
        expected = listing.get(name)
        if expected is None:
            wrong.append(f"{name} (not in the repository at that commit)")
        elif expected.sha256 is not None:
            if (actual := sha256_file(path)) != expected.sha256:
                wrong.append(f"{name} (SHA-256 {actual}, the Hub records {expected.sha256})")
        elif expected.blob_id is not None and (actual := git_blob_id(path)) != expected.blob_id:
            wrong.append(f"{name} (git blob {actual}, the Hub records {expected.blob_id})")
    return wrong


def fetch_hub(entry: ModelEntry, dest: Path, pin: str | None) -> WeightsRecord:
    """Snapshot the entry's repo at its pin (the default branch's head when unpinned) and verify every file."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    repo_id = entry.source.repo_id
    if network_disabled():
        raise FetchError(f"cannot fetch {repo_id} from the Hugging Face Hub: network access is disabled ({OFFLINE_ENV}=1)")
    try:
        commit, listing = hub_listing(repo_id, pin)
        hub_snapshot(repo_id, commit, dest, hub_ignore_patterns(list(listing)))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as exc:
        raise FetchError(f"cannot fetch {repo_id}{'@' + pin if pin else ''} from the Hugging Face Hub: {exc}") from exc
    wrong = hub_differences(dest, listing)
    if wrong:
        raise FetchError(f"refused {repo_id} at {commit}: {'; '.join(wrong[:3])}; nothing was marked complete "
                         f"(remove {dest} and try again)")
    return WeightsRecord(source=entry.source.url, pin=commit, files=file_digests(dest))


# -- direct files -----------------------------------------------------------------------------------------------

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


def fetch_direct(entry: ModelEntry, dest: Path, pin: str | None) -> WeightsRecord:
    """Download one weights file into dest and check its SHA-256 against the pin (a mismatch is removed)."""
    direct: DirectFile = entry.source
    if network_disabled():
        raise FetchError(f"cannot fetch {direct.url}: network access is disabled ({OFFLINE_ENV}=1)")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / direct.filename
    if not target.exists():
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
    digest = sha256_file(target)
    if pin is not None and digest != pin:
        target.unlink()
        raise FetchError(f"refused {direct.url}: its SHA-256 is {digest}, but {pin} is pinned "
                         f"({'by the registry' if registry_pin(entry) else 'by the lock file, from its first download'}); "
                         f"the file was removed")
    return WeightsRecord(source=direct.url, pin=digest, files=file_digests(dest))


def fetch(entry: ModelEntry, dest: Path, pin: str | None) -> WeightsRecord:
    """Fetch one model's weights into dest at its pin and verify them; the record of what came."""
    if isinstance(entry.source, HubRepo):
        return fetch_hub(entry, dest, pin)
    return fetch_direct(entry, dest, pin)


def record_present(entry: ModelEntry, dest: Path, pin: str | None) -> WeightsRecord:
    """A complete directory with no record (fetched before weights were pinned, or by hand): its files checked against
    the pin (a Hub repo needs the network for what the Hub records), then recorded; a mismatch is refused."""
    if isinstance(entry.source, DirectFile):
        file = dest / entry.source.filename
        if not file.is_file():
            raise FetchError(f"{dest} has no {entry.source.filename}: remove it and fetch again")
        digest = sha256_file(file)
        if pin is not None and digest != pin:
            raise FetchError(f"{file} has SHA-256 {digest}, but {pin} is pinned: remove {dest} and fetch again")
        return WeightsRecord(source=entry.source.url, pin=digest, files=file_digests(dest))
    if network_disabled():
        raise FetchError(f"{dest} has no record of its weights, and checking them against the Hub needs the network "
                         f"({OFFLINE_ENV}=1): run again online, or remove {dest} to fetch it afresh")
    try:
        commit, listing = hub_listing(entry.source.repo_id, pin)
    except Exception as exc:  # the Hub's and the network's errors alike
        raise FetchError(f"cannot read {entry.source.repo_id} from the Hub to check {dest}: {exc}") from exc
    wrong = hub_differences(dest, listing)
    if wrong:
        raise FetchError(f"{dest} differs from {entry.source.repo_id} at {commit}: {'; '.join(wrong[:3])}; remove it "
                         f"and fetch again")
    return WeightsRecord(source=entry.source.url, pin=commit, files=file_digests(dest))


# -- one model --------------------------------------------------------------------------------------------------

def verify(entry: ModelEntry, dest: Path, device: str) -> None:
    """Load the model through its own family and unload it again."""
    wrapper = entry.load_class()(dest, device, ZooSettings())
    wrapper.load()
    wrapper.unload()


def directory_mb(path: Path) -> float:
    """Size of a model directory's files (the Hub's download bookkeeping excluded)."""
    if not path.exists():
        return 0.0
    files = [p for p in path.rglob("*") if p.is_file() and ".cache" not in p.relative_to(path).parts]
    return sum(p.stat().st_size for p in files) / 2**20


def local_status(dest: Path) -> str:
    """What is on disk, without touching the network."""
    if is_generated(dest):
        return "generated"
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


def check_present(entry: ModelEntry, dest: Path, pin: str | None) -> WeightsRecord | None:
    """A complete directory's record, its pin and digests checked (None: generated weights, which have none)."""
    if is_generated(dest):
        return None
    record = read_record(dest)
    if record is None:
        return record_present(entry, dest, pin)
    if pin is not None and record.pin != pin:
        raise FetchError(f"{dest} holds {record.source} at {record.pin}, but {pin} is pinned: remove it and fetch again")
    differences = compare_digests(record.files, file_digests(dest))
    if differences:
        raise FetchError(f"{dest} no longer holds what was fetched ({differences}): remove it and fetch again")
    return record


def process(entry: ModelEntry, models_dir: Path, skip_verify: bool, device: str, lock: Lock) -> Outcome:
    """Fetch (unless complete), check against the pin and load one model; failures become the outcome's error."""
    dest = model_dir(entry, models_dir)
    source = source_of(entry, lock)
    present = is_complete(dest)
    pin = pin_for(entry, lock)
    try:
        if present:
            record = check_present(entry, dest, pin)
        else:
            record = fetch(entry, dest, pin)
            expected = lock.files(entry, record.pin)
            if expected is not None and (differences := compare_digests(expected, record.files)):
                raise FetchError(f"refused: the files fetched at {record.pin} differ from the lock file's ({differences})")
    except (FetchError, WeightsRefused) as exc:
        return Outcome(entry.name, source, dest, "failed", str(exc))
    kind = "present" if present else "downloaded"
    if record is None:
        kind = "present (generated random weights, not the real ones)"
    if not skip_verify:
        try:
            verify(entry, dest, device)
        except Exception as exc:  # any loader failure is reported, not raised
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Outcome(entry.name, source, dest, "failed", f"does not load: {type(exc).__name__}: {first_line}")
    if record is not None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        record = WeightsRecord(record.source, record.pin, record.files, record.fetched_at or stamp)
        write_record(dest, record)
        lock.update(entry.name, record)
        if not present:
            (dest / COMPLETE_MARKER).write_text(f"downloaded from {record.source} at {record.pin}\nfetched {stamp}\n")
        source = f"{entry.source.url}@{short(record.pin)}"
    checks = "pin and digests checked" if record is not None else ""
    loads = "loads" if not skip_verify else "not loaded (--skip-verify)"
    return Outcome(entry.name, source, dest, ", ".join(part for part in (kind, checks, loads) if part))


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
    lock_path: Path | None = typer.Option(
        None, "--lock", help=f"The lock file of pins found by first downloads (default MODELS_DIR/{LOCK_NAME}); give "
                             "another host's to fetch the same bytes"),
) -> None:
    """Download every model of the zoo (or --only some) into MODELS_DIR/<name> at its pin, skipping complete ones."""
    console = Console()
    models_dir = Path(models_dir or "models")
    unknown = sorted(set(only) - set(REGISTRY))
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {unknown}; known: {sorted(REGISTRY)}", param_hint="--only")
    lock = Lock(lock_path or models_dir / LOCK_NAME)
    entries = [REGISTRY[name] for name in only] if only else list(MODELS)
    if list_only:
        outcomes = [Outcome(entry.name, source_of(entry, lock), model_dir(entry, models_dir),
                            local_status(model_dir(entry, models_dir))) for entry in entries]
    else:
        models_dir.mkdir(parents=True, exist_ok=True)
        outcomes = [process(entry, models_dir, skip_verify, device, lock) for entry in entries]
        if lock.models and lock_path is None:
            console.print(f"pins kept in {lock.path}: give it to other hosts with --lock to fetch the same bytes")
    report(console, outcomes)
    if any(outcome.error for outcome in outcomes):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
