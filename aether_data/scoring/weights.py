"""Where metric and scorer weights are looked up: never the network.

A weight file is searched, in order, in the directory passed explicitly (``--weights-dir``), in
``$AETHER_METRIC_WEIGHTS`` and in torch hub's cache (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``), which is where torchvision and piq would have put it. A missing
file raises `MissingWeights` with one line naming the file and where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "AETHER_METRIC_WEIGHTS"


class MissingWeights(FileNotFoundError):
    """A metric's weight file is not on this machine (the message is one line)."""


def hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs(weights_dir: str | Path | None = None) -> list[Path]:
    dirs = [Path(weights_dir)] if weights_dir else []
    if os.environ.get(ENV):
        dirs.append(Path(os.environ[ENV]))
    dirs.append(hub_checkpoints())
    return dirs


def find_weight(filename: str, what: str, weights_dir: str | Path | None = None) -> Path:
    """The first existing ``dir/filename`` of `search_dirs`, else `MissingWeights`."""
    dirs = search_dirs(weights_dir)
    for d in dirs:
        if (d / filename).is_file():
            return d / filename
    raise MissingWeights(
        f"{what} needs {filename}: put it in {dirs[-1]} (or in ${ENV} / --weights-dir); nothing is downloaded"
    )


def require_path(path: str | Path | None, what: str, option: str) -> Path:
    """A user-given local file or folder that must exist (one-line `MissingWeights` otherwise)."""
    if not path:
        raise MissingWeights(f"{what} needs local weights: pass {option} (nothing is downloaded)")
    p = Path(path).expanduser()
    if not p.exists():
        raise MissingWeights(f"{what} weights not found: {p} (pass {option} with a local path)")
    return p
