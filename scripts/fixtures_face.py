"""Weights for the face family without network: MTCNN's real weights copied from facenet-pytorch, a random embedder.

InceptionResnetV1 has no smaller configuration, so tiny and full size are the same random network; tiny stores it
in float16 (53 MB, read back as float32), full size in float32 (107 MB) like facenet-pytorch's real VGGFace2 file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from workers.models.face import MTCNN_DIR, MTCNN_FILES, build_embedder, shipped_mtcnn_dir

EMBEDDER_FILE = "facenet-inception-resnet-v1-random.pt"
SEED = 0


def write_face(dest: Path, full_size: bool = False, seed: int = SEED) -> Path:
    """MODELS_DIR/face: mtcnn/{pnet,rnet,onet}.pt (real, from the package) and a random embedder state dict.

    Returns the embedder file; a different seed writes a different embedder (another embedding model id).
    """
    import torch

    dest = Path(dest)
    (dest / MTCNN_DIR).mkdir(parents=True, exist_ok=True)
    shipped = shipped_mtcnn_dir()
    for name in MTCNN_FILES:
        shutil.copyfile(shipped / name, dest / MTCNN_DIR / name)
    torch.manual_seed(seed)
    model = build_embedder().eval()
    state = {key: value if full_size or not value.is_floating_point() else value.half()
             for key, value in model.state_dict().items()}
    target = dest / EMBEDDER_FILE
    torch.save(state, target)
    return target
