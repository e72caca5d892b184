"""One sample from its plan row to encoded images: load the source, draft the pair, complete it.

The first half of a sample's life (the second, record and write, is `record` and `shard`): decoded
sources are cached per worker, images are encoded once and re-decoded exactly as a reader will see
them, and a workflow's batch step (``complete``) runs once per shard.
"""

from __future__ import annotations

import copy
import hashlib
import io
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from aether_data.annotate import Annotation
from aether_data.build.clock import StageClock
from aether_data.build.faults import FaultPlan
from aether_data.config import PipelineSpec
from aether_data.io.errors import SourceError
from aether_data.io.imaging import (
    as_float01,
    box_shrink,
    decode_own_u8,
    encode_jpeg,
    encode_png,
    load_image_bytes,
    resize_image,
)
from aether_data.io.sources import FetchSettings, bundled_license, read_source_bytes
from aether_data.quality import THUMB_SHORT, PairMeasurer, QualityRejected, failed_spec_gate, redraw_seed
from aether_data.resources import display_uri
from aether_data.sampling import rng_for
from aether_data.scoring import heuristic_score
from aether_data.workflows import Pair, PlanRow, Workflow
from aether_data.workflows.base import INPUT_STATS, augment_box, image_stats

__all__ = ["RELEASED", "LoadedSource", "PendingSample", "SampleRenderer", "SourceCache", "SourceInfo"]


@dataclass(frozen=True)
class SourceInfo:
    """What a record says about its source photo (no pixels: a pending sample keeps only this)."""

    sha256: str
    width: int
    height: int
    license: str | None


@dataclass
class LoadedSource:
    pixels: np.ndarray
    sha256: str
    width: int
    height: int
    license: str | None

    def info(self) -> SourceInfo:
        return SourceInfo(self.sha256, self.width, self.height, self.license)


