"""Train, evaluate and ship the CPU encoder/renderer checkpoint with its model card.

    PYTHONPATH=. python -m model_core.train.ship_er --out-dir runs/er-cpu          # full run
    PYTHONPATH=. python -m model_core.train.ship_er --out-dir runs/er-cpu --resume # continue it
    PYTHONPATH=. python -m model_core.train.ship_er --out-dir runs/er-cpu --eval-only

Writes ``model_core/checkpoints/er-cpu.safetensors`` (weights + config + facts in the metadata)
and ``model_core/checkpoints/MODEL_CARD.md`` (config, data, steps, wall time, held-out metrics).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from aether_data.io.atomic import atomic_write_text
from model_core.er_config import ERConfig, get_config
from model_core.er_data import default_photos, split_photos
from model_core.er_io import DEFAULT_CHECKPOINT, load_er_checkpoint, read_safetensors, save_er_weights
from model_core.eval_er import acceptance, evaluate_er, format_table
from model_core.train.er import FINAL, train_er

EVAL_SEED = 20_260_719
EVAL_N_PARAMS = 8


def write_model_card(
    path: Path, config: ERConfig, facts: dict[str, Any], result: dict[str, Any], passed: dict[str, bool]
) -> None:
    """Markdown model card: what was trained on what, for how long, and how well it does."""
    train_imgs, _ = split_photos(default_photos())
    cfg = json.dumps(asdict(config), indent=2, sort_keys=True)
    lines = [
        "# Retouch Encoder / Renderer — CPU checkpoint (`er-cpu.safetensors`)",
        "",
        "Encoder E (ResNet-18 topology + CBAM, 6-channel before‖after input) and renderer R (per-pixel",
        "conditional MLP) of VeraRetouch (paper Sec. 3.1), at a size that trains on a laptop-class CPU.",
        "Load with `model_core.load_er_checkpoint()`; reference retouching with",
        "`model_core.reference_retouch(input, before, after)`.",
        "",
        "## Training",
        "",
        f"- steps: {facts['step']} (batch {config.batch_size}), seed {facts['seed']}",
        f"- wall time: {facts['wall_time_s'] / 60:.1f} min on {facts['machine']} "
        f"({facts['threads']} torch thread(s), machine shared with other jobs)",
        "- teacher: `aether_data.develop.render_torch` (the develop engine); parameters from"
        " `aether_data.sampling.sample_params` (7 protocols, Gaussian operator statistics"
        " `presets/operator_stats.yaml`)",
        f"- data: bundled photos, training split: {', '.join(p.name for p in train_imgs)}"
        " (random crops, flips, RGB-permutation / saturation / gamma augmentation)",
        f"- recipe: two stages (`model_core/train/er.py`): {config.oracle_steps} steps training R from an"
        " oracle latent (block-diagonal linear embedding of the true parameters), then"
        f" {facts['step'] - config.oracle_steps} steps training E to produce that latent (MSE ×"
        f" {config.latent_match_weight}) and end to end (R(B; E(A, edit(A))) vs edit(B)), R also kept on"
        f" the oracle path (× {config.oracle_path_weight})",
        f"- loss: L1 on an opponent transform (chroma × {config.chroma_loss_weight}); random group masks"
        f" (keep prob. {config.mask_keep_prob}, a dropped block zeroes its group in the target);"
        f" AdamW (wd {config.weight_decay}), warmup {config.warmup_steps}, cosine to"
        f" {config.min_lr_frac} × {config.lr} (restarted at the encoder stage)",
        "- architecture deviations from the paper config, all in `ERConfig`: residual logit"
        f" (`sigmoid(out + logit(x))`), leaky ReLU ({config.latent_negative_slope}) on z before the"
        " injections"
        + (
            f", a colour-transfer statistics branch in E (`model_core/pair_stats.py`: tone-band and hue-band"
            f" shifts, luma quantiles → MLP of width {config.pair_stats_dim}, concatenated to the pooled CNN"
            " features)"
            if config.pair_stats_dim
            else ""
        )
        + "; the paper/official config keeps all of them off",
        "",
        "## Held-out evaluation",
        "",
        f"Images never seen in training: {', '.join(result['images'])}; parameters drawn with seed"
        f" {result['seed']} ({result['n_params']} draws per protocol / per intervention set), eval short edge"
        f" {result['eval_size']} px, path `{result['path']}`.",
        "",
        format_table(result),
        "",
        "Acceptance (issue 5): " + ", ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in passed.items()),
        "",
        f"Gain over identity: {result['mean_psnr'] - result['identity_psnr']:.2f} dB (all latent blocks on);"
        f" {result.get('mean_psnr_masked', float('nan')) - result['identity_psnr']:.2f} dB with only the"
        " protocol's blocks on (last column).",
        "",
        "Why the encoder has a statistics branch: with the same two-stage recipe and 14k steps but the"
        " plain CNN encoder, E recovered exposure well and the colour parameters (temperature, tint,"
        " saturation, HSL) only weakly: 32.70 dB mean, +2.71 dB over identity. The colour-transfer"
        " statistics (`model_core/pair_stats.py`) give it those parameters directly: with them, 6k / 14k /"
        " 20k steps gave +5.47 / +5.90 / +6.07 dB on this evaluation (the shipped checkpoint is the 20k"
        " run; the margin over the 6 dB bar is thin). Remaining weak spot:"
        " tiny HSL-only edits (`specificcolor` row), where identity is already above 44 dB and any"
        " encoder error costs PSNR.",
        "",
        "Reproduce: `PYTHONPATH=. python -m model_core.train.ship_er --out-dir runs/er-cpu` (training),"
        " `PYTHONPATH=. python -m model_core.train.ship_er --out-dir runs/er-cpu --eval-only` (evaluation).",
        "",
        "## Config",
        "",
        "```json",
        cfg,
        "```",
        "",
    ]
    atomic_write_text(path, "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="cpu")
    ap.add_argument("--out-dir", default="runs/er-cpu")
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: config)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ship", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--schedule-steps", type=int, default=None, help="override config.max_steps")
    ap.add_argument("--oracle-steps", type=int, default=None, help="override config.oracle_steps")
    ap.add_argument("--lut-size", type=int, default=None, help="override config.lut_size when shipping")
    ap.add_argument(
        "--ship-if-better",
        action="store_true",
        help="replace the shipped checkpoint only if this run passes more acceptance checks, or as many"
        " with a higher mean PSNR",
    )
    args = ap.parse_args()
    out = Path(args.out_dir)
    config = get_config(args.config).with_(num_threads=args.threads)
    if args.schedule_steps is not None:
        config = config.with_(max_steps=args.schedule_steps)
    if args.oracle_steps is not None:
        config = config.with_(oracle_steps=args.oracle_steps)
    facts_path = out / "train_facts.json"
    if not args.eval_only:
        t0 = time.perf_counter()
        res = train_er(
            config,
            out_dir=out,
            max_steps=args.steps,
            seed=args.seed,
            resume=args.resume,
            log=lambda m: print(m, flush=True),
        )
        prev = json.loads(facts_path.read_text()) if (args.resume and facts_path.exists()) else {}
        facts = {
            "step": res["step"],
            "seed": args.seed,
            "wall_time_s": prev.get("wall_time_s", 0.0) + (time.perf_counter() - t0),
            "threads": args.threads,
            "machine": f"{platform.machine()} CPU",
        }
        atomic_write_text(facts_path, json.dumps(facts, indent=2))
    facts = json.loads(facts_path.read_text())
    encoder, renderer, cfg = load_er_checkpoint(out / FINAL)
    if args.lut_size is not None:  # inference-only field: the LUT size reference_retouch bakes
        cfg = cfg.with_(lut_size=args.lut_size)
        renderer.config = encoder.config = cfg
    torch.set_num_threads(max(1, args.threads))
    result = evaluate_er(encoder, renderer, n_params=EVAL_N_PARAMS, seed=EVAL_SEED)
    passed = acceptance(result)
    print(format_table(result))
    print(json.dumps(passed))
    atomic_write_text(out / "eval.json", json.dumps(result, indent=2))
    ship = Path(args.ship)
    if args.ship_if_better and ship.exists():
        _, old_meta = read_safetensors(ship)
        old_passed = json.loads(old_meta.get("passed", "{}"))
        old_mean = json.loads(old_meta.get("eval", "{}")).get("mean_psnr", float("-inf"))
        if (sum(passed.values()), result["mean_psnr"]) <= (sum(old_passed.values()), old_mean):
            print(f"not shipped: {ship} is at least as good (mean PSNR {old_mean})")
            return
    save_er_weights(
        ship,
        encoder,
        renderer,
        cfg,
        {
            "train": facts,
            "eval": {k: result[k] for k in ("mean_psnr", "identity_psnr", "interventions")},
            "passed": passed,
        },
    )
    _, meta = read_safetensors(ship)
    assert ERConfig.from_json(meta["config"]) == cfg
    write_model_card(ship.parent / "MODEL_CARD.md", cfg, facts, result, passed)
    print(f"shipped {ship} ({ship.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
