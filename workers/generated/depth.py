"""Random-weight Depth Anything (Dinov2 backbone + DPT head), tiny or V2-Small-sized, with its image processor."""

from __future__ import annotations

from pathlib import Path

# Each knob as (tiny, full size); full size is depth-anything/Depth-Anything-V2-Small-hf.
IMAGE_SIZE = (56, 518)
BACKBONE = {
    "hidden_size": (16, 384), "num_hidden_layers": (4, 12), "num_attention_heads": (2, 6),
    "intermediate_size": (32, 1536), "out_indices": ([1, 2, 3, 4], [3, 6, 9, 12]),
}
HEAD = {
    "reassemble_hidden_size": (16, 384), "neck_hidden_sizes": ([8, 8, 16, 16], [48, 96, 192, 384]),
    "fusion_hidden_size": (8, 64), "head_hidden_size": (8, 32),
}


def write_depth(dest: Path, full_size: bool = False) -> None:
    """Write a random-weight Depth Anything directory with its image processor."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, DPTImageProcessor

    size = int(full_size)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    side = IMAGE_SIZE[size]
    backbone = {
        "model_type": "dinov2", "image_size": side, "patch_size": 14, "reshape_hidden_states": False,
        **{knob: values[size] for knob, values in BACKBONE.items()},
    }
    head = {knob: values[size] for knob, values in HEAD.items()}
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=14, **head)
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(dest)
    DPTImageProcessor(
        do_resize=True, size={"height": side, "width": side}, keep_aspect_ratio=True, ensure_multiple_of=14,
        resample=3, do_rescale=True, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225], do_pad=False,
    ).save_pretrained(dest)
