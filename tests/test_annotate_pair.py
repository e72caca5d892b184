"""Reasoning written from the pair: VLM requests carry input + target and the applied operation;
the template's "Key elements" describe what is measurable in each photo."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import numpy as np

from aether_data.annotate import AnnotationRequest
from aether_data.annotate.base import SYSTEM_PROMPT_VERSION, VLM_PROMPT_PARTS
from aether_data.annotate.content import content_stats, describe_content
from aether_data.annotate.prompt import build_vlm_prompt
from aether_data.annotate.template import TemplateAnnotator
from aether_data.contract import PROMPTS_DIR
from tests.annotate_stub_server import StubServer
from tests.conftest import run_cli


def _records(out: Path) -> list[dict]:
    recs = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            recs += [
                json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")
            ]
    return recs


def _elements(completion: str) -> str:
    return completion.split("\n", 1)[0].removeprefix("Key elements: ")


def test_vlm_prompt_files_are_versioned() -> None:
    for wf, parts in VLM_PROMPT_PARTS.items():
        for name in (SYSTEM_PROMPT_VERSION, *parts):
            assert (PROMPTS_DIR / f"{name}.txt").is_file(), (wf, name)
    req = AnnotationRequest(
        "style", {"Vibrance": 30}, [0, 1, 0], 1, preset={"name": "Teal Film", "fine": "teal"}
    )
    system, user = build_vlm_prompt(req, TemplateAnnotator().annotate(req), 3)
    assert "first the input photo, then the retouched target" in system
    assert "Teal Film" in user and "Vibrance" in user  # the applied operation: preset and its settings


def test_openai_build_sends_input_target_and_operation(ray_session, tmp_path: Path) -> None:
    """`--workflow all`, 30 bundled samples: every reasoning request has two images and the operation."""
    with StubServer() as s:
        code, text = run_cli(
            "build", "--workflow", "all", "--num-samples", "30", "--samples-per-shard", "10",
            "--workers", "1", "--seed", "5", "--quiet", "--out", str(tmp_path / "out"),
            "--annotator", "openai", "--openai-base-url", s.base_url,
            "--annotator-cache-dir", str(tmp_path / "cache"),
        )  # fmt: skip
        assert code == 0, text
        counts, users = list(s.image_counts), list(s.user_texts)
    records = _records(tmp_path / "out")
    assert len(records) == 30 and len(counts) >= 30
    assert all(n == 2 for n in counts)
    for user in users:
        assert "The first image is" in user and "the second is" in user
        assert re.search(
            r"\((Exposure2012|[A-Za-z]+Adjustment[A-Za-z]+|[A-Za-z0-9]+)\) [+-]\d\.\d{3} = (increase|decrease)",
            user,
        )
    assert {r["annotator"]["name"] for r in records} == {"openai"}


def test_template_key_elements_differ_between_photos(ray_session, tmp_path: Path) -> None:
    """30 auto samples of the bundled photos: one key-elements line per photo, different photos differ."""
    code, text = run_cli(
        "build", "--workflow", "auto", "--num-samples", "30", "--samples-per-shard", "15",
        "--workers", "1", "--seed", "2", "--quiet", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, text
    by_photo: dict[str, set[str]] = {}
    for rec in _records(tmp_path / "out"):
        by_photo.setdefault(rec["source"]["sha256"], set()).add(_elements(rec["completion"]))
    assert len(by_photo) >= 4
    firsts = [sorted(v)[0] for v in by_photo.values()]
    all_lines = set().union(*by_photo.values())
    assert "the main subject and its surroundings" not in " ".join(all_lines)
    # no line is shared by two different photos
    for i, a in enumerate(by_photo.values()):
        for b in list(by_photo.values())[i + 1 :]:
            assert not a & b
    assert len(set(firsts)) == len(firsts)


def test_content_stats_measure_what_is_there() -> None:
    img = np.zeros((64, 96, 3), np.float32)
    img[:24] = (0.35, 0.6, 0.95)  # blue sky on top
    img[24:] = (0.2, 0.5, 0.15)  # foliage below
    img[40:56, 60:80] = (0.9, 0.65, 0.5)  # a skin-toned patch, lower right
    st = content_stats(img)
    assert 0.3 < st["sky"] < 0.45 and 0.4 < st["foliage"] < 0.65 and 0.03 < st["skin"] < 0.1
    assert st["hue_green"] > st["hue_blue"] > 0.2
    text = "; ".join(describe_content(st))
    assert "dominant green" in text and "sky about" in text and "foliage about" in text
    plain = np.full((64, 96, 3), 0.45, np.float32)
    plain[40:58, 64:86] = (0.9, 0.2, 0.1)  # the one distinct thing: a red object, lower right
    st = content_stats(plain)
    assert st["subject_x"] > 0.6 and st["subject_y"] > 0.6 and st["hue_red"] > 0.9
    assert "the most distinct region sits in the lower right" in describe_content(st)
