"""The auto workflow: retrieval + inverse degradation with the encoder/renderer, fitted and known
corrective params, the issue's acceptance metrics, and the default / `all` builds.

Mechanics run on a tiny random encoder/renderer saved to a real checkpoint; the acceptance metrics
(histogram moves toward the reference input, structure kept, ΔE ≥ 3) need trained weights and run
on the shipped CPU checkpoint.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from aether_data import params as P
from aether_data.config import load_spec
from aether_data.degrade import ERDegrader
from aether_data.develop import render
from aether_data.expert_db import ExpertDB, ExpertDBError, feature_distance, histogram_features, read_paired
from aether_data.expert_db.db import build_expert_db
from aether_data.expert_db.index import brute_force
from aether_data.fit import fit_params
from aether_data.io.imaging import encode_png, load_image
from aether_data.io.sources import bundled_photos
from aether_data.scoring import HeuristicScorer
from aether_data.workflows.auto import AutoWorkflow, preflight
from aether_data.workflows.base import PlanRow
from model_core.er_io import DEFAULT_CHECKPOINT
from tests.conftest import run_cli
from tests.test_expert_db import EDITS, make_paired_folder, tiny_er_checkpoint

ROW = PlanRow(0, "auto_000000000", "auto", "auto-000000", 1, 0, "x.jpg")


@pytest.fixture
def shipped_er() -> Path:
    """The shipped encoder/renderer is part of the repository: missing is a failure, never a skip."""
    assert DEFAULT_CHECKPOINT.is_file(), f"the shipped encoder/renderer is missing: {DEFAULT_CHECKPOINT}"
    return DEFAULT_CHECKPOINT


needs_shipped_er = pytest.mark.usefixtures("shipped_er")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def sources(
    n: int, size: int = 128, which: tuple[int, ...] = (0, 1, 2, 3, 4, 5), seed: int = 11
) -> list[np.ndarray]:
    """Seeded crops/flips of (some of) the bundled photos (the build's augmentation, without Ray)."""
    rng = np.random.default_rng(seed)
    photos = [load_image(bundled_photos()[i], 2 * size) for i in which]
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        s = float(np.sqrt(rng.uniform(0.5, 1.0)))
        ch, cw = round(h * s), round(w * s)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = cv2.resize(
            img[y : y + ch, x : x + cw], (round(size * cw / ch), size), interpolation=cv2.INTER_AREA
        )
        out.append(np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop))
    return out


def make_acceptance_pairs(root: Path, size: int = 128) -> Path:
    """The issue's paired folder: input/ = crops of the bundled photos, target/ = known engine edits."""
    (root / "input").mkdir(parents=True)
    (root / "target").mkdir(parents=True)
    for c, img in enumerate(sources(12, size, seed=5)):
        for e, edit in enumerate(EDITS):
            (root / "input" / f"c{c:02d}e{e}.png").write_bytes(encode_png(img))
            (root / "target" / f"c{c:02d}e{e}.png").write_bytes(encode_png(render(img, edit)))
    return root


