"""The build layer: plan → shards (on Ray Data) → indexes → manifest.

``plan`` fixes every sample up front, ``sample`` and ``record`` make one sample, ``shard`` writes one
shard, ``executor`` runs shards on Ray, ``run`` drives a whole build.
"""

from aether_data.build.errors import BuildError
from aether_data.build.run import BuildSummary, run_build

__all__ = ["BuildError", "BuildSummary", "run_build"]
