#!/usr/bin/env python
"""GPU check: does labelertok train the study's 2-labeler run fast on this card, and do the CUDA-only cells pass?

Stages, each under its own time budget inside one overall deadline (the script always finishes and writes what it has):

  a. cuda cells   `nbdev_test --flags cuda` on every notebook with a `#| cuda` cell (in a subprocess, while b's data
                  is generated).
  b. ViT-B-32     224 px, random init (nothing downloaded), bf16, a synthetic world the size of the study's 2-labeler
                  run (~19.3k train samples), the full 13 epochs, once with plain and once with pair-grouped batches:
                  seconds per epoch, images/s, peak memory, model FLOP utilisation (MFU).
  profile        torch.profiler over 20 steps of b's plain run after warm-up (< 30 s): top ops by device and by CPU
                  time, operations and kernels per step, device busy time per step, each step split into data /
                  forward / backward / optimizer (host time and device time), and the step time with one-linear
                  attention (`lean_attention`, a what-if: same arithmetic, a quarter fewer dispatched operations).
  c. seed-style   the study-style loop (`reference_train` of benchmarks/train_speed.py: per-sample PIL loading and
                  transforms, every image encoded separately) for a few hundred steps, projected to 13 epochs.
  d. ViT-L-14     one epoch (random init, pair-grouped batches; the batch halves until a step fits in memory).

FLOPs: `torch.utils.flop_counter.FlopCounterMode` counts one real training step (forward + backward, as executed:
frozen weights get no weight gradient) and one forward pass; the per-image and per-step counts are scaled by the
images the encoders actually processed during the run. MFU = achieved FLOP/s / the card's dense bf16 peak.

Synthetic faces are drawn at 96 px and upsampled to 224 px when the image cache is built (drawing 3,300 faces at
224 px takes minutes on one core; at 96 px seconds). Throughput does not depend on what the pixels show; the
seed-style loop therefore decodes 96 px PNGs, cheaper than the study's photos, so its projection is optimistic.

    bash benchmarks/gpu_check.sh                 # on a GPU: appends a row to benchmarks/RESULTS.md, writes benchmarks/gpu/
    bash benchmarks/gpu_check.sh --cpu-smoke     # a tiny version on the CPU (< 1 min), writes to a temporary folder

With the environment variable OUT set, the result files are also copied into $OUT.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "benchmarks")):
    if p not in sys.path: sys.path.insert(0, p)

# dense bf16 peak (TFLOP/s, no sparsity) by card name; the first matching pattern wins
PEAK_BF16_TFLOPS = [(r"H100.*PCIe", 756.0), (r"H100.*NVL", 835.0), (r"H100|H200|GH200", 989.0), (r"B200", 2250.0),
                    (r"A100", 312.0), (r"L40S", 362.0), (r"A10G", 70.0), (r"L4\b", 121.0)]
STUDY_EPOCHS = 13
T0 = time.perf_counter()


def log(msg: str):
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


class OutOfTime(Exception):
    "Raised inside a stage when its time budget is spent."


# ---------------------------------------------------------------------------------------------------------------------
# labelertok's public API: every use of it is in this section
from labelertok.data import load_labeler_data  # noqa: E402
from labelertok.model import create_model  # noqa: E402
from labelertok.synthetic import make_world  # noqa: E402
from labelertok.tokens import make_prompt  # noqa: E402
import labelertok.engine as le  # noqa: E402
import labelertok.train as lt  # noqa: E402


def new_model(name: str, tokens, device: str):
    "Random-init model (nothing downloaded), LoRA on both towers' MLPs, the study's text tokens; same init every call."
    return create_model(name, pretrained=None, tokens=tokens, token_mode="text", device=device, seed=0)


def train_config(**kw):
    "A TrainConfig from the fields this version has (no tracker: nothing logged outside the run folder)."
    names = {f.name for f in dataclasses.fields(lt.TrainConfig)}
    if "report_to" in names: kw["report_to"] = "none"
    return lt.TrainConfig(**{k: v for k, v in kw.items() if k in names})


def run_train(data, model, config, out_dir: Path, deadline: float) -> dict:
    """Train; returns wall times per epoch (from the epoch callbacks), the engine's own timings if it wrote them,
    and whether the budget cut it short (a step callback raises `OutOfTime` past `deadline`)."""
    marks = []
    def cb(event, info):
        if event == "epoch":
            marks.append((int(info["epoch"]), time.perf_counter()))
            row = info.get("row") or {}
            log(f"    epoch {marks[-1][0]} done ({marks[-1][1] - t0:.1f}s into the run; val acc {row.get('val_acc', float('nan')):.3f})")
        elif event == "step" and time.perf_counter() > deadline: raise OutOfTime()
    sync(); t0 = time.perf_counter(); cut = oom = False
    try: lt.train(data, model, config, out_dir, callbacks=[cb])
    except OutOfTime: cut = True
    except torch.cuda.OutOfMemoryError:  # a batch larger than the probed one: keep the epochs that finished
        cut = oom = True; log("    out of memory during the run")
    sync(); t1 = time.perf_counter()
    timings = {}
    try: timings = json.loads((out_dir / "summary.json").read_text()).get("timings", {})
    except (OSError, ValueError): pass
    return dict(t0=t0, t1=t1, marks=marks, cut=cut, oom=oom, timings=timings)


def autocast(device, config):
    "bf16 autocast on CUDA when the config asks for mixed precision (as the engine trains)."
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and config.amp else nullcontext()


def one_batch(data, model, config, n: int | None = None):
    "The first training batch the engine would build (its batching, prompts and labels), as arguments of a step."
    tr = data.samples[data.samples["split"] == "train"]
    rng = np.random.default_rng([config.seed, 1])
    groups = tr["pair_id"].to_numpy() if config.group_pairs else None
    if hasattr(lt, "make_batches"): idx = lt.make_batches(len(tr), n or config.batch_size, rng, groups)[0]
    else: idx = rng.permutation(len(tr))[:n or config.batch_size]
    b = tr.iloc[idx]
    tpl = rng.integers(0, len(config.templates), size=len(b))
    prompts = [make_prompt(a, t, config.templates[j]) for a, t, j in zip(b["attribute"], b["token"], tpl)]
    return b["i1"].to_numpy(np.int64), b["i2"].to_numpy(np.int64), prompts, torch.tensor(b["label"].to_numpy(np.int64))


def train_step(model, images, batch, config):
    """One forward + backward of a training step as the engine computes it (each distinct image and prompt encoded once);
    no optimiser step, gradients cleared."""
    i1, i2, prompts, labels = batch
    rows, inv = np.unique(np.concatenate([i1, i2]), return_inverse=True)
    with autocast(model.device, config):
        f = model.encode_images(images[torch.from_numpy(rows).to(images.device)].to(model.device))
        f = f[torch.from_numpy(inv.reshape(-1)).to(f.device)]
        t = model.encode_prompts(list(prompts))
        loss, _ = lt.pair_loss(lt.pair_logits(f[:len(i1)], f[len(i1):], t, config.temperature), labels.to(f.device))
    loss.backward()
    model.zero_grad(set_to_none=True)


def engine_steps(data, model, config, out_dir: Path):
    """The engine's own training step on its first batches, for profiling: yields `step(mark)` closures that run one
    optimiser step (`mark(phase)` at each phase boundary). Uses the engine's internals (`train._accelerator`,
    `train._build_engine`, `engine.engine_step`), so that what is profiled is exactly what `train` runs."""
    acc, device = lt._accelerator(config, out_dir)
    try:
        engine = lt._build_engine(data, model, config, out_dir, acc, device, lt.uses_tokens(model, config), (), None,
                                  {"samples": "profile"}, {})
        engine.model.train()
        epoch = 0
        while True:
            epoch += 1
            rng = np.random.default_rng([config.seed, epoch])
            batches = lt.make_batches(engine.n_train, config.batch_size, rng, engine.groups)
            tmpl = rng.integers(0, len(config.templates), size=engine.n_train)
            for idx in batches:
                yield (lambda mark, idx=idx, tmpl=tmpl: le.engine_step(engine, idx, tmpl, mark)), len(idx)
    finally:
        lt._close(acc, None, False)


def lean_attention(model) -> list:
    """What-if for the profile: each open_clip block's `nn.MultiheadAttention` (batch-first, frozen in-projection) run as
    one linear + `scaled_dot_product_attention` + the out-projection, the same arithmetic in fewer dispatched ops.
    Returns the patched blocks (`del block.attention` undoes it)."""
    import torch.nn.functional as F
    patched = []
    for block in model.clip.modules():
        attn = getattr(block, "attn", None)
        if type(attn) is not torch.nn.MultiheadAttention or not callable(getattr(block, "attention", None)): continue
        if not (attn.batch_first and attn._qkv_same_embed_dim and attn.in_proj_bias is not None): continue
        def attention(q_x, k_x=None, v_x=None, attn_mask=None, attn=attn, orig=block.attention, block=block):
            if k_x is not None or v_x is not None: return orig(q_x, k_x, v_x, attn_mask)
            B, L, E = q_x.shape
            h = attn.num_heads
            q, k, v = F.linear(q_x, attn.in_proj_weight, attn.in_proj_bias).view(B, L, 3, h, E // h).permute(2, 0, 3, 1, 4).unbind(0)
            mask = attn_mask.to(q_x.dtype) if attn_mask is not None else None
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=attn.dropout if block.training else 0.0)
            return attn.out_proj(o.transpose(1, 2).reshape(B, L, E))
        block.attention = attention
        patched.append(block)
    return patched


def reference_steps(model, data, config, workers: int, max_steps: int):
    "The seed-style loop of benchmarks/train_speed.py for at most `max_steps` steps."
    from train_speed import reference_train
    return reference_train(model, data, config, workers, max_steps=max_steps)


# ---------------------------------------------------------------------------------------------------------------------
def sync():
    if torch.cuda.is_available(): torch.cuda.synchronize()


def sig(x: float, digits: int = 4) -> float:
    "`x` rounded to `digits` significant digits."
    return float(f"{x:.{digits}g}")


def peak_tflops(card: str | None, override: float | None):
    if override: return override
    for pat, v in PEAK_BF16_TFLOPS:
        if card and re.search(pat, card): return v
    return None


class Memory:
    "Peak memory of a block: CUDA max allocated / reserved; on the CPU the process's peak RSS (a high-water mark)."
    def __init__(self, cuda: bool): self.cuda = cuda
    def __enter__(self):
        gc.collect()
        if self.cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        return self
    def __exit__(self, *exc):
        if self.cuda:
            sync()
            self.peak_gb = torch.cuda.max_memory_allocated() / 2**30
            self.reserved_gb = torch.cuda.max_memory_reserved() / 2**30
        else:
            self.peak_gb = self.reserved_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        return False


class EncodeCounter:
    "Counts images and prompts through the model's encoders, split by whether autograd was on (training) or not."
    def __init__(self, model):
        self.model, self.n = model, dict(train_images=0, eval_images=0, train_prompt_calls=0, eval_prompt_calls=0)
        self._img, self._txt = model.encode_images, model.encode_prompts
        def enc_images(x, *a, **k):
            self.n["train_images" if torch.is_grad_enabled() else "eval_images"] += int(x.shape[0])
            return self._img(x, *a, **k)
        def enc_prompts(p, *a, **k):
            self.n["train_prompt_calls" if torch.is_grad_enabled() else "eval_prompt_calls"] += 1
            return self._txt(p, *a, **k)
        model.encode_images, model.encode_prompts = enc_images, enc_prompts
    def reset(self):
        for k in self.n: self.n[k] = 0


def count_flops(model, images, config, batch) -> dict:
    """FLOPs of one training step (FlopCounterMode), split into images and text, and of one image's forward pass."""
    from torch.utils.flop_counter import FlopCounterMode
    i1, i2, prompts, labels = batch
    n_img = len(np.unique(np.concatenate([i1, i2])))
    with FlopCounterMode(display=False) as fc:
        train_step(model, images, batch, config)
    step = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:  # the text part of that step
        with autocast(model.device, config):
            t = model.encode_prompts(list(dict.fromkeys(prompts)))
        if t.requires_grad: t.float().sum().backward()
        model.zero_grad(set_to_none=True)
    text = fc.get_total_flops()
    k = min(16, len(images))
    with FlopCounterMode(display=False) as fc, torch.no_grad(), autocast(model.device, config):
        model.encode_images(images[:k].to(model.device))
    fwd = fc.get_total_flops() / k
    return dict(step_flops=step, step_images=n_img, step_text_flops=text,
                train_flops_per_image=(step - text) / n_img, eval_flops_per_image=fwd)


