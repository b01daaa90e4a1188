"""`labelertok sweep`: a grid of runs through papermill, resumable, every cell checked before any run starts."""
import subprocess
from pathlib import Path
from conftest import labelertok_cmd


def _sweep(args, env, cwd):
    return subprocess.run(labelertok_cmd() + ['sweep'] + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_sweep_runs_resumes_and_refuses(tmp_path, preset, env):
    out, fig = tmp_path/'runs', tmp_path/'figures'
    args = [str(preset), '--grid', 'lora_rank=2,8', '--seeds', '1', '-p', 'epochs', '1',
            '--out-dir', str(out), '--fig-root', str(fig), '--name', 'rank']
    r = _sweep(args, env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    for cell in ('lora_rank=2', 'lora_rank=8'):
        assert (out/cell/'seed42'/'test_predictions.csv').is_file()
    md = (fig/'sweeps'/'rank'/'results.md').read_text()
    assert '`lora_rank=2`' in md and '`lora_rank=8`' in md and '| ceiling |' in md
    assert (fig/'sweeps'/'rank'/'accuracy.png').is_file()
    row = next(l for l in md.splitlines() if l.startswith('| `lora_rank=8`'))
    assert '[' in row and 'n/a' not in row.split('|')[3]          # overall accuracy with its interval
    # again: both runs finished, nothing is run, the report is the same
    mtime = (out/'lora_rank=2'/'seed42'/'run.ipynb').stat().st_mtime
    r = _sweep(args, env, tmp_path)
    assert r.returncode == 0 and r.stdout.count('finished earlier') == 1 and '0 to run' in r.stdout, r.stdout
    assert (out/'lora_rank=2'/'seed42'/'run.ipynb').stat().st_mtime == mtime
    # a bad value in the last cell of the grid: refused before any run starts, nothing written
    bad = [str(preset), '--grid', 'lora_rank=2,0', '--grid', 'token_mode=text,lerned', '--seeds', '1',
           '--out-dir', str(tmp_path/'bad')]
    r = _sweep(bad, env, tmp_path)
    assert r.returncode == 2 and 'nothing was run' in r.stderr and 'lora_rank=0' in r.stderr and 'lerned' in r.stderr, r.stderr
    assert not (tmp_path/'bad').exists()


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
