"""Gaussian parameter sampling, the 7 protocols and per-sample seeding.

Seeds follow `numpy.random.SeedSequence(root).spawn` semantics: sample `i` of a run with root seed
`s` gets the child sequence with spawn key `(i,)`, independent of how many workers build the run
and of the order in which shards finish. Python's `hash()` is never used.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from aether_data.params import GROUP_PARAMS, GROUPS, MASK_EPS, PARAM_NAMES, SPECS
from aether_data.resources import data_path

PROTOCOLS: tuple[str, ...] = tuple(
    "+".join(combo) for r in (1, 2, 3) for combo in itertools.combinations(GROUPS, r)
)
"""The 7 non-empty subsets of {light, globalcolor, specificcolor}, e.g. ``"light+specificcolor"``."""

DEFAULT_STATS_PATH = data_path("presets", "operator_stats.yaml")


def protocol_groups(protocol: str) -> tuple[str, ...]:
    """Groups switched on by a protocol name."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return tuple(protocol.split("+"))


def protocol_for_masks(masks: list[int]) -> str | None:
    """Protocol name for a mask triple (None when no group is active)."""
    groups = [g for g, m in zip(GROUPS, masks) if m]
    return "+".join(groups) if groups else None


def sample_seed(root_seed: int, index: int) -> int:
    """Deterministic 63-bit seed of sample `index` (SeedSequence spawn-key semantics)."""
    seq = np.random.SeedSequence(int(root_seed), spawn_key=(int(index),))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def rng_for(seed: int) -> np.random.Generator:
    """The generator every per-sample decision draws from."""
    return np.random.default_rng(np.random.SeedSequence(int(seed)))


@dataclass(frozen=True)
class OperatorStat:
    """Sampling distribution of one slider (slider scale)."""

    mean: float
    std: float
    p_active: float
    degrade_sign: int = 0


@dataclass(frozen=True)
class OperatorStats:
    """Per-parameter sampling statistics, loaded from `presets/operator_stats.yaml`."""

    params: Mapping[str, OperatorStat]
    origin: str = "defaults"

    def __getitem__(self, name: str) -> OperatorStat:
        return self.params[name]


def load_operator_stats(path: str | Path | None = None) -> OperatorStats:
    """Load and validate operator statistics (all 38 parameters must be present)."""
    p = Path(path) if path else DEFAULT_STATS_PATH
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
        raise ValueError(f"{p}: expected a mapping with a 'params' section")
    raw = data["params"]
    missing = [n for n in PARAM_NAMES if n not in raw]
    unknown = [n for n in raw if n not in SPECS]
    if missing or unknown:
        raise ValueError(f"{p}: missing parameters {missing}, unknown parameters {unknown}")
    stats: dict[str, OperatorStat] = {}
    for name in PARAM_NAMES:
        entry = raw[name]
        stat = OperatorStat(
            mean=float(entry["mean"]),
            std=float(entry["std"]),
            p_active=float(entry["p_active"]),
            degrade_sign=int(entry.get("degrade_sign", 0)),
        )
        if not (stat.std > 0 and 0 < stat.p_active <= 1 and stat.degrade_sign in (-1, 0, 1)):
            raise ValueError(f"{p}: {name}: need std > 0, 0 < p_active <= 1, degrade_sign in -1/0/1")
        stats[name] = stat
    return OperatorStats(params=stats, origin=str(data.get("origin", p.name)))


def _quantise(name: str, value: float) -> float:
    """Round to the slider's precision (0.01 EV for exposure, integers elsewhere), as Lightroom stores it."""
    spec = SPECS[name]
    v = float(np.clip(value, spec.minimum, spec.maximum))
    return round(v, 2) if name == "Exposure2012" else float(round(v))


def _min_magnitude(name: str) -> float:
    """Smallest magnitude we accept for an active parameter, so that its effect is visible."""
    return 0.1 if name == "Exposure2012" else 5.0


def _draw_value(rng: np.random.Generator, name: str, stat: OperatorStat, sign: int) -> float:
    value = rng.normal(stat.mean, stat.std)
    if sign:
        value = sign * abs(value)
    floor = _min_magnitude(name)
    if abs(value) < floor:
        direction = sign or (1.0 if value >= 0 else -1.0)
        value = direction * (floor + abs(value))
    return _quantise(name, value)


def sample_group(
    rng: np.random.Generator, group: str, stats: OperatorStats, degrade: bool = False
) -> dict[str, float]:
    """Activate a random non-empty subset of a group's parameters and draw their values."""
    names = GROUP_PARAMS[group]
    on = [n for n in names if rng.random() < stats[n].p_active]
    if not on:
        on = [names[int(rng.integers(len(names)))]]
    out: dict[str, float] = {}
    for name in on:
        stat = stats[name]
        sign = stat.degrade_sign if degrade else 0
        out[name] = _draw_value(rng, name, stat, sign)
    return out


def sample_params(
    rng: np.random.Generator,
    protocol: str | None = None,
    stats: OperatorStats | None = None,
    degrade: bool = False,
) -> tuple[str, dict[str, float]]:
    """Draw (protocol, slider-scale params) per docs/design.md section 3.

    With `protocol=None` one of the 7 protocols is drawn uniformly. With `degrade=True` each
    parameter's sign follows its `degrade_sign` (the auto workflow's supplementary branch).
    """
    stats = stats or load_operator_stats()
    if protocol is None:
        protocol = PROTOCOLS[int(rng.integers(len(PROTOCOLS)))]
    params: dict[str, float] = {}
    for group in protocol_groups(protocol):
        params.update(sample_group(rng, group, stats, degrade=degrade))
    # every active parameter is visible: quantisation never rounds a value into the dead zone
    assert all(abs(v) / SPECS[n].scale >= MASK_EPS for n, v in params.items())
    return protocol, params


def scale_params(values: Mapping[str, float], scale: float) -> dict[str, float]:
    """Every slider times `scale`, kept at least its visible minimum (so the protocol's masks hold)
    and quantised like a draw (the calibrated sampler, `aether_data.strength`)."""
    out = {}
    for name, v in values.items():
        mag = max(abs(v) * scale, _min_magnitude(name))
        out[name] = _quantise(name, mag if v >= 0 else -mag)
    return out
