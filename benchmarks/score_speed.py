#!/usr/bin/env python
"""Scoring throughput of `labelertok.score`: images per second for the tiny model and ViT-B-32 (random init).

    python benchmarks/score_speed.py                      # CPU: tiny and ViT-B-32, 256 images each
    python benchmarks/score_speed.py --device cuda --n 2048 --models ViT-B-32

For each model it times, on the same `--n` image files (the synthetic world's faces under data/synthetic/images when
present, else random-pixel PNGs written to a temporary folder):
- `score` from files: decode + resize/crop + encode, each file once (what `labelertok score --images` does);
- encode only: the same images already decoded to a uint8 tensor (the model's share of the work);
- `score` again on the same files (features cached per file: only the prompt ensemble is encoded).
Random init (`pretrained=None`) gives the same compute as trained weights and needs no download.
Prints a markdown table and one JSON line per model.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelertok.model import create_model  # noqa: E402
from labelertok.score import Scorer, load_images  # noqa: E402
from labelertok.tokens import user_tokens  # noqa: E402
from labelertok.train import resolve_device  # noqa: E402


def image_files(n: int) -> list[str]:
    "n image files: the synthetic world's faces when present (repeated names never: distinct files), else random PNGs."
    world = ROOT / "data" / "synthetic" / "images"
    files = sorted(world.glob("*.png"))[:n] if world.is_dir() else []
    if len(files) >= n: return [str(f) for f in files]
    from PIL import Image
    d = Path(tempfile.mkdtemp(prefix="score_speed_"))
    rng = np.random.default_rng(0)
    for i in range(n - len(files)):
        f = d / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(f)
        files.append(f)
    return [str(f) for f in files]


def measure(model_name: str, files: list[str], device: str, batch_size: int) -> dict:
    m = create_model(model_name, None, tokens=user_tokens(2), token_mode="text", device=resolve_device(device))
    sc = Scorer.from_model(m, batch_size=batch_size)
    sc.score(files[:8], "trustworthy", "<user1>")  # warm-up (kernels, prompt ensemble)
    sc._feats.clear()
    sync = (lambda: torch.cuda.synchronize()) if sc.model.device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter(); s = sc.score(files, "trustworthy", "<user1>"); sync(); t_files = time.perf_counter() - t0
    _, x = load_images(files, sc.model.image_size)
    t0 = time.perf_counter(); sc.encode(x); sync(); t_enc = time.perf_counter() - t0
    t0 = time.perf_counter(); sc.score(files, "smart", "<user2>"); sync(); t_cached = time.perf_counter() - t0
    assert len(s) == len(files)
    return dict(model=model_name, image_size=sc.model.image_size, n=len(files), device=str(sc.model.device),
                threads=torch.get_num_threads(), batch_size=batch_size,
                score_files_img_s=len(files) / t_files, encode_only_img_s=len(files) / t_enc,
                score_cached_img_s=len(files) / t_cached)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny", "ViT-B-32"])
    p.add_argument("--n", type=int, default=256, help="images per model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    files = image_files(a.n)
    rows = [measure(m, files, a.device, a.batch_size) for m in a.models]
    print("| model | px | device | threads | images | score from files (img/s) | encode only (img/s) | score, cached features (img/s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['image_size']} | {r['device']} | {r['threads']} | {r['n']} | {r['score_files_img_s']:.1f} | "
              f"{r['encode_only_img_s']:.1f} | {r['score_cached_img_s']:.0f} |")
    for r in rows: print(json.dumps(r))


if __name__ == "__main__":
    main()
