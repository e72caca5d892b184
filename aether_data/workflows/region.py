"""Region workflow: PerTouch-style semantic parameter maps (different edits for different regions).

input = the source photo; target = ``regions.render_regions(input, labels, params, shift, sigma)``:
1–4 semantic regions (from the configured segmenter) each developed with its own Gaussian-sampled
parameters (the param workflow's protocols and operator statistics), the rest of the photo
unchanged (label 0, "the rest", when the chosen regions do not cover everything), blended with
feathered boundaries (Gaussian, ``boundary_sigma`` px) and a random boundary shift of up to
``boundary_shift`` px (PerTouch's parameter perturbation near region boundaries).

Semantic replacement (PerTouch, p ≈ 0.05): with probability ``replace_p`` a region's class name is
replaced in the annotation by a description of where it is ("the top-left area"), so a model also
learns to follow instructions that do not name a class; the record says so (``named_by``).

The pair carries everything a reader needs to re-render the target from the stored input: the
label map (stored as ``{key}.masks.png``), the per-region parameters and the boundary recipe.
"""

from __future__ import annotations

import numpy as np

from aether_data import params as P
from aether_data.config import PipelineSpec
from aether_data.regions import make_segmenter, render_regions
from aether_data.sampling import load_operator_stats, sample_params
from aether_data.workflows.base import OneStepWorkflow, Pair, PlanRow

REST = "the rest"


def position_name(mask: np.ndarray) -> str:
    """Where a region lies: "the top-left area", "the centre area", ..."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    cy, cx = ys.mean() / h, xs.mean() / w
    v = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    u = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    where = "-".join(p for p in (v, u) if p) or "centre"
    return f"the {where} area"


class RegionWorkflow(OneStepWorkflow):
    """segment → choose 1–4 regions → per-region params → feathered, perturbed per-region render."""

    name = "region"
    takes_uint8 = True

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        rs = spec.region
        self.segmenter = make_segmenter(rs.segmenter, rs.device)
        self.stats = load_operator_stats(spec.param.operator_stats)
        self.protocols = list(rs.protocols or spec.param.protocols)

    def synthesize(self, row: PlanRow, image: np.ndarray, rng: np.random.Generator) -> Pair:
        rs = self.spec.region
        seg = self.segmenter.segment(image)
        areas = seg.areas()
        candidates = [k for k in np.argsort(-np.asarray(areas), kind="stable") if areas[k] >= rs.min_area]
        if not candidates:
            candidates = [int(np.argmax(areas))]
        n = int(rng.integers(1, min(rs.max_regions, len(candidates)) + 1))
        chosen = [int(k) for k in candidates[:n]]
        # label map: 1..n for the chosen regions, 0 for the rest
        lut = np.zeros(max(len(seg.names), 1), np.uint8)
        for i, k in enumerate(chosen):
            lut[k] = i + 1
        labels = lut[seg.labels]
        regions = []
        params_list: list[dict[str, float]] = [{}]  # label 0: unchanged
        for i, k in enumerate(chosen):
            protocol = self.protocols[int(rng.integers(len(self.protocols)))]
            _, values = sample_params(rng, protocol, self.stats)
            params_list.append(values)
            replaced = bool(rng.random() < rs.replace_p)
            mask = labels == i + 1
            name = position_name(mask) if replaced else seg.names[k]
            regions.append(
                {
                    "label": i + 1,
                    "name": name,
                    "class": seg.names[k],
                    "named_by": "position" if replaced else "class",
                    "area": round(float(mask.mean()), 6),
                    "protocol": protocol,
                    "params": values,
                    "masks": P.masks(values),
                }
            )
        if np.any(labels == 0):
            regions.insert(
                0,
                {
                    "label": 0,
                    "name": REST,
                    "class": REST,
                    "named_by": "rest",
                    "area": round(float((labels == 0).mean()), 6),
                    "protocol": None,
                    "params": {},
                    "masks": [0, 0, 0],
                },
            )
        lim = int(rs.boundary_shift)
        shift = (int(rng.integers(-lim, lim + 1)), int(rng.integers(-lim, lim + 1))) if lim else (0, 0)
        sigma = float(rs.boundary_sigma)
        n_labels = len(chosen) + 1
        target = render_regions(image, labels, params_list[:n_labels], shift, sigma)
        union = [int(any(r["masks"][g] for r in regions)) for g in range(3)]
        return Pair(
            input=image,
            target=target,
            params=None,
            params_origin="sampled",
            protocol=None,
            masks=union,
            extra={
                "labels": labels,
                "regions": regions,
                "boundary": {"shift": list(shift), "sigma": sigma},
                "segmenter": self.segmenter.name,
            },
        )


__all__ = ["RegionWorkflow", "position_name"]
