"""Load and infer times of the face family on skimage.data.astronaut(): MTCNN, FaceNet, and both, on the CPU.

    python scripts/face_figures.py MODEL_DIR [--runs 5]   # MODEL_DIR: e.g. size_models' full-size face directory
"""

from __future__ import annotations

import statistics
import sys
import time

from PIL import Image

from workers.models.face import FaceModel, align_face, head_region

ASTRONAUT_PERSON = (20.0, 10.0, 470.0, 512.0)


def timed(step, runs: int) -> list[float]:
    step()  # one warm-up call
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main(model_dir: str, runs: int = 5) -> None:
    import skimage.data

    photo = Image.fromarray(skimage.data.astronaut()).convert("RGB")
    model = FaceModel(model_dir, "cpu")
    start = time.perf_counter()
    model.load()
    print(f"load ms {(time.perf_counter() - start) * 1000:.0f}")
    region = head_region(ASTRONAUT_PERSON, photo.size)
    aligned = align_face(photo, model.detect(photo, region)[0].landmarks)
    for name, step in (("detect", lambda: model.detect(photo, region)), ("embed", lambda: model.embed([aligned])),
                       ("analyse", lambda: model.analyse(photo, region))):
        times = timed(step, runs)
        print(f"{name} p50 ms {statistics.median(times):.1f}  runs {[round(t) for t in times]}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--runs" else 5)
