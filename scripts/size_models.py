"""Size every model of the zoo through the project's own loaders and cache: memory, load and inference times.

Each model runs in a fresh process (one at a time, killed at its time bound): the runtime is built and, where
the checkout has it, warmed up as a device worker does at start (library imports, CUDA context); then the
first load, more loads (unload in between), inferences on one detection, and a micro-batch against as many
single calls for the families that batch. Every figure goes through DeviceRuntime and ModelCache: load_ms as
the cache times it, bytes as the cache measures them (the CUDA allocator's gain on a GPU, tensor bytes on a
CPU) beside the registry's figure and the estimate from the weights on disk. Missing weights are generated
first (full size by default, random weights). The JSON report is rewritten after every model.

    python scripts/size_models.py --device cuda                 # one command on a GPU (under 6 minutes on an H100)
    python scripts/size_models.py --device cpu --only clothing  # here
    python scripts/size_models.py --source ../before --json var/size/before.json  # another checkout's code
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
MB = 2**20
BATCH = 4  # detections per micro-batch when comparing against single calls

console = Console(width=160)
app = typer.Typer(add_completion=False)


# -- figures -------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))], 2)


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "min": round(min(values), 2) if values else None, "max": round(max(values), 2) if values else None}


def mb(nbytes: int | None) -> float | None:
    return None if nbytes is None else round(nbytes / MB, 2)


# -- the child: one model in a fresh process -------------------------------------------------------------------
def emit(record: dict[str, Any]) -> None:
    """One stage's figures, as a JSON line the parent keeps even if the child is killed later."""
    print("SIZE " + json.dumps(record), flush=True)


def sample_inputs(count: int) -> list[Any]:
    """count person detections on a real photo (boxes shifted a little), with a face and an 8-frame buffer."""
    from PIL import Image

    try:
        from scripts.fixtures.sample_events import two_people_photo
    except ImportError:  # a measured checkout from before the fixtures moved
        from tasks.sample_events import two_people_photo
    from workers.models.base import ModelInput

    frame = Image.open(io.BytesIO(two_people_photo())).convert("RGB")
    return [
        ModelInput(frame=frame, bbox=(747 - 8 * i, 41 + 4 * i, 1141 - 8 * i, 712 - 4 * i), detection_type="person",
                   face_bbox=(860, 90, 1010, 290), frames=[frame] * 8)
        for i in range(count)
    ]


