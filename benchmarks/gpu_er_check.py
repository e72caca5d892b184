"""GPU check of encoder/renderer training (run on a CUDA machine; not part of CI).

Trains the paper config and the CPU config for a few steps on the GPU (models and teacher on
device), prints seconds per step, loss drop and peak GPU memory, then resumes the paper run's
checkpoint on the CPU to show checkpoints move between devices. Writes JSON to argv[1].
"""

from __future__ import annotations

import json
import sys
import time

import torch

from model_core.er_config import CPU, PAPER
from model_core.train.er import train_er


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "gpu_er_check.json"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    res: dict[str, object] = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
    }
    runs = [("paper", PAPER, steps), ("cpu", CPU.with_(oracle_steps=steps, pair_stats_dim=128), 3 * steps)]
    for name, cfg, n in runs:
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        r = train_er(cfg, out_dir=f"/tmp/er-gpu-{name}", max_steps=n, device=dev, log=None)
        if dev == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        losses = r["losses"]
        res[name] = {
            "steps": n,
            "s_per_step": round(dt / n, 4),
            "loss_first5": round(sum(losses[:5]) / 5, 5),
            "loss_last5": round(sum(losses[-5:]) / 5, 5),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev == "cuda" else None,
        }
        print(name, res[name], flush=True)
    r2 = train_er(
        PAPER, out_dir="/tmp/er-gpu-paper", max_steps=steps + 1, resume=True, log=None, device="cpu"
    )
    res["cpu_resume_of_gpu_checkpoint"] = {"start_step": r2["start_step"], "step": r2["step"]}
    print("resume", res["cpu_resume_of_gpu_checkpoint"], flush=True)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
