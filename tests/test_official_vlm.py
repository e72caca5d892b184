"""`aether retouch --model DIR` on the official VeraRetouch release layout (issue 16).

A tiny random model is written the way the official release folder is laid out: an official-style
``config.json`` (llava_qwen2 fields from tests/data/veraretouch/official_model.json, sizes shrunk),
the slow Qwen2 tokenizer files without ``<image>``, and ``model.safetensors`` under the official key
names (Qwen2 ``model.*`` / ``lm_head``, the MobileCLIP FastViTHD tower
``model.vision_tower.vision_tower.model.*`` in its reparameterised ``inference_mode`` form, the
``mlp2x_gelu`` projector, ``retouch_head`` and ``retouch_decoder``). The vision key table below is
written from the official module structure, not generated from our model, so the renaming is checked
independently. The vision tower's numerical equivalence (timm ``fastvit_mci3`` with
``inference_mode=True`` vs the official MCi ``fastvithd``: max |Δ| 1.8e-7 in float32 on the full
model) was measured once against the official code, which is not vendored here (no licence file for
Apple's ``mci.py``); the tests check the other parts against restatements of the official forward.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tests.conftest import REPO, run_cli

FIXTURES = REPO / "tests" / "data" / "veraretouch"
LAYOUT = json.loads((FIXTURES / "official_model.json").read_text(encoding="utf-8"))
H, FFN, V, LATENT, MID = 64, 128, 1152, 8, 96
LAYERS, DIMS, RENDER = (1, 1, 1, 1, 1), (8, 16, 32, 64, 128), (16, 16, 16)
VT = "model.vision_tower.vision_tower.model."


def fastvithd_shapes(
    layers: tuple[int, ...], dims: tuple[int, ...], proj_dim: int
) -> dict[str, tuple[int, ...]]:
    """Official (MCi ``fastvithd``, inference_mode) vision keys and shapes: stem, 3 RepMixer stages,
    RepCPE + 2 attention stages, PatchEmbeds between stages, conv_exp with SE, GlobalPool2D head."""
    s: dict[str, tuple[int, ...]] = {}

    def conv(n: str, co: int, ci: int, k: int) -> None:
        s[n + ".weight"], s[n + ".bias"] = (co, ci, k, k), (co,)

    for i, ci in enumerate((3, 1, dims[0])):
        conv(f"patch_embed.{i}.reparam_conv", dims[0], ci, (3, 3, 1)[i])
    idx = 0
    for st, (n, c) in enumerate(zip(layers, dims)):
        attention = st >= 3
        if attention:
            conv(f"network.{idx}.reparam_conv", c, 1, 7)
            idx += 1
        for b in range(n):
            p = f"network.{idx}.{b}"
            if attention:
                s[p + ".layer_scale_1"] = s[p + ".layer_scale_2"] = (c, 1, 1)
                s[p + ".norm.weight"] = s[p + ".norm.bias"] = (c,)
                s[p + ".token_mixer.qkv.weight"] = (3 * c, c)
                s[p + ".token_mixer.proj.weight"], s[p + ".token_mixer.proj.bias"] = (c, c), (c,)
            else:
                s[p + ".layer_scale"] = (c, 1, 1)
                conv(p + ".token_mixer.reparam_conv", c, 1, 3)
            s[p + ".convffn.conv.conv.weight"] = (c, 1, 7, 7)
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                s[f"{p}.convffn.conv.bn.{leaf}"] = (c,)
            s[p + ".convffn.conv.bn.num_batches_tracked"] = ()
            conv(p + ".convffn.fc1", 4 * c, c, 1)
            conv(p + ".convffn.fc2", c, 4 * c, 1)
        idx += 1
        if st + 1 < len(dims):
            conv(f"network.{idx}.proj.0.lkb_reparam", dims[st + 1], 1, 7)
            conv(f"network.{idx}.proj.1.reparam_conv", dims[st + 1], dims[st + 1], 1)
            idx += 1
    ce = 2 * dims[-1]
    conv("conv_exp.reparam_conv", ce, 1, 3)
    conv("conv_exp.se.reduce", ce // 16, ce, 1)
    conv("conv_exp.se.expand", ce, ce // 16, 1)
    s["head.proj"] = (ce, proj_dim)
    return {VT + k: v for k, v in s.items()}


def official_shapes() -> dict[str, tuple[int, ...]]:
    """Every tensor of the tiny official checkpoint under its official name."""
    kv = H // 4 * 2  # 2 KV heads of 16
    s: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,)}
    for n in range(2):
        p = f"model.layers.{n}."
        for name, out in (("q", H), ("k", kv), ("v", kv)):
            s[f"{p}self_attn.{name}_proj.weight"], s[f"{p}self_attn.{name}_proj.bias"] = (out, H), (out,)
        s[p + "self_attn.o_proj.weight"] = (H, H)
        s[p + "mlp.gate_proj.weight"] = s[p + "mlp.up_proj.weight"] = (FFN, H)
        s[p + "mlp.down_proj.weight"] = (H, FFN)
        s[p + "input_layernorm.weight"] = s[p + "post_attention_layernorm.weight"] = (H,)
    s["lm_head.weight"] = (V, H)
    s.update(fastvithd_shapes(LAYERS, DIMS, proj_dim=16))
    s.update({"model.mm_projector.0.weight": (H, 2 * DIMS[-1]), "model.mm_projector.0.bias": (H,)})
    s.update({"model.mm_projector.2.weight": (H, H), "model.mm_projector.2.bias": (H,)})
    for i, (o, n) in {0: (MID, 3 * H), 3: (MID, MID), 6: (3 * LATENT, MID)}.items():
        s[f"retouch_head.{i}.weight"], s[f"retouch_head.{i}.bias"] = (o, n), (o,)
    for i in (1, 4):
        s[f"retouch_head.{i}.weight"] = s[f"retouch_head.{i}.bias"] = (MID,)
    widths = (3, *RENDER)
    for i in range(3):
        d = "retouch_decoder."
        s[f"{d}layers.{i}.weight"], s[f"{d}layers.{i}.bias"] = (widths[i + 1], widths[i]), (widths[i + 1],)
        s[f"{d}layer_norms.{i}.weight"] = s[f"{d}layer_norms.{i}.bias"] = (widths[i + 1],)
        s[f"{d}z_projs.{i}.weight"], s[f"{d}z_projs.{i}.bias"] = (widths[i + 1], 3 * LATENT), (widths[i + 1],)
    s["retouch_decoder.out_layer.weight"], s["retouch_decoder.out_layer.bias"] = (3, RENDER[-1]), (3,)
    return s


@cache
def official_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, shape in official_shapes().items():
        if shape == ():
            out[k] = torch.tensor(0, dtype=torch.long)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.1
    return out


def official_config(**changes: object) -> dict[str, object]:
    cfg = dict(LAYOUT["config_json"])
    cfg.update(hidden_size=H, intermediate_size=FFN, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=V, max_position_embeddings=4096, sliding_window=4096,
               max_window_layers=2, bos_token_id=None, eos_token_id=None, torch_dtype="float32",
               mm_vision_tower="mobileclip_l_128", mm_hidden_size=2 * DIMS[-1],
               tokenizer_model_max_length=4096)  # fmt: skip
    cfg.update(changes)
    return cfg


def write_tokenizer(d: Path) -> None:
    """The official slow-tokenizer file set (vocab.json, merges.txt, added_tokens.json,
    tokenizer_config.json) over our template BPE, with the official added tokens and no <image>."""
    from model_core.tokenizer import byte_tokenizer, template_corpus

    base = byte_tokenizer(template_corpus())
    base.backend_tokenizer.model.save(str(d))
    added = {t: len(base) + i for i, t in enumerate([*LAYOUT["chat_tokens"], *LAYOUT["special_tokens"]])}
    (d / "added_tokens.json").write_text(json.dumps(added), encoding="utf-8")
    flags = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    decoder = {str(i): {"content": t, **flags} for t, i in added.items()}
    cfg = {**LAYOUT["tokenizer_config"], "added_tokens_decoder": decoder, "model_max_length": 4096}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tok")
    write_tokenizer(d)
    return d


def write_folder(
    d: Path,
    tok_dir: Path,
    tensors: dict[str, torch.Tensor] | None = None,
    shards: int = 1,
    **config: object,
) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for f in tok_dir.iterdir():
        shutil.copy(f, d / f.name)
    (d / "config.json").write_text(json.dumps(official_config(**config), indent=2), encoding="utf-8")
    t = official_tensors() if tensors is None else tensors
    if shards == 1:
        save_file(t, str(d / "model.safetensors"), metadata={"format": "pt"})
        return d
    keys = sorted(t)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: t[k] for k in keys[i::shards]}
        save_file(part, str(d / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (d / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory, tokenizer_files) -> Path:
    return write_folder(tmp_path_factory.mktemp("release") / "VeraRetouch", tokenizer_files)


@pytest.fixture(scope="module")
def model(official_dir):
    from model_core.inference import get_model

    return get_model(official_dir)


def photo(h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(0).random((h, w, 3)).astype(np.float32)


def test_strict_load_and_key_identities(model, official_dir) -> None:
    from model_core.official_vlm import map_official_vlm_keys

    t = official_tensors()
    mapped, origin = map_official_vlm_keys(t)
    own = model.state_dict()
    assert set(mapped) == set(own)  # every official tensor used (head.proj aside), nothing left random
    assert len(mapped) == len(t) - 1 and f"{VT}head.proj" not in origin.values()
    pairs = {
        "vlm.model.vision_tower.timm_model.stem.0.reparam_conv.weight": f"{VT}patch_embed.0.reparam_conv.weight",
        "vlm.model.vision_tower.timm_model.stages.0.blocks.0.layer_scale.gamma": f"{VT}network.0.0.layer_scale",
        "vlm.model.vision_tower.timm_model.stages.1.downsample.proj.0.reparam_conv.weight": (
            f"{VT}network.1.proj.0.lkb_reparam.weight"
        ),
        "vlm.model.vision_tower.timm_model.stages.3.pos_emb.reparam_conv.weight": f"{VT}network.6.reparam_conv.weight",
        "vlm.model.vision_tower.timm_model.stages.3.blocks.0.layer_scale_1.gamma": f"{VT}network.7.0.layer_scale_1",
        "vlm.model.vision_tower.timm_model.stages.4.blocks.0.mlp.fc2.bias": f"{VT}network.10.0.convffn.fc2.bias",
        "vlm.model.vision_tower.timm_model.final_conv.se.fc1.weight": f"{VT}conv_exp.se.reduce.weight",
        "vlm.model.multi_modal_projector.linear_1.weight": "model.mm_projector.0.weight",
        "vlm.model.multi_modal_projector.linear_2.bias": "model.mm_projector.2.bias",
        "vlm.model.language_model.layers.1.self_attn.k_proj.bias": "model.layers.1.self_attn.k_proj.bias",
        "vlm.lm_head.weight": "lm_head.weight",
        "adaptor.net.6.weight": "retouch_head.6.weight",
        "adaptor.net.4.bias": "retouch_head.4.bias",
        "renderer.layers.0.inject.weight": "retouch_decoder.z_projs.0.weight",
        "renderer.layers.2.norm.bias": "retouch_decoder.layer_norms.2.bias",
        "renderer.out.weight": "retouch_decoder.out_layer.weight",
    }
    for ours, official in pairs.items():
        assert origin[ours] == official
        assert torch.equal(own[ours], t[official]), ours
    assert model.config.recipe == "official" and model.image_tokens == 4 and model.config.image_size == 128
    assert model.vlm.get_input_embeddings().weight.shape == (V, H)  # the config's vocab, not resized
    ids = model.tokenizer.get_vocab()
    assert model.image_token_id == ids["<image>"] == model.vlm.config.image_token_id
    assert model.retouch_ids[0] == ids["<retouch_light>"] == 1024 + 3 + 3  # official ids kept
    rope = model.language_model.config.rope_parameters["rope_theta"]
    assert rope == LAYOUT["config_json"]["rope_theta"]


def test_functional_equivalence(model) -> None:
    """LLM, retouch head and renderer against the official computations, with official names."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    t = official_tensors()
    cfg = official_config()
    fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "vocab_size", "rms_norm_eps", "rope_theta", "tie_word_embeddings")  # fmt: skip
    ref = Qwen2ForCausalLM(Qwen2Config(**{k: cfg[k] for k in fields})).eval()
    llm = {k: v for k, v in t.items() if k == "lm_head.weight" or k.startswith("model.layers.")}
    llm.update({k: t[k] for k in ("model.embed_tokens.weight", "model.norm.weight")})
    ref.load_state_dict(llm, strict=True)
    ids = torch.tensor([[5, 17, 300, 42, 7, 1030]])
    with torch.no_grad():
        ours = model.lm_head(model.language_model(input_ids=ids).last_hidden_state)
        assert torch.allclose(ref(ids).logits, ours, atol=1e-5)

        def head(
            x: torch.Tensor,
        ) -> torch.Tensor:  # nn.Sequential(Linear, LN, GELU, Linear, LN, GELU, Linear)
            for i in (0, 3):
                x = F.linear(x, t[f"retouch_head.{i}.weight"], t[f"retouch_head.{i}.bias"])
                x = F.gelu(
                    F.layer_norm(
                        x, (MID,), t[f"retouch_head.{i + 1}.weight"], t[f"retouch_head.{i + 1}.bias"]
                    )
                )
            return F.linear(x, t["retouch_head.6.weight"], t["retouch_head.6.bias"])

        z = torch.randn(2, 3 * H)
        assert torch.allclose(head(z), model.adaptor(z), atol=1e-6)

        def decoder(img: torch.Tensor, zz: torch.Tensor) -> torch.Tensor:  # ConditionalMLPDecoder, cond "add"
            x = ((img - 0.5) * 2).flatten(2).transpose(1, 2)  # the official script's input scaling
            d = "retouch_decoder."
            for i in range(3):
                x = F.relu(F.linear(x, t[f"{d}layers.{i}.weight"], t[f"{d}layers.{i}.bias"]))
                x = F.layer_norm(
                    x, x.shape[-1:], t[f"{d}layer_norms.{i}.weight"], t[f"{d}layer_norms.{i}.bias"]
                )
                x = x + F.linear(
                    F.relu(zz), t[f"{d}z_projs.{i}.weight"], t[f"{d}z_projs.{i}.bias"]
                ).unsqueeze(1)
            x = torch.sigmoid(F.linear(x, t[f"{d}out_layer.weight"], t[f"{d}out_layer.bias"]))
            return x.transpose(1, 2).reshape(img.shape)

        img, zz = torch.rand(1, 3, 12, 20), torch.randn(1, 3 * LATENT)
        assert torch.allclose(decoder(img, zz), model.renderer(img, zz), atol=1e-6)
        feats = model.image_features(torch.rand(1, 3, 128, 128))
        assert feats.shape == (1, 4, H) and torch.isfinite(feats).all()


