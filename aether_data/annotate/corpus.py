"""The text the trainer's tiny `template-bpe` tokenizer is fitted on, written as a data file.

Why: model_core must not import the annotators, yet its tiny tokenizer should speak the dataset's
register. This module generates the corpus from the template annotator;
``python -m aether_data.annotate.corpus`` writes it to ``model_core/configs/tokenizer_corpus.json``,
and a test keeps the file equal to this output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from aether_data import params as P
from aether_data.annotate.template import AnnotationRequest, TemplateAnnotator
from aether_data.io.atomic import atomic_write_text
from aether_data.sampling import sample_params

__all__ = ["corpus_json", "template_corpus"]


def template_corpus(n: int = 40, seed: int = 0) -> tuple[str, ...]:
    """Deterministic text in the dataset's register: template-annotator prompts, instructions and
    completions for sampled parameters of every workflow (what the tiny tokenizer is fitted on)."""
    annotator = TemplateAnnotator()
    rng = np.random.default_rng(seed)
    preset = {"id": "tiny", "name": "Warm Film", "primary": "film", "fine": "warm film"}
    corpus: list[str] = []
    for i in range(n):
        for wf in ("param", "style", "auto"):
            _, values = sample_params(rng, degrade=wf == "auto")
            req = AnnotationRequest(
                workflow=wf,
                params=values,
                masks=P.masks(values),
                seed=i,
                preset=preset if wf == "style" else None,
            )
            a = annotator.annotate(req)
            corpus += [a.completion, a.prompt, *a.instructions]
    return tuple(corpus)


def corpus_json(n: int = 40, seed: int = 0) -> str:
    """The corpus file's exact text."""
    return json.dumps(list(template_corpus(n, seed)), ensure_ascii=False, indent=0) + "\n"


if __name__ == "__main__":  # python -m aether_data.annotate.corpus [OUT]
    from model_core.tokenizer import TOKENIZER_CORPUS

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else TOKENIZER_CORPUS
    atomic_write_text(out, corpus_json())
    print(f"wrote {out}")
