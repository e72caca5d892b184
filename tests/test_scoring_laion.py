"""The `laion` aesthetic scorer on a tiny random open_clip model + a random LAION-shaped head, both saved
to local files: the real loading, preprocessing, batching and head code paths, checked against an
independent computation; head-file safety; use in the DB filter and the auto source filter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aether_data.config import SpecError, load_spec
from aether_data.io.imaging import load_image
from aether_data.io.sources import bundled_photos
from aether_data.scoring import (
    HeuristicScorer,
    LaionScorer,
    heuristic_score,
    load_aesthetic_head,
    make_scorer,
)

TINY_CLIP = {
    "embed_dim": 768,  # the LAION head's input size, as ViT-L/14
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
HEAD_SHAPES = {0: (1024, 768), 2: (128, 1024), 4: (64, 128), 6: (16, 64), 7: (1, 16)}


def random_head_state(seed: int = 0, in_dim: int = 768) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, (o, n) in HEAD_SHAPES.items():
        n = in_dim if i == 0 else n
        state[f"layers.{i}.weight"] = torch.randn(o, n, generator=g) / n**0.5
        state[f"layers.{i}.bias"] = torch.randn(o, generator=g) * 0.1
    state["layers.7.bias"] += 5.0  # LAION-like range (~5)
    return state


@pytest.fixture(scope="module")
def laion_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny open_clip weights as 'ARCH:/file' and as a local open_clip folder, and a head .pth."""
    import open_clip

    d = tmp_path_factory.mktemp("laion")
    (d / "aether-tiny-l14.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(d / "aether-tiny-l14.json")
    torch.manual_seed(0)
    model = open_clip.create_model("aether-tiny-l14")
    torch.save(model.state_dict(), d / "clip.pt")
    folder = d / "clip-folder"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    torch.save(random_head_state(), d / "head.pth")
    return {
        "arch": f"aether-tiny-l14:{d / 'clip.pt'}",
        "folder": str(folder),
        "head": str(d / "head.pth"),
        "dir": str(d),
    }


def images() -> list[np.ndarray]:
    return [load_image(p, 96) for p in bundled_photos()[:5]]


def test_laion_scores_match_an_independent_computation(laion_files: dict[str, str]) -> None:
    import open_clip
    from PIL import Image

    scorer = LaionScorer(laion_files["arch"], laion_files["head"], batch_size=2)
    imgs = images()
    got = scorer.score_batch(imgs)
    # independent path: open_clip's own transform + encode_image, normalise, plain matmuls of the head
    model, _, pre = open_clip.create_model_and_transforms(
        "aether-tiny-l14", pretrained=laion_files["arch"].split(":", 1)[1]
    )
    model.eval()
    state = random_head_state()
    for img, s in zip(imgs, got):
        x = pre(Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)))[None]
        with torch.no_grad():
            e = model.encode_image(x).float()
            e = e / e.norm(dim=-1, keepdim=True)
            for i in (0, 2, 4, 6, 7):
                e = e @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
        assert s == pytest.approx(float(e[0, 0]), abs=1e-3)
    assert len(set(got)) == len(got)  # it looks at the image
    emb = scorer.embed(imgs)
    assert emb.shape == (5, 768) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # batching does not change scores; the folder form loads the same model
    one = LaionScorer(laion_files["folder"], laion_files["head"], batch_size=1)
    assert np.allclose(one.score_batch(imgs), got, atol=1e-3)
    assert scorer.score_batch([]) == []