def test_official_recipe_details(model) -> None:
    from model_core.encoding import official_vision_pixels
    from model_core.inference import _generation_defaults
    from model_core.official_vlm import official_masks

    gen = _generation_defaults(model)
    assert (gen["temperature"], gen["top_p"], gen["max_new_tokens"]) == (0.2, 0.8, 4096)
    from aether_data.params import read_param_json

    assert official_masks("param", read_param_json(FIXTURES / "param.json")) == [1, 1, 0]
    assert official_masks("auto", None) == official_masks("style", None) == [1, 1, 1]
    wide = np.full((30, 90, 3), 0.8, np.float32)  # short edge 30 → 512, long 1536; centred on black
    pix = official_vision_pixels(wide, 96, (0, 0, 0), (1, 1, 1))
    assert pix.shape == (3, 96, 96)
    assert float(pix[:, 0].max()) == 0.0 and abs(float(pix[:, 48].mean()) - 0.8) < 0.01


def test_cli_retouch_auto_and_param(model, official_dir, tmp_path) -> None:
    from model_core.inference import retouch_detailed

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), (photo() * 255).astype(np.uint8))
    for extra in ([], ["--params", str(FIXTURES / "param.json")]):
        out = tmp_path / f"out{len(extra)}.png"
        args = ["retouch", str(src), "--model", str(official_dir), "--out", str(out), "--max-new-tokens", "6"]
        code, text = run_cli(*args, *extra)
        assert code == 0, text
        img = cv2.imread(str(out))
        assert img.shape == (40, 56, 3)
        assert out.with_suffix(".txt").read_text().rstrip().endswith("<retouch_colormixer>")
    res = retouch_detailed(official_dir, photo(), params=FIXTURES / "param.json", max_new_tokens=4)
    assert res.workflow == "param" and res.masks == [1, 1, 0]
    assert res.image.shape == (40, 56, 3) and 0.0 <= res.image.min() and res.image.max() <= 1.0
    res = retouch_detailed(official_dir, photo(), max_new_tokens=4, temperature=0.0)
    assert res.workflow == "auto" and res.masks == [1, 1, 1]