def _original_and_edited(
    row: PlanRow, pair_input: np.ndarray, pair_target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(untouched photo, edited image) of a pair: auto's target is the photo, its input the edit."""
    return (pair_target, pair_input) if row.workflow == "auto" else (pair_input, pair_target)


RELEASED = np.zeros((0, 0, 3), np.uint8)
"""Stands for a pending sample's pair images once they are encoded (see `PendingSample`)."""


class SourceCache:
    """Decoded sources, a few at a time: neighbouring samples often share a photo.

    Sources are read as bytes (local path, http(s) URL with retries, or object-store URI), hashed
    from those bytes and decoded once, as 8-bit pixels at the smallest JPEG draft scale whose short
    edge still covers `min_short` (crop and resize are cheaper in 8 bits). Failures are cached too,
    so a dead URL costs one round of retries per shard, not one per sample.
    """

    def __init__(
        self, min_short: int, max_pixels: int, capacity: int = 8, fetch: FetchSettings | None = None
    ) -> None:
        self.min_short = min_short
        self.max_pixels = max_pixels
        self.capacity = capacity
        self.fetch = fetch
        self._items: OrderedDict[str, LoadedSource | SourceError] = OrderedDict()

    def _load(self, uri: str) -> LoadedSource:
        data = read_source_bytes(uri, self.fetch)
        pixels = load_image_bytes(
            data, min_short=self.min_short, max_pixels=self.max_pixels, dtype=np.uint8, name=uri
        )
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
        remote = "://" in uri
        sha = hashlib.sha256(data).hexdigest()
        return LoadedSource(pixels, sha, width, height, None if remote else bundled_license(uri))

    def get(self, uri: str) -> LoadedSource:
        if uri in self._items:
            self._items.move_to_end(uri)
            item = self._items[uri]
        else:
            try:
                item = self._load(uri)
            except SourceError as exc:
                item = exc
            self._items[uri] = item
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        if isinstance(item, SourceError):
            raise SourceError(item.reason, item.path, item.detail)
        return item


@dataclass
class PendingSample:
    """A rendered sample waiting for its annotation (images are already encoded bytes).

    The pair may still lack fields a shard-level step fills in (the auto workflow's batched
    parameter fit); its annotation is submitted once the pair is complete. A shard holds all its
    pending samples until then (256 for param's default), so they keep no pixels: the pair's
    images are `RELEASED` once encoded (a workflow's ``complete`` keeps what it needs in
    ``extra``), and of the source only what the record says (`SourceInfo`). Holding a decoded
    1.5 MP source and two 512 px images per sample, one 256-sample param shard of 512 px pairs
    peaked at 1.93 GB of RSS (0.45 GB without).
    """

    row: PlanRow
    source: SourceInfo
    pair: Pair
    size: tuple[int, int]
    input_bytes: bytes
    target_bytes: bytes
    scores: dict[str, float]
    image_stats: dict[str, float]
    quality: dict[str, Any] | None = None
    annotation: Future[Annotation] | None = None


class SampleRenderer:
    """Source → pair → encoded images → scores, for the samples of one shard at a time."""

    def __init__(
        self, spec: PipelineSpec, workflows: Mapping[str, Workflow], clock: StageClock, faults: FaultPlan
    ) -> None:
        self.spec = spec
        self.workflows = workflows
        self.clock = clock
        self.faults = faults
        # decode (JPEG draft) just large enough that the smallest crop still covers the output size
        lo = spec.sources.crop_scale[0]
        min_short = int(np.ceil(spec.image.size / np.sqrt(lo)))
        self.sources = SourceCache(min_short, spec.sources.max_pixels, fetch=FetchSettings())
        self.alternate: Callable[[PlanRow, int], PlanRow] | None = None  # set by the shard's planner
        self.counts = {"drafts": 0, "redraws": 0, "rejected": 0, "replaced": 0}
        self.replaced: list[dict[str, Any]] = []  # this shard's failed-then-replaced sources

    def encode(self, img: np.ndarray) -> bytes:
        if self.spec.image.format == "png":
            return encode_png(img)
        return encode_jpeg(img, quality=self.spec.image.quality)

    def render(self, row: PlanRow) -> PendingSample:
        """Phase 1 of a sample: source → pair → encoded images → scores.

        Raises SourceError for bad inputs. The workflow's ``draft`` runs here; :meth:`complete`
        finishes the shard's drafts in one batch before the annotations are submitted. When the
        source fails (unreadable, or every draft fails a quality gate) and ``alternate`` is set (the
        shard's planner), the sample is built from the next sources of the plan's permutation, up
        to ``sources.replacements`` of them: a broken source does not cost a sample.
        """
        try:
            return self._render(row)
        except SourceError as exc:
            first = exc
        if self.alternate is None:
            raise first
        tried = {row.source_uri}
        # bundled photos as aether:// URIs, as in records: index bytes must not depend on the checkout
        failed = [{"source": display_uri(row.source_uri), "reason": first.reason, "key": row.key}]
        for attempt in range(1, self.spec.sources.replacements + 1):
            alt = self.alternate(row, attempt)
            if alt.source_uri in tried:
                continue
            tried.add(alt.source_uri)
            try:
                pending = self._render(alt)
            except SourceError as exc:
                failed.append({"source": display_uri(alt.source_uri), "reason": exc.reason, "key": row.key})
                continue
            if pending.quality is not None:
                pending.quality["replaced"] = attempt
            self.counts["replaced"] += 1
            self.replaced.extend(failed)  # the sample is written: its failed sources are counted here
            return pending
        raise first

    def _render(self, row: PlanRow) -> PendingSample:
        spec, clock = self.spec, self.clock
        clock.start()
        self.faults.before_sample(row.key)
        rng = rng_for(row.seed)
        src = self.sources.get(row.source_uri)
        # crop a view, resize in 8 bits, flip the small result: no full-resolution copy
        y0, x0, ch, cw, flip = augment_box(src.pixels.shape, rng, spec)
        crop = src.pixels[y0 : y0 + ch, x0 : x0 + cw]
        img = resize_image(crop, spec.image.size, spec.image.resize_mode, spec.image.resize_only_if_bigger)
        if flip:
            img = cv2.flip(img, 1)  # same pixels as img[:, ::-1], ~40× faster than copying that view
        clock.mark("decode")
        base = self.encode(img)
        clock.mark("encode")
        img_u8 = decode_own_u8(base)  # what a reader sees: render from it, not from the float
        workflow = self.workflows[row.workflow]
        image = img_u8 if workflow.takes_uint8 else as_float01(img_u8)
        clock.mark("decode")
        pair, scores, quality = self.draft(row, workflow, image, img_u8, rng)
        input_bytes = base if pair.input is image else self.encode(pair.input)
        target_bytes = base if pair.target is image else self.encode(pair.target)
        clock.mark("encode")
        pair_input = img_u8 if pair.input is image else pair.input
        stats = pair.extra.get(INPUT_STATS) or image_stats(pair_input)  # style computed them already
        clock.mark("scoring")
        pair.input = pair.target = RELEASED  # encoded: the shard need not hold the pixels
        return PendingSample(
            row=row,
            source=src.info(),
            pair=pair,
            size=(int(img.shape[1]), int(img.shape[0])),
            input_bytes=input_bytes,
            target_bytes=target_bytes,
            scores=scores,
            image_stats=stats,
            quality=quality,
        )

    def draft(
        self,
        row: PlanRow,
        workflow: Workflow,
        image: np.ndarray,
        img_u8: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[Pair, dict[str, float], dict[str, Any] | None]:
        """The workflow's draft, its aesthetic scores and its quality measures, redrawn while it
        fails a gate: redraw k draws from ``redraw_seed(seed, k)`` (same crop), so the choice is a
        function of the sample alone. Raises `QualityRejected` after ``max_redraws`` redraws.

        The photo's half of every measure and score is computed once for all redraws. A workflow
        that ``previews`` drafts each draw on the gates' thumbnail first (same random stream) and
        renders at full size only a draw whose preview passes; the full-size measures decide.
        """
        qspec = self.spec.quality
        measurer = PairMeasurer(img_u8) if qspec.enabled else None
        thumb = self._preview_image(workflow, img_u8) if measurer is not None else None
        photo_score: float | None = None  # aesthetic score of the unchanged photo, computed once

        def score(img: np.ndarray) -> float:
            nonlocal photo_score
            if img is not img_u8:
                return heuristic_score(img)
            if photo_score is None:
                photo_score = heuristic_score(img_u8)
            return photo_score

        redraws = 0
        measures: dict[str, float] = {}
        while True:
            gate: str | None = None
            if thumb is not None and measurer is not None:
                gate = self._preview_gate(row, workflow, thumb, rng, measurer)
            if gate is None:
                pair = workflow.draft(row, image, rng)
                self.counts["drafts"] += 1
                self.clock.mark("synthesis")
                # the 8-bit copy where it is the same picture: the scorers shrink it in 8 bits (cheaper)
                pair_input = img_u8 if pair.input is image else pair.input
                pair_target = img_u8 if pair.target is image else pair.target
                scores = {"aesthetic_input": score(pair_input), "aesthetic_target": score(pair_target)}
                self.clock.mark("scoring")
                if measurer is None:
                    return pair, scores, None
                original, edited = _original_and_edited(row, pair_input, pair_target)
                measures = (measurer if original is img_u8 else PairMeasurer(original)).measure(edited)
                gate = self._gate(row, pair, measures, scores)
                self.clock.mark("quality")
                if gate is None:
                    texture = bool(pair.extra.get("texture_edit", False))
                    return (
                        pair,
                        scores,
                        {**measures, "texture_edit": texture, "redraws": redraws, "replaced": 0},
                    )
            assert gate is not None  # a draw that passed every gate returned above
            if redraws >= qspec.max_redraws:
                self.counts["rejected"] += 1
                raise QualityRejected(gate, row.source_uri, f"{redraws} redraws: {measures}")
            redraws += 1
            self.counts["redraws"] += 1
            rng = rng_for(redraw_seed(row.seed, redraws))

    def _gate(
        self, row: PlanRow, pair: Pair, measures: dict[str, float], scores: dict[str, float] | None
    ) -> str | None:
        return failed_spec_gate(
            self.spec.quality.gates(row.workflow),
            measures,
            protocol=pair.protocol,
            texture=bool(pair.extra.get("texture_edit", False)),
            scores=scores,
        )

    @staticmethod
    def _preview_image(workflow: Workflow, img_u8: np.ndarray) -> np.ndarray | None:
        """The gates' thumbnail of the photo, as the workflow takes it; None when the workflow does
        not preview or the photo is already that small (a preview would cost a full draft)."""
        factor = min(img_u8.shape[:2]) // THUMB_SHORT
        if not workflow.previews or factor < 2:
            return None
        small = box_shrink(img_u8, factor)
        return small if workflow.takes_uint8 else as_float01(small)

    def _preview_gate(
        self,
        row: PlanRow,
        workflow: Workflow,
        thumb: np.ndarray,
        rng: np.random.Generator,
        measurer: PairMeasurer,
    ) -> str | None:
        """The gate a draw fails on the thumbnail (aesthetic excepted: its scorer needs the full
        size), drawn from a copy of ``rng`` so the full-size draft makes the same choices."""
        pair = workflow.draft(row, thumb, copy.deepcopy(rng))
        self.counts["drafts"] += 1
        self.clock.mark("synthesis")
        original, edited = _original_and_edited(row, pair.input, pair.target)
        # the measurer's photo half is this thumbnail's: the gates measure at this very size
        m = measurer if original is thumb else PairMeasurer(original)
        if m.rgb_diff(edited) < self.spec.quality.gates(row.workflow).min_rgb_diff:
            gate: str | None = "visible"  # most failed draws: no need for the costlier measures
        else:
            gate = self._gate(row, pair, m.measure(edited), None)
        self.clock.mark("quality")
        return gate

    def complete(
        self, pending: list[PendingSample], skip: Callable[[PlanRow, Exception], None]
    ) -> list[PendingSample]:
        """Run each workflow's shard-level step over its drafts (one batch per workflow).

        If a batch fails, its samples are completed one by one, so one bad sample costs only
        itself (skipped with its reason). Returns the samples that are complete.
        """
        self.clock.start()
        done: list[PendingSample] = []
        by_workflow: dict[str, list[PendingSample]] = {}
        for p in pending:
            by_workflow.setdefault(p.row.workflow, []).append(p)
        for name, group in by_workflow.items():
            complete = self.workflows[name].complete
            try:
                for p, pair in zip(group, complete([p.pair for p in group]), strict=True):
                    p.pair = pair
                    done.append(p)
            except Exception:  # isolate the failing sample(s)
                for p in group:
                    try:
                        p.pair = complete([p.pair])[0]
                        done.append(p)
                    except Exception as exc:
                        skip(p.row, exc)
        self.clock.mark("synthesis")
        order = {id(p): i for i, p in enumerate(pending)}
        return sorted(done, key=lambda p: order[id(p)])