def run_child(name: str, models_dir: Path, device: str, loads: int, infers: int, stage_seconds: float,
              spawned_at: float) -> None:
    """Measure one model in this (fresh) process, emitting each stage as it completes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    started = time.perf_counter()
    from workers.frames import DecodedFrames
    from workers.registry import REGISTRY
    from workers.runtime import DeviceRuntime
    from workers.settings import Settings

    settings = Settings(models_dir=models_dir, device=device, memory_share_mb=200_000, model_batch_size=1)
    runtime = DeviceRuntime(settings, DecodedFrames(None, settings.max_image_pixels), "size-models")
    entry = REGISTRY[name]
    emit({"stage": "ready", "device": runtime.device, "import_ms": round((time.perf_counter() - started) * 1000, 1),
          "since_spawn_ms": round((time.time() - spawned_at) * 1000, 1)})

    # runtime.services.warm_up; older checkouts had it on the runtime itself, or not at all
    warm_up = getattr(getattr(runtime, "services", runtime), "warm_up", None)
    if warm_up is not None:
        began = time.perf_counter()
        steps = warm_up([name])
        emit({"stage": "warm_up", "warm_up_ms": round((time.perf_counter() - began) * 1000, 1), "steps": steps})

    spec = runtime.spec_for(entry)
    load_ms: list[float] = []
    first = runtime.cache.get(spec)
    load_ms.append(first.load_ms)
    held = next(m for m in runtime.cache.snapshot()["models"] if m["name"] == name)
    disk = getattr(runtime, "weights_estimate_bytes", None)
    emit({"stage": "first_load", "first_load_ms": round(first.load_ms, 1),
          "since_spawn_ms": round((time.time() - spawned_at) * 1000, 1),
          "measured_bytes": held.get("measured_bytes", held.get("bytes")), "spec_estimate_bytes": spec.estimated_bytes,
          "registry_mb": entry.estimated_mb, "disk_estimate_bytes": disk(entry) if disk else None})

    deadline = time.monotonic() + stage_seconds
    while len(load_ms) < loads and time.monotonic() < deadline:
        runtime.cache.evict(name)
        load_ms.append(runtime.cache.get(spec).load_ms)
    emit({"stage": "loads", "load_ms": [round(v, 1) for v in load_ms], "after_first": summary(load_ms[1:])})

    wrapper = runtime.cache.get(spec).model
    inputs = sample_inputs(BATCH)
    infer_ms: list[float] = []
    skipped = None
    deadline = time.monotonic() + stage_seconds
    for attempt in range(infers + 1):  # the first call warms up (kernels, autotuning) and is reported apart
        began = time.perf_counter()
        try:
            wrapper.infer(inputs[0])
        except Exception as exc:  # e.g. InferenceSkipped: nothing to time
            skipped = f"{type(exc).__name__}: {exc}"
            break
        elapsed = (time.perf_counter() - began) * 1000
        if attempt == 0:
            emit({"stage": "first_infer", "first_infer_ms": round(elapsed, 1)})
        else:
            infer_ms.append(elapsed)
        if time.monotonic() > deadline:
            break
    emit({"stage": "infer", "infer": summary(infer_ms), "skipped": skipped})

    if getattr(wrapper, "batchable", False) and skipped is None and infer_ms:
        batch_ms: list[float] = []
        deadline = time.monotonic() + stage_seconds
        while len(batch_ms) < max(3, infers // 2) and time.monotonic() < deadline:
            began = time.perf_counter()
            wrapper.infer_batch(inputs)
            batch_ms.append((time.perf_counter() - began) * 1000)
        single = percentile(infer_ms, 50) or 0.0
        batched = percentile(batch_ms, 50) or 0.0
        emit({"stage": "batch", "batch_size": BATCH, "batch": summary(batch_ms),
              "speedup": round(BATCH * single / batched, 2) if batched else None})
    emit({"stage": "done", "since_spawn_ms": round((time.time() - spawned_at) * 1000, 1)})


# -- the parent: generation, one child per model, the report ---------------------------------------------------
def generate(names: list[str], models_dir: Path, full_size: bool) -> dict[str, float]:
    """Write random weights for the models whose directories are not complete; seconds per model written."""
    from scripts.fixtures.weights import write_generated
    from workers.model_files import is_complete, model_dir
    from workers.registry import REGISTRY

    seconds: dict[str, float] = {}
    for name in names:
        if is_complete(model_dir(REGISTRY[name], models_dir)):
            continue
        began = time.perf_counter()
        write_generated(REGISTRY[name], models_dir, full_size=full_size)
        seconds[name] = round(time.perf_counter() - began, 1)
        console.print(f"generated {name} in {seconds[name]} s")
    return seconds


def measure_in_child(name: str, source: Path, models_dir: Path, device: str, loads: int, infers: int,
                     stage_seconds: float, model_seconds: float) -> dict[str, Any]:
    """Run run_child for name in a fresh interpreter; keep every stage it reported before it ended or was killed."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--source", str(source),
               "--models-dir", str(models_dir), "--device", device, "--loads", str(loads), "--infers", str(infers),
               "--stage-seconds", str(stage_seconds), "--spawned-at", repr(time.time())]
    env = os.environ | {"PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}
    result: dict[str, Any] = {"model": name}
    began = time.monotonic()
    try:
        done = subprocess.run(command, cwd=source, env=env, capture_output=True, text=True, timeout=model_seconds)
        stdout, stderr, status = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        status = f"killed after {model_seconds:g} s"
    for line in stdout.splitlines():
        if line.startswith("SIZE "):
            record = json.loads(line[5:])
            result[record.pop("stage")] = record
    result["wall_s"] = round(time.monotonic() - began, 1)
    if "done" not in result:
        result["error"] = f"{status}: " + " | ".join(stderr.strip().splitlines()[-3:])
    return result


def row_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The table's columns from one model's stages (None where a stage did not run)."""
    first = result.get("first_load", {})
    loads = result.get("loads", {}).get("after_first", {})
    infer = result.get("infer", {}).get("infer", {})
    return {
        "registry_mb": first.get("registry_mb"), "disk_mb": mb(first.get("disk_estimate_bytes")),
        "measured_mb": mb(first.get("measured_bytes")), "warm_up_ms": result.get("warm_up", {}).get("warm_up_ms"),
        "first_load_ms": first.get("first_load_ms"), "load_p50": loads.get("p50"), "load_p95": loads.get("p95"),
        "first_infer_ms": result.get("first_infer", {}).get("first_infer_ms"),
        "infer_p50": infer.get("p50"), "infer_p95": infer.get("p95"), "batch_speedup": result.get("batch", {}).get("speedup"),
    }


def print_table(report: dict[str, Any]) -> None:
    table = Table(title=f"models on {report['device']} ({report.get('device_name') or platform.processor() or 'cpu'})")
    columns = ["registry MB", "disk est. MB", "measured MB", "warm-up ms", "first load ms", "load p50 / p95 ms",
               "first infer ms", "infer p50 / p95 ms", f"batch x{BATCH}", "wall s"]
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")

    def show(value: Any) -> str:
        return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    for name, result in report["models"].items():
        f = row_figures(result)
        table.add_row(name, show(f["registry_mb"]), show(f["disk_mb"]), show(f["measured_mb"]), show(f["warm_up_ms"]),
                      show(f["first_load_ms"]), f"{show(f['load_p50'])} / {show(f['load_p95'])}",
                      show(f["first_infer_ms"]), f"{show(f['infer_p50'])} / {show(f['infer_p95'])}",
                      show(f["batch_speedup"]), show(result.get("wall_s")))
        if result.get("error"):
            table.add_row("", f"[red]{result['error'][:150]}[/red]", *[""] * (len(columns) - 1))
    console.print(table)


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(report, indent=2))
    partial.replace(path)


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@app.command()
def main(
    device: str = typer.Option("auto", help="cuda, cpu, or auto (cuda when visible)"),
    models_dir: Path = typer.Option(REPO / "var" / "size-models", help="Weights; missing ones are generated here"),
    full_size: bool = typer.Option(True, "--full-size/--tiny", help="Generate full-size (default) or tiny weights"),
    only: list[str] = typer.Option([], "--only", help="Model name; repeat for several (default: all)"),
    loads: int = typer.Option(5, min=1, help="Loads per model (the first, then loads after an unload)"),
    infers: int = typer.Option(10, min=0, help="Timed inferences per model, after one warm-up call"),
    stage_seconds: float = typer.Option(20.0, help="Time bound of each repeated stage (loads, inferences, batches)"),
    model_seconds: float = typer.Option(90.0, help="A model's process is killed after this; what it reported stays"),
    budget_seconds: float = typer.Option(330.0, help="Models not started by then are reported as not run"),
    json_path: Path = typer.Option(REPO / "var" / "size" / "report.json", "--json", help="Report, rewritten per model"),
    source: Path = typer.Option(REPO, help="The checkout whose code is measured (e.g. an older commit's worktree)"),
    child: str = typer.Option("", hidden=True),
    spawned_at: float = typer.Option(0.0, hidden=True),
) -> None:
    """Size every model through the project's loaders and cache; a table and JSON."""
    source = source.resolve()
    sys.path.insert(0, str(source))  # the measured checkout's packages, even where another one is installed
    if child:
        run_child(child, models_dir, device, loads, infers, stage_seconds, spawned_at)
        return
    began = time.monotonic()
    from workers.registry import REGISTRY

    unknown = sorted(set(only) - set(REGISTRY))
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {unknown}; known: {sorted(REGISTRY)}", param_hint="--only")
    names = only or list(REGISTRY)
    device = pick_device(device)
    import torch

    report: dict[str, Any] = {
        "device": device, "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "source": str(source), "commit": git_commit(source), "models_dir": str(models_dir), "full_size": full_size,
        "loads": loads, "infers": infers, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "models": {},
    }
    from scripts.fixtures.weights import NotGenerated

    try:
        report["generated_s"] = generate(names, models_dir.resolve(), full_size)
    except NotGenerated as exc:  # someone's own weights: never replaced with random ones
        raise typer.BadParameter(str(exc), param_hint="--models-dir") from None
    write_report(report, json_path)
    for name in names:
        left = budget_seconds - (time.monotonic() - began)
        if left < 10:
            report["models"][name] = {"model": name, "error": "not run: the time budget was spent"}
            continue
        console.print(f"[bold]{name}[/bold] ...")
        report["models"][name] = measure_in_child(name, source, models_dir.resolve(), device, loads, infers,
                                                  stage_seconds, min(model_seconds, left))
        report["wall_s"] = round(time.monotonic() - began, 1)
        write_report(report, json_path)
    print_table(report)
    console.print(f"report: {json_path}  ({report['wall_s']} s)")


def git_commit(source: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    app()
