"""Several processes (DDP over gloo on the CPU, launched with Accelerate's notebook_launcher) train like one."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import free_port, labelertok_cmd

CFG = dict(epochs=2, eval_batch_size=256, lr=2e-3, n_boot=200, progress=False, device='cpu')


def _load(world: Path):
    from labelertok.data import load_labeler_data
    return load_labeler_data(world, n_users=2, split='sample', seed=42, image_size=64, cache_dir=world.parent/'cache',
                             verbose=False)


def _batch_size(data) -> int:
    "A batch size whose last batch holds one sample: with 2 processes one of them gets an empty share of it."
    n = int((data.samples.split == 'train').sum())
    return next(b for b in range(16, n) if n % b == 1)


class Kill(Exception): pass


def _killer(epoch, step):
    def cb(event, info):
        if event == 'step' and (info['epoch'], info['step']) == (epoch, step): raise Kill(f'killed at epoch {epoch}, step {step}')
    return cb


def _run(world, out, epochs, resume=False, kill_at=None):
    "Train the tiny model in learned-token mode (one trainable row per labeler) for `epochs` (runs in every process)."
    import torch
    from labelertok.model import create_model
    from labelertok.train import TrainConfig, train
    torch.set_num_threads(1)
    data = _load(world)
    m = create_model('tiny', None, tokens=data.tokens, token_mode='learned', seed=0)
    train(data, m, TrainConfig(**{**CFG, 'epochs': epochs, 'batch_size': _batch_size(data)}), out, resume=resume,
          callbacks=[_killer(*kill_at)] if kill_at else [])


def _launch(*args):
    from accelerate import notebook_launcher
    notebook_launcher(_run, args=args, num_processes=2, use_port=str(free_port()))


def _hist(out) -> pd.DataFrame:
    return pd.read_csv(Path(out)/'history.csv').drop(columns='epoch_time_s')


def _close(a: pd.DataFrame, b: pd.DataFrame):
    assert list(a.columns) == list(b.columns) and a.epoch.tolist() == b.epoch.tolist()
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=0, atol=1e-4)


@pytest.fixture(scope='module')
def one_and_two(tmp_path_factory, tiny_world):
    "The same 2-epoch run with 1 and with 2 processes (same seed, same global batch)."
    d = tmp_path_factory.mktemp('dist')
    _run(tiny_world, d/'one', 2)
    _launch(tiny_world, d/'two', 2)
    return d


def test_two_processes_match_one(one_and_two):
    d = one_and_two
    _close(_hist(d/'one'), _hist(d/'two'))
    s1, s2 = (json.loads((d/r/'summary.json').read_text()) for r in ('one', 'two'))
    assert s2['timings']['num_processes'] == 2 and 'num_processes' not in s1['timings']
    assert s1['best_epoch'] == s2['best_epoch']
    assert abs(s1['test']['acc'] - s2['test']['acc']) < 1e-9
    assert not (d/'two'/'.lock').exists()   # released at the end
    assert list((d/'two'/'tensorboard').glob('events.out.tfevents.*'))


def test_kill_and_resume_with_two_processes(one_and_two, tiny_world):
    "The main process dies in the middle of epoch 2: the launch stops, the folder holds epochs 0-1, resume finishes it."
    d = one_and_two
    with pytest.raises(Exception):
        _launch(tiny_world, d/'resumed', 2, False, (2, 2))
    assert _hist(d/'resumed').epoch.tolist() == [0, 1]
    assert not (d/'resumed'/'.lock').exists()
    _launch(tiny_world, d/'resumed', 2, True)
    _close(_hist(d/'resumed'), _hist(d/'two'))
    assert json.loads((d/'resumed'/'summary.json').read_text())['timings']['resumed_at_epoch'] == [2]


@pytest.mark.slow
def test_run_with_two_processes_from_the_cli(tmp_path, preset, env):
    "`labelertok run PRESET -p num_processes 2`: the papermill kernel launches 2 processes; TensorBoard files appear."
    import subprocess
    out = tmp_path/'run'
    r = subprocess.run(labelertok_cmd() + ['run', str(preset), '--out-dir', str(out), '-p', 'num_processes', '2',
                                           '-p', 'fig_root', str(tmp_path/'figures')],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert pd.read_csv(out/'history.csv').epoch.tolist() == [0, 1, 2]
    s = json.loads((out/'summary.json').read_text())
    assert s['status'] == 'complete' and s['timings']['num_processes'] == 2
    assert list((out/'tensorboard').glob('events.out.tfevents.*'))
    assert (tmp_path/'figures'/'run'/'results.md').exists()   # the notebook went on to the report


def _run_mode(world, out, mode, epochs=1, resume=False, kill_at=None):
    "Train the tiny model with one of the conditioning modes of `labelertok.conditioning.MODES` (in every process)."
    import torch
    from labelertok.conditioning import MODES
    from labelertok.model import create_model
    from labelertok.train import TrainConfig, train
    torch.set_num_threads(1)
    data = _load(world)
    m = create_model('tiny', None, tokens=data.tokens, seed=0, **MODES[mode])
    train(data, m, TrainConfig(**{**CFG, 'epochs': epochs, 'batch_size': _batch_size(data)}), out, resume=resume,
          callbacks=[_killer(*kill_at)] if kill_at else [])


@pytest.mark.parametrize('mode', ['attribute_tokens', 'hybrid_probe', 'ideal_points_frozen'])
def test_conditioning_two_processes_match_one(tmp_path, tiny_world, mode):
    "Every conditioning table is used in every step (no unused-parameter error under DDP) and 2 processes train like 1."
    from accelerate import notebook_launcher
    _run_mode(tiny_world, tmp_path/'one', mode)
    notebook_launcher(_run_mode, args=(tiny_world, tmp_path/'two', mode), num_processes=2, use_port=str(free_port()))
    _close(_hist(tmp_path/'one'), _hist(tmp_path/'two'))


def test_conditioning_resume_is_exact(tmp_path, tiny_world):
    """A hybrid run whose taste heads start from the probe, stopped inside epoch 2 and resumed, ends where the
    uninterrupted run ends (tables, optimiser, RNG; the resumed run does not start its heads again)."""
    _run_mode(tiny_world, tmp_path/'full', 'hybrid_probe', epochs=2)
    with pytest.raises(Kill): _run_mode(tiny_world, tmp_path/'cut', 'hybrid_probe', epochs=2, kill_at=(2, 1))
    _run_mode(tiny_world, tmp_path/'cut', 'hybrid_probe', epochs=2, resume=True)
    _close(_hist(tmp_path/'full'), _hist(tmp_path/'cut'))
