"""VeraRetouch model components: Retouch Encoder / Renderer (and, elsewhere in this package, the
adaptor, the VLM wrapper and the trainers).

Public encoder/renderer API::

    from model_core import RetouchEncoder, RetouchRenderer, apply_masks, ERConfig, get_config
    from model_core import load_er_checkpoint, reference_retouch
    from model_core.train.er import train_er
    from model_core.eval_er import evaluate_er
"""

from model_core.encoder import RetouchEncoder, apply_masks
from model_core.er_config import CPU, PAPER, ERConfig, get_config
from model_core.er_io import DEFAULT_CHECKPOINT, load_er_checkpoint, save_er_weights
from model_core.renderer import RetouchRenderer, apply_lut_numpy, apply_lut_torch, render_lut
from model_core.retouch import reference_retouch

__all__ = [
    "CPU",
    "DEFAULT_CHECKPOINT",
    "PAPER",
    "ERConfig",
    "RetouchEncoder",
    "RetouchRenderer",
    "apply_lut_numpy",
    "apply_lut_torch",
    "apply_masks",
    "get_config",
    "load_er_checkpoint",
    "reference_retouch",
    "render_lut",
    "save_er_weights",
]
