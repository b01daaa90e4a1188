#!/usr/bin/env python
"""What each CPU stand-in sees, on the synthetic world's images: the default (`phrases-p8` recipe on `tiny-p8`: the
one-phrase captions alone, centred per aspect, no read-out term), the two trained with a linear read-out of the
features (`readout-p8` on `tiny-p8`, `readout-p16` on `tiny`) and `captions-p8` (whole captions and one-phrase
captions, no read-out term, on `tiny-p8`).

    python benchmarks/standin.py            (= `make standin`)

Per latent feature: the cross-validated ridge R² (5 folds, `pretrain.ridge_r2`, all of the world's images) from pooled
pixels, each frozen stand-in and the random-init model of each architecture. Per labeler (the 6 labelers of the
`compare` preset, its `pair` split, test answers): the Bayes ceiling and each stand-in's visible ceiling (the best
linear read-out of its frozen features given unlimited answers, `visible.visible_ceiling`), and the linear probe on its
frozen features (l2 tuned on validation, as `compare` does). Each stand-in's pretraining report (recipe, wall time)
is read from the .json beside its checkpoint. Writes `figures/standin/` (results.md, features.csv, labelers.csv);
a checkpoint that is missing is built first with `labelertok pretrain --kind <kind>`.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from labelertok.config import STANDIN_FILES   # noqa: E402  (light: no torch)

STANDINS = {kind: ROOT / f for kind, f in STANDIN_FILES.items()}   # kind -> checkpoint (the first: `make data`'s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "synthetic"), help="the synthetic world (`make data`)")
    ap.add_argument("--out", default=str(ROOT / "figures" / "standin"), help="report folder")
    a = ap.parse_args(argv)
    for kind, path in STANDINS.items():
        if not path.is_file():
            subprocess.run([str(Path(sys.executable).parent / "labelertok"), "pretrain", "--kind", kind, str(path)], check=True, cwd=ROOT)
    import numpy as np
    import pandas as pd
    import torch
    torch.set_num_threads(1)
    from labelertok.baselines import image_features
    from labelertok.probe import correct_from_p, image_rows, linear_probe, standardise, tune_l2
    from labelertok.compare import ceiling_per_sample
    from labelertok.data import load_labeler_data
    from labelertok.model import create_model
    from labelertok.paths import md_code
    from labelertok.pretrain import standin_model
    from labelertok.probing import decodability, latent_features, pixel_features
    from labelertok.report import md_table
    from labelertok.synthetic import FEATURES
    from labelertok.visible import visible_ceiling
    data = load_labeler_data(a.data, n_users=6, split="pair", seed=42, image_size=64, verbose=False)
    tr, va, te = data.split("train"), data.split("val"), data.split("test").reset_index(drop=True)
    toks = te["token"].to_numpy()
    Z = latent_features(a.data, data)
    reps = {"pixels 16×16": pixel_features(data.images, 16)}
    lab = pd.DataFrame(index=data.tokens)
    lab["Bayes ceiling"] = pd.Series(ceiling_per_sample(data, te, a.data)[0]).groupby(toks).mean()
    reports = {}
    for kind, path in STANDINS.items():
        arch = standin_model(path)
        reports[kind] = json.loads(path.with_suffix(".json").read_text())
        for name, pre in ((f"{kind} stand-in ({arch})", str(path)), (f"random init ({arch})", None)):
            if name in reps: continue
            m = create_model(arch, pre, tokens=())
            reps[name] = image_features(m, data.images)
            if pre is None: continue
            lab[f"visible ceiling, {kind}"] = pd.Series(visible_ceiling(m, data, te, a.data)[0]).groupby(toks).mean()
            f = standardise(reps[name], image_rows(tr))
            l2 = tune_l2(f, tr, va)[0]
            lab[f"linear probe, {kind}"] = pd.Series(correct_from_p(linear_probe(f, tr, te, l2), te["label"].to_numpy())).groupby(toks).mean()
    feat = decodability(reps, Z)
    feat.insert(0, "salience", [FEATURES[k][1] for k in feat.index])
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    feat.rename_axis("feature").to_csv(out / "features.csv", float_format="%.4f")
    overall = lab.assign(n=pd.Series(toks).value_counts())
    lab.loc["overall"] = [float(np.average(lab[c].to_numpy(), weights=overall["n"].reindex(data.tokens).to_numpy())) for c in lab.columns]
    lab.rename_axis("labeler").to_csv(out / "labelers.csv", float_format="%.4f")
    # generated sentences: from the tables above
    col = {kind: f"{kind} stand-in ({standin_model(path)})" for kind, path in STANDINS.items()}
    default, others = next(iter(STANDINS)), list(STANDINS)[1:]
    new, ro = col[default], col["readout-p8"]
    low = [k for k in feat.index if feat.loc[k, "salience"] > 0 and feat.loc[k, new] < 0.8]
    top = [k for k in feat.index if feat.loc[k, "salience"] >= 1.0]
    high, n_top = [k for k in top if feat.loc[k, new] >= 0.8], len(top)
    weak = [k for k in feat.index if 0 < feat.loc[k, "salience"] < 1.0]
    lines = ["# What the CPU stand-ins see", "",
             f"Generated by `make standin` (`benchmarks/standin.py`) on the synthetic world (`make data`). {len(STANDINS)} stand-ins for "
             "OpenAI's weights, pretrained on synthetic faces that are in no world:", ""]
    for kind, r in reports.items():
        lines.append(f"- `{kind}` (`labelertok pretrain --kind {kind}`): model `{r['model']}`, {r['epochs']} epochs on "
                     f"{r['n_train']} faces, whole-caption weight {r.get('caption_weight', 1.0):g}, aspect-caption weight "
                     f"{r.get('aspect_weight', 0.0):g}{' (phrases centred per aspect)' if r.get('centre') else ''}, feature read-out weight "
                     f"{r['attr_weight']:g}; {r['total_s']:.0f} s on {r['threads']} CPU thread(s).")
    lines += ["", "## Features", "",
              "Cross-validated ridge R² (5 folds, all 1,100 images) of each latent feature from each frozen embedding "
              "(salience: how much the labelers' tastes may load on it; 0 = a nuisance no labeler weighs).", "",
              md_table(["feature", "salience"] + list(reps), [[md_code(k), f"{r['salience']:.1f}"] + [f"{r[c]:.2f}" for c in reps]
                                                              for k, r in feat.iterrows()]), "",
              f"The default stand-in (`{default}`) reads `smile` at R² {feat.loc['smile', new]:.2f} ("
              + ", ".join(f"`{k}` {feat.loc['smile', col[k]]:.2f}" for k in others) + "); "
              + (f"salient features below 0.8: {', '.join(md_code(k) + f' {feat.loc[k, new]:.2f}' for k in low)}." if low
                 else "every salient feature is at 0.8 or above."), "",
              f"It reads {len(high)} of the {n_top} features of salience 1 at 0.8 or above"
              + (f" (below: {', '.join(md_code(k) + f' {feat.loc[k, new]:.2f}' for k in top if k not in high)})" if len(high) < n_top else "")
              + f"; of the features of salience 0.3 it reads {', '.join(md_code(k) + f' {feat.loc[k, new]:.2f}' for k in weak)}, "
              f"against `readout-p8`'s (trained with the read-out) {', '.join(md_code(k) + f' {feat.loc[k, ro]:.2f}' for k in weak)}.", "",
              "## Labelers", "",
              "Test answers of the `compare` preset's 6 labelers (`pair` split): the Bayes ceiling, each stand-in's visible ceiling "
              "(the best linear read-out of its frozen features given unlimited answers, fitted to the true choice "
              "probabilities) and the linear probe on its frozen features, trained on the labeler's training answers. "
              "Accuracy in %.", "",
              md_table(["labeler"] + list(lab.columns), [[md_code(t) if t != "overall" else t] + [f"{100 * v:.1f}" for v in r]
                                                          for t, r in lab.iterrows()]), ""]
    d = lab.loc["overall"]
    lines += ["Overall (all test answers), against a Bayes ceiling of " f"{100 * d['Bayes ceiling']:.1f}%: " + "; ".join(
              f"`{k}` visible ceiling {100 * d[f'visible ceiling, {k}']:.1f}%, linear probe {100 * d[f'linear probe, {k}']:.1f}%"
              for k in STANDINS) + ".", ""]
    (out / "results.md").write_text("\n".join(lines))
    print(out / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
