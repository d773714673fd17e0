"""The dual-head ViT the default age/gender checkpoint holds: an age regressor and a female-probability head.

abhilash88/age-gender-prediction is not a plain image classifier: its weights are a ViT backbone
(``vit.*``) with two small MLP heads on the CLS token, ``age_head.*`` (age in years) and
``gender_head.*`` (sigmoid: probability the face is female). Its ``classifier.*`` layer exists only
for pipeline compatibility and is never trained, so loading it as AutoModelForImageClassification
gives meaningless labels. This module rebuilds that layout; it imports torch and transformers at
top level, so import it only inside load()/write_tiny().
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import ViTModel, ViTPreTrainedModel

HEAD_WIDTHS = (256, 64)  # hidden -> 256 -> 64 -> 1, as in the published checkpoint


def mlp_head(hidden_size: int, sigmoid: bool) -> nn.Sequential:
    """Linear-ReLU-Dropout blocks down to one output; layer indices match the checkpoint's keys (0, 3, 6)."""
    layers: list[nn.Module] = []
    width = hidden_size
    for next_width in HEAD_WIDTHS:
        layers += [nn.Linear(width, next_width), nn.ReLU(), nn.Dropout(0.1)]
        width = next_width
    layers.append(nn.Linear(width, 1))
    if sigmoid:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class AgeGenderViTModel(ViTPreTrainedModel):
    """ViT backbone without pooler; CLS token -> (age in years, probability female)."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.vit = ViTModel(config, add_pooling_layer=False)
        self.age_head = mlp_head(config.hidden_size, sigmoid=False)
        self.gender_head = mlp_head(config.hidden_size, sigmoid=True)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls_token = self.vit(pixel_values=pixel_values).last_hidden_state[:, 0]
        return self.age_head(cls_token)[:, 0], self.gender_head(cls_token)[:, 0]