# ---------------------------------------------------------------------------------------------------------------------
class Check:
    def __init__(self, a):
        self.a, self.cuda = a, a.device == "cuda"
        self.deadline = T0 + a.time_budget
        self.res = dict(started_utc=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                        mode="cpu-smoke" if a.cpu_smoke else "gpu", stages={})
        self.out_dir = Path(a.results_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def left(self, reserve: float = 0.0) -> float:
        return self.deadline - time.perf_counter() - reserve

    def budget(self, cap: float, reserve: float) -> float:
        "Seconds for a stage: its cap, or less so that `reserve` seconds stay for the later stages."
        return max(0.0, min(cap, self.left(reserve)))

    def timed_stage(self, name, key, fn, *args):
        "A stage that gets a time budget (its first argument after `fn`'s own): skipped when too little time is left."
        budget = self.budget(self.a.caps[key], self.a.reserves[key])
        if budget < self.a.min_stage_s:
            self.res["stages"][name] = dict(status="skipped", reason=f"only {budget:.0f}s of the time budget left")
            log(f"== {name}: skipped, only {budget:.0f}s left"); self.write()
            return
        return self.stage(name, fn, *args, budget)

    def stage(self, name, fn, *args):
        log(f"== {name}")
        t0 = time.perf_counter()
        try:
            r = fn(*args)
        except Exception as e:  # a stage's failure is a result; the others still run
            traceback.print_exc()
            r = dict(status="error", error=f"{type(e).__name__}: {e}"[:500])
            if self.cuda: torch.cuda.empty_cache()
        r.setdefault("status", "ok")
        r["stage_s"] = round(time.perf_counter() - t0, 2)
        self.res["stages"][name] = r
        log(f"== {name}: {r['status']} in {r['stage_s']}s")
        self.write()
        return r

    # ----- environment
    def environment(self):
        e = dict(python=sys.version.split()[0], torch=torch.__version__, device=self.a.device,
                 cpu_count=os.cpu_count(), cuda=torch.version.cuda)
        if self.cuda:
            e["card"] = torch.cuda.get_device_name()
            e["memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        else: e["card"] = "CPU"
        e["peak_bf16_tflops"] = peak_tflops(e["card"] if self.cuda else None, self.a.peak_tflops)
        for mod in ("open_clip", "peft", "accelerate", "nbdev"):
            try: e[mod] = __import__(mod).__version__
            except Exception: e[mod] = None
        self.res["env"] = e
        log(f"environment: {json.dumps(e)}")

    # ----- a. cuda cells
    def cuda_notebooks(self) -> list[str]:
        nbs = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        return [str(p.relative_to(ROOT)) for p in nbs if "#| cuda" in p.read_text(encoding="utf-8")]

    def start_cuda_cells(self):
        nbs = self.cuda_notebooks()
        self.res["cuda_notebooks"] = nbs
        log(f"notebooks with #| cuda cells: {nbs}")
        if not self.cuda:
            self._cells = None
            self.res["stages"]["cuda_cells"] = dict(status="skipped", reason="no CUDA device (cpu smoke)", notebooks=nbs)
            log("cuda cells: skipped (no CUDA device)")
            return
        code = ("import sys\nfrom nbdev.test import nbdev_test\n"
                "for p in sys.argv[1:]:\n    print('nbdev_test --flags cuda --path', p, flush=True)\n"
                "    nbdev_test(path=p, flags='cuda', do_print=True, timing=True)\n")
        self._cells_log = self.out_dir / "cuda_cells.log"
        f = open(self._cells_log, "w")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [x for x in [os.environ.get("PYTHONPATH")] if x]))
        self._cells = (subprocess.Popen([sys.executable, "-c", code, *nbs], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                        env=env), time.perf_counter(), f)

    def finish_cuda_cells(self):
        if self._cells is None: return
        proc, t0, f = self._cells
        timeout = max(5.0, min(self.a.cells_budget - (time.perf_counter() - t0), self.left(self.a.reserve_after_cells)))
        try:
            rc = proc.wait(timeout=timeout); status = "pass" if rc == 0 else "fail"
        except subprocess.TimeoutExpired:
            proc.kill(); proc.wait(); rc, status = None, "timeout"
        f.close()
        tail = self._cells_log.read_text(errors="replace").strip().splitlines()[-15:]
        self.res["stages"]["cuda_cells"] = dict(status=status, returncode=rc, seconds=round(time.perf_counter() - t0, 1),
                                                notebooks=self.res["cuda_notebooks"], log_tail=tail)
        log(f"cuda cells: {status} (rc {rc}) in {time.perf_counter() - t0:.0f}s; last lines:\n    " + "\n    ".join(tail[-5:]))
        self.write()

    # ----- world
    def world(self):
        a = self.a
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        t0 = time.perf_counter()
        make_world(self.work / "world", scale=a.scale, seed=0, image_size=a.world_px, verbose=False)
        t1 = time.perf_counter()
        log(f"make_world(scale={a.scale}, image_size={a.world_px}) in {t1 - t0:.1f}s")
        self.data = load_labeler_data(self.work / "world", n_users=2, image_size=a.image_size,
                                      cache_dir=self.work / "cache", verbose=False)
        t2 = time.perf_counter()
        n = {s: int((self.data.samples["split"] == s).sum()) for s in ("train", "val", "test")}
        log(f"load_labeler_data at {a.image_size}px in {t2 - t1:.1f}s: {n}, {len(self.data.images)} images")
        return dict(scale=a.scale, world_px=a.world_px, image_size=a.image_size, make_world_s=round(t1 - t0, 1),
                    load_s=round(t2 - t1, 1), n_samples=n, n_images=len(self.data.images), tokens=list(self.data.tokens))

    # ----- b / d. engine runs
    def engine(self, model_name, group_pairs, epochs, budget, batch_sizes=None):
        a = self.a
        stop = time.perf_counter() + budget
        log(f"{model_name} group_pairs={group_pairs}: budget {budget:.0f}s")
        model = new_model(model_name, self.data.tokens, a.device)
        images = self.data.images.to(a.device)
        counter = EncodeCounter(model)
        r = dict(model=model_name, group_pairs=group_pairs, image_size=model.image_size, lr=a.lr)
        for bs in batch_sizes or [a.batch_size]:  # the first batch size whose step fits in memory
            cfg = train_config(epochs=epochs, batch_size=bs, eval_batch_size=a.eval_batch_size, lr=a.lr,
                               device=a.device, amp=True, group_pairs=group_pairs, progress=False)
            try:
                with Memory(self.cuda) as probe:
                    fl = count_flops(model, images, cfg, one_batch(self.data, model, cfg))
                total = torch.cuda.get_device_properties(0).total_memory / 2**30 if self.cuda else None
                if total is None or len(batch_sizes or []) < 2 or probe.peak_gb < a.mem_margin * total: break
                log(f"  batch {bs}: one step peaks at {probe.peak_gb:.1f} of {total:.0f} GB (> {a.mem_margin:.0%}): too close")
                r.setdefault("too_large_batch", []).append(bs)
            except torch.cuda.OutOfMemoryError:
                log(f"  batch {bs}: out of memory")
                r.setdefault("too_large_batch", []).append(bs)
            model.zero_grad(set_to_none=True); gc.collect()
            if self.cuda: torch.cuda.empty_cache()
        else:
            raise RuntimeError(f"no batch size in {batch_sizes} fits in memory")
        r.update(batch_size=bs, **fl)
        log(f"  batch {bs}: one step = {fl['step_flops'] / 1e12:.4g} TFLOP for {fl['step_images']} images "
            f"({fl['train_flops_per_image'] / 1e9:.4g} GFLOP/image train, {fl['eval_flops_per_image'] / 1e9:.4g} forward)")
        del images
        counter.reset()
        with Memory(self.cuda) as mem:
            t = run_train(self.data, model, cfg, Path(tempfile.mkdtemp(dir=self.work, prefix=f"run_{model_name}_")) / "run", stop)
        r.update(self.figures(t, counter, fl, cfg, epochs))
        r.update(peak_mem_gb=round(mem.peak_gb, 2), peak_reserved_gb=round(mem.reserved_gb, 2))
        log(f"  {model_name} gp={group_pairs}: {json.dumps({k: r[k] for k in ('epochs_measured', 'run_s', 'train_s_per_epoch', 'train_images_per_s', 'train_samples_per_s', 'peak_mem_gb', 'mfu_train') if k in r})}")
        del model, counter; gc.collect()
        if self.cuda: torch.cuda.empty_cache()
        return r

    def profile(self, budget):
        """torch.profiler over a few steps of the plain ViT-B-32 run after warm-up: top ops by device and by CPU time,
        dispatched ops per step, and each step split into data / forward / backward / optimizer (host time to issue the
        work, and device time between CUDA events at the same boundaries)."""
        from torch.profiler import ProfilerActivity, profile
        a = self.a
        stop = time.perf_counter() + budget
        model = new_model(a.model, self.data.tokens, a.device)
        cfg = train_config(epochs=1, batch_size=a.batch_size, eval_batch_size=a.eval_batch_size, lr=a.lr,
                           device=a.device, amp=True, group_pairs=False, progress=False)
        phases = ("data", "forward", "backward", "optimizer")
        steps = engine_steps(self.data, model, cfg, Path(tempfile.mkdtemp(dir=self.work, prefix="profile_")) / "run")
        host = {p: 0.0 for p in phases}; dev = {p: 0.0 for p in phases}; pending = []
        def mark(phase):
            ev = None
            if self.cuda: ev = torch.cuda.Event(enable_timing=True); ev.record()
            pending.append((phase, time.perf_counter(), ev))
        def run(n, split=False):
            t0, prev = time.perf_counter(), None
            for _ in range(n):
                fn, _b = next(steps)
                stats = fn(mark if split else le._no_mark)
                if prev is not None: prev.tolist()  # as the engine: each step's loss read one step late
                prev = stats
                if split:
                    sync()
                    for (p, t, e), (_, t2, e2) in zip(pending[:-1], pending[1:]):
                        host[p] += t2 - t
                        if e is not None: dev[p] += e.elapsed_time(e2) / 1e3
                    pending.clear()
                if time.perf_counter() > stop: raise OutOfTime()
            prev.tolist(); sync()
            return (time.perf_counter() - t0) / n
        r = dict(model=a.model, batch_size=a.batch_size, warmup_steps=a.prof_warmup, steps=a.prof_steps)
        try:
            run(a.prof_warmup)
            r["step_ms"] = round(1e3 * run(a.prof_steps), 2)  # plain steps, nothing recorded
            run(a.prof_split_steps, split=True)
            n = a.prof_split_steps
            r["split_host_ms"] = {p: round(1e3 * host[p] / n, 2) for p in phases}
            if self.cuda: r["split_device_ms"] = {p: round(1e3 * dev[p] / n, 2) for p in phases}
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
            with profile(activities=acts) as prof:
                r["profiled_step_ms"] = round(1e3 * run(a.prof_steps), 2)
            blocks = []
            try:  # what-if: the same step with leaner attention (a failure here is noted, not fatal)
                blocks = lean_attention(model)
                if blocks:
                    b0 = blocks[0]
                    with torch.no_grad(), autocast(model.device, cfg):
                        x = torch.randn(2, 7, b0.attn.embed_dim, device=model.device)
                        mask = torch.full((7, 7), float("-inf"), device=model.device).triu_(1)
                        diff = max(float((b0.attention(x, attn_mask=m).float() - type(b0).attention(b0, x, attn_mask=m).float()).abs().max())
                                   for m in (None, mask))
                    r.update(lean_attention_blocks=len(blocks), lean_attention_max_abs_diff=sig(diff, 3))
                    run(2)
                    r["step_ms_lean_attention"] = round(1e3 * run(a.prof_steps), 2)
            except OutOfTime: raise
            except Exception as e:
                traceback.print_exc(); r["lean_attention_error"] = f"{type(e).__name__}: {e}"[:300]
            finally:
                for b in blocks: b.__dict__.pop("attention", None)
        except OutOfTime:
            log("  profile: out of time"); return dict(r, status="partial", note="the stage's time budget ran out")
        finally:
            steps.close()
        ka = prof.key_averages()
        n = a.prof_steps
        dev_t = lambda e: float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)) or 0.0)
        ops = [e for e in ka if e.key.startswith("aten::")]
        r["aten_ops_per_step"] = round(sum(e.count for e in ops) / n, 1)
        def on_device(e):  # a kernel, memcpy or memset (CPU-side ops also carry their kernels' time: not counted twice)
            kind = getattr(e, "device_type", None)
            if kind is not None: return "CUDA" in str(kind) and dev_t(e) > 0
            return dev_t(e) > 0 and not e.key.startswith(("aten::", "autograd::", "cuda", "Optimizer", "Memcpy", "Memset"))
        kernels = [e for e in ka if on_device(e)]
        r["kernels_per_step"] = round(sum(e.count for e in kernels) / n, 1) if self.cuda else None
        r["device_busy_ms_per_step"] = round(sum(dev_t(e) for e in kernels) / n / 1e3, 2) if self.cuda else None
        row = lambda e: [e.key[:60], round(e.count / n, 1), round(dev_t(e) / n / 1e3, 3), round(e.self_cpu_time_total / n / 1e3, 3)]
        k = a.prof_top
        if self.cuda: r["top_device"] = [row(e) for e in sorted(kernels, key=dev_t, reverse=True)[:k]]
        r["top_cpu"] = [row(e) for e in sorted(ops, key=lambda e: e.self_cpu_time_total, reverse=True)[:k]]
        r["columns"] = ["op", "calls/step", "device ms/step (self)", "CPU ms/step (self)"]
        if self.cuda and r["step_ms"]:
            r["device_busy_share"] = round(r["device_busy_ms_per_step"] / r["profiled_step_ms"], 3)
        log(f"  profile: step {r['step_ms']} ms ({r.get('step_ms_lean_attention')} ms with lean attention), "
            f"{r['aten_ops_per_step']} aten ops/step, host split {r['split_host_ms']}"
            + (f", device split {r['split_device_ms']}, device busy {r['device_busy_ms_per_step']} ms/step" if self.cuda else ""))
        for title, key in (("by device time", "top_device"), ("by CPU time", "top_cpu")):
            if key in r:
                log(f"  top ops {title} (calls/step, device ms/step, CPU ms/step):\n    " +
                    "\n    ".join(f"{x[0]:<60} {x[1]:>7} {x[2]:>9} {x[3]:>9}" for x in r[key]))
        del model, prof, ka; gc.collect()
        if self.cuda: torch.cuda.empty_cache()
        return r

    def large(self, model_name, sizes, budget):
        "One pair-grouped epoch of the large model; the batch halves until a probe step fits."
        return self.engine(model_name, True, 1, budget, sizes)

    def figures(self, t, counter, fl, cfg, epochs) -> dict:
        marks = dict(t["marks"])
        done = sorted(e for e in marks if e > 0)
        n_train = int((self.data.samples["split"] == "train").sum())
        ep_timings = {e["epoch"]: e for e in t["timings"].get("epochs", []) if isinstance(e, dict) and "epoch" in e}
        r = dict(epochs_target=epochs, epochs_measured=len(done), cut_by_budget=t["cut"] and not t["oom"],
                 out_of_memory=t["oom"], n_train=n_train)
        if 0 not in marks: return dict(r, status="error", error="the run stopped before its first evaluation")
        first_eval = marks[0] - t["t0"]
        wall = [marks[e] - marks[e - 1] for e in done]  # train + val + checkpoint, per epoch
        train_s = [ep_timings[e]["train_s"] for e in done if e in ep_timings and "train_s" in ep_timings[e]]
        if len(train_s) != len(done): train_s = wall  # the engine wrote no split: count the whole epoch as training
        r.update(first_eval_s=round(first_eval, 2), epoch_wall_s=[round(x, 2) for x in wall],
                 epoch_train_s=[round(x, 2) for x in train_s])
        if not done: return dict(r, status="partial", note="no epoch finished within the budget")
        train_total = float(sum(train_s))
        n = counter.n
        tr_flops = fl["train_flops_per_image"] * n["train_images"] + fl["step_text_flops"] * n["train_prompt_calls"]
        ev_flops = fl["eval_flops_per_image"] * n["eval_images"]
        mean_wall = float(np.mean(wall))
        if len(done) == epochs and not t["cut"]:
            run_s, how = t["t1"] - t["t0"], "measured"
        else:  # first evaluation + every epoch at the measured mean + the test evaluation (~ the first one)
            run_s, how = first_eval + epochs * mean_wall + first_eval, f"projected from {len(done)} epoch(s)"
        peak = self.res["env"]["peak_bf16_tflops"]
        achieved = tr_flops / train_total
        r.update(run_s=round(run_s, 2), run_how=how, train_s_per_epoch=round(train_total / len(done), 3),
                 train_s_per_epoch_median=round(float(np.median(train_s)), 3), epoch_wall_s_mean=round(mean_wall, 3),
                 train_samples_per_s=round(n_train * len(done) / train_total, 1),
                 train_images_per_s=round(n["train_images"] / train_total, 1),
                 images_encoded=dict(n), train_flop=sig(tr_flops), eval_flop=sig(ev_flops),
                 achieved_train_tflops=sig(achieved / 1e12),
                 mfu_train=round(achieved / (peak * 1e12), 4) if peak else None,
                 mfu_run=round((tr_flops + ev_flops) / (t["t1"] - t["t0"]) / (peak * 1e12), 4) if peak and how == "measured" else None)
        if t["cut"]: r["status"] = "partial"
        return r

    # ----- c. seed-style loop
    def reference(self, budget):
        a = self.a
        stop = time.perf_counter() + budget
        model = new_model(a.model, self.data.tokens, a.device)
        cfg = train_config(epochs=STUDY_EPOCHS, batch_size=a.batch_size, eval_batch_size=a.eval_batch_size, lr=a.lr,
                           device=a.device, amp=True, progress=False)  # stopped after ref_steps steps
        steps = []  # time at the end of each step's forward (the prompt encoding comes last)
        enc_text = model.clip.encode_text
        def timed(*x, **k):
            steps.append(time.perf_counter())
            if len(steps) > 1 and steps[-1] > stop: raise OutOfTime()
            return enc_text(*x, **k)
        model.clip.encode_text = timed
        log(f"seed-style loop: up to {a.ref_steps} steps, {a.ref_workers} DataLoader workers, budget {budget:.0f}s")
        t0 = time.perf_counter(); cut = False
        try: reference_steps(model, self.data, cfg, a.ref_workers, a.ref_steps)
        except OutOfTime: cut = True
        sync(); t1 = time.perf_counter()
        del model; gc.collect()
        if self.cuda: torch.cuda.empty_cache()
        n_train = int((self.data.samples["split"] == "train").sum())
        skip = min(a.ref_warmup, max(0, len(steps) - 3))  # worker start-up and first kernels are not the steady state
        if len(steps) - skip < 2: return dict(status="error", error=f"only {len(steps)} steps ran", steps=len(steps))
        per_step = (steps[-1] - steps[skip]) / (len(steps) - 1 - skip)
        sps = a.batch_size / per_step
        r = dict(steps=len(steps), warmup_steps=skip, cut_by_budget=cut, workers=a.ref_workers, wall_s=round(t1 - t0, 2),
                 first_step_s=round(steps[0] - t0, 2), s_per_step=round(per_step, 4), train_samples_per_s=round(sps, 1),
                 train_images_per_s=round(2 * sps, 1),
                 projected_train_s_13_epochs=round(STUDY_EPOCHS * n_train / sps, 1),
                 note=f"training only (evaluation not included); decodes {a.world_px} px PNGs, cheaper than the study's photos")
        log(f"  seed-style: {json.dumps({k: r[k] for k in ('steps', 's_per_step', 'train_samples_per_s', 'projected_train_s_13_epochs')})}")
        return r

    # ----- output
    def summary_rows(self):
        s, e = self.res["stages"], self.res.get("env", {})
        def g(stage, k, fmt="{}"):
            v = s.get(stage, {}).get(k)
            return fmt.format(v) if v is not None else "-"
        pct = lambda stage: (f"{100 * s[stage]['mfu_train']:.0f}%" if s.get(stage, {}).get("mfu_train") is not None else "-")
        ref, gp = s.get("seed_style", {}), s.get("vit_b32_grouped", {})
        speed = "-"
        if ref.get("projected_train_s_13_epochs") and gp.get("train_s_per_epoch"):
            speed = f"{ref['projected_train_s_13_epochs'] / (STUDY_EPOCHS * gp['train_s_per_epoch']):.0f}x"
        return dict(
            date=self.res["started_utc"][:10], card=e.get("card", "-"), torch=e.get("torch", "-"),
            cuda_cells=s.get("cuda_cells", {}).get("status", "-"),
            b32_run_s=f"{g('vit_b32_plain', 'run_s')} / {g('vit_b32_grouped', 'run_s')}",
            b32_s_epoch=f"{g('vit_b32_plain', 'train_s_per_epoch')} / {g('vit_b32_grouped', 'train_s_per_epoch')}",
            b32_img_s=f"{g('vit_b32_plain', 'train_images_per_s', '{:.0f}')} / {g('vit_b32_grouped', 'train_images_per_s', '{:.0f}')}",
            b32_mem=f"{g('vit_b32_plain', 'peak_mem_gb')} / {g('vit_b32_grouped', 'peak_mem_gb')}",
            b32_mfu=f"{pct('vit_b32_plain')} / {pct('vit_b32_grouped')}",
            ref_13=g("seed_style", "projected_train_s_13_epochs"), speedup=speed,
            l14=(f"batch {g('vit_l14', 'batch_size')}: {g('vit_l14', 'train_s_per_epoch')} s/epoch, "
                 f"{g('vit_l14', 'train_images_per_s', '{:.0f}')} img/s, {g('vit_l14', 'peak_mem_gb')} GB, {pct('vit_l14')}"))

    HEADER = ("| date | card | torch | cuda cells | ViT-B-32 13-epoch run (s) plain / grouped | train s/epoch | "
              "train images/s | peak GB | MFU (train) | seed-style 13 epochs, train only (s, projected) | "
              "speedup (grouped, train) | ViT-L-14, 1 epoch |")

    def row(self) -> str:
        return "| " + " | ".join(self.summary_rows().values()) + " |"

    def markdown(self) -> str:
        lines = [f"# GPU check, {self.res['started_utc']}", "", f"`{self.res['command']}`", "",
                 "```json", json.dumps(self.res.get("env", {}), indent=1), "```", "", self.HEADER,
                 "|" + "---|" * self.HEADER.count(" | ") + "---|", self.row(), ""]
        tables = ("top_device", "top_cpu")
        for name, st in self.res["stages"].items():
            lines += [f"## {name}", "", "| figure | value |", "|---|---|"]
            lines += [f"| {k} | {json.dumps(v) if isinstance(v, (list, dict)) else v} |" for k, v in st.items()
                      if k not in ("log_tail", "columns") + tables]
            lines.append("")
            for key in tables:
                if st.get(key):
                    lines += [f"Top ops {'by device time' if key == 'top_device' else 'by CPU time'} ({name}):", "",
                              "| " + " | ".join(st["columns"]) + " |", "|---" * len(st["columns"]) + "|"]
                    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in st[key]] + [""]
        return "\n".join(lines)

    def write(self):
        self.res["elapsed_s"] = round(time.perf_counter() - T0, 1)
        (self.out_dir / "gpu_check.json").write_text(json.dumps(self.res, indent=1, default=str))
        (self.out_dir / "gpu_check.md").write_text(self.markdown())
        self.copy_out()

    def copy_out(self):
        out = os.environ.get("OUT")
        if not out or Path(out).resolve() == self.out_dir.resolve(): return
        Path(out).mkdir(parents=True, exist_ok=True)
        for name in ("gpu_check.json", "gpu_check.md", "cuda_cells.log"):
            if (self.out_dir / name).exists(): shutil.copy(self.out_dir / name, Path(out) / name)

    def append_results(self, path: Path):
        text = path.read_text() if path.exists() else ""
        if "## GPU check" not in text:
            text = text.rstrip("\n") + (
                "\n\n## GPU check\n\n`bash benchmarks/gpu_check.sh` on one GPU: the `#| cuda` notebook cells; ViT-B-32 at "
                "224 px (random init, bf16) on a synthetic world the size of the study's 2-labeler run, 13 epochs, plain / "
                "pair-grouped batches (a run = evaluation before training + 13 x (train + validation) + test); the "
                "seed-style loop projected from a few hundred steps; one ViT-L-14 epoch (pair-grouped). MFU = FLOPs "
                "counted with `torch.utils.flop_counter` / training time / the card's dense bf16 peak. Full figures: "
                "`benchmarks/gpu/`.\n\n" + self.HEADER + "\n" + "|" + "---|" * (self.HEADER.count(" | ") + 1) + "\n")
        text = text.rstrip("\n") + "\n" + self.row() + "\n"
        path.write_text(text)
        log(f"appended a row to {path}")
        out = os.environ.get("OUT")
        if out: shutil.copy(path, Path(out) / "RESULTS.md")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-smoke", action="store_true", help="tiny model, 64 px, a few hundred samples, CPU, < 1 min")
    p.add_argument("--time-budget", type=float, default=None, help="seconds for everything (gpu: 420, smoke: 120)")
    p.add_argument("--results-dir", default=None, help="gpu: benchmarks/gpu; smoke: a new temporary folder")
    p.add_argument("--results-md", default=None, help="the table to append a row to (gpu: benchmarks/RESULTS.md; smoke: none)")
    p.add_argument("--scale", type=float, default=None, help="synthetic world scale (gpu: 3.09 ~ 19.3k train samples)")
    p.add_argument("--world-px", type=int, default=None, help="faces drawn at this size, upsampled when cached")
    p.add_argument("--epochs", type=int, default=None, help="ViT-B-32 epochs (gpu: 13)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=None, help="(gpu: 1e-4 as in the study; smoke: 1e-2)")
    p.add_argument("--ref-steps", type=int, default=None, help="seed-style steps (gpu: 300)")
    p.add_argument("--ref-warmup", type=int, default=None, help="seed-style steps left out of the rate (gpu: 10)")
    p.add_argument("--ref-workers", type=int, default=None, help="seed-style DataLoader workers (gpu: 8)")
    p.add_argument("--large-model", default=None, help="the 1-epoch memory/throughput model (gpu: ViT-L-14)")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the card, if not in the table")
    p.add_argument("--skip", default="", help="comma-separated stages to skip: cuda_cells,plain,profile,grouped,seed_style,large")
    a = p.parse_args(argv)
    smoke = a.cpu_smoke
    a.device = "cpu" if smoke else "cuda"
    a.model = "tiny" if smoke else "ViT-B-32"
    a.image_size = 64 if smoke else 224
    a.time_budget = a.time_budget or (120.0 if smoke else 450.0)
    a.scale = a.scale or (0.05 if smoke else 3.09)
    a.world_px = a.world_px or (64 if smoke else 96)
    a.epochs = a.epochs or (1 if smoke else STUDY_EPOCHS)
    a.lr = a.lr or (1e-2 if smoke else 1e-4)
    if smoke: a.batch_size, a.eval_batch_size = min(a.batch_size, 64), min(a.eval_batch_size, 256)
    a.ref_steps = a.ref_steps or (6 if smoke else 300)
    a.ref_warmup = a.ref_warmup if a.ref_warmup is not None else (1 if smoke else 10)
    a.ref_workers = a.ref_workers if a.ref_workers is not None else (0 if smoke else 8)
    a.large_model = a.large_model or ("tiny" if smoke else "ViT-L-14")
    a.results_dir = a.results_dir or (tempfile.mkdtemp(prefix="gpu_check_smoke_") if smoke else str(ROOT / "benchmarks" / "gpu"))
    a.results_md = a.results_md or (None if smoke else str(ROOT / "benchmarks" / "RESULTS.md"))
    a.skip = {s for s in a.skip.split(",") if s}
    a.min_stage_s = 3.0 if smoke else 20.0  # a stage with less time left is skipped
    a.mem_margin = 0.8  # a batch whose probe step peaks above this share of the card's memory is halved
    # stage caps (s) and the seconds each stage leaves for the stages after it
    a.cells_budget = 60.0 if smoke else 180.0
    a.reserve_after_cells = 0.0
    a.caps = (dict(plain=30, profile=20, grouped=30, seed_style=20, large=30) if smoke else
              dict(plain=150, profile=40, grouped=120, seed_style=60, large=150))
    a.reserves = (dict(plain=14, profile=10, grouped=6, seed_style=3, large=1) if smoke else
                  dict(plain=180, profile=150, grouped=110, seed_style=60, large=10))
    # profiling stage: warm-up steps, timed/profiled steps, steps split into phases (each synchronised), table length
    a.prof_warmup, a.prof_steps, a.prof_split_steps, a.prof_top = (1, 2, 2, 8) if smoke else (5, 20, 10, 12)
    return a


def main(argv=None):
    a = parse(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; use --cpu-smoke for the CPU version")
    if not a.cpu_smoke: torch.backends.cuda.matmul.allow_tf32 = True
    else: torch.set_num_threads(1)
    c = Check(a)
    c.res["command"] = "bash benchmarks/gpu_check.sh " + " ".join(sys.argv[1:] if argv is None else argv)
    c.res["args"] = {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(a).items()}
    log(f"gpu_check ({c.res['mode']}), results -> {c.out_dir}, time budget {a.time_budget:.0f}s")
    c.environment()
    if "cuda_cells" not in a.skip: c.start_cuda_cells()           # a. runs in a subprocess while the world is built
    else: c._cells = None
    w = c.stage("world", c.world)
    c.finish_cuda_cells()
    if w["status"] == "ok":
        # b. the study's run, plain then pair-grouped; reserves keep time for the stages after each
        if "plain" not in a.skip:
            c.timed_stage("vit_b32_plain", "plain", c.engine, a.model, False, a.epochs)
        if "profile" not in a.skip:  # where a step's time goes (torch.profiler), after warm-up
            c.timed_stage("profile", "profile", c.profile)
        if "grouped" not in a.skip:
            c.timed_stage("vit_b32_grouped", "grouped", c.engine, a.model, True, a.epochs)
        # c. the seed-style loop
        if "seed_style" not in a.skip:
            c.timed_stage("seed_style", "seed_style", c.reference)
        # d. one epoch of the large model (pair-grouped; the batch halves until a step fits)
        if "large" not in a.skip:
            if a.large_model != "ViT-L-14": log(f"large-model stage: {a.large_model} instead of ViT-L-14 (CPU smoke: ViT-L-14 would take hours)")
            sizes = [a.batch_size, a.batch_size // 2, a.batch_size // 4, a.batch_size // 8]
            c.timed_stage("vit_l14", "large", c.large, a.large_model, sizes)
    c.res["summary"] = c.summary_rows()
    c.write()
    if a.results_md: c.append_results(Path(a.results_md))
    print("\n" + c.HEADER + "\n" + c.row(), flush=True)
    log(f"done: {c.out_dir / 'gpu_check.json'}")
    if hasattr(c, "work"): shutil.rmtree(c.work, ignore_errors=True)
    bad = [k for k, v in c.res["stages"].items() if v.get("status") in ("error", "fail", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
