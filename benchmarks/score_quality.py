#!/usr/bin/env python
"""What a trained model's probabilities mean, and how well a new labeler is learned from k answers.

    python benchmarks/score_quality.py RUN [RUN ...] --labelers ID [ID ...] [--ks 25 50 100 200] [--reps 3]

For each run folder:
- calibration (`labelertok.calibration.calibration`): test ECE per labeler at the training temperature and at one
  temperature fitted on validation (writes calibration.json/.png into the run folder);
- add-labeler accuracy vs k (`labelertok.share.add_labeler`): for each labeler id in `--labelers` (labelers the run
  did not train on), the same held-out 30% of their comparisons, a new token row (learned-token runs) or the
  best-fitting known prompt (text-token runs) fitted on k of their other answers, `--reps` random draws of the k
  answers; accuracy on the held-out answers with the bootstrap 95% CI of the mean over draws. The population prompt
  on the same answers is the reference.
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


def curve(run: Path, answers: pd.DataFrame, labeler: str, ks, reps: int, n_boot: int = 1000) -> pd.DataFrame:
    sc = S.load(run, device="cpu")
    rows = []
    for k in ks:
        for r in range(reps):
            rep = share.add_labeler(sc, answers, labeler, None, k=k, seed=r, device="cpu", n_boot=n_boot, verbose=False)
            rows.append(dict(run=run.name, labeler=labeler, k=rep["n_fit"], rep=r, acc=rep["acc"], lo=rep["acc_lo"], hi=rep["acc_hi"],
                             population=rep["population_acc"],
                             n_held_out=rep["n_held_out"], method=rep["method"], token=rep["token"] or "population prompt"))
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
                  f"Held-out answers: the same 30% of each labeler's comparisons for every k. Accuracy: mean over {a.reps} "
                  "draws of the k answers (SD over draws); 95% CI: bootstrap over the held-out answers, averaged over draws.", "",
                  "| labeler | method | k answers | held-out answers | accuracy (SD) [95% CI] | population prompt |", "|---|---|---|---|---|---|"]
        for (lab, k), g in res.groupby(["labeler", "k"]):
            sd = g["acc"].std(ddof=1) if len(g) > 1 else float("nan")
            lines.append(f"| {lab} | {g['method'].iloc[0]} ({', '.join(sorted({str(t) for t in g['token']}))}) | {k} | "
                         f"{int(g['n_held_out'].iloc[0])} | {g['acc'].mean():.3f} ({sd:.3f}) [{g['lo'].mean():.3f}, {g['hi'].mean():.3f}] | "
                         f"{g['population'].iloc[0]:.3f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if a.out: a.out.write_text(text)


if __name__ == "__main__":
    main()
