"""VeraRetouch model components: Retouch Encoder / Renderer (and, elsewhere in this package, the
adaptor, the VLM wrapper and the trainers).

Public encoder/renderer API::

    from model_core import RetouchEncoder, RetouchRenderer, apply_masks, ERConfig, get_config
    from model_core import load_er_checkpoint, reference_retouch
    from model_core.train.er import train_er
    from model_core.eval_er import evaluate_er
"""

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "RetouchEncoder": "model_core.encoder",
    "apply_masks": "model_core.encoder",
    "CPU": "model_core.er_config",
    "PAPER": "model_core.er_config",
    "ERConfig": "model_core.er_config",
    "get_config": "model_core.er_config",
    "DEFAULT_CHECKPOINT": "model_core.er_io",
    "load_er_checkpoint": "model_core.er_io",
    "save_er_weights": "model_core.er_io",
    "RetouchRenderer": "model_core.renderer",
    "apply_lut_numpy": "model_core.renderer",
    "apply_lut_torch": "model_core.renderer",
    "render_lut": "model_core.renderer",
    "reference_retouch": "model_core.retouch",
}
"""Public name → its module, imported on first use (PEP 562): `import model_core.cli` (every
`aether` command) must not pay torch's ~2 s import for commands that never touch a model."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'model_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # static checkers and IDEs see the eager imports
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
