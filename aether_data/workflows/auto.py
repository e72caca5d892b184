"""Auto workflow: inverse degradation of a good photo into a plausible unretouched input (Sec. 3.2).

The target is always the (high-quality) source. The input comes from one of two branches, chosen
per sample by its seed:

- **encoder/renderer** (share ``1 − supplementary_fraction``): the source's histogram feature
  retrieves its `knn_k` nearest expert *targets* from the expert DB; one is picked by the seed; its
  inverse latent ``z_inv = E(target, input)`` is rendered onto the source with per-sample group
  masks, ``input = R(source; masks · z_inv)`` (baked LUT, full resolution). Masks are drawn among
  the latent groups that actually edit colours for this reference (a reference that edits nothing
  is skipped for the next rank; if all k do, the sample falls back to the supplementary branch),
  so input never equals target. The corrective params (input → target) are then estimated by
  fitting the differentiable develop engine within the rendered groups
  (``params_origin = "fitted"``); ``expert_ref`` records the pair id, distance, rank, k, masks,
  per-group effect and the fit's PSNR before/after.
- **supplementary**: random operators from the operator statistics in the degrading direction;
  the corrective params are their negation (``params_origin = "known-operator"``), redrawn (≤ 4
  times) when the negation would not restore the photo (clipping), see `degrade.negation_restores`.

With the quality gates on, both branches screen their candidates with a gate preview
(`auto_screen.GatePreview`: the gates predicted on a ~4096-px copy through the same colour map)
and render at full resolution the first one predicted to pass (≤ 8 candidates or draws), so few
drafts are rendered only to be redrawn by the build's gates.

Either way the params ground the template annotator's problems and plans. An optional source
filter (`min_source_score`, `scorer`) skips photos that are not good enough to be a target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aether_data import params as P
from aether_data.config import PipelineSpec
from aether_data.degrade import (
    GROUP_ACTIVE_THRESHOLD,
    ERDegrader,
    corrective_params,
    draw_group_masks,
    random_operator_degradation,
)
from aether_data.develop.lut import apply_lut8, to_u8
from aether_data.io.errors import SourceError
from aether_data.sampling import load_operator_stats, protocol_for_masks
from aether_data.strength import load_strength_stats
from aether_data.workflows.auto_screen import SCREEN_TRIES, GatePreview
from aether_data.workflows.base import LastImageMemo, Pair, PlanRow

__all__ = ["AutoWorkflow", "corrective_params", "preflight"]


def preflight(spec: PipelineSpec) -> None:
    """Fail before any worker starts when the encoder/renderer branch cannot run (cheap file checks).

    Raises FileNotFoundError / ExpertDBError with what to set. Nothing to check when every sample
    uses random operators (`supplementary_fraction: 1.0`).
    """
    from aether_data.expert_db.db import BUNDLED_DB, DB_FORMAT
    from model_core.er_io import DEFAULT_CHECKPOINT

    cfg = spec.auto
    if cfg.supplementary_fraction >= 1.0:
        return
    ckpt = Path(cfg.er_checkpoint) if cfg.er_checkpoint else DEFAULT_CHECKPOINT
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"{ckpt}: no encoder/renderer checkpoint; set auto.er_checkpoint, or "
            "auto.supplementary_fraction: 1.0 for random operators only"
        )
    db = Path(cfg.expert_db) if cfg.expert_db else BUNDLED_DB
    from aether_data.expert_db import ExpertDBError

    meta = db / "meta.json"
    if not meta.is_file() or DB_FORMAT not in meta.read_text(encoding="utf-8"):
        raise ExpertDBError(f"{db}: not an expert DB; build one with `aether expert-db build … --out {db}`")
    import pyarrow.parquet as pq

    try:  # the row count only (footer read): a DB whose pairs were all filtered out fails here, once
        kept = pq.ParquetFile(db / "pairs.parquet").metadata.num_rows
    except (OSError, ValueError) as exc:
        raise ExpertDBError(f"{db}: pairs.parquet is unreadable: {exc}") from None
    if kept == 0:
        raise ExpertDBError(f"{db}: the DB holds no pairs (every pair was filtered out)")


FIT_REQUEST = "fit_request"
"""`Pair.extra` key of a draft's pending fit: (degraded input, target, latent group masks)."""


