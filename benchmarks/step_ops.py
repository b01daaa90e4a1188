#!/usr/bin/env python
"""How many operations one training step dispatches: the engine's own step (`labelertok.engine.engine_step`) on ViT-B-32 at
224 px (random init, nothing downloaded), on the CPU, a small batch.

On a GPU every dispatched operation costs host time (Python, the dispatcher, autograd, a kernel launch) whatever the
batch size, so when a step's kernels are short the step is bound by this count, not by FLOPs. The count does not depend
on the device, so it is measured here on the CPU; `benchmarks/gpu_check.py` (profile stage) measures the time on a GPU.
Also counted: the same step with the one-linear attention of `gpu_check.lean_attention` (same arithmetic).

    python benchmarks/step_ops.py            # writes benchmarks/step_ops.md
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "benchmarks")):
    if p not in sys.path: sys.path.insert(0, p)

from labelertok.data import load_labeler_data  # noqa: E402
from labelertok.model import create_model  # noqa: E402
from labelertok.synthetic import make_world  # noqa: E402
import labelertok.engine as le  # noqa: E402
import labelertok.train as lt  # noqa: E402
from gpu_check import engine_steps, lean_attention  # noqa: E402


class Count(TorchDispatchMode):
    "Counts the aten operations dispatched inside the block (forward and backward), by name."
    def __init__(self):
        super().__init__(); self.ops = Counter()
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def main(batch: int = 2, steps: int = 2):
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="step_ops_"))
    make_world(work / "world", scale=0.05, seed=0, image_size=64, verbose=False)
    data = load_labeler_data(work / "world", n_users=2, image_size=224, cache_dir=work / "cache", verbose=False)
    model = create_model("ViT-B-32", pretrained=None, tokens=data.tokens, token_mode="text", device="cpu", seed=0)
    cfg = lt.TrainConfig(epochs=1, batch_size=batch, device="cpu", report_to="none", progress=False)
    gen = engine_steps(data, model, cfg, work / "run")
    res = {}
    try:
        next(gen)[0](le._no_mark)  # warm-up
        for name in ("engine step", "engine step, one-linear attention"):
            if "attention" in name: blocks = lean_attention(model)
            with Count() as c: next(gen)[0](le._no_mark)
            t0 = time.perf_counter()
            for _ in range(steps): next(gen)[0](le._no_mark)
            res[name] = dict(ops=sum(c.ops.values()), s_per_step=round((time.perf_counter() - t0) / steps, 3),
                             top=c.ops.most_common(8))
    finally:
        gen.close()
    lines = ["# Operations per training step (ViT-B-32, 224 px, CPU)", "",
             f"`python benchmarks/step_ops.py`: batch of {batch} samples, torch {torch.__version__}, 1 thread. "
             "Aten operations dispatched by one step (forward, backward, optimizer); CPU seconds per step for scale only.", "",
             "| step | aten ops / step | CPU s / step | most frequent ops |", "|---|---|---|---|"]
    for k, v in res.items():
        lines.append(f"| {k} | {v['ops']} | {v['s_per_step']} | {', '.join(f'{n} {c}' for n, c in v['top'])} |")
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "step_ops.md").write_text(text)
    print(text); print(json.dumps({k: v["ops"] for k, v in res.items()}))


if __name__ == "__main__":
    main()
