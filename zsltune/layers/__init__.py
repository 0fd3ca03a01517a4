"""Network building blocks and losses the methods assemble, kept apart from the trainers (``zsltune/methods/``) as
timm keeps ``layers/`` apart from ``models/``: nothing here knows a trainer, a config or a data source.

- ``attention.py``: squeeze-and-excitation channel gates (DeML's channel attention, SGMA's part attention heads)
- ``attention_maps.py``: parameter-free attention maps (DeML's random walk), their boxes and centres, SGMA's map
  losses and channel clustering
- ``crops.py``: differentiable affine crops (a pixel box, or a centre and a side)
- ``backbones.py``: CNN backbones split into FNet / GNet (a small CNN, torchvision ones from local weights)
- ``text.py``: CLAREL's sentence encoder (conv blocks + BiLSTM)
- ``gan.py``: feature-generator pieces (MLP, WGAN-GP penalty, Sinkhorn distance, class-centre memory)
- ``metric_losses.py``: DeML's deep-metric-learning losses and gradient reversal
"""

from zsltune.layers.attention import ChannelAttention, PartAttention, se_gate
from zsltune.layers.attention_maps import (
    attention_boxes,
    channel_clusters,
    compactness,
    diversity,
    grid_coords,
    map_centres,
    map_overlap,
    minmax,
    random_walk,
)
from zsltune.layers.backbones import BACKBONES, Backbone, make_backbone
from zsltune.layers.crops import affine_crop, crop_resize, crop_zoom
from zsltune.layers.gan import (
    CentreMemory,
    generator_health,
    gradient_penalty,
    mlp,
    sinkhorn_distance,
    sinkhorn_plan,
)
from zsltune.layers.metric_losses import (
    activation_decay,
    adversary_discrepancy,
    binomial_deviance,
    dann_coefficient,
    hinge_diversity,
    reverse_gradient,
    row_norm_penalty,
)
from zsltune.layers.text import ResBlock, TextEncoder

__all__ = [
    "BACKBONES",
    "Backbone",
    "CentreMemory",
    "ChannelAttention",
    "PartAttention",
    "ResBlock",
    "TextEncoder",
    "activation_decay",
    "adversary_discrepancy",
    "affine_crop",
    "attention_boxes",
    "binomial_deviance",
    "channel_clusters",
    "compactness",
    "crop_resize",
    "crop_zoom",
    "dann_coefficient",
    "diversity",
    "generator_health",
    "gradient_penalty",
    "grid_coords",
    "hinge_diversity",
    "make_backbone",
    "map_centres",
    "map_overlap",
    "minmax",
    "mlp",
    "random_walk",
    "reverse_gradient",
    "row_norm_penalty",
    "se_gate",
    "sinkhorn_distance",
    "sinkhorn_plan",
]
