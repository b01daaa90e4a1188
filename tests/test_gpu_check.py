"""The GPU check's CPU smoke: every stage runs on a tiny world and writes finite figures, and nothing in the repo changes."""
import json, math, subprocess, sys
from conftest import ROOT


def _finite(x): return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def test_gpu_check_cpu_smoke(tmp_path, env):
    results = ROOT/'benchmarks'/'RESULTS.md'
    before = results.read_text()
    out = tmp_path/'out'
    r = subprocess.run(['bash', str(ROOT/'benchmarks'/'gpu_check.sh'), '--cpu-smoke', '--results-dir', str(tmp_path/'res')],
                       env=dict(env, OUT=str(out), OMP_NUM_THREADS='1', PYTHON=sys.executable), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path/'res'/'gpu_check.json').read_text())
    st = res['stages']
    assert res['mode'] == 'cpu-smoke' and st['cuda_cells']['status'] == 'skipped'
    assert 'nbs/1_method/06_model.ipynb' in st['cuda_cells']['notebooks']  # the notebooks the GPU run will test
    assert st['world']['n_samples']['train'] > 100
    for name in ('vit_b32_plain', 'vit_b32_grouped', 'vit_l14'):
        s = st[name]
        assert s['status'] == 'ok' and s['epochs_measured'] == s['epochs_target'] == 1, (name, s)
        for k in ('run_s', 'train_s_per_epoch', 'train_images_per_s', 'train_samples_per_s', 'peak_mem_gb',
                  'train_flops_per_image', 'eval_flops_per_image', 'train_flop', 'achieved_train_tflops'):
            assert _finite(s[k]) and s[k] > 0, (name, k, s[k])
        # executed FLOPs of a LoRA step (frozen weights: no weight gradients) lie between 1x and 3x a forward pass
        assert 1 < s['train_flops_per_image'] / s['eval_flops_per_image'] < 3, s
        assert s['mfu_train'] is None  # no bf16 peak for a CPU: no invented utilisation
    # pair-grouped batches share encodings: fewer images per sample than plain batches
    gp, pl = st['vit_b32_grouped'], st['vit_b32_plain']
    assert gp['images_encoded']['train_images'] < pl['images_encoded']['train_images']
    ref = st['seed_style']
    assert ref['status'] == 'ok' and ref['steps'] >= 3
    for k in ('s_per_step', 'train_samples_per_s', 'projected_train_s_13_epochs'): assert _finite(ref[k]) and ref[k] > 0
    # the markdown report, the copies in $OUT, and RESULTS.md untouched by a smoke run
    assert '| CPU |' in (tmp_path/'res'/'gpu_check.md').read_text()
    assert {'gpu_check.json', 'gpu_check.md', 'gpu_check.log'} <= {p.name for p in out.iterdir()}
    assert len(list(out.iterdir())) <= 8
    assert results.read_text() == before