class AutoWorkflow:
    """input = degraded source (encoder/renderer or random operators), target = source."""

    name = "auto"
    previews = False  # it screens its own candidates on a ~4096-px copy (auto_screen.py)
    takes_uint8 = True  # every stage here is an 8-bit LUT pass or takes uint8: no float copy needed

    def __init__(self, spec: PipelineSpec, degrader: ERDegrader | None = None, db: Any | None = None) -> None:
        self.spec = spec
        cfg = spec.auto
        self.stats = load_operator_stats(cfg.operator_stats)
        self.strength = load_strength_stats(cfg.strength_stats) if cfg.strength_stats else None
        self.scorer = None
        if cfg.min_source_score is not None:
            from aether_data.scoring import make_scorer

            self.scorer = make_scorer(cfg.scorer, cfg.scorer_model, cfg.scorer_head, cfg.scorer_device)
        self.degrader: ERDegrader | None = None
        self.db = None
        self.index = None
        if cfg.supplementary_fraction < 1.0:
            self._load_er(degrader, db)
        self._memo = LastImageMemo()  # the source's score, features and gate preview, per photo

    def _load_er(self, degrader: ERDegrader | None, db: Any | None) -> None:
        """Encoder/renderer, expert DB and retrieval index, once per worker."""
        from aether_data.expert_db import ExpertDB, KnnIndex

        cfg = self.spec.auto
        if degrader is None:
            try:
                degrader = ERDegrader(cfg.er_checkpoint, lut_size=cfg.lut_size)
            except FileNotFoundError as exc:
                raise FileNotFoundError(
                    f"{exc}; the auto workflow's encoder/renderer branch needs weights: set "
                    "auto.er_checkpoint, or auto.supplementary_fraction: 1.0 for random operators only"
                ) from None
        self.degrader = degrader
        self.db = db if db is not None else ExpertDB(cfg.expert_db)
        if self.db.fingerprint != degrader.fingerprint:
            self.db.reencode(degrader)  # raises with what to do when the DB has no thumbnails
        self.index = KnnIndex(self.db.features_target, cfg.distance)

    def synthesize(self, row: PlanRow, image: np.ndarray, rng: np.random.Generator) -> Pair:
        """One complete pair (`draft` + `complete` on a batch of one)."""
        return self.complete([self.draft(row, image, rng)])[0]

    def complete(self, pairs: list[Pair]) -> list[Pair]:
        """Fit the corrective parameters of every encoder/renderer draft in one batch.

        The runtime calls this once per shard: the develop engine's cost at the fit's size is per
        call, so a batch of a shard's fits costs a fraction of fitting them one by one.
        """
        from aether_data.fit import fit_params_batch

        todo = [i for i, p in enumerate(pairs) if FIT_REQUEST in p.extra]
        if not todo:
            return pairs
        cfg = self.spec.auto
        requests = [pairs[i].extra[FIT_REQUEST] for i in todo]
        fits = fit_params_batch(
            [r[0] for r in requests],
            [r[1] for r in requests],
            [r[2] for r in requests],
            steps=cfg.fit_steps,
            pixels=cfg.fit_pixels,
        )
        out = list(pairs)
        for i, fit in zip(todo, fits, strict=True):
            draft = pairs[i]
            fix_masks = P.masks(fit.params)
            expert_ref = dict(draft.expert_ref or {})
            expert_ref["fit_psnr_before"] = round(float(fit.psnr_before), 3)
            expert_ref["fit_psnr_after"] = round(float(fit.psnr_after), 3)
            out[i] = Pair(
                input=draft.input,
                target=draft.target,
                params=fit.params,
                params_origin="fitted",
                protocol=protocol_for_masks(fix_masks),
                masks=fix_masks,
                expert_ref=expert_ref,
                extra={k: v for k, v in draft.extra.items() if k != FIT_REQUEST},
            )
        return out

    def _preview(self, image: np.ndarray) -> GatePreview | None:
        """The gate preview of this source's drafts (`auto_screen`), None when the gates are off."""
        quality = self.spec.quality
        if not quality.enabled:
            return None
        return self._memo.get(image, "preview", lambda: GatePreview(image, quality.auto))

    def draft(self, row: PlanRow, image: np.ndarray, rng: np.random.Generator) -> Pair:
        """The pair without its fitted parameters (an encoder/renderer sample carries a fit request)."""
        cfg = self.spec.auto
        if self.scorer is not None and cfg.min_source_score is not None:
            scorer = self.scorer
            score = self._memo.get(image, "score", lambda: float(scorer.score_batch([image])[0]))
            if score < cfg.min_source_score:
                raise SourceError(
                    "low-aesthetic-source",
                    row.source_uri,
                    f"{self.scorer.name} {score:.2f} < {cfg.min_source_score}",
                )
        if rng.random() < cfg.supplementary_fraction or self.degrader is None:
            return self._supplementary(image, rng)
        return self._inverse(image, rng)

    def _supplementary(self, image: np.ndarray, rng: np.random.Generator) -> Pair:
        floor = self.spec.quality.auto.min_delta_e if self.spec.quality.enabled else None
        preview = self._preview(image)
        protocol, degradation, degraded = random_operator_degradation(
            rng,
            image,
            self.stats,
            dtype=image.dtype,
            strength=self.strength,
            min_delta_e=floor,
            accept=None if preview is None else preview.accepts,
            small=None if preview is None else preview.small,
            max_tries=4 if preview is None else SCREEN_TRIES,
        )
        fix = corrective_params(degradation)
        return Pair(
            input=degraded,
            target=image,
            params=fix,
            params_origin="known-operator",
            protocol=protocol,
            masks=P.masks(fix),
            extra={"degradation": P.normalised_dict(degradation, decimals=4)},
        )

    def retrieve(self, features: np.ndarray, rng: np.random.Generator) -> tuple[int, float, int, int] | None:
        """(DB row, distance, rank, k) of the reference for a source's histogram `features`, or None
        when no candidate edits anything.

        The rank is drawn by the seed among the k nearest targets; a candidate whose inverse edit
        is a no-op for every latent group (see `ERDegrader.group_effects`) would give input ==
        target, so the next rank (cyclically) is taken instead.
        """
        assert self.index is not None and self.degrader is not None and self.db is not None
        dist, rows = self.index.search(features, self.spec.auto.knn_k)
        k = rows.shape[1]
        start = int(rng.integers(k))
        for step in range(k):
            rank = (start + step) % k
            row = int(rows[0, rank])
            effects = self.degrader.group_effects(self.db.z_inv[row], key=row)
            if max(effects) >= GROUP_ACTIVE_THRESHOLD:
                return row, float(dist[0, rank]), rank, k
        return None

    def _moves_toward(self, features: np.ndarray, degraded: np.ndarray, ref: int) -> bool:
        """Whether the degradation moves the histogram toward the reference's unretouched input."""
        from aether_data.expert_db import feature_distance, histogram_features

        assert self.db is not None
        target, kind = self.db.features_input[ref], self.spec.auto.distance
        return feature_distance(histogram_features(degraded), target, kind) < feature_distance(
            features, target, kind
        )

    def _candidate(
        self,
        image: np.ndarray,
        features: np.ndarray,
        ref: int,
        masks: list[int],
        active: list[bool],
        screen: bool = True,
    ) -> tuple[np.ndarray, list[int]] | None:
        """(degraded, masks) for the reference `ref` under `masks`, or None when it is given up.

        With ``screen`` (and the gates on), a draft the gate preview predicts to fail is given up
        before it is rendered at full resolution (verdicts are kept for the sample's redraws). The
        premise of inverse degradation is that the degraded photo looks like the expert's
        *unretouched* input; a learned inverse edit applied to another photo can overshoot (e.g.
        un-brightening a photo whose highlights are already compressed): with
        `require_toward_reference`, a draft that moves the histogram away from the reference's input
        is retried with every active latent group (screened the same way), then given up.
        """
        assert self.degrader is not None and self.db is not None
        preview = self._preview(image) if screen else None
        u8, z = to_u8(image), self.db.z_inv[ref]
        tries = [masks] + ([full] if (full := [int(a) for a in active]) != masks and any(full) else [])
        for m in tries:
            if preview is None:
                lut = self.degrader.lut_for(u8, z, m)
            elif (lut := self._screened_lut(image, preview, ref, m)) is None:
                return None
            degraded = apply_lut8(u8, lut, image.dtype)
            if not self.spec.auto.require_toward_reference or self._moves_toward(features, degraded, ref):
                return degraded, m
        return None

    def _screened_lut(
        self, image: np.ndarray, preview: GatePreview, ref: int, masks: list[int]
    ) -> np.ndarray | None:
        """The candidate's LUT (baked for the preview's copy too, always: the verdicts are a pure
        memo), or None when the preview predicts that its draft fails a gate."""
        assert self.degrader is not None and self.db is not None
        verdicts: dict[tuple[int, ...], bool] = self._memo.get(image, "verdicts", dict)
        key = (ref, *masks)
        if verdicts.get(key) is False:
            return None
        lut = self.degrader.lut_for(to_u8(image), self.db.z_inv[ref], masks, (preview.small_u8,))
        if key not in verdicts:
            verdicts[key] = preview.lut_fails(lut) is None
        return lut if verdicts[key] else None

    def _inverse(self, image: np.ndarray, rng: np.random.Generator) -> Pair:
        """An encoder/renderer draft: up to `SCREEN_TRIES` (reference, masks) candidates drawn and
        screened by the gate preview (one, unscreened, with the gates off). When every one is predicted
        to fail, the first is drafted anyway (the branch shares stay `supplementary_fraction`'s; the
        build's gates redraw it); random operators only when no reference edits toward the
        reference's input (or none edits at all)."""
        assert self.degrader is not None and self.db is not None
        from aether_data.expert_db import histogram_features

        cfg = self.spec.auto
        # the kNN query and the toward-reference check's starting point
        features = self._memo.get(image, "features", lambda: histogram_features(image))
        seen: list[tuple[int, list[int]]] = []
        first = None
        for _ in range(SCREEN_TRIES if self._preview(image) is not None else 1):
            found = self.retrieve(features, rng)
            if found is None:  # every nearby expert edit is a no-op under these weights
                break
            ref = found[0]
            effects = self.degrader.group_effects(self.db.z_inv[ref], key=ref)
            active = [e >= GROUP_ACTIVE_THRESHOLD for e in effects]
            masks = draw_group_masks(rng, cfg.mask_keep_prob, active)
            if (ref, masks) in seen:  # the same draft as one already given up
                continue
            seen.append((ref, masks))
            first = first or (found, effects, masks, active)
            drafted = self._candidate(image, features, ref, masks, active)
            if drafted is not None:
                return self._inverse_pair(image, drafted, found, effects)
        if first is not None and self._preview(image) is not None:  # keep the branch: the gates decide
            found, effects, masks, active = first
            drafted = self._candidate(image, features, found[0], masks, active, screen=False)
            if drafted is not None:
                return self._inverse_pair(image, drafted, found, effects)
        return self._supplementary(image, rng)

    def _inverse_pair(
        self,
        image: np.ndarray,
        drafted: tuple[np.ndarray, list[int]],
        found: tuple[int, float, int, int],
        effects: list[float],
    ) -> Pair:
        assert self.db is not None
        degraded, masks = drafted
        ref, distance, rank, k = found
        return Pair(
            input=degraded,
            target=image,
            params=None,
            params_origin="fitted",
            protocol=None,
            masks=[0, 0, 0],
            expert_ref={
                "id": self.db.ids[ref],
                "distance": round(distance, 6),
                "rank": rank,
                "k": k,
                "distance_kind": self.spec.auto.distance,
                "latent_masks": masks,
                "group_effects": [round(e, 5) for e in effects],
            },
            extra={FIT_REQUEST: (degraded, image, tuple(masks))},
        )
