"""Template annotator and tagged completion format: grounding, determinism, strict parsing."""

from __future__ import annotations

import ast
import re

import numpy as np
import pytest

from aether_data import params as P
from aether_data.annotate import (
    PROMPT_VERSIONS,
    AnnotationRequest,
    CompletionFormatError,
    TemplateAnnotator,
    build_completion,
    build_prompt,
    is_valid_completion,
    parse_completion,
)
from aether_data.contract import (
    ELEMENTS_PREFIX,
    INACTIVE_TEXT,
    PROMPTS_DIR,
    RETOUCH_SEQUENCE,
    TASK_TOKENS,
    FormatLimits,
)

NAME_RE = re.compile(r"\b(" + "|".join(sorted(P.PARAM_NAMES, key=len, reverse=True)) + r")\b")
DIRECTION_RE = re.compile(r"\b(increase|decrease)\b")
VALUE_RE = re.compile(r"\bby ([+-]\d+\.\d+)")
ADVERBS = ("slightly", "moderately", "strongly")


def random_request(rng: np.random.Generator, workflow: str, seed: int) -> tuple[AnnotationRequest, dict]:
    """A random protocol (non-empty subset of groups), a random subset of each active group's sliders,
    plus a few sub-threshold values that must never be described."""
    while True:
        active_groups = [g for g in P.GROUPS if rng.random() < 0.5]
        if active_groups:
            break
    normalised: dict[str, float] = {}
    for g in active_groups:
        names = list(P.GROUP_PARAMS[g])
        k = int(rng.integers(1, len(names) + 1))
        for n in rng.choice(names, size=k, replace=False):
            mag = float(rng.choice([rng.uniform(0.001, 0.1), rng.uniform(0.1, 0.3), rng.uniform(0.3, 1.0)]))
            normalised[str(n)] = mag * float(rng.choice([-1.0, 1.0]))
    # sub-threshold noise in random parameters (any group): below MASK_EPS, so inactive
    for n in rng.choice(P.PARAM_NAMES, size=3, replace=False):
        if str(n) not in normalised:
            normalised[str(n)] = float(rng.uniform(-0.9, 0.9)) * P.MASK_EPS
    slider = {n: P.denormalise(n, v) for n, v in normalised.items()}
    masks = P.masks(slider)
    preset = {"id": "p1", "name": "Golden Hour Film", "primary": "Film", "fine": "warm film"}
    stats = {"mean_luminance": float(rng.uniform(0.1, 0.9)), "contrast": 0.2, "saturation": 0.3}
    req = AnnotationRequest(
        workflow=workflow,
        params=slider,
        masks=masks,
        seed=seed,
        preset=preset if workflow == "style" else None,
        image_stats=stats if workflow == "auto" else None,
    )
    return req, normalised


def clauses_of(plan: str) -> list[str]:
    return [c for c in plan.split("; ") if c]


def check_plan(plan: str, group: str, expected: dict[str, float]) -> None:
    """Every active parameter exactly once, with the right direction word, value and adverb."""
    if not expected:
        assert plan == INACTIVE_TEXT
        return
    seen: dict[str, float] = {}
    compact = len(expected) > 8
    for clause in clauses_of(plan):
        names = NAME_RE.findall(clause)
        assert len(names) == 1, (clause, names)
        name = names[0]
        assert P.SPECS[name].group == group, (name, group)
        directions = DIRECTION_RE.findall(clause)
        assert len(directions) == 1, clause
        value = float(VALUE_RE.search(clause).group(1))
        v = expected[name]
        assert directions[0] == ("increase" if v > 0 else "decrease"), (clause, v)
        assert np.sign(value) == np.sign(v)
        assert abs(value - v) <= 5e-4, (clause, v)
        if not compact:
            adverb = ADVERBS[0 if abs(v) < 0.1 else 1 if abs(v) < 0.3 else 2]
            assert f"{adverb} {directions[0]}" in clause, (clause, v)
        assert name not in seen, f"{name} named twice"
        seen[name] = value
    assert set(seen) == set(expected)


