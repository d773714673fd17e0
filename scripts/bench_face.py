"""Load and inference times of the face family on this machine: MTCNN on skimage's astronaut, the embedder at full
size (random weights, written by scripts/fixtures/weights/face.py), and estimated against measured memory."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's packages, even where another one is installed


def p50(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def main(
    models_dir: Annotated[Path, typer.Option(help="Where the full-size face model is written")] = REPO / "var" / "full",
    repeats: Annotated[int, typer.Option(help="Runs per timing")] = 20,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    threads: Annotated[int, typer.Option(help="torch intra-op threads (0: torch's default)")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here")] = None,
) -> None:
    """Write (once) and time the full-size face model."""
    started = time.perf_counter()
    import torch
    from PIL import Image
    from skimage import data

    from scripts.fixtures.weights.face import write_face
    from workers.models.base import ModelInput
    from workers.models.face import FaceModel, align_face, head_region

    imports_ms = (time.perf_counter() - started) * 1000
    if threads:
        torch.set_num_threads(threads)
    path = models_dir / "face"
    if not (path / ".complete").exists():
        write_face(path, full_size=True)
        (path / ".complete").write_text("full-size random\n")
    astronaut = Image.fromarray(data.astronaut())
    person = ModelInput(astronaut, (120.0, 40.0, 340.0, 512.0))  # her figure, shoulders to the frame's bottom
    model = FaceModel(path, device)
    loads = []
    for _ in range(3):
        began = time.perf_counter()
        model.load()
        loads.append((time.perf_counter() - began) * 1000)
        if _ < 2:
            model.unload()
    first_ms = p50(lambda: model.infer(person), 1)  # the first call pays for oneDNN's kernels
    faces = model.detect(astronaut)
    aligned = align_face(astronaut, faces[0].landmarks)
    region = head_region(person.bbox, astronaut.size)
    params = sum(t.numel() * t.element_size() for t in model.model.state_dict().values())
    params += sum(t.numel() * t.element_size() for net in (model.detector.pnet, model.detector.rnet,
                                                           model.detector.onet) for t in net.state_dict().values())
    report = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads, device {device}",
        "library_imports_ms": round(imports_ms), "load_ms_first": round(loads[0]), "load_ms_again": round(loads[-1]),
        "model_id_hash_included": True,
        "first_infer_ms": first_ms,
        "infer_p50_ms": p50(lambda: model.infer(person), repeats),
        "mtcnn_full_frame_512_p50_ms": p50(lambda: model.detect(astronaut), repeats),
        "mtcnn_head_region_p50_ms": p50(lambda: model.detect(astronaut, region), repeats),
        "embed_one_aligned_face_p50_ms": p50(lambda: model.embed([aligned]), repeats),
        "embed_batch_of_8_p50_ms": p50(lambda: model.embed([aligned] * 8), max(3, repeats // 4)),
        "estimated_mb": round(FaceModel.estimate_bytes(path, device) / 2**20, 1),
        "measured_parameter_mb": round(params / 2**20, 1),
        "head_region": [round(v) for v in region],
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "faces_found": len(faces),
    }
    typer.echo(json.dumps(report, indent=2))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    typer.run(main)
