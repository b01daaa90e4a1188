"""`labelertok sweep`: a grid of runs through papermill, resumable, every cell checked before any run starts."""
import subprocess
import pytest
from pathlib import Path
from conftest import free_port, labelertok_cmd


def _sweep(args, env, cwd):
    return subprocess.run(labelertok_cmd() + ['sweep'] + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_sweep_runs_resumes_and_refuses(tmp_path, preset, env):
    out, fig = tmp_path/'runs', tmp_path/'figures'
    args = [str(preset), '--grid', 'lora_rank=2,8', '--seeds', '1', '-p', 'epochs', '1',
            '--out-dir', str(out), '--fig-root', str(fig), '--name', 'rank']
    r = _sweep(args + ['--jobs', '2'], env, tmp_path)   # both cells side by side
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    for cell in ('lora_rank=2', 'lora_rank=8'):
        assert (out/cell/'seed42'/'test_predictions.csv').is_file()
    md = (fig/'sweeps'/'rank'/'results.md').read_text()
    assert '`lora_rank=2`' in md and '`lora_rank=8`' in md and '| Bayes ceiling |' in md
    assert '| visible ceiling |' in md and '## Gap closed against the visible ceiling' in md   # the frozen base model's
    assert '## Conclusion (generated from the intervals above)' in md and '- `lora_rank=8`: overall ' in md
    assert (fig/'sweeps'/'rank'/'accuracy.png').is_file()
    row = next(l for l in md.splitlines() if l.startswith('| `lora_rank=8`'))
    assert '[' in row and 'n/a' not in row.split('|')[3]          # overall accuracy with its interval
    # again: both runs finished, nothing is run
    mtime = (out/'lora_rank=2'/'seed42'/'run.ipynb').stat().st_mtime
    r = _sweep(args, env, tmp_path)
    assert r.returncode == 0 and r.stdout.count('finished earlier') == 1 and '0 to run' in r.stdout, r.stdout
    assert (out/'lora_rank=2'/'seed42'/'run.ipynb').stat().st_mtime == mtime
    # a cell that fails when it runs (rank 0 in text mode: nothing to train) is reported; the others stay in the report
    r = _sweep([a if a != 'lora_rank=2,8' else 'lora_rank=2,8,0' for a in args], env, tmp_path)
    assert r.returncode == 1 and '2 finished earlier, 1 to run' in r.stdout and 'lora_rank=0 seed 42: failed' in r.stdout, r.stdout
    md = (fig/'sweeps'/'rank'/'results.md').read_text()
    assert '## Failed runs' in md and 'no trainable parameters' in md and '| `lora_rank=8`' in md
    assert (out/'lora_rank=0'/'seed42'/'run.failed.ipynb').is_file()
    assert (out/'lora_rank=2'/'seed42'/'run.ipynb').stat().st_mtime == mtime
    # a bad value in the last cell of the grid: refused before any run starts, nothing written
    bad = [str(preset), '--grid', 'lora_rank=2,0', '--grid', 'token_mode=text,lerned', '--seeds', '1',
           '--out-dir', str(tmp_path/'bad')]
    r = _sweep(bad, env, tmp_path)
    assert r.returncode == 2 and 'nothing was run' in r.stderr and 'lora_rank=0' in r.stderr and 'lerned' in r.stderr, r.stderr
    assert not (tmp_path/'bad').exists()


@pytest.mark.slow
def test_visual_tokens_learned_temperature_run(tmp_path, preset, tiny_world, env):
    "Visual labeler tokens + per-labeler temperatures: a run trains, saves, resumes, reports and scores."
    import json
    out = tmp_path/'vt'
    run = lambda *extra: subprocess.run(labelertok_cmd() + ['run', str(preset), '--out-dir', str(out), '-p', 'visual_tokens', '2',
                                        '-p', 'labeler_temperature', 'learned', '-p', 'token_mode', 'learned',
                                        '-p', 'fig_root', str(tmp_path/'fig'), *extra],
                                        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    r = run('-p', 'epochs', '1')
    assert r.returncode == 0, r.stderr[-3000:]
    r = run('-p', 'epochs', '2', '-p', 'resume', 'true')
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out/'summary.json').read_text())
    assert s['completed_epochs'] == 2 and s['timings']['resumed_at_epoch'] == [2] and s['model']['config']['visual_tokens'] == 2
    assert set(s['labeler_temperatures']) == {'<user1>', '<user2>'} and all(t > 0 for t in s['labeler_temperatures'].values())
    md = (tmp_path/'fig'/'vt'/'results.md').read_text()
    assert 'Learned temperature' in md and '2 visual tokens per labeler' in md
    csv = tmp_path/'scores.csv'
    r = subprocess.run(labelertok_cmd() + ['score', str(out), '--labeler', 'user1', '--attribute', 'smart',
                                           '--images', str(tiny_world/'images'), '--out', str(csv), '--device', 'cpu'],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and csv.read_text().count('\n') > 10, r.stderr[-2000:]


def _train_vt(world, out, epochs):
    "Tiny run with visual tokens and learned per-labeler temperatures (in every process of a launch)."
    import torch
    from labelertok.data import load_labeler_data
    from labelertok.model import create_model
    from labelertok.train import TrainConfig, train
    torch.set_num_threads(1)
    data = load_labeler_data(world, n_users=2, split='sample', seed=42, image_size=64, cache_dir=world.parent/'cache', verbose=False)
    m = create_model('tiny', None, tokens=data.tokens, token_mode='learned', seed=0, visual_tokens=2)
    train(data, m, TrainConfig(epochs=epochs, batch_size=48, eval_batch_size=256, lr=2e-3, n_boot=50, progress=False,
                               device='cpu', report_to='none', labeler_temperature='learned'), out)


def test_visual_tokens_and_temperatures_with_two_processes(tmp_path, tiny_world):
    "DDP (2 CPU processes, gloo): the per-labeler tables are one shared parameter each; the history matches one process."
    import json
    import numpy as np, pandas as pd
    from accelerate import notebook_launcher
    _train_vt(tiny_world, tmp_path/'one', 1)
    notebook_launcher(_train_vt, args=(tiny_world, tmp_path/'two', 1), num_processes=2, use_port=str(free_port()))
    h1, h2 = (pd.read_csv(tmp_path/r/'history.csv').drop(columns='epoch_time_s') for r in ('one', 'two'))
    np.testing.assert_allclose(h1.to_numpy(float), h2.to_numpy(float), rtol=0, atol=1e-4)
    t1, t2 = (json.loads((tmp_path/r/'summary.json').read_text())['labeler_temperatures'] for r in ('one', 'two'))
    assert t1.keys() == t2.keys() and all(abs(t1[k] - t2[k]) < 1e-5 for k in t1)


@pytest.mark.slow
def test_sweep_on_the_study_format(tmp_path, study_world, env):
    "Data without ground truth: the ceilings come from test–retest agreement (or n/a), the table is written."
    import yaml
    from conftest import TINY_PARAMS
    preset = tmp_path/'study.yaml'
    preset.write_text(yaml.safe_dump(dict(TINY_PARAMS, data_dir=str(study_world), epochs=1)))
    fig = tmp_path/'figures'
    r = _sweep([str(preset), '--grid', 'split=pair', '--seeds', '1', '--out-dir', str(tmp_path/'runs'), '--fig-root', str(fig)],
               env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    md = (fig/'sweeps'/'split'/'results.md').read_text()
    assert "test–retest agreement" in md and 'ground_truth' not in md
    for row in ('| lower bound (agreement) |', '| upper bound (implied) |'):   # bounds, never "the ceiling"
        cells = next(l for l in md.splitlines() if l.startswith(row)).split('|')[4:6]   # the two labelers
        assert any(c.strip() not in ('', 'n/a') for c in cells), md
    assert '| ceiling |' not in md and '| Bayes ceiling |' not in md
    assert '| visible ceiling (estimate) |' in md and 'an estimate' in md   # no ground truth: the probe curve's extrapolation
