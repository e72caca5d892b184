"""The DAPO aesthetic reward comes from the scorer registry: DAPO runs with the heuristic default and
with a CLIP-based scorer (a tiny random open_clip model + a LAION-shaped head built here), and the
reward it logs is the configured scorer's, mapped from its scale to [0, 1]."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aether_data.config import deep_merge
from model_core.train.config import TINY
from model_core.train.dapo import aesthetic_reward
from model_core.train.stage import train_stage
from tests.test_scoring_laion import TINY_CLIP, random_head_state

CONSTANT = 7.5  # the head below always outputs this (on LAION's 0–10 scale) → R_a = 0.75


@pytest.fixture(scope="module")
def auto_data(ray_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import run_cli

    root = tmp_path_factory.mktemp("dapo_auto")
    spec = root / "auto.yaml"
    spec.write_text("workflow: auto\nauto: {supplementary_fraction: 1.0}\n")
    code, text = run_cli(
        "build", "--config", str(spec), "--num-samples", "8", "--samples-per-shard", "8",
        "--image-size", "128", "--out", str(root / "ds"), "--quiet",
    )  # fmt: skip
    assert code == 0, text
    return root / "ds"


@pytest.fixture(scope="module")
def clip_scorer_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import open_clip

    d = tmp_path_factory.mktemp("clip_scorer")
    (d / "aether-tiny-dapo.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(d / "aether-tiny-dapo.json")
    torch.manual_seed(1)
    torch.save(open_clip.create_model("aether-tiny-dapo").state_dict(), d / "clip.pt")
    head = random_head_state(seed=2)
    head["layers.7.weight"].zero_()  # the score no longer depends on the image
    head["layers.7.bias"].fill_(CONSTANT)
    torch.save(head, d / "head.pth")
    return {"model": f"aether-tiny-dapo:{d / 'clip.pt'}", "head": str(d / "head.pth")}


def _run(data: Path, out: Path, dapo: dict[str, Any]) -> list[dict[str, float]]:
    cfg = deep_merge(
        TINY,
        {"data": {"fixed_batch": True}, "dapo": {"max_new_tokens": 8, "tasks": ["auto"], **dapo}},
    )
    res = train_stage("dapo", [data], cfg, max_steps=2, out_dir=out, log=None)
    assert len(res["history"]) == 2
    return res["history"]


def test_dapo_with_heuristic_and_clip_scorers(
    auto_data: Path, clip_scorer_files: dict[str, str], tmp_path: Path
) -> None:
    heur = _run(auto_data, tmp_path / "heuristic", {})
    for h in heur:
        assert h["task"] == "auto" and 0.0 <= h["r_aesthetic"] <= 1.0
    clip = _run(
        auto_data,
        tmp_path / "clip",
        {
            "aesthetic_scorer": "laion",
            "aesthetic_model": clip_scorer_files["model"],
            "aesthetic_head": clip_scorer_files["head"],
        },
    )
    for h in clip:
        assert h["r_aesthetic"] == pytest.approx(CONSTANT / 10, abs=1e-4)
    # the heuristic default gives image-dependent rewards, not the CLIP head's constant
    assert any(abs(h["r_aesthetic"] - CONSTANT / 10) > 1e-3 for h in heur)


def test_aesthetic_reward_is_the_scorer_on_its_scale() -> None:
    from aether_data.scoring import heuristic_score

    img = np.random.default_rng(0).uniform(0, 1, (48, 48, 3)).astype(np.float32)
    assert aesthetic_reward(img) == pytest.approx(heuristic_score(img) / 10)

    class FiveScale:
        name, scale = "fake", (1.0, 5.0)

        def score_batch(self, images: list[np.ndarray]) -> list[float]:
            return [4.0 for _ in images]

    assert aesthetic_reward(img, FiveScale()) == pytest.approx(0.75)
