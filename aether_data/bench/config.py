"""What `aether bench` measures with: sizes, corpus, node size of the cost model."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CPU_CORES_PER_NODE", "BenchConfig"]


CPU_CORES_PER_NODE = 32
"""Node size assumed by the cost model (a common 32-vCPU cloud instance)."""


@dataclass
class BenchConfig:
    """What one `aether bench` run measures (defaults: a few minutes on 2 busy cores)."""

    samples: int = 288  # per workflow, throughput (distinct corpus images, one sample each)
    # throughput shards: None = each workflow's default spec, at most 32 (as a user's build: the
    # auto workflow's batched parameter fit costs per shard, a smaller one would bench it slower)
    samples_per_shard: int | None = None
    image_size: int = 512
    megapixels: float = 1.5  # corpus image size
    workflows: tuple[str, ...] = ("param", "style", "auto")
    scaling_samples: int = 256  # param, 1 vs 2 Ray workers
    scaling_image_size: int = 512  # the throughput size: at 384 px Ray's per-shard dispatch showed
    scaling_repeats: int = 2  # best of N alternating runs
    scaling_samples_per_shard: int = 16  # enough shards for 2 workers to share
    memory_samples: tuple[int, int] = (1000, 10000)
    memory_image_size: int = 64
    memory_samples_per_shard: int = 100
    seed: int = 0
    gates: bool = True  # the quality gates of the default specs (off: the pre-gate pipeline's cost)
    scaling: bool = True
    memory: bool = True
    workdir: str | None = None