def test_head_files_safetensors_and_unsafe_or_wrong_files(
    laion_files: dict[str, str], tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    save_file(random_head_state(), str(tmp_path / "head.safetensors"))
    a = load_aesthetic_head(tmp_path / "head.safetensors")
    b = load_aesthetic_head(laion_files["head"])
    x = torch.randn(3, 768)
    assert torch.allclose(a(x), b(x))
    torch.save({"module." + k: v for k, v in random_head_state().items()}, tmp_path / "wrapped.pth")
    assert torch.allclose(load_aesthetic_head(tmp_path / "wrapped.pth")(x), b(x))

    class Payload:
        def __reduce__(self):  # what a malicious pickle would run
            return (print, ("pwned",))

    torch.save({"layers.0.weight": Payload()}, tmp_path / "evil.pth")  # a zip whose pickle calls print()
    with pytest.raises(ValueError, match="weights-only"):
        load_aesthetic_head(tmp_path / "evil.pth")
    torch.save({"fc.weight": torch.zeros(1, 768)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a LAION aesthetic head"):
        load_aesthetic_head(tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError):
        load_aesthetic_head(tmp_path / "missing.pth")
    torch.save(random_head_state(in_dim=512), tmp_path / "h512.pth")
    with pytest.raises(ValueError, match="768-d"):
        LaionScorer(laion_files["arch"], tmp_path / "h512.pth")


def test_make_scorer_and_spec_validation(laion_files: dict[str, str]) -> None:
    h = make_scorer("heuristic")
    assert isinstance(h, HeuristicScorer)
    assert h.score_batch(images()[:2]) == [heuristic_score(i) for i in images()[:2]]
    assert make_scorer("laion", laion_files["arch"], laion_files["head"]).name == "laion"
    with pytest.raises(ValueError, match="scorer_model"):
        make_scorer("laion", None, laion_files["head"])
    with pytest.raises(ValueError, match="unknown scorer"):
        make_scorer("nima")
    with pytest.raises(SpecError, match="scorer_head"):
        load_spec(workflow="auto", overrides={"auto": {"scorer": "laion", "scorer_model": "x:y"}})


def test_laion_in_the_db_filter_and_the_source_filter(laion_files: dict[str, str], tmp_path: Path) -> None:
    from aether_data.io.errors import SourceError
    from aether_data.workflows.auto import AutoWorkflow
    from aether_data.workflows.base import PlanRow
    from tests.test_expert_db import make_paired_folder, run_cli, tiny_er_checkpoint

    pairs = make_paired_folder(tmp_path / "pairs", 48)
    ckpt = tiny_er_checkpoint(tmp_path / "er.safetensors")
    code, text = run_cli(
        "expert-db", "build", "--pairs", str(pairs), "--out", str(tmp_path / "db"), "--er-checkpoint", str(ckpt),
        "--scorer", "laion", "--scorer-model", laion_files["folder"], "--scorer-head", laion_files["head"],
        "--delta", "-100", "--short-edge", "64",
    )  # fmt: skip
    assert code == 0, text
    meta = json.loads((tmp_path / "db" / "meta.json").read_text())
    assert meta["scorer"] == "laion" and meta["counts"]["kept"] == 12
    scorer = LaionScorer(laion_files["folder"], laion_files["head"])
    img = images()[0]
    s = scorer.score_batch([img])[0]
    auto = {"supplementary_fraction": 1.0, "scorer": "laion", "scorer_model": laion_files["folder"],
            "scorer_head": laion_files["head"]}  # fmt: skip
    row = PlanRow(0, "auto_000000000", "auto", "auto-000000", 1, 0, "x.jpg")
    keep = AutoWorkflow(
        load_spec(workflow="auto", overrides={"auto": {**auto, "min_source_score": s - 0.01}})
    )
    assert keep.synthesize(row, img, np.random.default_rng(0)).target is img
    skip = AutoWorkflow(
        load_spec(workflow="auto", overrides={"auto": {**auto, "min_source_score": s + 0.01}})
    )
    with pytest.raises(SourceError) as err:
        skip.synthesize(row, img, np.random.default_rng(0))
    assert err.value.reason == "low-aesthetic-source"


def test_default_source_filter_drops_an_underexposed_photo_and_keeps_the_bundled_ones() -> None:
    """The default auto spec filters sources by the heuristic at 3.0: every bundled photo passes (the
    darkest, the Hubble field, scores 3.9) and the same photo at a quarter of its exposure is skipped."""
    from aether_data.io.errors import SourceError
    from aether_data.workflows.auto import AutoWorkflow
    from aether_data.workflows.base import PlanRow

    spec = load_spec(workflow="auto", overrides={"auto": {"supplementary_fraction": 1.0}})
    assert spec.auto.scorer == "heuristic" and spec.auto.min_source_score == 3.0
    wf = AutoWorkflow(spec)
    row = PlanRow(0, "auto_000000000", "auto", "auto-000000", 1, 0, "x.jpg")
    for img in images():
        assert wf.synthesize(row, img, np.random.default_rng(0)).target is img
        with pytest.raises(SourceError) as err:
            wf.synthesize(row, img * np.float32(0.25), np.random.default_rng(0))
        assert err.value.reason == "low-aesthetic-source"