def retouched_sources(n: int, size: int = 128) -> list[np.ndarray]:
    """High-quality stand-ins: *other* crops of the photos, each under one of the expert edits, so
    a source resembles expert targets (the premise of retrieval) and is never a reference input."""
    return [
        render(img, EDITS[(3 * i + i // 6) % len(EDITS)]) for i, img in enumerate(sources(n, size, seed=11))
    ]


def _build_db(pairs: Path, out: Path, ckpt: Path | None, thumbs: int = 32) -> ExpertDB:
    listing, _ = read_paired(pairs)
    deg = ERDegrader(str(ckpt) if ckpt else None)
    build_expert_db(listing, out, scorer=HeuristicScorer(), degrader=deg, delta=-100, short_edge=128,
                    thumb_size=thumbs, roots=[pairs])  # fmt: skip
    return ExpertDB(out)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("auto")
    pairs = make_paired_folder(d / "pairs")
    ckpt = tiny_er_checkpoint(d / "er.safetensors")
    _build_db(pairs, d / "db", ckpt)
    return {"pairs": pairs, "ckpt": ckpt, "db": d / "db", "dir": d}


def _spec(tiny: dict[str, Path], **auto: object):
    # The tiny random encoder/renderer's edits are arbitrary, so the "toward the reference" gate
    # would reroute most samples: these tests check the branch's mechanics with the gate off (the
    # shipped-checkpoint acceptance test below runs it on).
    base = {
        "expert_db": str(tiny["db"]),
        "er_checkpoint": str(tiny["ckpt"]),
        "fit_steps": 10,
        "require_toward_reference": False,
    }
    return load_spec(workflow="auto", overrides={"auto": {**base, **auto}})


def test_er_branch_records_the_retrieved_reference_and_is_deterministic(tiny: dict[str, Path]) -> None:
    wf = AutoWorkflow(_spec(tiny, supplementary_fraction=0.0, knn_k=3))
    db = wf.db
    for i, img in enumerate(sources(4)):
        pair = wf.synthesize(ROW, img, np.random.default_rng(i))
        again = wf.synthesize(ROW, img, np.random.default_rng(i))
        assert np.array_equal(pair.input, again.input) and pair.expert_ref == again.expert_ref
        assert pair.target is img and pair.input.shape == img.shape and pair.input.dtype == np.float32
        assert np.array_equal(
            np.rint(pair.input * 255) / 255, pair.input.astype(np.float64).astype(np.float32)
        )
        ref = pair.expert_ref
        assert pair.params_origin == "fitted" and set(ref) >= {"id", "distance", "rank", "k"}
        row = db.ids.index(ref["id"])
        assert row in brute_force(db.features_target, histogram_features(img), "hellinger", 3)
        assert ref["rank"] < ref["k"] == 3
        assert ref["distance"] == pytest.approx(
            feature_distance(histogram_features(img), db.features_target[row], "hellinger"), abs=1e-5
        )
        assert sum(ref["latent_masks"]) >= 1
        assert pair.masks == P.masks(pair.params or {})
        for g, on in zip(P.GROUPS, ref["latent_masks"]):  # fitted only within the rendered groups
            if not on:
                assert not any(n in (pair.params or {}) for n in P.GROUP_PARAMS[g])


def test_branch_fraction_and_supplementary_known_params(tiny: dict[str, Path]) -> None:
    wf = AutoWorkflow(_spec(tiny, supplementary_fraction=0.3, fit_steps=0))
    imgs = sources(60, 96)
    origins = []
    improved = total = 0
    for i, img in enumerate(imgs):
        pair = wf.synthesize(ROW, img, np.random.default_rng(1000 + i))
        origins.append(pair.params_origin)
        if pair.params_origin == "known-operator":
            total += 1
            assert pair.expert_ref is None and pair.params
            improved += _psnr(render(pair.input, pair.params), img) > _psnr(pair.input, img)
    share = origins.count("known-operator") / len(origins)
    assert 0.15 <= share <= 0.45, share
    assert improved / total >= 0.9, (improved, total)
    only_ops = AutoWorkflow(load_spec(workflow="auto", overrides={"auto": {"supplementary_fraction": 1.0}}))
    assert only_ops.degrader is None  # no encoder/renderer or DB loaded when they are not used


def test_fit_recovers_engine_edits() -> None:
    gains = []
    for i, img in enumerate(sources(6, 96)):
        edit = [{"Exposure2012": -0.8, "Contrast2012": -30.0}, {"IncrementalTemperature": 40.0, "Saturation": -30.0},
                {"Shadows2012": -50.0, "HueAdjustmentBlue": 30.0}][i % 3]  # fmt: skip
        degraded = render(img, edit)
        fit = fit_params(degraded, img, steps=40)
        full = _psnr(render(degraded, fit.params), img)
        gains.append(full - _psnr(degraded, img))
        assert fit.improved and fit.psnr_after > fit.psnr_before + 3
    assert min(gains) > 3, gains
    light_only = fit_params(
        render(sources(1)[0], {"IncrementalTemperature": 50.0}), sources(1)[0], groups=(1, 0, 0)
    )
    assert all(P.SPECS[n].group == "light" for n in light_only.params)


def test_db_from_other_weights_is_reencoded_or_refused(tiny: dict[str, Path]) -> None:
    other = tiny_er_checkpoint(tiny["dir"] / "other.safetensors", seed=1)
    wf = AutoWorkflow(_spec(tiny, supplementary_fraction=0.0, er_checkpoint=str(other)))
    assert wf.db.fingerprint == wf.degrader.fingerprint
    assert not np.allclose(wf.db.z_inv, ExpertDB(tiny["db"]).z_inv)
    no_thumbs = _build_db(tiny["pairs"], tiny["dir"] / "db-nothumbs", tiny["ckpt"], thumbs=0)
    with pytest.raises(ExpertDBError, match="rebuild it"):
        AutoWorkflow(
            _spec(tiny, supplementary_fraction=0.0, expert_db=str(no_thumbs.path), er_checkpoint=str(other))
        )
    missing = _spec(tiny, supplementary_fraction=0.5, er_checkpoint=str(tiny["dir"] / "nope.safetensors"))
    with pytest.raises(FileNotFoundError, match="supplementary_fraction"):
        AutoWorkflow(missing)
    with pytest.raises(FileNotFoundError, match="supplementary_fraction"):
        preflight(missing)
    with pytest.raises(ExpertDBError, match="not an expert DB"):
        preflight(_spec(tiny, expert_db=str(tiny["dir"])))
    preflight(_spec(tiny))
    preflight(
        load_spec(workflow="auto", overrides={"auto": {"supplementary_fraction": 1.0, "er_checkpoint": "/x"}})
    )


# ----------------------------------------------------------------------------------------------
# acceptance metrics on trained weights


def _gradient_corr(a: np.ndarray, b: np.ndarray) -> float:
    def mag(x: np.ndarray) -> np.ndarray:
        y = cv2.cvtColor(x.astype(np.float32), cv2.COLOR_RGB2GRAY)
        return np.hypot(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1)).ravel()

    return float(np.corrcoef(mag(a), mag(b))[0, 1])


def _delta_e(a: np.ndarray, b: np.ndarray) -> float:
    la = cv2.cvtColor(a.astype(np.float32), cv2.COLOR_RGB2Lab)
    lb = cv2.cvtColor(b.astype(np.float32), cv2.COLOR_RGB2Lab)
    return float(np.sqrt(((la - lb) ** 2).sum(axis=2)).mean())


@needs_shipped_er
def test_acceptance_inverse_degradation_with_the_shipped_encoder_renderer(tmp_path: Path) -> None:
    """The issue's acceptance: the nearest pair as reference (k = 1), and the default spec (k = 2)."""
    db = _build_db(make_acceptance_pairs(tmp_path / "pairs"), tmp_path / "db", None)
    corr, de, fit_gain, n_er = [], [], [], 0
    for k in (1, None):
        auto = {"supplementary_fraction": 0.0, "expert_db": str(db.path)} | ({"knn_k": k} if k else {})
        wf = AutoWorkflow(load_spec(workflow="auto", overrides={"auto": auto}))
        moved = []
        for i, img in enumerate(retouched_sources(12)):
            pair = wf.synthesize(ROW, img, np.random.default_rng(i))
            if pair.expert_ref is None:  # no nearby expert edit does anything: random operators instead
                continue
            ref = wf.db.ids.index(pair.expert_ref["id"])
            if k == 1:  # the reference is the pair whose target histogram is nearest (brute force)
                assert ref == brute_force(wf.db.features_target, histogram_features(img), "hellinger", 1)[0]
            ref_in = wf.db.features_input[ref]
            d0 = feature_distance(histogram_features(img), ref_in, "hellinger")
            d1 = feature_distance(histogram_features(pair.input), ref_in, "hellinger")
            moved.append(d1 < d0)
            corr.append(_gradient_corr(pair.input, img))
            de.append(_delta_e(pair.input, img))
            if pair.params:
                fit_gain.append(_psnr(render(pair.input, pair.params), img) - _psnr(pair.input, img))
        print(
            f"k={wf.spec.auto.knn_k}: ER samples {len(moved)}/12, histogram moved toward the reference input {np.mean(moved):.2f}"
        )
        # The gate (`require_toward_reference`) keeps only inverse edits that moved toward the
        # reference input, so every kept one must have moved (the gate's contract); the quality
        # measure is how many of the 12 the gate keeps. Measured: 10/12 for k = 1 and for k = 2.
        assert all(moved), moved
        assert len(moved) >= 9, len(moved)
        n_er += len(moved)
    print(
        f"gradient corr min {min(corr):.3f}, mean dE {np.mean(de):.2f}, fitted {len(fit_gain)}/{n_er}, "
        f"PSNR gain > 0 in {np.mean(np.array(fit_gain) > 0):.2f}, mean {np.mean(fit_gain):.2f} dB"
    )
    # Measured: gradient corr min 0.940, mean ΔE 7.02, fitted 20/20, every fit gains, mean 18.22 dB.
    assert min(corr) >= 0.92
    assert np.mean(de) >= 6.0
    assert len(fit_gain) == n_er and min(fit_gain) > 0 and np.mean(fit_gain) >= 17.2, fit_gain
    # Without the gate (`require_toward_reference`), the raw encoder/renderer inverse edits: most
    # must already move toward the reference input; the gate reroutes the rest to random operators.
    auto = {
        "supplementary_fraction": 0.0,
        "expert_db": str(db.path),
        "knn_k": 1,
        "require_toward_reference": False,
    }
    wf = AutoWorkflow(load_spec(workflow="auto", overrides={"auto": auto}))
    raw = []
    for i, img in enumerate(retouched_sources(12)):
        pair = wf.synthesize(ROW, img, np.random.default_rng(i))
        if pair.expert_ref is not None:
            ref_in = wf.db.features_input[wf.db.ids.index(pair.expert_ref["id"])]
            d0 = feature_distance(histogram_features(img), ref_in, "hellinger")
            raw.append(feature_distance(histogram_features(pair.input), ref_in, "hellinger") < d0)
    print(f"ungated: ER samples {len(raw)}/12, moved toward the reference input {np.mean(raw):.2f}")
    # Measured: 12/12 ER samples, 8 of them (0.67) moved toward the reference input. The bar is one
    # sample below that (7/12); a coin's share (6/12) fails.
    assert len(raw) == 12 and sum(raw) >= 7, raw


# ----------------------------------------------------------------------------------------------
# builds


def _records(out: Path) -> list[dict]:
    recs = []
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    recs.append(json.loads(tf.extractfile(m).read()))
    return recs


def _images(out: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    shard = out / "shards" / f"{key.rsplit('_', 1)[0]}-000000.tar"
    with tarfile.open(shard) as tf:
        a, b = (tf.extractfile(f"{key}.{s}.jpg").read() for s in ("input", "target"))
    return tuple(np.asarray(Image.open(io.BytesIO(x)).convert("RGB"), np.float32) / 255 for x in (a, b))  # type: ignore[return-value]


@needs_shipped_er
def test_default_auto_build_uses_the_bundled_db_and_passes_audit(ray_session, tmp_path: Path) -> None:
    out = tmp_path / "auto"
    code, text = run_cli("build", "--workflow", "auto", "--num-samples", "16", "--image-size", "128",
                         "--out", str(out), "--quiet")  # fmt: skip
    assert code == 0, text
    assert run_cli("audit", str(out))[0] == 0
    recs = _records(out)
    assert len(recs) == 16
    fitted = [r for r in recs if r["params_origin"] == "fitted"]
    assert fitted and any(r["params_origin"] == "known-operator" for r in recs)
    bundled = set(ExpertDB().ids)
    for r in fitted:
        assert r["expert_ref"]["id"] in bundled and r["expert_ref"]["rank"] < r["expert_ref"]["k"]
    gains = {}
    for r in recs:
        if r["params"] and any(abs(v) > 1e-4 for v in r["params"].values()):
            inp, tgt = _images(out, r["key"])
            sliders = {n: P.denormalise(n, v) for n, v in r["params"].items()}
            gains[r["key"]] = _psnr(render(inp, sliders), tgt) - _psnr(inp, tgt)
    # Measured (seed 0, 16 samples, 128 px): every one of the 16 records' params re-renders its input
    # closer to its target, by 1.07 … 23.09 dB, mean 11.12 dB (fitted 11: mean 13.00, min 2.35;
    # known-operator 5: mean 6.99, min 1.07). Bars: each record > 0 dB, the mean 1 dB below.
    assert len(gains) == 16 and min(gains.values()) > 0.0, gains
    assert np.mean(list(gains.values())) >= 10.1, gains


def test_all_workflows_build_with_per_workflow_counts(ray_session, tmp_path: Path) -> None:
    out = tmp_path / "all"
    spec = tmp_path / "all.yaml"
    # the default auto spec when the shipped encoder/renderer is there, else random operators only
    auto = "{}" if DEFAULT_CHECKPOINT.is_file() else "{supplementary_fraction: 1.0}"
    spec.write_text(f"workflow: all\nauto: {auto}\n")
    code, text = run_cli("build", "--config", str(spec), "--num-samples", "12", "--samples-per-shard", "4",
                         "--image-size", "64", "--out", str(out), "--quiet")  # fmt: skip
    assert code == 0, text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["per_workflow"] == {"auto": 4, "param": 4, "style": 4}
    assert run_cli("audit", str(out))[0] == 0


@pytest.mark.slow
@needs_shipped_er
def test_no_argument_auto_build_under_two_minutes(tmp_path: Path) -> None:
    """What a user runs first, as a user runs it: a fresh process (own Ray) in an empty folder."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "RAY_ADDRESS": ""}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "aether_data.cli", "build", "--workflow", "auto", "--quiet"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr[-2000:]
    audit = subprocess.run([sys.executable, "-m", "aether_data.cli", "audit", "aether-out"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert audit.returncode == 0, audit.stdout + audit.stderr
    print(f"default auto build: {seconds:.1f} s")
    assert seconds < 120


@needs_shipped_er
def test_default_lut_size_stays_close_to_the_renderer() -> None:
    """The auto workflow bakes the renderer at `auto.lut_size` (default 25): on a real photo and the
    demo DB's inverse latents, the 8-bit LUT path stays ≥ 45 dB from the network itself."""
    import torch

    wf = AutoWorkflow(load_spec(workflow="auto", overrides={"auto": {"supplementary_fraction": 0.0}}))
    img = sources(1, 256)[0]
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    worst = 99.0
    for row in range(0, len(wf.db.ids), max(1, len(wf.db.ids) // 8)):
        with torch.no_grad():
            direct = (
                wf.degrader.renderer(x, torch.from_numpy(wf.db.z_inv[row])[None])[0].permute(1, 2, 0).numpy()
            )
        worst = min(worst, _psnr(wf.degrader.degrade(img, wf.db.z_inv[row], (1, 1, 1)), direct))
    assert wf.degrader.lut_size == 25 and worst >= 45.0, worst
