"""`aether export --format llava`: read back the way the official train_qwen.py LazySupervisedDataset does."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

from PIL import Image

from tests.conftest import run_cli
from tests.test_official_interface import OFFICIAL, official_get_prompt, official_human, official_qs


def _lazy_supervised_read(data_path: Path, image_folder: Path) -> list[dict]:
    """What LazySupervisedDataset.__init__ + get_sample do with the data, minus tokenisation."""
    list_data_dict = [{**entry, "img_path_idx": 0} for entry in json.load(open(data_path))]
    out = []
    for sample in list_data_dict:
        image = Image.open(os.path.join(image_folder, sample["image"])).convert("RGB")
        sources = copy.deepcopy([sample["conversations"]])
        for source in sources:  # preprocess_multimodal: "<image>" moved to the front, then a newline
            for sentence in source:
                if OFFICIAL["image_token"] in sentence["value"]:
                    value = sentence["value"].replace(OFFICIAL["image_token"], "").strip()
                    sentence["value"] = (OFFICIAL["image_token"] + "\n" + value).strip()
        roles = {"human": OFFICIAL["conv_qwen_2"]["roles"][0], "gpt": OFFICIAL["conv_qwen_2"]["roles"][1]}
        source = sources[0]
        assert [roles[s["from"]] for s in source] == OFFICIAL["conv_qwen_2"]["roles"]  # preprocess_qwen_2
        out.append({**sample, "pil": image, "turns": source})
    return out


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_llava_export_reads_like_the_official_loader(all_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "llava"
    code, text = run_cli("export", str(all_build), "--format", "llava", "--out", str(out))
    assert code == 0, text
    n_shards = len(list((all_build / "shards").glob("*.tar")))
    assert f"64 samples from {n_shards} shards" in text
    entries = _lazy_supervised_read(out / "llava.json", out)
    assert len(entries) == 64 and len({e["id"] for e in entries}) == 64
    tasks = set()
    for e in entries:
        wf = e["task"]
        tasks.add(wf)
        human, gpt = (t["value"] for t in e["turns"])
        # the loader's normalisation leaves our human turn unchanged, and it is the official prompt
        assert human == e["conversations"][0]["value"]
        if wf == "auto":
            assert human == official_human("auto", official_qs("auto"))
        else:
            instruction = human.split("\n Instruction: ", 1)[1]
            assert human == official_human(wf, official_qs(wf, instruction))
        assert (OFFICIAL["image_token"] in human) == (wf != "param")
        assert gpt.endswith("<retouch_light><retouch_color&temp><retouch_colormixer>")
        assert official_get_prompt(human, gpt).endswith(gpt + OFFICIAL["conv_qwen_2"]["sep"])
        target = Image.open(out / e["target"]).convert("RGB")
        assert target.size == e["pil"].size and e["image"] != e["target"]
        assert len(e["masks"]) == 3 and len(e["params"]) == 38
    assert tasks == {"param", "style", "auto"}


def test_llava_export_is_deterministic_resumable_and_has_a_jsonl_mode(
    all_build: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("export", str(all_build), "--out", str(a))[0] == 0
    assert run_cli("export", str(all_build), "--out", str(b))[0] == 0
    assert _tree_digest(a) == _tree_digest(b)
    # an interrupted export: one shard's entries and the list missing → only that shard is redone
    before = _tree_digest(a)
    parts = sorted((a / ".parts").glob("*.jsonl"))
    parts[1].unlink()
    (a / "llava.json").unlink()
    code, text = run_cli("export", str(all_build), "--out", str(a))
    assert code == 0 and f"(1 exported, {len(parts) - 1} already done)" in text
    assert _tree_digest(a) == before
    # --jsonl: one file per shard, same entries
    c = tmp_path / "c"
    assert run_cli("export", str(all_build), "--out", str(c), "--jsonl")[0] == 0
    files = sorted((c / "annotations").glob("*.jsonl"))
    assert len(files) == len(parts) and not (c / "llava.json").exists()
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert lines == json.loads((a / "llava.json").read_text())
    assert run_cli("export", str(all_build), "--out", str(c), "--format", "sharegpt")[0] == 2


def test_llava_export_to_an_object_store_uri(all_build: Path, tmp_path: Path) -> None:
    """Same bytes on a URI (fsspec's in-process memory:// store stands in for s3://)."""
    from aether_data.export_llava import export_llava
    from aether_data.io import storage

    local = tmp_path / "local"
    export_llava(all_build, local)
    uri = f"memory://aether-export/{tmp_path.name}"
    counts = export_llava(all_build, uri)
    assert counts["samples"] == 64
    remote = storage.as_path(uri)
    assert (remote / "llava.json").read_bytes() == (local / "llava.json").read_bytes()
    first = json.loads((local / "llava.json").read_text())[0]
    assert (remote / first["image"]).read_bytes() == (local / first["image"]).read_bytes()
    assert export_llava(all_build, uri)["skipped"] == counts["shards"]
