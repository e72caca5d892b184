"""Our prompts and chat text against the official VeraRetouch strings (tests/data/veraretouch/).

The official logic used here is restated from the copied interface strings: `get_organized_dict`
(value / 100 rounded to 3 decimals, three groups in the official key order, printed with str()) and
`conv_qwen_2.get_prompt()` (system + sep, then role + message + sep per turn, a bare role for None).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aether_data import params as P
from aether_data.annotate.template import AnnotationRequest, TemplateAnnotator
from aether_data.contract import build_prompt
from aether_data.official import OFFICIAL_COMMIT, conversation_text, param_instruction
from aether_data.sampling import sample_params

FIXTURES = Path(__file__).parent / "data" / "veraretouch"
OFFICIAL = json.loads((FIXTURES / "official_interface.json").read_text(encoding="utf-8"))


def official_organized(json_dict: dict) -> dict:
    """get_organized_dict restated: unknown keys ignored, missing keys 0.0."""
    out = {}
    for title, keys in OFFICIAL["organized_dict_groups"].items():
        out[title] = {k: (round(json_dict[k]["value"] / 100.0, 3) if k in json_dict else 0.0) for k in keys}
    return out


def official_qs(workflow: str, instruction: str | None = None) -> str:
    qs = OFFICIAL["qs"][workflow]
    if workflow == "style":
        return qs.replace("{instruct_content}", instruction or "")
    if workflow == "param":
        return qs.replace("{retouch_params}", instruction or "")
    return qs


def official_get_prompt(human: str, assistant: str | None) -> str:
    conv = OFFICIAL["conv_qwen_2"]
    ret = conv["system"] + conv["sep"]
    for role, message in zip(conv["roles"], (human, assistant), strict=True):
        ret += role + message + conv["sep"] if message else role
    return ret


def official_human(workflow: str, qs: str) -> str:
    return OFFICIAL["image_token"] + "\n" + qs if OFFICIAL["image_prefix"][workflow] else qs


def test_fixtures_are_pinned_to_the_commit_our_code_names() -> None:
    assert OFFICIAL["commit"] == OFFICIAL_COMMIT
    assert list(OFFICIAL["organized_dict_groups"]) == [P.GROUP_TITLES[g] for g in P.GROUPS]
    for g, keys in zip(P.GROUPS, OFFICIAL["organized_dict_groups"].values(), strict=True):
        assert tuple(keys) == P.GROUP_PARAMS[g]


def test_prompts_equal_the_official_qs_byte_for_byte() -> None:
    assert build_prompt("auto") == official_qs("auto")
    instr = "I want a warm, faded film look for this photo."
    assert build_prompt("style", instruction=instr) == official_qs("style", instr)
    text = "Brighten the photo by one stop and cool it slightly."
    assert build_prompt("param", instruction=text) == official_qs("param", text)


def test_official_sample_param_json_prompt() -> None:
    """The official sample read by our reader gives the dict the official code prints for it."""
    sample = json.loads((FIXTURES / "param.json").read_text())
    params = P.read_param_json(FIXTURES / "param.json")
    expected = official_qs("param", str(official_organized(sample)))
    assert build_prompt("param", params=params) == expected
    assert "'Exposure2012': 0.3," in expected and "'IncrementalTemperature': -0.4," in expected


@pytest.mark.parametrize("seed", range(40))
def test_param_dict_equals_official_logic_on_the_param_json_we_write(seed: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(seed)
    _, values = sample_params(rng, degrade=seed % 2 == 1)
    if seed % 5 == 0:  # tiny values round to (negative) zero in the official code: same bytes
        values = {**values, "Contrast2012": -0.004, "HueAdjustmentRed": 0.0049}
    path = tmp_path / "param.json"
    P.write_param_json(values, path)
    written = json.loads(path.read_text())
    assert param_instruction(values) == str(official_organized(written))
    assert build_prompt("param", params=values) == official_qs("param", str(official_organized(written)))


def test_template_param_prompts_mix_dict_and_plain_text_by_share() -> None:
    forms = {0.0: [], 0.5: [], 1.0: []}
    for share, seen in forms.items():
        annotator = TemplateAnnotator(param_text_share=share)
        for seed in range(60):
            _, values = sample_params(np.random.default_rng(seed))
            ann = annotator.annotate(AnnotationRequest("param", values, P.masks(values), seed))
            dict_form = param_instruction(values)
            assert ann.prompt == official_qs("param", ann.instructions[0])
            assert dict_form in ann.instructions
            seen.append(ann.instructions[0] == dict_form)
    assert all(forms[0.0]) and not any(forms[1.0])
    assert 15 <= sum(not d for d in forms[0.5]) <= 45
    with pytest.raises(ValueError):
        TemplateAnnotator(param_text_share=1.5)


@pytest.mark.parametrize("workflow", ["auto", "style", "param"])
def test_chat_text_equals_official_get_prompt(workflow: str) -> None:
    """conversation_text and the trainer's token sequence both equal conv_qwen_2.get_prompt()."""
    from model_core.encoding import TokenSpec, encode_sample
    from model_core.tokenizer import add_special_tokens, byte_tokenizer

    _, values = sample_params(np.random.default_rng(3), degrade=workflow == "auto")
    preset = {"id": "x", "name": "Teal Film", "primary": "film", "fine": "teal"}
    ann = TemplateAnnotator(0.0).annotate(
        AnnotationRequest(
            workflow, values, P.masks(values), 3, preset=preset if workflow == "style" else None
        )
    )
    human = official_human(workflow, ann.prompt)
    has_image = workflow != "param"
    assert conversation_text(ann.prompt, has_image=has_image) == official_get_prompt(human, None)
    full = official_get_prompt(human, ann.completion)
    assert conversation_text(ann.prompt, ann.completion, has_image=has_image) == full

    tok = byte_tokenizer()
    add_special_tokens(tok, "<image>")
    spec = TokenSpec(
        tokenizer=tok, image_token_id=tok.convert_tokens_to_ids("<image>"), image_tokens=1, image_size=16,
        image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0), render_size=8,
        system_prompt="You are a helpful assistant.", max_length=100000, pad_id=tok.pad_token_id,
    )  # fmt: skip
    import cv2

    _, jpg = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))
    rec = {
        "workflow": workflow,
        "instructions": ann.instructions,
        "prompt": ann.prompt,
        "completion": ann.completion,
    }
    raw = {"json": json.dumps(rec).encode(), "input.jpg": jpg.tobytes(), "target.jpg": jpg.tobytes()}
    f = encode_sample(raw, spec, np.random.default_rng(0), "first")
    assert tok.decode(f["input_ids"], skip_special_tokens=False) == full
    labelled = [t for t in f["labels"] if t != -100]
    # the official trainer labels the assistant text and its separator "<|im_end|>\n"
    assert tok.decode(labelled, skip_special_tokens=False) == ann.completion + OFFICIAL["conv_qwen_2"]["sep"]