def test_sharded_bin_and_tied_weights(official_dir, tokenizer_files, tmp_path) -> None:
    from model_core.model_io import load_model, resolve_model_dir

    t = dict(official_tensors())
    sharded = write_folder(tmp_path / "sharded", tokenizer_files, shards=3)
    assert not (sharded / "model.safetensors").exists() and resolve_model_dir(sharded) == sharded
    a, b = load_model(official_dir).state_dict(), load_model(sharded).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    bin_dir = write_folder(tmp_path / "bin", tokenizer_files)
    (bin_dir / "model.safetensors").unlink()
    torch.save(
        {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in t.items()},
        bin_dir / "pytorch_model.bin",
    )
    c = load_model(bin_dir).state_dict()  # read with weights_only=True, bf16 → float32
    assert c["adaptor.net.0.weight"].dtype == torch.float32
    assert torch.equal(c["adaptor.net.0.weight"], t["retouch_head.0.weight"].to(torch.bfloat16).float())
    del t["lm_head.weight"]
    tied = load_model(write_folder(tmp_path / "tied", tokenizer_files, t, tie_word_embeddings=True))
    assert torch.equal(tied.lm_head.weight, t["model.embed_tokens.weight"])


def test_renderer_from_encoder_renderer_pth(tokenizer_files, tmp_path) -> None:
    """No retouch_decoder in the folder: the renderer comes from encoder_renderer.pth beside it."""
    from model_core.er_config import PAPER
    from model_core.model_io import load_model
    from model_core.official import official_key_shapes

    t = {k: v for k, v in official_tensors().items() if not k.startswith("retouch_decoder.")}
    d = write_folder(tmp_path / "checkpoints" / "VeraRetouch", tokenizer_files, t)
    with pytest.raises(FileNotFoundError, match=r"encoder_renderer\.pth"):
        load_model(d)
    g = torch.Generator().manual_seed(1)
    cfg = PAPER.with_(latent_dim=LATENT, renderer_hidden=(16, 32, 16))
    er = {"module." + k: torch.randn(s, generator=g) for k, s in official_key_shapes(cfg).items()}
    torch.save({"model_state_dict": er}, tmp_path / "checkpoints" / "encoder_renderer.pth")
    m = load_model(d)
    assert m.renderer.config.renderer_hidden == (16, 32, 16)
    assert torch.equal(m.renderer.layers[1].inject.weight, er["module.decoder.z_projs.1.weight"])
    assert torch.equal(m.adaptor.net[6].weight, t["retouch_head.6.weight"])


