"""`aether report`: the self-contained HTML report and the dataset card of a --workflow all build."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from aether_data.report import SECTIONS
from tests.conftest import run_cli


def test_report_on_a_200_sample_all_build(ray_session, tmp_path: Path) -> None:
    out = tmp_path / "all"
    code, text = run_cli(
        "build", "--workflow", "all", "--num-samples", "200", "--samples-per-shard", "50",
        "--image-size", "96", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, text
    code, text = run_cli("report", str(out))
    assert code == 0, text
    page = (out / "report" / "report.html").read_text()
    card = (out / "README.md").read_text()
    for section in SECTIONS:
        assert f'<h2 id="{section.lower().replace(" ", "-")}">{section}</h2>' in page
        assert f"### {section}\n" in card
    # self-contained: every image is inline, nothing is fetched
    srcs = re.findall(r'src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "| samples | 200 |" in card and "| param | " in card and "| auto | " in card
    for name in ("params.png", "scores.png", "protocols.png", "contact_sheet.png"):
        img = np.asarray(
            Image.open(io.BytesIO((out / "report" / name).read_bytes())).convert("L"), np.float32
        )
        assert img.shape[0] > 50 and img.std() > 5, f"{name} looks blank"
    assert "Public Domain" in card or "CC0" in card  # source licences are reported
