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
