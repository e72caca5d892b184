"""Optimizer state as flat tensors, so training checkpoints can be safetensors (no pickle).

safetensors holds only tensors and string metadata: each state entry becomes a tensor named
``optim.{param index}.{name}`` and the param groups go to metadata as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    """Optimizer state → (flat CPU tensors, JSON of the param groups)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            t = val if torch.is_tensor(val) else torch.tensor(val)
            tensors[f"optim.{idx}.{name}"] = t.detach().cpu().contiguous().clone()
    return tensors, json.dumps(sd["param_groups"])


def load_optimizer_state(
    opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], groups_json: str
) -> None:
    """Inverse of `optimizer_tensors` (other keys in `tensors` are ignored)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, val in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = val
    opt.load_state_dict({"state": state, "param_groups": json.loads(groups_json)})