@pytest.mark.parametrize("workflow", ["param", "style", "auto"])
def test_random_params_are_described_exactly(workflow: str) -> None:
    rng = np.random.default_rng({"param": 11, "style": 22, "auto": 33}[workflow])
    annotator = TemplateAnnotator()
    n_samples = 200 if workflow == "param" else 70
    for i in range(n_samples):
        req, normalised = random_request(rng, workflow, seed=i)
        ann = annotator.annotate(req)
        parsed = parse_completion(ann.completion, workflow)
        assert ann.reasoning == parsed.reasoning()
        for g, m in zip(P.GROUPS, req.masks, strict=True):
            expected = {n: v for n, v in normalised.items() if P.SPECS[n].group == g and abs(v) >= P.MASK_EPS}
            assert bool(expected) == bool(m)
            check_plan(parsed.plans[g], g, expected)
            if workflow == "auto":
                assert (parsed.problems[g] == INACTIVE_TEXT) == (not expected)
        if workflow == "auto":
            assert parsed.elements and ann.completion.startswith(ELEMENTS_PREFIX)
            assert "mean luminance" in parsed.problems["light"] or not req.masks[0]
        else:
            assert parsed.problems is None and parsed.elements is None
            assert ann.reasoning["problems"] == {g: None for g in P.GROUPS}
        assert ann.prompt.startswith(TASK_TOKENS[workflow] + "\n")
        if workflow == "auto":
            assert ann.prompt == build_prompt("auto")
        else:
            assert ann.prompt == build_prompt(workflow, instruction=ann.instructions[0])
            assert ann.prompt.endswith("\n Instruction: " + ann.instructions[0])
        assert len(set(ann.instructions)) == len(ann.instructions)
        if workflow in ("param", "style"):
            assert len(ann.instructions) >= 3 + (workflow == "param")
        assert ann.annotator == {
            "name": "template",
            "model": None,
            "prompt_version": PROMPT_VERSIONS[workflow],
            "attempts": 0,
            "fallback_reason": None,
        }


def test_param_prompt_lists_exactly_the_active_values() -> None:
    """Dict form: all 38 keys in the three official groups, each normalised value rounded to 3 decimals."""
    rng = np.random.default_rng(5)
    for i in range(50):
        req, normalised = random_request(rng, "param", seed=i)
        prompt = TemplateAnnotator(param_text_share=0.0).annotate(req).prompt
        shown = ast.literal_eval(prompt.split("\n Instruction: ", 1)[1])
        assert list(shown) == [P.GROUP_TITLES[g] for g in P.GROUPS]
        for g in P.GROUPS:
            group = shown[P.GROUP_TITLES[g]]
            assert tuple(group) == P.GROUP_PARAMS[g]
            for n, v in group.items():
                # 3 decimals of the record's 6-decimal normalisation (ties can round either way)
                assert v == pytest.approx(normalised.get(n, 0.0), abs=6e-4)


def test_param_prompt_exact_text() -> None:
    prompt = build_prompt("param", params={"Exposure2012": 0.6, "Contrast2012": -25, "HueAdjustmentBlue": 0})
    head = (
        "<Professional_Retouch_Task>\nNow, you are acting as a Retouch Agent. I will provide an image and an "
        "professional instruction (plain text description or retouch operator parameters range from -1.0 to "
        "1.0), please give me a retouch plan and retouch tokens.\n Instruction: "
    )
    assert prompt.startswith(head + "{'Light Adjustment': {'Exposure2012': 0.12, 'Contrast2012': -0.25, ")
    assert "'Color and Temperature Adjustment': {'IncrementalTemperature': 0.0, " in prompt
    assert prompt.endswith("'LuminanceAdjustmentMagenta': 0.0}}")
    style = build_prompt("style", instruction="Make it  warmer.")
    assert style.endswith("retouch tokens.\n Instruction: Make it warmer.")
    assert build_prompt("auto").startswith("<Auto_Retouch_Task>\nNow, you are acting as a Retouch Agent.")
    assert build_prompt("param", instruction="Brighten it.") == head + "Brighten it."
    with pytest.raises(ValueError):
        build_prompt("style")
    with pytest.raises(ValueError):
        build_prompt("auto", instruction="x")
    with pytest.raises(ValueError):
        build_prompt("style", instruction="a <plan_light_start> b")
    with pytest.raises(P.ParamError):
        build_prompt("param", params={"NotAParam": 1})
    for version in PROMPT_VERSIONS.values():
        assert (PROMPTS_DIR / f"{version}.txt").is_file()


