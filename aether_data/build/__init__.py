"""The build layer: plan → shards (on Ray Data) → indexes → manifest.

``plan`` fixes every sample up front, ``sample`` and ``record`` make one sample, ``shard`` writes one
shard, ``executor`` runs shards on Ray, ``run`` drives a whole build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aether_data.build.errors import BuildError

__all__ = ["BuildError", "BuildSummary", "run_build"]


def __getattr__(name: str) -> Any:
    """`run_build` and `BuildSummary` on first use (PEP 562): every `aether` command imports
    ``aether_data.build.cli``, and the driver's imports (numba kernels, Ray glue) cost ~0.9 s that
    `aether audit` or `--help` never need."""
    if name in ("BuildSummary", "run_build"):
        from aether_data.build import run

        return getattr(run, name)
    raise AttributeError(f"module 'aether_data.build' has no attribute {name!r}")


if TYPE_CHECKING:
    from aether_data.build.run import BuildSummary, run_build
