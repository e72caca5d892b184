"""VeraRetouch model: configs, tokens, adaptor shapes, retouch-token hidden-state indexing, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from aether_data.contract import INACTIVE_TEXT, RETOUCH_SEQUENCE, SPECIAL_TOKENS
from model_core.adaptor import RetouchAdaptor
from model_core.completions import masks_from_completion
from model_core.model_build import build_model
from model_core.model_io import load_model, save_model
from model_core.train.config import CONFIG_DIR, TINY, load_config
from model_core.vlm import VeraRetouch

COMPLETION = (
    "<plan_light_start>Slightly increase exposure (Exposure2012) by +0.100.<plan_light_end>\n"
    f"<plan_globalcolor_start>{INACTIVE_TEXT}<plan_globalcolor_end>\n"
    f"<plan_specificcolor_start>{INACTIVE_TEXT}<plan_specificcolor_end>\n"
    f"{RETOUCH_SEQUENCE}"
)


@pytest.fixture(scope="module")
def tiny() -> VeraRetouch:
    cfg = load_config("tiny")
    return build_model(cfg.model, cfg.renderer, seed=0).eval()


def _sequence(model: VeraRetouch, extra: str = "<|im_end|>\nmore text") -> torch.Tensor:
    text = f"<|im_start|>user\n<Professional_Retouch_Task> hi<|im_end|>\n<|im_start|>assistant\n{COMPLETION}{extra}"
    return torch.tensor([model.tokenizer(text, add_special_tokens=False)["input_ids"]])


def _z(model: VeraRetouch, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).z


def test_tiny_yaml_is_the_builtin_config() -> None:
    raw = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    assert load_config(raw) == load_config(TINY) == load_config("tiny")


def test_paper_config_shapes() -> None:
    cfg = load_config("fastvlm-0.5b")
    assert cfg.model.pretrained and cfg.model.image_tokens == 256 and cfg.renderer.er_config == "paper"
    er = cfg.renderer.resolve()
    adaptor = RetouchAdaptor(hidden_size=896, latent_dim=er.latent_dim)  # Qwen2-0.5B width
    assert adaptor.dims == (2688, 1344, 1344, 2688)
    norms = [m for m in adaptor.net if isinstance(m, torch.nn.LayerNorm)]
    gelus = [m for m in adaptor.net if isinstance(m, torch.nn.GELU)]
    assert len(norms) == len(gelus) == 2
    with pytest.raises(ValueError):
        load_config({"base": "tiny", "model": {"no_such_field": 1}})


def test_special_tokens_are_atomic(tiny: VeraRetouch) -> None:
    tok = tiny.tokenizer
    for t in (*SPECIAL_TOKENS, "<|im_start|>", "<|im_end|>", "<image>"):
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
    ids = tok(COMPLETION, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=False) == COMPLETION
    assert ids[-3:] == list(tiny.retouch_ids)
    assert tiny.image_tokens == 4  # 64² through a stride-32 FastViT


def test_latent_comes_from_the_state_before_each_retouch_token(tiny: VeraRetouch) -> None:
    ids = _sequence(tiny)
    pos = tiny.retouch_positions(ids)[0].tolist()
    assert pos[1] == pos[0] + 1 and pos[2] == pos[1] + 1
    with torch.no_grad():
        out = tiny(input_ids=ids, attention_mask=torch.ones_like(ids))
    gathered = tiny.retouch_hidden(out.hidden, ids)[0]
    assert torch.equal(gathered, out.hidden[0, [p - 1 for p in pos]])
    z0 = out.z

    # the token before <retouch_light> feeds the light latent's state: changing it changes z
    before = ids.clone()
    before[0, pos[0] - 1] = tiny.tokenizer("x", add_special_tokens=False)["input_ids"][0]
    assert not torch.allclose(_z(tiny, before), z0)

    # tokens after the retouch tokens cannot matter (causal), whatever they are
    after = ids.clone()
    after[0, pos[2] + 1 :] = tiny.tokenizer("y", add_special_tokens=False)["input_ids"][0]
    assert torch.allclose(_z(tiny, after), z0)
    assert torch.allclose(_z(tiny, ids[:, : pos[2] + 1]), z0, atol=1e-5)

    # <retouch_colormixer> itself is never read: its latent is the state AT <retouch_color&temp>
    emb = tiny.vlm.get_input_embeddings().weight
    saved = emb.data[tiny.retouch_ids[2]].clone()
    try:
        emb.data[tiny.retouch_ids[2]] += 5.0
        assert torch.allclose(_z(tiny, ids), z0)
        emb.data[tiny.retouch_ids[0]] += 5.0  # <retouch_light> is read by the next latent's state
        assert not torch.allclose(_z(tiny, ids), z0)
    finally:
        emb.data[tiny.retouch_ids[2]] = saved


def test_masks_zero_latent_blocks(tiny: VeraRetouch) -> None:
    ids = _sequence(tiny)
    with torch.no_grad():
        z = tiny(input_ids=ids, attention_mask=torch.ones_like(ids), masks=torch.tensor([[1.0, 0.0, 1.0]])).z
    d = tiny.renderer.config.latent_dim
    assert torch.all(z[0, d : 2 * d] == 0) and torch.any(z[0, :d] != 0)
    assert masks_from_completion(COMPLETION, "param") == [1, 0, 0]
    assert masks_from_completion("garbage", "param") == [1, 1, 1]


def test_left_and_right_padding_agree(tiny: VeraRetouch) -> None:
    ids = _sequence(tiny)
    n = ids.shape[1]
    pad = torch.full((1, 5), tiny.pad_id)
    right = torch.cat([ids, pad], 1)
    left = torch.cat([pad, ids], 1)
    att_r = torch.cat([torch.ones(1, n), torch.zeros(1, 5)], 1).long()
    att_l = torch.cat([torch.zeros(1, 5), torch.ones(1, n)], 1).long()
    with torch.no_grad():
        zr = tiny(input_ids=right, attention_mask=att_r).z
        zl = tiny(input_ids=left, attention_mask=att_l).z
    assert torch.allclose(zr, zl, atol=1e-4)


def test_save_load_roundtrip(tiny: VeraRetouch, tmp_path: Path) -> None:
    d = save_model(tiny, tmp_path / "m").parent
    assert {p.name for p in d.iterdir()} >= {"model.safetensors", "vlm", "tokenizer"}
    assert not list(d.rglob("*.bin")) and not list(d.rglob("*.pt"))
    again = load_model(d)
    ids = _sequence(tiny)
    assert torch.allclose(_z(again, ids), _z(tiny, ids), atol=1e-6)
    assert again.image_tokens == tiny.image_tokens
    assert again.tokenizer(COMPLETION)["input_ids"] == tiny.tokenizer(COMPLETION)["input_ids"]


def test_stored_tokenizer_corpus_equals_the_template_annotators_output() -> None:
    """model_core reads the corpus from a file (it must not import the annotators): keep it current.

    Regenerate with `python -m aether_data.annotate.corpus` after changing template wording.
    """
    from aether_data.annotate.corpus import corpus_json
    from model_core.tokenizer import TOKENIZER_CORPUS

    assert TOKENIZER_CORPUS.read_text(encoding="utf-8") == corpus_json()