def test_natural_language_param_instructions() -> None:
    req = AnnotationRequest(
        "param",
        {
            "Exposure2012": 0.66,
            "Highlights2012": -40,
            "IncrementalTemperature": 8,
            "SaturationAdjustmentBlue": 30,
        },
        [1, 1, 1],
        seed=7,
    )
    ann = TemplateAnnotator(param_text_share=0.0).annotate(req)
    assert ann.instructions[0].startswith("{'Light Adjustment': {'Exposure2012': 0.132, ")
    natural = ann.instructions[1:]
    assert len(natural) >= 3
    text = " ".join(natural).lower()
    assert "two thirds of a stop" in text  # +0.66 EV
    assert "highlights" in text and "blue" in text
    assert "+8" in text and "-40" in text  # slider-value rendering
    assert not any("<" in s or ">" in s for s in ann.instructions)


def test_deterministic_and_seed_varies_wording() -> None:
    base = {"Exposure2012": 0.9, "Contrast2012": 20, "Vibrance": -15, "LuminanceAdjustmentGreen": -25}
    for wf in ("param", "style", "auto"):
        preset = {"id": "a", "name": "Moody Forest", "primary": "Moody", "fine": "dark green"}

        def make(seed: int, wf: str = wf, preset: dict = preset) -> dict:
            req = AnnotationRequest(wf, dict(base), [1, 1, 1], seed=seed, preset=preset)
            return TemplateAnnotator().annotate(req).to_dict()

        assert make(3) == make(3)
        variants = {(tuple(a["instructions"]), a["completion"]) for a in (make(s) for s in range(12))}
        assert len(variants) > 3, wf
        # wording changes, content does not: the same plan values under every seed
        values = {tuple(VALUE_RE.findall(make(s)["completion"])) for s in range(12)}
        assert len(values) == 1


def test_style_instructions_grounded_in_preset_and_settings() -> None:
    req = AnnotationRequest(
        "style",
        {"IncrementalTemperature": 30, "Blacks2012": 35, "Saturation": -20},
        [1, 1, 0],
        seed=1,
        preset={"id": "p", "name": "Sunset Fade", "primary": "Vintage", "fine": "faded warm"},
    )
    ann = TemplateAnnotator().annotate(req)
    assert len(set(ann.instructions)) >= 3
    joined = " ".join(ann.instructions)
    assert any(w in joined for w in ("Sunset Fade", "faded warm", "Vintage"))
    assert "Sunset Fade" in ann.reasoning["plans"]["light"]
    # without any preset or settings there are still three requests
    bare = TemplateAnnotator().annotate(AnnotationRequest("style", {}, [0, 0, 0], seed=0))
    assert len(set(bare.instructions)) >= 3
    assert all(v == INACTIVE_TEXT for v in bare.reasoning["plans"].values())


