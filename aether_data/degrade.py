"""Inverse degradation: turn a good photo into a plausible unretouched one (paper Sec. 3.2).

Two strategies, both returning the degraded image as 8-bit-exact float32 (multiples of 1/255, so
the stored JPEG/PNG encodes exactly what later stages saw):

- **encoder/renderer** (`ERDegrader`): an expert pair (input → target) is encoded backwards,
  ``z_inv = E(target, input)``, i.e. the edit that takes a retouched photo back to its unretouched
  state. ``R(source; masks · z_inv)`` applies it to a new photo. For a fixed z the renderer is a
  per-pixel colour map, so it is baked into a 3D LUT and applied at full resolution in 8 bits
  (the develop engine's fast path); only the lattice vertices the photo reads are evaluated.
- **random operators** (`random_operator_degradation`, the paper's supplementary branch): sliders
  drawn from the operator statistics with each parameter's `degrade_sign`, so the corrective
  parameters are known exactly (their negation, first order).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aether_data.develop import bake_lut_for, render_lut8
from aether_data.develop.lut import apply_lut8, to_u8
from aether_data.fit import single_thread
from aether_data.io import storage
from aether_data.io.imaging import as_float01
from aether_data.sampling import PROTOCOLS, OperatorStats, sample_params

LUT_CACHE_SIZE = 32
"""Small renderer lattices (group effects) kept per worker, keyed by (DB row, masks)."""
GROUP_EFFECT_LUT = 9
GROUP_ACTIVE_THRESHOLD = 0.004
"""A latent group is active when rendering it alone moves colours by at least this much on average
(mean |Δ| over a 9³ lattice, [0, 1] units; about 1/255) relative to the all-masked latent."""


def corrective_params(degradation: dict[str, float]) -> dict[str, float]:
    """First-order inverse of a degradation: every slider moved back by the same amount."""
    return {name: -value + 0.0 for name, value in degradation.items()}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 99.0 if mse <= 1e-12 else 10.0 * float(np.log10(1.0 / mse))


def negation_restores(
    small: np.ndarray, degraded: np.ndarray, degradation: dict[str, float], margin_db: float = 1.0
) -> bool:
    """Whether rendering the negated sliders on ``degraded`` (``small`` rendered with
    ``degradation``) moves it back toward ``small``.

    The negation is only a first-order inverse: a push that clips (highlights blown by +EV, a cast
    pushed out of gamut) is not undone by the opposite push, and a record whose "corrective" params
    make the input worse would teach the wrong edit. Checked on a small copy (cheap); the caller
    renders the degraded copy once, for this check and its gate preview.
    """
    from aether_data.develop import render

    restored = render(degraded, corrective_params(degradation))
    return _psnr(restored, small) > _psnr(degraded, small) + margin_db


def operator_thumbnail(image: np.ndarray) -> np.ndarray:
    """The float32 copy (about 4096 px, area-averaged) the random operators are checked on."""
    import cv2

    h, w = image.shape[:2]
    s = min(1.0, float(np.sqrt(4096 / (h * w))))
    return cv2.resize(as_float01(image), (max(4, round(w * s)), max(4, round(h * s))),
                      interpolation=cv2.INTER_AREA)  # fmt: skip


SmallCheck = Callable[[str, np.ndarray], bool]
"""``accept(protocol, degraded_small)``: whether a draft, seen on the operators' small copy, is
worth rendering at full resolution (the auto workflow's gate preview)."""


def random_operator_degradation(
    rng: np.random.Generator,
    image: np.ndarray,
    stats: OperatorStats,
    lut_size: int = 33,
    max_tries: int = 4,
    dtype: type = np.float32,
    strength: Any | None = None,
    min_delta_e: float | None = None,
    accept: SmallCheck | None = None,
    small: np.ndarray | None = None,
) -> tuple[str, dict[str, float], np.ndarray]:
    """(protocol, degrading sliders, degraded image): the supplementary branch.

    ``image`` is float in [0, 1] or uint8; the degraded image is float32 in 1/255 steps, or uint8
    with ``dtype=np.uint8``.

    Draws until the known corrective params (the negation) actually restore the photo on a small
    copy (`negation_restores`; ``small``, default `operator_thumbnail`) and ``accept(protocol,
    degraded small copy)``, when given, takes the draft, at most `max_tries` draws; the last draw
    is kept otherwise. With ``strength`` (`strength.StrengthStats`, `auto.strength_stats`) a target
    ΔE is drawn first (above `min_delta_e`) and every draw is scaled to it on the gates' thumbnail
    (calibrated operators).
    """
    from aether_data.develop import render

    small = operator_thumbnail(image) if small is None else small
    target = strength.draw(rng, floor=min_delta_e) if strength is not None else None
    for _ in range(max_tries):
        protocol = PROTOCOLS[int(rng.integers(len(PROTOCOLS)))]
        _, degradation = sample_params(rng, protocol, stats, degrade=True)
        if target is not None:
            degradation = _scaled_to(image, degradation, target)
        degraded = render(small, degradation)
        if negation_restores(small, degraded, degradation) and (accept is None or accept(protocol, degraded)):
            break
    return protocol, degradation, render_lut8(image, degradation, lut_size, dtype)


def _scaled_to(image: np.ndarray, values: dict[str, float], target: float) -> dict[str, float]:
    """`values` scaled so that their render differs from `image` by mean ΔE `target`."""
    from aether_data.io.imaging import box_shrink
    from aether_data.quality import THUMB_SHORT
    from aether_data.sampling import scale_params
    from aether_data.strength import scale_to_delta_e

    thumb = box_shrink(image, max(1, min(image.shape[:2]) // THUMB_SHORT))
    scale, _ = scale_to_delta_e(
        thumb, lambda s: render_lut8(thumb, scale_params(values, s), dtype=np.uint8), target
    )
    return scale_params(values, scale)


def draw_group_masks(
    rng: np.random.Generator, keep_prob: float, active: Sequence[bool] = (True, True, True)
) -> list[int]:
    """Per-sample [light, globalcolor, specificcolor] masks: each *active* group kept with
    `keep_prob`, at least one kept. Groups the reference edit does not touch are never drawn: a
    mask that keeps only inactive groups would make input == target. No active group → all three.
    """
    allowed = [bool(a) for a in active] if any(active) else [True, True, True]
    draws = rng.random(3)
    masks = [int(a and d < keep_prob) for a, d in zip(allowed, draws)]
    if not any(masks):
        idx = [i for i, a in enumerate(allowed) if a]
        masks[idx[int(rng.integers(len(idx)))]] = 1
    return masks


class ERDegrader:
    """The Retouch Encoder/Renderer, loaded once per worker, as a degradation operator.

    `checkpoint=None` loads the shipped CPU checkpoint (`model_core/checkpoints/er-cpu.safetensors`);
    `models` injects (encoder, renderer, config) directly (tests use tiny random ones).
    `fingerprint` identifies the weights: latents stored in an expert DB are only valid for the
    weights that computed them.
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        models: tuple[Any, Any, Any] | None = None,
        lut_size: int = 33,
        fingerprint: str | None = None,
    ) -> None:
        from model_core.er_io import DEFAULT_CHECKPOINT, load_er_checkpoint

        if models is None:
            path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
            models = load_er_checkpoint(path)
            fingerprint = fingerprint or storage.sha256(path)
        self.encoder, self.renderer, self.config = models
        self.encoder.eval()
        self.renderer.eval()
        self.fingerprint = fingerprint or "unknown"
        self.lut_size = int(lut_size)
        self._luts: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._effects: dict[Any, list[float]] = {}

    @property
    def latent_dim(self) -> int:
        return int(self.config.total_latent)

    def inverse_latents(self, targets: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> np.ndarray:
        """``E(target, input)`` for each pair: (N, 3·d) float32 (the edit target → input)."""
        import torch

        from model_core.er_data import resize_square
        from model_core.retouch import as_float_image

        side = int(self.config.enc_input_size)

        def prep(imgs: Sequence[np.ndarray]) -> Any:
            arr = np.stack([resize_square(as_float_image(im), side) for im in imgs])
            return torch.from_numpy(arr).permute(0, 3, 1, 2) * 2.0 - 1.0

        if not targets:
            return np.zeros((0, self.latent_dim), np.float32)
        with torch.no_grad():
            z = self.encoder(prep(targets), prep(inputs))
        return z.float().numpy()

    def lut(self, z: np.ndarray, masks: Sequence[int], key: Any = None) -> np.ndarray:
        """R(·; masks · z) baked to a (n, n, n, 3) LUT indexed [r, g, b] (cached by `key`)."""
        import torch

        from model_core.encoder import apply_masks

        ck = None if key is None else (key, tuple(int(m) for m in masks))
        if ck is not None and ck in self._luts:
            self._luts.move_to_end(ck)
            return self._luts[ck]
        zt = apply_masks(torch.as_tensor(np.asarray(z, np.float32)).reshape(1, -1), list(masks))
        with single_thread():
            lut = np.clip(self.renderer.bake_lut(zt[0], self.lut_size).numpy(), 0.0, 1.0).astype(np.float32)
        if ck is not None:
            self._luts[ck] = lut
            if len(self._luts) > LUT_CACHE_SIZE:
                self._luts.popitem(last=False)
        return lut

    def group_effects(self, z: np.ndarray, key: Any = None) -> list[float]:
        """Mean colour change of each latent group rendered alone, vs all groups masked (cached by key)."""
        if key is not None and key in self._effects:
            return self._effects[key]
        lattice = GROUP_EFFECT_LUT
        saved, self.lut_size = self.lut_size, lattice
        try:
            base = self.lut(z, (0, 0, 0))
            out = [float(np.abs(self.lut(z, m) - base).mean()) for m in ((1, 0, 0), (0, 1, 0), (0, 0, 1))]
        finally:
            self.lut_size = saved
        if key is not None:
            self._effects[key] = out
        return out

    def lut_for(
        self, u8: np.ndarray, z: np.ndarray, masks: Sequence[int], also: Sequence[np.ndarray] = ()
    ) -> np.ndarray:
        """``R(·; masks · z)`` baked to a LUT where the uint8 image ``u8`` (and those in ``also``)
        read it (`bake_lut_for`: typically 10-20 % of the lattice, the renderer MLP being the
        cost); valid for these images only, not cached."""
        import torch

        from model_core.encoder import apply_masks

        zt = apply_masks(torch.as_tensor(np.asarray(z, np.float32)).reshape(1, -1), list(masks))

        def evaluate(points: np.ndarray) -> np.ndarray:
            with torch.no_grad(), single_thread():
                out = self.renderer.render_points(torch.from_numpy(points), zt)
            return np.clip(out.numpy(), 0.0, 1.0)

        return bake_lut_for(u8, self.lut_size, evaluate, also)

    def degrade(
        self, image: np.ndarray, z: np.ndarray, masks: Sequence[int], dtype: type = np.float32
    ) -> np.ndarray:
        """``R(image; masks · z)`` at full resolution through an 8-bit LUT: float32 in 1/255 steps, or
        uint8 with ``dtype=np.uint8``. ``image`` is float in [0, 1] or uint8.

        The LUT is baked only where this photo reads it (`lut_for`), so the result depends on this
        sample alone and nothing is cached.
        """
        u8 = to_u8(image)
        return apply_lut8(u8, self.lut_for(u8, z, masks), dtype)
