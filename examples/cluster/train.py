"""Train an experiment preset in every process of `accelerate launch` (several GPUs, several machines).

    accelerate launch --config_file examples/cluster/accelerate.yaml examples/cluster/train.py two_users \\
        -p data_dir /path/to/study --out-dir runs/two_users_ddp
    labelertok report runs/two_users_ddp          # the report, once training is done

Every process reads the same preset (and `-p key value` overrides), loads the data and builds the model the same
way; `labelertok.train.train` shares each batch among the processes and only the main process writes the run folder
(history.csv, summary.json, checkpoints, TensorBoard files). Resume with `-p resume true`, as in a notebook run.
"""
import argparse
from dataclasses import fields

import torch
from accelerate import PartialState

from labelertok.experiment import parse_overrides, preset_params
from labelertok.data import load_labeler_data
from labelertok.model import ModelConfig, create_model
from labelertok.tokens import user_tokens
from labelertok.train import TrainConfig, train


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("preset", help="a preset name (labelertok run --list) or a .yaml file")
    ap.add_argument("-p", nargs=2, action="append", metavar=("KEY", "VALUE"), help="override a preset parameter")
    ap.add_argument("--out-dir", help="run folder (default runs/<preset>)")
    a = ap.parse_args(argv)
    p = preset_params(a.preset, parse_overrides(a.p), a.out_dir)
    if p.get("threads"): torch.set_num_threads(int(p["threads"]))
    model_cfg = ModelConfig(**{f.name: p[f.name] for f in fields(ModelConfig) if f.name in p},
                            tokens=user_tokens(p["n_users"]))
    model = create_model(model_cfg)
    with PartialState().main_process_first():  # the main process decodes the images into the cache, the others read it
        data = load_labeler_data(p["data_dir"], n_users=p["n_users"], split=p["split"], seed=p["seed"],
                                 image_size=model.image_size, images_dir=p.get("images_dir"), cache_dir=p.get("cache_dir"))
    config = TrainConfig(**{f.name: p[f.name] for f in fields(TrainConfig) if f.name in p and f.name != "device"},
                         progress=False)
    train(data, model, config, p["out_dir"], resume=bool(p.get("resume")))


if __name__ == "__main__":
    main()