def test_auto_problems_follow_the_corrections() -> None:
    req = AnnotationRequest(
        "auto",
        {"Exposure2012": 1.5, "Highlights2012": -10, "IncrementalTemperature": -20, "HueAdjustmentRed": 25},
        [1, 1, 1],
        seed=0,
        image_stats={"mean_luminance": 0.22, "color_cast": "yellow", "sky": 0.3},
        category_description="a city street at dusk",
    )
    ann = TemplateAnnotator().annotate(req)
    r = ann.reasoning
    assert r["elements"].startswith("a city street at dusk")
    assert "sky" in r["elements"] and "dark overall" in r["elements"]
    light = r["problems"]["light"]
    assert light.index("strong underexposure") < light.index("highlight overexposure")  # strongest first
    assert "highlight overexposure" in light and "mean luminance 0.22" in light
    assert "warm" in r["problems"]["globalcolor"]  # a cooling correction means a warm cast
    assert "reds towards magenta" in r["problems"]["specificcolor"]
    assert r["plans"]["light"].index("Exposure2012") < r["plans"]["light"].index("Highlights2012")
    assert ann.instructions == [ann.prompt[len("<Auto_Retouch_Task>\n") :]]
    # no stats at all: still a key-elements line
    plain = TemplateAnnotator().annotate(AnnotationRequest("auto", {"Contrast2012": 30}, [1, 0, 0], seed=0))
    assert plain.completion.startswith(ELEMENTS_PREFIX + " ")
    assert plain.reasoning["problems"]["globalcolor"] == INACTIVE_TEXT


def test_mask_is_authoritative() -> None:
    req = AnnotationRequest("param", {"Exposure2012": 1.0, "Vibrance": 40}, [1, 0, 0], seed=0)
    ann = TemplateAnnotator(param_text_share=0.0).annotate(req)
    assert "Vibrance" not in ann.completion and "'Vibrance': 0.0," in ann.prompt
    assert ann.reasoning["plans"]["globalcolor"] == INACTIVE_TEXT


def test_worst_case_all_sliders_fit_the_limits() -> None:
    for sign in (1.0, -1.0):
        full = {n: sign * P.SPECS[n].maximum for n in P.PARAM_NAMES}
        for wf in ("param", "style", "auto"):
            ann = TemplateAnnotator().annotate(
                AnnotationRequest(wf, full, [1, 1, 1], seed=0, preset={"name": "x" * 300}, image_stats={})
            )
            parsed = parse_completion(ann.completion, wf)
            for g in P.GROUPS:
                check_plan(parsed.plans[g], g, {n: sign for n in P.GROUP_PARAMS[g]})


def test_request_validation() -> None:
    with pytest.raises(ValueError):
        AnnotationRequest("bogus", {}, [1, 0, 0], seed=0)
    with pytest.raises(ValueError):
        AnnotationRequest("param", {}, [1, 0], seed=0)
    with pytest.raises(ValueError):
        AnnotationRequest("param", {}, [1, 0, 0], seed=-1)
    with pytest.raises(P.ParamError):
        AnnotationRequest("param", {"Exposure2012": 9.0}, [1, 0, 0], seed=0)


# --------------------------------------------------------------------------------------------------
# the strict parser


def _sample(workflow: str) -> str:
    req = AnnotationRequest(
        workflow, {"Exposure2012": 0.5, "Vibrance": 20, "HueAdjustmentAqua": -10}, [1, 1, 1], seed=0
    )
    return TemplateAnnotator().annotate(req).completion


def _reason(text: str, workflow: str, **kw: object) -> str:
    with pytest.raises(CompletionFormatError) as info:
        parse_completion(text, workflow, **kw)
    assert not is_valid_completion(text, workflow, **kw)
    return info.value.reason


def _swap_lines(text: str, a: int, b: int) -> str:
    lines = text.split("\n")
    lines[a], lines[b] = lines[b], lines[a]
    return "\n".join(lines)


def test_parser_accepts_valid_and_is_whitespace_tolerant() -> None:
    for wf in ("param", "style", "auto"):
        text = _sample(wf)
        assert is_valid_completion(text, wf)
        assert is_valid_completion("\n" + text.replace("\n", "\n\n") + "\n", wf)
    assert parse_completion(_sample("auto"), "auto").active_groups() == list(P.GROUPS)