def test_errors_name_the_problem(official_dir, tokenizer_files, tmp_path) -> None:
    from model_core.model_io import load_model

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), (photo() * 255).astype(np.uint8))
    code, text = run_cli("retouch", str(src), "--model", str(tmp_path), "--out", str(tmp_path / "x.png"))
    assert code == 1 and "Traceback" not in text
    assert "no model.safetensors" in text and len(text.strip().splitlines()) == 1
    t = dict(official_tensors())
    cases = [
        ({**t, "model.vision_tower.extra.weight": torch.zeros(2)}, {}, "model.vision_tower.extra.weight"),
        ({k: v for k, v in t.items() if k != "retouch_head.3.bias"}, {}, "adaptor.net.3.bias"),
        ({**t, "model.mm_projector.2.bias": torch.zeros(H + 1)}, {}, "model.mm_projector.2.bias"),
        (t, {"mm_projector_type": "linear"}, "mm_projector_type"),
        ({k: v for k, v in t.items() if "network.7." not in k}, {}, "network indices"),
    ]
    for i, (tensors, config, needle) in enumerate(cases):
        d = write_folder(tmp_path / f"bad{i}", tokenizer_files, tensors, **config)
        with pytest.raises(ValueError, match=needle.replace(".", r"\.")) as err:
            load_model(d)
        assert "\n" not in str(err.value)
    code, text = run_cli(
        "retouch", str(src), "--model", str(tmp_path / "bad2"), "-o", str(tmp_path / "x.png")
    )
    assert code == 1 and "Traceback" not in text and "model.mm_projector.2.bias" in text
    torn = write_folder(tmp_path / "torn", tokenizer_files)
    (torn / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read weights"):
        load_model(torn)
