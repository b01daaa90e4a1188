#!/usr/bin/env python
"""What a trained model's probabilities mean, and how well a new labeler is learned from k answers.

    python benchmarks/score_quality.py RUN [RUN ...] --labelers ID [ID ...] [--ks 25 50 100 200] [--reps 3]

For each run folder:
- calibration (`labelertok.calibration.calibration`): test ECE per labeler at the training temperature and at one
  temperature fitted on validation (writes calibration.json/.png into the run folder);
- add-labeler accuracy vs k (`labelertok.share.add_labeler`): for each labeler id in `--labelers` (labelers the run
  did not train on), ONE held-out 30% of their comparisons for every k and draw, without the image pairs the run
  trained on through other labelers (no held-out pair was seen), a new token row (learned-token runs) or the
  best-fitting known prompt (text-token runs) fitted on k of their other answers, `--reps` random draws of the k
  answers; accuracy on the held-out answers with a 95% interval over draws x held-out image pairs
  (`labelertok.intervals.crossed_interval`). k = 0 is the new row's initialisation (learned tokens); the population
  prompt on the same answers is shown beside it.
Prints markdown tables and writes them to --out (default: stdout only).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labelertok import calibration as C  # noqa: E402
from labelertok import score as S  # noqa: E402
from labelertok import share  # noqa: E402
from labelertok.data import read_study  # noqa: E402
from labelertok.intervals import crossed_interval  # noqa: E402


def trained_pairs(run: Path) -> set:
    "Image pairs (file names) in the run's training split, through any labeler."
    tr = C.run_data(run).split("train")
    return {frozenset((Path(str(a)).name, Path(str(b)).name)) for a, b in zip(tr["im1"], tr["im2"])}


def curve(run: Path, answers: pd.DataFrame, labeler: str, ks, reps: int) -> pd.DataFrame:
    "One row per (k, draw) with the per-answer correctness on the one shared hold-out."
    sc = S.load(run, device="cpu")
    seen = trained_pairs(run)
    rows = []
    for k in ks:
        for r in range(reps):
            rep = share.add_labeler(sc, answers, labeler, None, k=k, seed=0, draw_seed=r, device="cpu", verbose=False,
                                    exclude_pairs=seen)
            rows.append(dict(run=run.name, labeler=labeler, k=rep["n_fit"], rep=r, acc=rep["acc"], init=rep.get("init_acc"),
                             population=rep["population_acc"], n_held_out=rep["n_held_out"], method=rep["method"],
                             token=rep["token"] or "population prompt", correct=rep["correct"], pairs=rep["held_out_pairs"]))
    return pd.DataFrame(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--labelers", nargs="+", required=True, help="study ids of labelers the runs did not train on")
    p.add_argument("--ks", nargs="+", type=int, default=[25, 50, 100, 200])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    lines = []
    for run in a.runs:
        cal = C.calibration(run, device="cpu", verbose=False)
        lines += [f"### {run.name}: calibration (test split)", "", C.calibration_markdown(run, image=None).split("\n", 2)[2]]
    for run in a.runs:
        data_dir = S._run_card(run)["data"]["data_dir"]
        answers = read_study(data_dir, verbose=False)
        res = pd.concat([curve(run, answers, lab, a.ks, a.reps) for lab in a.labelers], ignore_index=True)
        lines += [f"### {run.name}: add-labeler accuracy vs k", "",
                  f"Held-out answers: one 30% of each labeler's comparisons for every k and draw, without image pairs the run "
                  f"trained on through other labelers. Accuracy: mean over {a.reps} draws of the k answers (SD over draws); "
                  "95% interval over draws x held-out image pairs. k = 0: the new row's initialisation.", "",
                  "| labeler | method | k answers | held-out answers | accuracy (SD) [95% interval] | k = 0 (initial row) | population prompt |",
                  "|---|---|---|---|---|---|---|"]
        for (lab, k), g in res.groupby(["labeler", "k"]):
            sd = g["acc"].std(ddof=1) if len(g) > 1 else float("nan")
            ci = crossed_interval([list(c) for c in g["correct"]], list(g["pairs"].iloc[0]))
            init = g["init"].iloc[0]
            lines.append(f"| {lab} | {g['method'].iloc[0]} ({', '.join(sorted({str(t) for t in g['token']}))}) | {k} | "
                         f"{int(g['n_held_out'].iloc[0])} | {g['acc'].mean():.3f} ({sd:.3f}) [{ci['lo']:.3f}, {ci['hi']:.3f}] | "
                         f"{'–' if init is None or init != init else f'{init:.3f}'} | {g['population'].iloc[0]:.3f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if a.out: a.out.write_text(text)


if __name__ == "__main__":
    main()
