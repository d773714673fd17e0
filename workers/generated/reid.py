"""Random-weight OSNet x0.25 state dict for re-ID (~1 MB, so tiny and full size are the same)."""

from __future__ import annotations

from pathlib import Path

from workers.models.osnet_family import build_osnet

WEIGHTS_FILE = "osnet_x0_25.pth"


def write_reid(dest: Path, full_size: bool = False) -> None:
    """Save a randomly initialised OSNet x0.25 state dict."""
    import torch

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(build_osnet().state_dict(), dest / WEIGHTS_FILE)
