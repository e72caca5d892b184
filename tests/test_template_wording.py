"""Template wording, with the exact strings: stops of exposure (1.5 EV is one and a half), no
"by roughly a touch", no capital after an opener, and no content a photo is not known to show
(a coffee cup gets "warm, glowing orange tones", not skin tones)."""

from __future__ import annotations

import numpy as np
import pytest

from aether_data.annotate.phrasing import _continue, _ev_words
from aether_data.annotate.template import AnnotationRequest, TemplateAnnotator
from aether_data.presets.describe import Effect
from aether_data.presets.grounding import grounded_effects, names_unknown_content


@pytest.mark.parametrize(
    ("ev", "words"),
    [
        (1.5, "one and a half stops"),
        (-1.5, "one and a half stops"),
        (0.5, "half a stop"),
        (1 / 3, "a third of a stop"),
        (2 / 3, "two thirds of a stop"),
        (1.0, "one stop"),
        (1.2, "one and a third stops"),
        (1.6, "one and two thirds stops"),
        (2.0, "two stops"),
        (2.5, "two and a half stops"),
        (0.9, "one stop"),
        (0.1, None),  # under a sixth of a stop: no stop count at all
    ],
)
def test_ev_words(ev, words):
    assert _ev_words(ev) == words


def _param(params: dict[str, float], seed: int) -> list[str]:
    ann = TemplateAnnotator(param_text_share=0.0).annotate(
        AnnotationRequest(workflow="param", params=params, masks=[1, 0, 0], seed=seed)
    )
    return ann.instructions[1:]  # [0] is the official parameter dict


def test_small_exposure_is_an_amount_not_a_stop_count():
    assert _param({"Exposure2012": -0.05}, 0) == [
        "Please darken the photo a little.",
        "Set Exposure to -0.05 EV.",
        "Light: bring the overall brightness down a little.",
    ]
    assert _param({"Exposure2012": -0.05}, 2) == [
        "Bring the overall brightness down a touch.",
        "Set Exposure to -0.05 EV.",
        "Light: lower the exposure a touch.",
    ]
    for seed in range(40):
        for text in _param({"Exposure2012": 0.04 if seed % 2 else -0.04}, seed):
            assert "roughly a touch" not in text and "about a touch" not in text


def test_one_and_a_half_stops_in_instructions():
    assert _param({"Exposure2012": 1.5}, 0) == [
        "Please brighten the photo by about one and a half stops.",
        "Set Exposure to +1.50 EV.",
        "Light: lift the overall brightness by roughly one and a half stops.",
    ]


def test_style_plans_continue_the_opener_in_lower_case():
    preset = {
        "name": "Moody window light - Bold 05",
        "fine": "Moody window light",
        "primary": "Portrait",
        "plans": {
            "light": "Set contrast to +20 for punchier contrast.",
            "globalcolor": "Keep the overall colour balance as it is.",
            "specificcolor": "In the colour mixer: orange saturation +10.",
        },
        "instructions": ["Make it punchier.", "Add contrast.", "More punch."],
    }
    ann = TemplateAnnotator().annotate(
        AnnotationRequest(
            workflow="style", params={"Contrast2012": 20}, masks=[1, 0, 0], seed=5, preset=preset
        )
    )
    assert ann.reasoning["plans"] == {
        "light": "For the Moody window light - Bold 05 look, set contrast to +20 for punchier contrast.",
        "globalcolor": "For the Moody window light - Bold 05 look, keep the overall colour balance as it is.",
        "specificcolor": "For the Moody window light - Bold 05 look, in the colour mixer: orange saturation +10.",
    }
    assert _continue("HSL: blues -10") == "HSL: blues -10" and _continue("Kodak's look") == "Kodak's look"


def test_content_phrases_only_for_known_content():
    from aether_data.io.imaging import load_image
    from aether_data.resources import data_path
    from aether_data.workflows.base import image_stats

    coffee = image_stats(load_image(data_path("photos", "coffee.jpg"), dtype=np.uint8))
    warm = Effect("warm-skin", "warm, glowing skin tones", "warmer in the skin tones", "specificcolor", 1.0)
    sky = Effect("deep-blues", "deeper blue skies", "deeper in the blues", "specificcolor", 1.0)
    (w, s) = grounded_effects([warm, sky], coffee)
    assert (w.phrase, w.adjective) == ("warm, glowing orange tones", "warmer in the orange tones")
    assert s.phrase == "deeper blues"
    (w, s) = grounded_effects([warm, sky], {"subject": "a portrait of a woman", "sky": 0.3})
    assert w.phrase == "warm, glowing skin tones" and s.phrase == "deeper blue skies"
    assert names_unknown_content("Warm, creamy skin tones in the manner of Portra 400.", coffee)
    assert not names_unknown_content("Airy pastel film with cool, minty shadows.", coffee)


def test_coffee_style_instructions_name_no_skin(ray_session, tmp_path):
    import json
    import tarfile

    from conftest import run_cli

    from aether_data.resources import data_path

    out = tmp_path / "out"
    code, text = run_cli(
        "build", "--workflow", "style", "--sources", str(data_path("photos", "coffee.jpg")), "-n", "24",
        "--samples-per-shard", "24", "--image-size", "96", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, text
    with tarfile.open(out / "shards" / "style-000000.tar") as t:
        recs = [json.load(t.extractfile(m)) for m in t.getmembers() if m.name.endswith(".json")]
    for r in recs:
        said = " ".join(r["instructions"]) + r["completion"] + r["preset"]["effects"]
        for word in ("skin", "skies", "foliage", "portrait of"):
            assert word not in said.replace("Portrait", ""), (r["key"], word)