def _build_records(out: Path) -> list[dict]:
    import tarfile

    records = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    records.append(json.loads(tar.extractfile(m).read()))
    return records


def test_every_record_of_an_all_build_carries_the_official_prompt(all_build: Path, tmp_path: Path) -> None:
    """prompt == the official qs computed from the record's instruction / params by the official logic."""
    records = _build_records(all_build)
    assert len(records) == 64 and {r["workflow"] for r in records} == {"param", "style", "auto"}
    forms = []
    for rec in records:
        wf = rec["workflow"]
        if wf == "auto":
            assert rec["prompt"] == official_qs("auto")
        elif wf == "style":
            assert rec["prompt"] == official_qs("style", rec["instructions"][0])
        else:
            # the record's params (masked-off groups zeroed) as an official param.json, read officially
            on = dict(zip(P.GROUPS, rec["masks"], strict=True))
            norm = {n: (v if on[P.SPECS[n].group] else 0.0) for n, v in rec["params"].items()}
            path = tmp_path / f"{rec['key']}.json"
            path.write_text(
                json.dumps({n: {"value": v} for n, v in P.official_from_normalised(norm).items()})
            )
            official_dict = str(official_organized(json.loads(path.read_text())))
            assert official_dict in rec["instructions"]
            assert rec["prompt"] == official_qs("param", rec["instructions"][0])
            forms.append(rec["instructions"][0] == official_dict)
    assert any(forms)  # the dict form, and (share 0.2) some plain-text descriptions
    assert not all(forms)
