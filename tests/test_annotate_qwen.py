"""qwen-vl annotator end to end on a tiny randomly initialised Qwen2.5-VL (built here, no download).

The model, tokenizer, image/video processors and chat template are constructed locally (the
sizes are the smallest that transformers accepts), saved with save_pretrained and loaded back through `make_annotator`, i.e. the same code
path as real weights. Its random generations are malformed, which exercises retry and fallback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("qwen_vl_utils")

from aether_data.annotate import AnnotationRequest, make_annotator, parse_completion  # noqa: E402
from aether_data.annotate.qwen_backend import QwenVLAnnotator  # noqa: E402
from aether_data.config import AnnotatorSpec  # noqa: E402
from aether_data.contract import SPECIAL_TOKENS, build_prompt  # noqa: E402

CHAT_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
VALID_PARAM_ANSWER = (
    "Instructions:\n1. Brighten the photo a little.\n2. Lift the exposure gently, please.\n"
    "3. Could you make it slightly brighter?\n\n"
    "<plan_light_start>Raise exposure gently to open up the midtones.<plan_light_end>\n"
    "<plan_globalcolor_start>No change needed.<plan_globalcolor_end>\n"
    "<plan_specificcolor_start>No change needed.<plan_specificcolor_end>\n"
    "<retouch_light><retouch_color&temp><retouch_colormixer>"
)
CORPUS = (
    VALID_PARAM_ANSWER
    + " Key elements: a photo of the lake at dusk, warm colours; increase decrease light colour"
)
"""Text the tiny vocabulary covers (anything else is [UNK], as random generations mostly are)."""
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen(folder: Path) -> Path:
    """Save a random 2-layer Qwen2.5-VL + processor (WordLevel tokenizer with our tags as specials)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    # byte-level pieces like Qwen's own tokenizer, so decoding restores spaces and newlines exactly
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    text = CORPUS
    for t in (*CHAT_SPECIALS, *SPECIAL_TOKENS):
        text = text.replace(t, "\n")
    pieces = [p for p, _ in byte_level.pre_tokenize_str(text)]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(["[UNK]", *CHAT_SPECIALS, *SPECIAL_TOKENS, *pieces]))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        # like an aether fine-tune: the completion tags are special tokens and must survive decoding
        additional_special_tokens=CHAT_SPECIALS[1:] + list(SPECIAL_TOKENS),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112),
        video_processor=Qwen2VLVideoProcessor(),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    ids = {k: vocab[k] for k in CHAT_SPECIALS}
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        "bos_token_id": ids["<|im_start|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "out_hidden_size": 64,
        "intermediate_size": 64,
        "num_heads": 2,
        "fullatt_block_indexes": [1],
        "window_size": 112,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> object:
    """One intra-op thread, as in a shard actor (build.tuning.limit_threads): tiny matmuls on a busy
    2-core machine are ~10x slower with spinning OpenMP threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen25vl"))


def _requests(n: int) -> list[AnnotationRequest]:
    wfs = ["param", "auto", "style"]
    params = {"Exposure2012": 0.6, "IncrementalTemperature": 15.0, "SaturationAdjustmentBlue": -25.0}
    return [
        AnnotationRequest(
            workflow=wfs[i % 3],
            params=params,
            masks=[1, 1, 1],
            seed=100 + i,
            preset={"id": "p1", "name": "Warm Lake", "primary": "film", "fine": "warm film"}
            if wfs[i % 3] == "style"
            else None,
            image_stats={"mean_luminance": 0.4, "contrast": 0.2},
        )
        for i in range(n)
    ]


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.random((48 + 8 * i, 64, 3)).astype(np.float32) for i in range(n)]


def test_random_qwen_generations_fall_back_after_retries(tiny_qwen: Path, tmp_path: Path) -> None:
    spec = AnnotatorSpec(
        backend="qwen-vl",
        model_path=str(tiny_qwen),
        batch_size=2,
        max_retries=1,
        max_new_tokens=16,
        cache_dir=str(tmp_path / "cache"),
    )
    ann = make_annotator(spec)
    assert isinstance(ann, QwenVLAnnotator)
    assert type(ann.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    try:
        reqs, imgs = _requests(4), _images(4)
        futures = [ann.submit(r, im, key=f"s{i}") for i, (r, im) in enumerate(zip(reqs, imgs))]
        ann.flush()
        results = [f.result(timeout=120) for f in futures]
        stats = ann.stats()
    finally:
        ann.close()
    assert len(results) == 4  # no sample lost
    for r, res in zip(reqs, results):
        info = res.annotator
        assert info["name"] == "template-fallback"
        assert info["attempts"] == 2  # first try + max_retries
        assert info["fallback_reason"].startswith("format:")
        assert info["model"] == tiny_qwen.name
        parse_completion(res.completion, r.workflow)  # the template text is valid
    assert stats["requests_sent"] == 8 and stats["retries"] == 4
    assert stats["fallbacks"] == 4 and sum(stats["fallback_reasons"].values()) == 4
    # format failures are definitive: cached, so a second annotator sends nothing
    again = make_annotator(spec)
    try:
        second = [
            again.submit(r, im, key=f"s{i}").result(timeout=60) for i, (r, im) in enumerate(zip(reqs, imgs))
        ]
        assert again.stats()["requests_sent"] == 0 and again.stats()["cache_hits"] == 4
        assert [s.to_dict() for s in second] == [r.to_dict() for r in results]
    finally:
        again.close()
    for f in (tmp_path / "cache").rglob("*.json"):
        json.loads(f.read_text())  # JSON entries, never pickle


def test_valid_generation_is_parsed_and_special_tags_survive_decoding(
    tiny_qwen: Path, tmp_path: Path
) -> None:
    """The same backend with generate() returning a valid answer: decoded, validated, used."""
    spec = AnnotatorSpec(
        backend="qwen-vl",
        model_path=str(tiny_qwen),
        batch_size=4,
        max_new_tokens=64,
        cache_dir=str(tmp_path / "c"),
    )
    ann = make_annotator(spec)
    tok = ann.processor.tokenizer
    answer = VALID_PARAM_ANSWER + "<|im_end|><|endoftext|><|endoftext|>"
    answer_ids = tok(answer, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in answer_ids
    real_generate = ann.model.generate
    calls: list[int] = []

    def fake_generate(**kwargs: object) -> object:
        real_generate(**{**kwargs, "max_new_tokens": 2})  # the real thing runs on the real inputs
        ids = kwargs["input_ids"]
        calls.append(int(ids.shape[0]))
        tail = torch.tensor([answer_ids] * ids.shape[0])
        return torch.cat([ids, tail], dim=1)

    ann.model.generate = fake_generate
    req = AnnotationRequest(workflow="param", params={"Exposure2012": 0.5}, masks=[1, 0, 0], seed=1)
    try:
        futs = [ann.submit(req, im, key=f"k{i}") for i, im in enumerate(_images(3))]
        assert not any(f.done() for f in futs)  # a partial batch waits for flush / result()
        res = futs[0].result(timeout=60)  # result() flushes: no deadlock
        [f.result(timeout=60) for f in futs]
    finally:
        ann.close()
    assert calls == [3]  # one batched generate for the three samples
    assert res.annotator["name"] == "qwen-vl" and res.annotator["attempts"] == 1
    assert res.annotator["fallback_reason"] is None
    assert res.reasoning["plans"]["light"] == "Raise exposure gently to open up the midtones."
    assert res.completion == VALID_PARAM_ANSWER.split("\n\n", 1)[1]
    assert res.annotator["variants"] == "vlm"
    assert res.instructions[1:] == [
        "Brighten the photo a little.",
        "Lift the exposure gently, please.",
        "Could you make it slightly brighter?",
    ]
    assert res.prompt == build_prompt(
        "param", instruction=res.instructions[0]
    )  # the template's official prompt
    assert ann.stats()["fallbacks"] == 0 and ann.stats()["requests_sent"] == 3


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model_path"):
        make_annotator(
            AnnotatorSpec(backend="qwen-vl", model_path=str(tmp_path / "nope"), cache_dir=str(tmp_path))
        )


def test_qwen3_vl_config_loads_the_qwen3_class_with_its_patch_size(tiny_qwen: Path, tmp_path: Path) -> None:
    """A folder whose config says qwen3_vl runs through the same backend (patch 16, Qwen3-VL class)."""
    from transformers import (
        AutoProcessor,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    base = AutoProcessor.from_pretrained(tiny_qwen)
    vocab = base.tokenizer.get_vocab()
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            min_pixels=64 * 64, max_pixels=128 * 128, patch_size=16, merge_size=2
        ),
        video_processor=Qwen3VLVideoProcessor(),
        tokenizer=base.tokenizer,
        chat_template=base.chat_template,
    )
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "deepstack_visual_indexes": [1],
            "num_position_embeddings": 64,
        },
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )
    torch.manual_seed(1)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    model.generation_config.pad_token_id = vocab["<|endoftext|>"]
    folder = tmp_path / "tiny-qwen3vl"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)

    spec = AnnotatorSpec(
        backend="qwen-vl",
        model_path=str(folder),
        model="tiny-qwen3",
        batch_size=2,
        max_retries=0,
        max_new_tokens=16,
        cache_dir=str(tmp_path / "cache"),
    )
    ann = make_annotator(spec)
    try:
        assert type(ann.model).__name__ == "Qwen3VLForConditionalGeneration" and ann.patch_size == 16
        futures = [
            ann.submit(r, im, key=f"q3-{i}") for i, (r, im) in enumerate(zip(_requests(2), _images(2)))
        ]
        results = [f.result(timeout=60) for f in futures]
    finally:
        ann.close()
    for res in results:
        assert res.annotator["model"] == "tiny-qwen3" and res.annotator["attempts"] == 1
        assert res.annotator["fallback_reason"].startswith("format:")  # generated, parsed, refused
    assert ann.stats()["requests_sent"] == 2
