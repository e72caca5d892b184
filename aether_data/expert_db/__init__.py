"""The expert pair database of the auto workflow: readers, histogram features, retrieval, build/load.

See `db.py` for the on-disk layout, `features.py` for the histogram feature and distances,
`index.py` for the exact kNN, `readers.py` for the FiveK / PPR10K / paired-folder layouts.
"""

from aether_data.expert_db.db import BUNDLED_DB, BuildReport, ExpertDB, ExpertDBError, build_expert_db
from aether_data.expert_db.features import DISTANCES, FEATURE_DIM, feature_distance, histogram_features
from aether_data.expert_db.index import KnnIndex
from aether_data.expert_db.readers import PairRef, read_fivek, read_pair_image, read_paired, read_ppr10k

__all__ = [
    "BUNDLED_DB",
    "DISTANCES",
    "FEATURE_DIM",
    "BuildReport",
    "ExpertDB",
    "ExpertDBError",
    "KnnIndex",
    "PairRef",
    "build_expert_db",
    "feature_distance",
    "histogram_features",
    "read_fivek",
    "read_pair_image",
    "read_paired",
    "read_ppr10k",
]
