#!/usr/bin/env python
"""Speed of labelertok's training engine against a seed-style reference loop, in one process.

The reference mirrors the study's loop: a torch DataLoader whose Dataset opens both images of every sample from
disk with PIL and runs open_clip's preprocessing transform on each, every time the sample is used; every sample's
two images and prompt are encoded separately (no de-duplication), the prompts tokenised per batch; evaluation the
same way (one prompt per sample, template drawn at random as in training). Same model (same init), same data, same
hyper-parameters, same number of epochs.

    python benchmarks/train_speed.py --quick
        tiny model, synthetic world, CPU, < 5 minutes; writes benchmarks/results_quick.csv and .md and ends with
        one line `train_speedup=X eval_speedup=Y`.
    python benchmarks/train_speed.py --device cuda --model ViT-B-32
        224 px, a synthetic world about the size of the study's 2-labeler run; reports images/s and the time of a
        full 13-epoch run (measured when --epochs 13, else projected), the reference projected from --ref-steps.

Accuracy: both trained models are scored with the engine's deterministic evaluation (prompt ensembles) on the
validation split, with 95% bootstrap CIs; the reference's own evaluation accuracy is reported too.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

from labelertok.data import load_labeler_data  # noqa: E402
from labelertok.model import create_model  # noqa: E402
from labelertok.synthetic import make_world  # noqa: E402
from labelertok.tokens import make_prompt  # noqa: E402
from labelertok.intervals import cluster_bootstrap  # noqa: E402
from labelertok.train import TrainConfig, evaluate, pair_logits, pair_loss, resolve_device, train  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# memory
class PeakMemory:
    "Peak memory during a block: CUDA max allocated, or (CPU) peak RSS of this process + its children minus the start."
    def __init__(self, device: torch.device, interval: float = 0.02):
        self.device, self.interval = device, interval

    @staticmethod
    def _rss() -> int:
        try:
            import psutil
            p = psutil.Process()
            tot = p.memory_info().rss
            for c in p.children(recursive=True):
                try: tot += c.memory_info().rss
                except psutil.Error: pass
            return tot
        except ImportError:
            with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        def poll():
            while not self._stop.is_set():
                self.peak = max(self.peak, self._rss()); time.sleep(self.interval)
        self._t = threading.Thread(target=poll, daemon=True); self._t.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set(); self._t.join()
            self.peak = max(self.peak, self._rss())
            self.peak_mb = (self.peak - self.start) / 2**20
        return False


def _sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------------------------
# the seed-style reference
class StudyStyleDataset(torch.utils.data.Dataset):
    "Per sample: open both images with PIL and preprocess them (open_clip transform); prompt with a random template."
    def __init__(self, samples: pd.DataFrame, preprocess, templates, use_tokens: bool = True):
        self.im1, self.im2 = samples["im1"].tolist(), samples["im2"].tolist()
        self.labels = samples["label"].to_numpy(np.int64)
        self.tokens, self.attrs = samples["token"].tolist(), samples["attribute"].tolist()
        self.preprocess, self.templates, self.use_tokens = preprocess, list(templates), use_tokens

    def __len__(self): return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        a = self.preprocess(Image.open(self.im1[i]).convert("RGB"))
        b = self.preprocess(Image.open(self.im2[i]).convert("RGB"))
        prompt = make_prompt(self.attrs[i], self.tokens[i] if self.use_tokens else None, random.choice(self.templates))
        return a, b, prompt, int(self.labels[i])


def _worker_init(wid):
    s = torch.initial_seed() % 2**32
    random.seed(s); np.random.seed(s)


def reference_loader(samples, model, config: TrainConfig, batch_size: int, shuffle: bool, num_workers: int, seed: int):
    import open_clip
    pp = open_clip.get_model_preprocess_cfg(model.clip)
    preprocess = open_clip.image_transform(model.image_size, is_train=False, mean=pp["mean"], std=pp["std"])
    ds = StudyStyleDataset(samples, preprocess, config.templates, use_tokens=bool(model.tokens))
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                                       pin_memory=torch.cuda.is_available(), generator=g,
                                       worker_init_fn=_worker_init, persistent_workers=False)


def _ref_forward(model, a, b, prompts, device):
    "Each sample's two images and its prompt encoded separately (no de-duplication), prompts tokenised now."
    fa = F.normalize(model.clip.encode_image(a.to(device, non_blocking=True)), dim=-1)
    fb = F.normalize(model.clip.encode_image(b.to(device, non_blocking=True)), dim=-1)
    ft = F.normalize(model.clip.encode_text(model.tokenizer(list(prompts)).to(device, non_blocking=True)), dim=-1)
    return fa, fb, ft


def amp_autocast(device, amp):
    return torch.autocast("cuda", dtype=torch.bfloat16) if (amp and device.type == "cuda") else torch.autocast("cpu", enabled=False)


def reference_train(model, data, config: TrainConfig, num_workers: int, max_steps: int | None = None) -> dict:
    "The study-style training loop; returns seconds and samples seen per epoch."
    device = resolve_device(config.device)
    model.to(device).train()
    random.seed(config.seed); np.random.seed(config.seed); torch.manual_seed(config.seed)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=config.lr, weight_decay=config.weight_decay)
    tr = data.split("train")
    loader = reference_loader(tr, model, config, config.batch_size, True, num_workers, config.seed)
    epochs, steps = [], 0
    for epoch in range(1, config.epochs + 1):
        t0, n, tot_loss, tot_corr = time.perf_counter(), 0, 0.0, 0
        for a, b, prompts, labels in loader:
            with amp_autocast(device, config.amp):
                fa, fb, ft = _ref_forward(model, a, b, prompts, device)
                loss, correct = pair_loss(pair_logits(fa, fb, ft, config.temperature), labels.to(device))
            opt.zero_grad(); loss.backward(); opt.step()
            tot_loss += loss.item() * len(labels); tot_corr += int(correct.sum()); n += len(labels)
            steps += 1
            if max_steps and steps >= max_steps: break
        _sync(device)
        epochs.append(dict(epoch=epoch, seconds=time.perf_counter() - t0, samples=n, loss=tot_loss / n, acc=tot_corr / n))
        if max_steps and steps >= max_steps: break
    return dict(epochs=epochs)


@torch.no_grad()
def reference_eval(model, data, config: TrainConfig, num_workers: int, split: str = "val", max_steps=None) -> dict:
    device = resolve_device(config.device)
    model.to(device).eval()
    random.seed(config.seed)
    loader = reference_loader(data.split(split), model, config, config.eval_batch_size, False, num_workers, config.seed)
    t0, correct, losses, n = time.perf_counter(), [], [], 0
    for step, (a, b, prompts, labels) in enumerate(loader, 1):
        with amp_autocast(device, config.amp):
            fa, fb, ft = _ref_forward(model, a, b, prompts, device)
            loss, c = pair_loss(pair_logits(fa, fb, ft, config.temperature), labels.to(device))
        losses.append(loss.item() * len(labels)); correct.append(c.cpu().numpy()); n += len(labels)
        if max_steps and step >= max_steps: break
    _sync(device)
    c = np.concatenate(correct)
    pid = data.split(split)["pair_id"].to_numpy()[:n]   # the loader keeps the split's order: answers to one pair together
    ci = cluster_bootstrap(c, pid, config.n_boot, config.seed)
    return dict(seconds=time.perf_counter() - t0, samples=n, loss=sum(losses) / n, acc=float(c.mean()),
                ci=(ci["lo"], ci["hi"]))


# ---------------------------------------------------------------------------------------------------------------
def _fmt_ci(acc, ci): return f"{acc:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]"


def get_world(args) -> Path:
    if args.data: return Path(args.data)
    d = Path(args.cache) / f"bench_world_s{args.scale:g}_px{args.world_px}_seed{args.world_seed}"
    if not (d / "big_compare_label.xlsx").exists():
        t0 = time.perf_counter()
        make_world(d, scale=args.scale, seed=args.world_seed, image_size=args.world_px, overwrite=True, verbose=False)
        print(f"synthetic world (scale {args.scale}, {args.world_px}px) written to {d} in {time.perf_counter() - t0:.1f}s")
    return d


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny model, small synthetic world, CPU, one thread (< 5 min)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="tiny")
    p.add_argument("--pretrained", default=None, help="open_clip tag (default: random init; speed does not depend on it)")
    p.add_argument("--data", default=None, help="study-format data folder (default: a synthetic world)")
    p.add_argument("--scale", type=float, default=None, help="synthetic world scale (quick: 0.5; else 3.0 ~ the study's 2-labeler run)")
    p.add_argument("--world-px", type=int, default=None, help="synthetic image size on disk (tiny: 96, else 224)")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--n-users", type=int, default=2)
    p.add_argument("--epochs", type=int, default=None, help="epochs for both (quick: 5; else 1, then projected)")
    p.add_argument("--project-epochs", type=int, default=13, help="report the time of a run of this many epochs")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=None, help="(tiny: 1e-2, else 1e-4)")
    p.add_argument("--num-workers", type=int, default=None, help="reference DataLoader workers (CPU: 0, CUDA: 8)")
    p.add_argument("--ref-steps", type=int, default=None, help="stop the reference after this many training steps and project")
    p.add_argument("--group-pairs", choices=("off", "on", "both"), default="both", help="engine variants to run")
    p.add_argument("--compile", action="store_true", help="engine with torch.compile")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (quick: 1, else torch's choice)")
    p.add_argument("--cache", default=str(ROOT / ".cache"))
    p.add_argument("--out", default=None, help="results CSV (quick: benchmarks/results_quick.csv; a .md is written beside it)")
    a = p.parse_args(argv)
    if a.quick: a.model, a.device = "tiny", "cpu"
    cuda = a.device.startswith("cuda")
    a.scale = a.scale if a.scale is not None else (0.5 if a.quick else 3.0)
    a.world_px = a.world_px or (96 if a.model == "tiny" else 224)
    a.epochs = a.epochs or (5 if a.quick else 1)
    a.lr = a.lr or (1e-2 if a.model == "tiny" else 1e-4)  # the random-init tiny model needs a large lr at batch 256
    a.num_workers = a.num_workers if a.num_workers is not None else (8 if cuda else 0)
    a.threads = a.threads or (1 if a.quick else None)
    a.out = a.out or (str(ROOT / "benchmarks" / "results_quick.csv") if a.quick else None)
    if a.threads: torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    t_all = time.perf_counter()

    world = get_world(a)
    probe = create_model(a.model, a.pretrained, tokens=[], device="cpu")
    size = probe.image_size
    del probe
    data = load_labeler_data(world, n_users=a.n_users, image_size=size, cache_dir=Path(a.cache) / "images", verbose=False)
    tokens = data.tokens
    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, eval_batch_size=a.eval_batch_size, lr=a.lr,
                      device=str(device), progress=False, compile=a.compile, n_boot=1000)
    n = {s: len(data.split(s)) for s in ("train", "val", "test")}
    print(f"data: {data}\nmodel {a.model} ({size}px), device {device}, torch threads {torch.get_num_threads()}, "
          f"epochs {a.epochs}, batch {a.batch_size}/{a.eval_batch_size}, lr {a.lr}, reference workers {a.num_workers}")

    def new_model():  # same init for both: create_model's seed fixes the random base and peft's LoRA A matrices
        return create_model(a.model, a.pretrained, tokens=tokens, token_mode="text", device=str(device), seed=0)

    # warm-up (kernels, allocator, thread pools): one engine epoch on a throwaway model, so that the first measured
    # method is not charged for the process's first-time allocations (CPU memory = growth of RSS during a phase)
    train(data, new_model(), TrainConfig(**{**cfg.to_dict(), "epochs": 1, "n_boot": 10}), Path(tempfile.mkdtemp()) / "warmup")
    gc.collect()

    rows = []
    # ---- engine (plain batches, then optionally pair-grouped) ----
    variants = [False, True] if a.group_pairs == "both" else [a.group_pairs == "on"]
    eng = {}
    for gp in variants:
        c = TrainConfig(**{**cfg.to_dict(), "group_pairs": gp, "templates": tuple(cfg.templates)})
        m = new_model()
        out = Path(tempfile.mkdtemp(prefix="bench_engine_"))
        with PeakMemory(device) as mem_tr:
            summ = train(data, m, c, out / "run")
        ep = [e for e in summ["timings"]["epochs"] if e["epoch"] > 0]
        train_s = sum(e["train_s"] for e in ep)
        ev_times = []
        with PeakMemory(device) as mem_ev:
            for _ in range(5):
                _sync(device); t0 = time.perf_counter()
                evaluate(m, data, "val", c); _sync(device)
                ev_times.append(time.perf_counter() - t0)
        last = pd.read_csv(out / "run" / "history.csv").iloc[-1]
        r = dict(method="engine" + (" (group_pairs)" if gp else ""), train_samples_per_s=n["train"] * len(ep) / train_s,
                 eval_samples_per_s=n["val"] / float(np.median(ev_times)), peak_train_mem_mb=mem_tr.peak_mb,
                 peak_eval_mem_mb=mem_ev.peak_mb, val_acc=float(last["val_acc"]), val_acc_lo=float(last["val_acc_lo"]),
                 val_acc_hi=float(last["val_acc_hi"]), own_eval_acc=float(last["val_acc"]), epochs=len(ep),
                 train_s=train_s, eval_s=float(np.median(ev_times)))
        # a full run = epoch 0 evaluation + epochs x (train + val) + test evaluation
        per_epoch = float(np.mean([e["train_s"] + e["eval_s"] for e in ep]))
        fixed = summ["timings"]["epochs"][0]["eval_s"] + summ["timings"]["test_eval_s"]
        r["run_s"] = summ["timings"]["total_s"] if a.epochs == a.project_epochs else fixed + a.project_epochs * per_epoch
        eng[gp] = r; rows.append(r)
        del m; gc.collect()

    # ---- reference ----
    if not a.skip_reference:
        m = new_model()
        with PeakMemory(device) as mem_tr:
            rt = reference_train(m, data, cfg, a.num_workers, max_steps=a.ref_steps)
        ref_train_s = sum(e["seconds"] for e in rt["epochs"])
        ref_train_sps = sum(e["samples"] for e in rt["epochs"]) / ref_train_s
        with PeakMemory(device) as mem_ev:
            re = reference_eval(m, data, cfg, a.num_workers, max_steps=None if not a.ref_steps else max(1, a.ref_steps // 2))
        ref_eval_sps = re["samples"] / re["seconds"]
        if a.ref_steps: same = dict(acc=float("nan"), acc_lo=float("nan"), acc_hi=float("nan"))
        else: same = evaluate(m, data, "val", cfg)  # the reference-trained model, scored like the engine's
        r = dict(method=f"reference (DataLoader, {a.num_workers} workers)", train_samples_per_s=ref_train_sps,
                 eval_samples_per_s=ref_eval_sps, peak_train_mem_mb=mem_tr.peak_mb, peak_eval_mem_mb=mem_ev.peak_mb,
                 val_acc=same["acc"], val_acc_lo=same["acc_lo"], val_acc_hi=same["acc_hi"], own_eval_acc=re["acc"],
                 epochs=len(rt["epochs"]), train_s=ref_train_s, eval_s=re["seconds"])
        r["run_s"] = (n["train"] / ref_train_sps + n["val"] / ref_eval_sps) * a.project_epochs + 2 * n["val"] / ref_eval_sps
        rows.append(r)
        del m; gc.collect()

    df = pd.DataFrame(rows)
    df["train_images_per_s"] = 2 * df["train_samples_per_s"]
    df["eval_images_per_s"] = 2 * df["eval_samples_per_s"]
    meta = dict(device=str(device), gpu=torch.cuda.get_device_name() if device.type == "cuda" else None,
                torch_threads=torch.get_num_threads(), model=a.model, image_size=size, n_users=a.n_users, scale=a.scale,
                n_train=n["train"], n_val=n["val"], epochs=a.epochs, batch_size=a.batch_size,
                eval_batch_size=a.eval_batch_size, lr=a.lr, ref_workers=a.num_workers, torch=torch.__version__,
                command="python benchmarks/train_speed.py " + " ".join(sys.argv[1:] if argv is None else argv))
    show = pd.DataFrame({
        "method": df["method"],
        "train samples/s": df["train_samples_per_s"].round(1),
        "eval samples/s": df["eval_samples_per_s"].round(1),
        "train images/s": df["train_images_per_s"].round(1),
        "peak mem train / eval (MB)": [f"{x:.0f} / {y:.0f}" for x, y in zip(df.peak_train_mem_mb, df.peak_eval_mem_mb)],
        f"val acc after {a.epochs} epochs (engine eval, 95% CI)": [_fmt_ci(r.val_acc, (r.val_acc_lo, r.val_acc_hi)) for r in df.itertuples()],
        "val acc (own eval)": [f"{x:.1%}" for x in df["own_eval_acc"]],
        f"{a.project_epochs}-epoch run (s)": df["run_s"].round(1),
    })
    md = markdown_table(show)
    print("\n" + json.dumps(meta) + "\n" + md)
    base = eng[variants[0]]
    how = "measured" if a.epochs == a.project_epochs else "projected"
    print(f"engine: {base['train_samples_per_s']:.0f} train samples/s ({base['train_samples_per_s'] * 2:.0f} images/s), "
          f"{base['eval_samples_per_s']:.0f} eval samples/s; a {a.project_epochs}-epoch run ({how}): {base['run_s']:.1f} s")
    if a.out:
        outp = Path(a.out)
        flat = {k: v for k, v in meta.items() if not isinstance(v, (list, dict))}
        df.assign(**flat).to_csv(outp, index=False)
        outp.with_suffix(".md").write_text(f"`{meta['command']}`\n\n{json.dumps({k: v for k, v in meta.items() if k != 'command'})}\n\n{md}\n")
        print(f"wrote {outp} and {outp.with_suffix('.md')}")
    print(f"total benchmark time {time.perf_counter() - t_all:.0f}s")
    if not a.skip_reference:
        ref = rows[-1]
        for gp, r in eng.items():
            if gp != variants[0]:
                print(f"group_pairs=True: train_speedup={r['train_samples_per_s'] / ref['train_samples_per_s']:.1f} "
                      f"eval_speedup={r['eval_samples_per_s'] / ref['eval_samples_per_s']:.1f}")
        print(f"train_speedup={base['train_samples_per_s'] / ref['train_samples_per_s']:.1f} "
              f"eval_speedup={base['eval_samples_per_s'] / ref['eval_samples_per_s']:.1f}")


def markdown_table(df: pd.DataFrame) -> str:
    "A GitHub markdown table of `df` (no tabulate dependency)."
    cells = [[str(c) for c in df.columns]] + [[str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([lines[0], "|" + "|".join("---" for _ in df.columns) + "|"] + lines[1:])


if __name__ == "__main__":
    main()
