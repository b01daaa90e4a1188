"""Using a trained model: run -> export -> load, compare reproduces the run's test accuracy, the CLI forms, add-labeler."""
import json, shutil
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch

from labelertok import calibration as C
from labelertok import score as S
from labelertok import share
from labelertok.data import ATTRIBUTES, read_study
from labelertok.model import create_model
from labelertok.tokens import user_tokens
from labelertok.train import TrainConfig, train
from labelertok.data import load_labeler_data
from conftest import ROOT

CONFIG = dict(batch_size=64, eval_batch_size=256, lr=2e-3, device="cpu", n_boot=200, progress=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "A small synthetic world (64 px) in the study's format, with enough answers from a labeler outside the top two."
    from labelertok.synthetic import make_world
    d = tmp_path_factory.mktemp("score_world") / "synthetic"
    make_world(d, scale=0.3, seed=0, image_size=64, verbose=False)
    return d


STAND_IN = ROOT / "data" / "tiny_clip_phrases.pt"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The tiny CLIP pretrained on synthetic faces (a stand-in for OpenAI's weights): the one `make data` writes, or,
    without it, a short run here of the read-out recipe (`readout-p8`, 1,200 faces, 8 epochs: about 30 s on one CPU
    thread), whose read-out term teaches it the faces in a few steps where the default captions-only recipe needs its
    full 48 epochs (about 6.5 min); so these tests never skip, and they test the commands rather than the stand-in."""
    if STAND_IN.is_file(): return STAND_IN.resolve()
    import torch
    from labelertok.pretrain import pretrain_clip
    n = torch.get_num_threads(); torch.set_num_threads(1)
    try: return pretrain_clip(tmp_path_factory.mktemp("stand_in") / "tiny_clip_short.pt", kind="readout-p8", n_images=1200, epochs=8,
                              verbose=False)
    finally: torch.set_num_threads(n)


def _arch(weights) -> str:
    "The model a stand-in checkpoint was pretrained as (random init: tiny)."
    from labelertok.pretrain import standin_model
    return "tiny" if weights is None else standin_model(weights)


def _run(world, weights, out, token_mode, epochs, cache):
    data = load_labeler_data(world, n_users=2, split="sample", image_size=64, cache_dir=cache, verbose=False)
    m = create_model(_arch(weights), None if weights is None else str(weights), tokens=user_tokens(2), token_mode=token_mode)
    train(data, m, TrainConfig(epochs=epochs, **CONFIG), out)
    return out


@pytest.fixture(scope="module")
def run(world, weights, tmp_path_factory):
    "A learned-token run (2 labelers, 3 epochs) of the tiny model: a run folder as `train` writes it."
    return _run(world, weights, tmp_path_factory.mktemp("score_runs") / "learned", "learned", 3, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def scorer(run): return S.load(run, device="cpu")


@pytest.fixture(scope="module")
def test_split(run):
    data = C.run_data(run)
    te = data.split("test")
    return te


def _compare_split(sc, df):
    p = np.zeros(len(df))
    for (tok, a), idx in df.groupby(["token", "attribute"]).indices.items():
        p[idx] = sc.compare(list(df["im1"].iloc[idx]), list(df["im2"].iloc[idx]), a, tok)
    return p


def test_compare_reproduces_test_accuracy(run, scorer, test_split):
    summary = json.loads((run / "summary.json").read_text())
    p = _compare_split(scorer, test_split)
    correct = S.correct_two_way(p, test_split["label"].to_numpy())
    assert correct.mean() == summary["test"]["acc"]
    preds = pd.read_csv(run / "test_predictions.csv")
    assert (correct.astype(int) == preds["correct"].to_numpy()).all()
    if scorer.compare_temperature == scorer.temperature:
        np.testing.assert_allclose(p, preds["p_first"].to_numpy(), atol=1e-5)


def test_probabilities_are_symmetric(scorer, test_split):
    a, b = list(test_split["im1"]), list(test_split["im2"])
    for lab in (None, "<user1>", "user2"):
        pab, pba = scorer.compare(a, b, "smart", lab), scorer.compare(b, a, "smart", lab)
        assert (pab + pba == 1.0).all()
    assert (scorer.compare(a, a, "smart", "user1") == 0.5).all()


def test_labeler_by_token_or_study_id(scorer):
    uid = scorer.card["labelers"][0]["user_id"]
    files = sorted(str(p) for p in Path(json.loads((scorer.source / "summary.json").read_text())["data"]["data_dir"]).joinpath("images").glob("*.png"))[:5]
    s = scorer.score(files, "trustworthy", "<user1>")
    assert np.array_equal(s, scorer.score(files, "trustworthy", "user1"))
    assert np.array_equal(s, scorer.score(files, "trustworthy", uid))
    assert not np.array_equal(s, scorer.score(files, "trustworthy", None))
    with pytest.raises(ValueError, match="this model knows <user1>"): scorer.score(files, "trustworthy", "nobody")
    with pytest.raises(ValueError, match=r"trained on \['attractive', 'smart', 'trustworthy'\]"): scorer.score(files, "kindness", "user1")
    r = scorer.rank(files, "smart", "user1")
    assert list(r["rank"]) == sorted(r["rank"]) and r["score"].is_monotonic_decreasing


def test_export_load_identical(run, scorer, world, weights, tmp_path):
    out = share.export(run, tmp_path / "exported")
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "labeler_tokens.safetensors", "labelertok_export.json", "README.md"} <= names
    from peft import LoraConfig
    from safetensors.torch import load_file
    cfg = LoraConfig.from_pretrained(str(out))
    assert cfg.r == 4 and cfg.lora_alpha == 1.0
    keys = list(load_file(str(out / "adapter_model.safetensors")))
    assert keys and all(k.startswith("base_model.model.") and (".lora_A.weight" in k or ".lora_B.weight" in k) for k in keys)
    from peft import PeftModel  # the adapter files load with peft itself onto a plain open_clip model
    from labelertok.model import create_base
    pm = PeftModel.from_pretrained(create_base(_arch(weights), None if weights is None else str(weights))[0], str(out))
    lora = {n.replace("base_model.model.", "").replace(".default.", ".lora."): p for n, p in pm.named_parameters() if "lora_" in n}
    own = {n: p for n, p in scorer.model.clip.named_parameters() if "lora_" in n}
    assert set(lora) == set(own) and all(torch.equal(lora[n], own[n]) for n in own)
    meta = json.loads((out / "labelertok_export.json").read_text())
    assert meta["fingerprint"] == scorer.model.fingerprint and meta["card"]["temperature"] == 0.15
    assert [u["user_id"] for u in meta["card"]["labelers"]] == [u["user_id"] for u in scorer.card["labelers"]]
    card = (out / "README.md").read_text()
    assert f"{scorer.card['test']['acc']:.4f} [" in card
    files = sorted(str(p) for p in (world / "images").glob("*.png"))[:40]
    again = S.load(out, device="cpu")
    for lab in (None, "user1", "user2"):
        for a in ATTRIBUTES: assert np.array_equal(again.score(files, a, lab), scorer.score(files, a, lab))
    other = None if weights is not None else str(STAND_IN)
    if other is None or Path(other).is_file():
        with pytest.raises(ValueError, match="exported for another base model"): S.load(out, device="cpu", pretrained=other)
    with pytest.raises(FileExistsError): share.export(run, out)


def test_calibration(run, scorer, tmp_path):
    cal = C.calibration(run, device="cpu", verbose=False)
    assert (run / "calibration.json").is_file() and (run / "calibration.png").is_file()
    assert set(cal["per_labeler"]) == {"<user1>", "<user2>"}
    assert 0 <= cal["test"]["ece_before"] <= 1 and cal["temperature_fitted"] > 0
    for r in [cal["val"], cal["test"]] + list(cal["per_labeler"].values()):   # every ECE beside its noise floor
        assert 0 < r["floor_lo"] <= r["floor"] <= r["floor_hi"] < 0.5, r
    assert cal["per_labeler"]["<user1>"]["floor"] > cal["test"]["floor"]       # fewer answers, higher floor
    v = cal["val"]   # the fitted temperature is adopted only when it beats the validation floor
    assert cal["use_fitted"] == (v["ece_before"] - v["ece_after"] > v["floor"])
    assert cal["test"]["acc"] == json.loads((run / "summary.json").read_text())["test"]["acc"]
    md = C.calibration_markdown(run)
    assert md.startswith("## Calibration") and "| `<user1>` (" in md and "noise floor" in md and "calibration.png" in md
    sc = S.load(run, device="cpu")
    assert sc.compare_temperature == (cal["temperature_fitted"] if cal["use_fitted"] else 0.15)
    (run / "calibration.json").unlink(); (run / "calibration.png").unlink()


def test_bad_input(run, scorer, world, tmp_path):
    good = str(next((world / "images").glob("*.png")))
    (tmp_path / "bad.png").write_text("not an image")
    scorer.score([good], "smart")  # cached: still counted and checked below
    with pytest.raises(ValueError, match=r"2 of 4 image files do not exist: .*gone1\.png.*gone2\.png \| 1 of 4 images could not be read: .*bad\.png"):
        scorer.score([good, str(tmp_path / "gone1.png"), str(tmp_path / "gone2.png"), str(tmp_path / "bad.png")], "smart")
    with pytest.raises(FileNotFoundError, match="1 of 2 image files do not exist"): scorer.score([good, str(tmp_path / "gone1.png")], "smart")
    with pytest.raises(ValueError, match="neither a run folder"): S.load(tmp_path, device="cpu")
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ValueError, match="unfinished run folder: missing"): S.load(tmp_path, device="cpu")


def _cli(*argv):
    from labelertok.cli import main
    return main([str(a) for a in argv])


def test_cli(run, world, tmp_path, capsys):
    imgs = sorted((world / "images").glob("*.png"))[:6]
    out = tmp_path / "scores.csv"
    assert _cli("score", run, "--labeler", "all", "--attribute", "all", "--images", *imgs[:4], "--out", out) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["image", "labeler", "attribute", "score", "rank"] and len(df) == 4 * 2 * 3
    assert set(df.groupby(["labeler", "attribute"])["rank"].min()) == {1}
    d2 = tmp_path / "folder"; d2.mkdir()
    for f in imgs: shutil.copy(f, d2 / f.name)
    assert _cli("score", run, "--attribute", "smart", "--images", d2, "--out", tmp_path / "pop.csv") == 0
    assert set(pd.read_csv(tmp_path / "pop.csv")["labeler"]) == {"population"}
    assert _cli("score", run, "--attribute", "smart", "--images", d2, "--out", tmp_path / "pop.csv") == 2  # no overwrite
    pairs = pd.DataFrame(dict(im1=[f.name for f in imgs[:3]], im2=[f.name for f in imgs[3:]], label=[2, 1, 2]))
    pairs.to_csv(d2 / "pairs.csv", index=False)
    assert _cli("score", run, "--labeler", "user1", "--attribute", "trustworthy", "--pairs", d2 / "pairs.csv", "--out", tmp_path / "p.csv") == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "95% CI" in printed and "3 labelled pairs" in printed
    p = pd.read_csv(tmp_path / "p.csv")
    assert list(p.columns) == ["im1", "im2", "label", "labeler", "attribute", "p_im1"] and p["p_im1"].between(0, 1).all()
    assert _cli("score", run, "--labeler", "zz", "--attribute", "smart", "--images", d2, "--out", tmp_path / "x.csv") == 2
    assert "this model knows" in capsys.readouterr().err
    assert _cli("export", run, tmp_path / "exp") == 0 and (tmp_path / "exp" / "README.md").is_file()
    assert _cli("score", tmp_path / "exp", "--labeler", "user1", "--attribute", "smart", "--images", d2, "--out", tmp_path / "e.csv") == 0
    assert _cli("score", run, "--labeler", "user1", "--attribute", "smart", "--images", d2, "--out", tmp_path / "r.csv") == 0
    assert pd.read_csv(tmp_path / "e.csv").equals(pd.read_csv(tmp_path / "r.csv"))


def _other_machine(world, dst):
    "A copy of the world as the study's data would arrive: no ground_truth.json, image paths of another machine."
    dst.mkdir()
    (dst / "images").symlink_to(world / "images")
    items = pd.read_excel(world / "big_compare_data.xlsx", dtype=str)
    for c in ("im1_path", "im2_path"):
        items[c] = [f"C:\\Users\\lab\\study\\data\\ffhq\\src\\{Path(p).name}" for p in items[c]]
    items.to_excel(dst / "big_compare_data.xlsx", index=False)
    shutil.copy(world / "big_compare_label.xlsx", dst / "big_compare_label.xlsx")
    return dst


def test_add_labeler_beats_chance(run, scorer, world, weights, tmp_path, capsys):
    study = _other_machine(world, tmp_path / "study")
    assert not (study / "ground_truth.json").exists()
    known = {u["user_id"] for u in scorer.card["labelers"]}
    # the labeler outside the run with the most comparisons among those whose choices are predictable at all
    # (the synthetic world's third labeler clicks nearly at random: no method beats chance on them)
    truth = json.loads((world / "ground_truth.json").read_text())["labelers"]
    new = max((u for u in truth if u["user_id"] not in known and u["bayes_acc"] >= 0.7), key=lambda u: u["n_comparisons"])["user_id"]
    rc = _cli("add-labeler", run, "--answers", study / "big_compare_label.xlsx", "--labeler", new, "--out", tmp_path / "plus")
    assert rc == 0
    said = capsys.readouterr().out   # what it does, while it does it: loading, encoding, fitting, the result
    assert all(w in said for w in ("loading", "encoding", "fitting <user3>'s own parameters", "added labeler")), said
    meta = json.loads((tmp_path / "plus" / "labelertok_export.json").read_text())
    rep = meta["added_labelers"][-1]
    assert rep["token"] == "<user3>" and rep["n_held_out"] > 0 and rep["n_fit"] > rep["n_held_out"]
    assert rep["acc_lo"] > 0.5, rep  # better than chance on answers the row never saw (interval over image pairs)
    assert rep["acc_lo"] < rep["acc"] < rep["acc_hi"] and rep["acc"] > rep["init_acc"], rep   # fitting the row helps
    plus = S.load(tmp_path / "plus", device="cpu")
    files = sorted(str(p) for p in (world / "images").glob("*.png"))[:10]
    for lab in ("user1", "user2"): assert np.array_equal(plus.score(files, "smart", lab), scorer.score(files, "smart", lab))
    assert np.array_equal(plus.score(files, "smart", new), plus.score(files, "smart", "<user3>"))
    assert "added later" in (tmp_path / "plus" / "README.md").read_text()
    with pytest.raises(ValueError, match="already known"): share.add_labeler(run, study, next(iter(known)), tmp_path / "again", device="cpu")
    with pytest.raises(ValueError, match="no answers of labeler 'nobody'"): share.add_labeler(run, study, "nobody", tmp_path / "again", device="cpu")


def test_add_labeler_text_mode(world, weights, tmp_path):
    "Text-mode tokens have no row of their own: the new labeler becomes an alias of the prompt that fits them best."
    run = _run(world, weights, tmp_path / "text", "text", 1, tmp_path / "cache")
    df = read_study(world, verbose=False)
    new = df.groupby("user_id").size().sort_values(ascending=False).index[3]
    table = df[df["user_id"] == new]  # one answers table: paths + attribute codes, as a CSV
    wide = table.pivot_table(index=["item_id", "im1", "im2"], columns="attribute", values="label", aggfunc="first").reset_index()
    for a in ATTRIBUTES:
        if a in wide: wide[a] = wide[a].map({0: 2, 1: 1})
    wide = wide.rename(columns={"im1": "im1_path", "im2": "im2_path"})
    wide["im1_path"] = wide["im1_path"].map(lambda p: "/home/other/pics_small/" + Path(p).name)
    wide["im2_path"] = wide["im2_path"].map(lambda p: "/home/other/pics_small/" + Path(p).name)
    wide.to_csv(tmp_path / "answers.csv", index=False)
    rep = share.add_labeler(run, tmp_path / "answers.csv", new, tmp_path / "plus", images_dir=world / "images", device="cpu", verbose=False)
    assert rep["method"].startswith("alias") and "text mode" in rep["reason"]
    plus = S.load(tmp_path / "plus", device="cpu")
    files = sorted(str(p) for p in (world / "images").glob("*.png"))[:5]
    assert np.array_equal(plus.score(files, "smart", new), plus.score(files, "smart", rep["token"]))