def test_parser_rejections() -> None:
    param, auto = _sample("param"), _sample("auto")
    lines = param.split("\n")
    assert _reason(param.replace(lines[1] + "\n", ""), "param") == "missing:plan_globalcolor"
    assert _reason(auto.split("\n", 2)[0] + "\n" + auto.split("\n", 2)[2], "auto") == "missing:problem_light"
    assert _reason(param.replace("<plan_light_end>", ""), "param") == "missing:plan_light"
    assert _reason(_swap_lines(param, 0, 1), "param") == "order"
    assert _reason(_swap_lines(auto, 3, 4), "auto") == "order"
    assert _reason(param + RETOUCH_SEQUENCE, "param") == "retouch-tokens"
    assert _reason(param.replace("<retouch_light>", ""), "param") == "retouch-tokens"
    assert _reason(RETOUCH_SEQUENCE + "\n" + param.replace(RETOUCH_SEQUENCE, ""), "param") == "retouch-tokens"
    assert _reason(param + " thanks", "param") == "retouch-tokens"
    swapped = param.replace(RETOUCH_SEQUENCE, "<retouch_color&temp><retouch_light><retouch_colormixer>")
    assert _reason(swapped, "param") == "retouch-tokens"
    assert _reason(param.replace("(Exposure2012)", "<b>(Exposure2012)</b>"), "param") == "tag-in-text"
    assert _reason(param.replace("(Exposure2012)", "<|im_end|> (Exposure2012)"), "param") == "tag-in-text"
    assert _reason(param.replace("(Exposure2012)", "<Professional_Retouch_Task>"), "param") == "tag-in-text"
    # a whole section written inside another one
    nested = "\n".join(
        [lines[0].replace("<plan_light_end>", " " + lines[1] + "<plan_light_end>"), *lines[2:]]
    )
    assert _reason(nested, "param") == "tag-in-text"
    inner = param.replace("(Exposure2012)", "<plan_globalcolor_start> (Exposure2012)", 1)
    assert _reason(inner, "param") == "duplicate:plan_globalcolor"
    long_plan = build_completion(None, None, {"light": "increase it. " * 50})  # 650 characters
    assert _reason(long_plan, "param", limits=FormatLimits(max_section_chars=600)) == "too-long"
    assert _reason(param, "param", limits=FormatLimits(max_total_chars=100)) == "too-long"
    assert _reason(auto, "param") == "unexpected:problem_light"
    assert _reason(param, "auto") == "missing:problem_light"
    assert _reason(auto.split("\n", 1)[1], "auto") == "missing:elements"
    assert _reason(auto.replace(ELEMENTS_PREFIX, "Elements:"), "auto") == "missing:elements"
    assert _reason("Key elements: x\n" + param, "param") == "stray-text"
    assert _reason(param.replace("\n", "\nhello\n", 1), "param") == "stray-text"
    empty = re.sub(r"<plan_light_start>.*?<plan_light_end>", "<plan_light_start> <plan_light_end>", param)
    assert _reason(empty, "param") == "empty-section:plan_light"
    assert _reason("", "param") == "empty"
    with pytest.raises(ValueError):
        parse_completion(param, "bogus")


def test_build_completion_inactive_rule_and_errors() -> None:
    text = build_completion(None, None, {"light": "Increase exposure (Exposure2012) by +0.100."})
    parsed = parse_completion(text, "style")
    assert parsed.plans["globalcolor"] == parsed.plans["specificcolor"] == INACTIVE_TEXT
    assert parsed.active_groups() == ["light"]
    assert text.endswith("\n" + RETOUCH_SEQUENCE)
    auto = build_completion("a cat\non a sofa", {"light": "Too dark."}, {"light": "Brighten."})
    parsed = parse_completion(auto, "auto")
    assert parsed.elements == "a cat on a sofa"
    assert parsed.problems == {
        "light": "Too dark.",
        "globalcolor": INACTIVE_TEXT,
        "specificcolor": INACTIVE_TEXT,
    }
    with pytest.raises(ValueError):
        build_completion("x", None, {})
    with pytest.raises(ValueError):
        build_completion(None, None, {"colour": "x"})
    with pytest.raises(CompletionFormatError):
        build_completion(None, None, {"light": "a <retouch_light> b"})
    with pytest.raises(CompletionFormatError, match="too-long"):
        build_completion(None, None, {"light": "increase it. " * 200})
