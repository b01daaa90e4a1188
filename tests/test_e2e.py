"""End to end: the experiment notebook through papermill and `labelertok run`, the run-folder contract, the report."""
import json, re, shutil, sys
from pathlib import Path
import nbformat, pandas as pd, pytest, yaml
from conftest import EXPERIMENTS, NOTEBOOK, ROOT, TINY_PARAMS, labelertok_cmd, run

ATTRS = ['attractive', 'smart', 'trustworthy']
NOTEBOOK_PARAMS = ['data_dir', 'images_dir', 'n_users', 'epochs', 'batch_size', 'eval_batch_size', 'lr', 'weight_decay',
                   'lora_rank', 'lora_alpha', 'temperature', 'model', 'pretrained', 'token_mode', 'split', 'seed',
                   'device', 'resume', 'out_dir', 'cache_dir', 'group_pairs', 'fig_root', 'compile']


def parameters_cell(nb):
    cells = [c for c in nb.cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(cells) == 1, ("the experiment notebook needs exactly one cell tagged 'parameters' "
                             "(nbdev_clean strips cell tags unless settings.ini has allowed_cell_metadata_keys = tags)")
    return cells[0]


def notebook_parameters() -> set:
    "Parameter names as papermill itself parses them from the tagged cell (every assignment line must parse)."
    import papermill as pm
    src = parameters_cell(nbformat.read(NOTEBOOK, as_version=4)).source
    assigned = set(re.findall(r'^(\w+)\s*=', src, flags=re.M))
    parsed = set(pm.inspect_notebook(str(NOTEBOOK)))
    assert parsed == assigned, f'papermill cannot parse the parameter lines of {sorted(assigned - parsed)}'
    return parsed


def test_parameters_cell():
    names = notebook_parameters()
    assert set(NOTEBOOK_PARAMS) <= names, sorted(set(NOTEBOOK_PARAMS) - names)


@pytest.mark.parametrize('name', ['two_users', 'six_users', 'two_users_demo', 'six_users_demo'])
def test_presets(name):
    names = notebook_parameters()
    p = yaml.safe_load((EXPERIMENTS/f'{name}.yaml').read_text())
    assert set(p) <= names, f'{name}.yaml sets unknown parameters {sorted(set(p) - names)}'
    assert isinstance(p['lr'], float), f"lr must be a YAML float (write 1.0e-4, not 1e-4), got {p['lr']!r}"
    six = name.startswith('six')
    assert (p['n_users'], p['epochs'], p['split'], p['token_mode']) == ((6, 11) if six else (2, 13)) + ('sample', 'text')
    assert (p['lora_rank'], p['lora_alpha'], p['temperature']) == (4, 1.0, 0.15)
    if name.endswith('_demo'):
        assert (p['model'], p['pretrained'], p['data_dir']) == ('tiny-p8', 'data/tiny_clip_phrases.pt', 'data/synthetic')
    else:
        assert (p['model'], p['pretrained'], p['lr'], p['data_dir']) == ('ViT-B-32', 'openai', 1e-4, None)
        assert (p['batch_size'], p['eval_batch_size']) == ((128, 256) if six else (256, 512))


def check_run_folder(out: Path, epochs: int, n_users: int = 2, pretrained=None, model: str = 'tiny'):
    "The engine's output contract plus what the experiment notebook adds."
    h = pd.read_csv(out/'history.csv')
    assert list(h.columns[:5]) == ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc']
    toks = [f'user{i+1}' for i in range(n_users)]
    need = ([f'val_acc_{t}' for t in toks] + [f'val_acc_{a}' for a in ATTRS] + [f'val_acc_{t}_{a}' for t in toks for a in ATTRS]
            + ['val_acc_lo', 'val_acc_hi'] + [f'val_acc_{t}_lo' for t in toks] + [f'val_acc_{a}_hi' for a in ATTRS] + ['epoch_time_s'])
    assert not set(need) - set(h.columns), sorted(set(need) - set(h.columns))
    assert h.epoch.tolist() == list(range(epochs + 1))   # epoch 0 = before training
    accs = h[[c for c in h.columns if c.startswith('val_acc')]].to_numpy()
    assert ((accs >= 0) & (accs <= 1)).all()
    assert (h.val_acc_lo <= h.val_acc).all() and (h.val_acc <= h.val_acc_hi).all()

    s = json.loads((out/'summary.json').read_text())
    for k in ['users', 'n_samples', 'best_epoch', 'best_val_acc', 'test', 'config', 'model', 'data', 'timings']: assert k in s, k
    assert [u['token'] for u in s['users']] == [f'<{t}>' for t in toks]
    assert all(re.fullmatch(r'[0-9a-f]{24}', u['user_id']) and u['n_labels'] > 0 for u in s['users'])
    assert set(s['n_samples']) == {'train', 'val', 'test'} and min(s['n_samples'].values()) > 0
    assert 0 <= s['best_epoch'] <= epochs
    assert s['best_val_acc'] == pytest.approx(h.val_acc[h.epoch == s['best_epoch']].item())
    t = s['test']
    for k in ['loss', 'acc', 'acc_lo', 'acc_hi', 'per_user', 'per_user_ci', 'per_attribute', 'per_user_attribute']: assert k in t, k
    assert t['acc_lo'] <= t['acc'] <= t['acc_hi'] and len(t['per_user']) == n_users and set(t['per_attribute']) == set(ATTRS)
    assert s['config']['epochs'] == epochs
    for k in ['name', 'pretrained', 'lora_layers', 'trainable_params', 'token_mode']: assert k in s['model'], k
    assert (s['model']['name'], s['model']['pretrained'], s['model']['token_mode']) == (model, pretrained, 'text')
    assert s['model']['lora_layers'] > 0
    for k in ['data_dir', 'split', 'seed']: assert k in s['data'], k

    for c in ('best', 'last'): assert (out/'checkpoints'/c).is_dir() and any((out/'checkpoints'/c).iterdir()), c
    from labelertok.model import load_model
    assert load_model(out/'checkpoints'/'best').tokens == [f'<{t}>' for t in toks]
    p = json.loads((out/'params.json').read_text())
    assert p['epochs'] == epochs and p['n_users'] == n_users

    cal = json.loads((out/'calibration.json').read_text())   # the notebook calibrates the best weights on the test split
    assert set(cal['per_labeler']) == {f'<{t}>' for t in toks} and cal['test']['n'] == s['n_samples']['test']
    assert 0 <= cal['test']['ece_after'] <= 1 and cal['temperature_fitted'] > 0 and (out/'calibration.png').stat().st_size > 5000
    nb = nbformat.read(out/'run.ipynb', as_version=4)
    assert any('injected-parameters' in c.metadata.get('tags', []) for c in nb.cells)
    assert not [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.get('output_type') == 'error']


def check_report(fig_dir: Path):
    md = (fig_dir/'results.md').read_text()
    assert '| Epoch | Train Loss | Train Acc | Val Loss | Val Acc | User 1 Acc | User 2 Acc |' in md
    assert '| User Token | User ID | Accuracy |' in md
    assert '## Key findings' in md and '**Peak validation accuracy**' in md
    assert '## Calibration' in md and '| labeler | test answers | accuracy | ECE at training T | ECE at fitted T | noise floor [95%] |' in md
    assert '![calibration](calibration.png)' in md
    rows = [r.strip('|').split('|') for r in md.split('| Epoch |')[1].split('\n\n')[0].splitlines()[2:]]
    for j, col in enumerate(['Train Loss', 'Train Acc', 'Val Loss', 'Val Acc', 'User 1 Acc', 'User 2 Acc'], start=1):
        assert any('**' in r[j] for r in rows), f'no bold best value in column {col}'
    pngs = sorted(fig_dir.glob('*.png'))
    assert len(pngs) >= 3 and all(p.stat().st_size > 5000 for p in pngs), pngs
    for p in pngs: assert f']({p.name})' in md


@pytest.mark.slow
def test_cli_run(tmp_path, preset, env):
    "`labelertok run <yaml> --out-dir ...`: the console-script path, the contract, the report."
    out, figs = tmp_path/'runs'/'tiny', tmp_path/'figures'
    r = run(labelertok_cmd() + ['run', str(preset), '--out-dir', str(out), '-p', 'fig_root', str(figs)], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    check_run_folder(out, epochs=TINY_PARAMS['epochs'])
    check_report(figs/'tiny')
    assert not (figs/'tiny'/'tiny.ipynb').exists()   # the run's notebook is written only when it ends
    # `labelertok report` on the finished run: the same report plus the executed notebook beside it, without this machine's paths
    r = run(labelertok_cmd() + ['report', str(out), '--fig-root', str(figs)], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    check_report(figs/'tiny')
    pub = (figs/'tiny'/'tiny.ipynb').read_text()
    assert str(tmp_path) not in pub and 'runs/tiny' in pub
    assert any('injected-parameters' in c.metadata.get('tags', []) for c in nbformat.reads(pub, as_version=4).cells)
    # an existing run folder is never silently replaced
    r = run(labelertok_cmd() + ['run', str(preset), '--out-dir', str(out)], env, tmp_path)
    assert r.returncode == 2 and 'resume' in r.stderr and (out/'history.csv').exists()
    # a run outside the repository gets its report beside it: the repository's figures/ gets no folder
    r = run(labelertok_cmd() + ['report', str(out)], env, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out.parent/'figures'/'tiny'/'results.md').is_file() and not (ROOT/'figures'/'tiny').exists()


def test_cpu_preset_for_your_data():
    "`your_data_cpu`: the real model and weights, on a CPU, on the leak-free split, with learned tokens; checked as a run would be."
    from labelertok.experiment import check_parameters, preset_params
    p = yaml.safe_load((EXPERIMENTS/'your_data_cpu.yaml').read_text())
    assert set(p) <= notebook_parameters() and p['data_dir'] is None
    assert (p['model'], p['pretrained'], p['device'], p['split'], p['token_mode']) == ('ViT-B-32', 'openai', 'cpu', 'pair', 'learned')
    # every other value passes the run's checks (OpenAI's weights cannot be fetched here: checked with no weights)
    assert check_parameters(preset_params('your_data_cpu', {'data_dir': str(ROOT/'data'), 'pretrained': None}))


@pytest.mark.slow
def test_papermill_with_bundled_preset(tmp_path, tiny_world, tiny_pretrained, env):
    "The documented raw path: papermill labeler_tokens.ipynb run.ipynb -f <preset>.yaml -p data_dir ..."
    out, figs = tmp_path/'runs'/'two_users_demo', tmp_path/'figures'
    ps = dict(data_dir=tiny_world, pretrained=tiny_pretrained, out_dir=out, fig_root=figs, epochs=1, batch_size=64,
              device='cpu', n_boot=100)
    cmd = [sys.executable, '-m', 'papermill', str(NOTEBOOK), str(out/'run.ipynb'), '-f', str(EXPERIMENTS/'two_users_demo.yaml'),
           '--no-progress-bar'] + [x for k, v in ps.items() for x in ('-p', k, str(v))]
    out.mkdir(parents=True)   # papermill does not create the output notebook's folder
    r = run(cmd, env, tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    check_run_folder(out, epochs=1, pretrained=str(tiny_pretrained), model='tiny-p8')   # the bundled presets' stand-in
    check_report(figs/'two_users_demo')


def test_failed_run_keeps_notebook(tmp_path, preset, tiny_world, env):
    "A bad data folder is refused before a kernel starts; a run failing inside the notebook keeps it as run.failed.ipynb."
    out = tmp_path/'runs'/'broken'
    r = run(labelertok_cmd() + ['run', str(preset), '--out-dir', str(out), '-p', 'data_dir', str(tmp_path/'no_such_data')], env, tmp_path)
    assert r.returncode == 2 and 'no_such_data' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-3000:]
    assert not out.exists()
    # an image whose header reads but whose pixels are cut off fails in the notebook, when the cache decodes it
    study = tmp_path/'study'; shutil.copytree(tiny_world, study)
    png = study/'images'/'00001.png'; png.write_bytes(png.read_bytes()[:png.stat().st_size//2])
    r = run(labelertok_cmd() + ['run', str(preset), '--out-dir', str(out), '-p', 'data_dir', str(study)], env, tmp_path)
    assert r.returncode == 1, r.stderr[-3000:]
    assert 'labelertok run failed' in r.stderr and 'run.failed.ipynb' in r.stderr
    assert not (out/'run.ipynb').exists() and not (out/'run.running.ipynb').exists()
    nb = nbformat.read(out/'run.failed.ipynb', as_version=4)
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert errors and '00001.png' in json.dumps(errors[0])


@pytest.mark.slow
def test_compare_tiny(tmp_path, tiny_world, tiny_pretrained, env):
    "`labelertok compare` (nbs/experiments/compare.ipynb) end to end on a tiny world: every method, leakage, few-shot, report."
    out, figs = tmp_path/'runs'/'cmp', tmp_path/'figures'
    ps = dict(data_dir=tiny_world, pretrained=tiny_pretrained, fig_root=figs, n_users=4, seeds=2, epochs=1, leakage_epochs=1, fewshot_epochs=1,
              batch_size=64, eval_batch_size=256, n_boot=50, fewshot_user='<user2>', fewshot_ks='[5, 10]',
              fewshot_reps=2, fewshot_min_eval=20, token_steps=5, device='cpu')
    r = run(labelertok_cmd() + ['compare', '--out-dir', str(out)] + [x for k, v in ps.items() for x in ('-p', k, str(v))],
            env, tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    md = (figs/'compare'/'results.md').read_text()
    from labelertok.baselines import METHODS
    table = md.split('## All methods')[1].split('##')[0]
    for m in METHODS: assert f'\n| {m} |' in table, m
    for section in ['## Personalisation gain per labeler', '## Checks', '## What the backbone can see',
                    '## Leakage', '## A new labeler from few answers', '## Taste map']: assert section in md, section
    vis = md.split('## What the backbone can see')[1].split('\n## ')[0]
    assert '| `smile` |' in vis and 'labeler tokens (learned) (trained, seed 0)' in vis
    for png in ['per_labeler.png', 'fewshot.png', 'taste_map.png']: assert (figs/'compare'/png).stat().st_size > 5000, png
    assert json.loads((out/'params.json').read_text())['seeds'] == [0, 1]
    assert set(pd.read_csv(out/'leakage.csv').split) == {'sample', 'pair', 'image'}


@pytest.mark.slow
def test_conditioning_end_to_end(tmp_path, tiny_world, env):
    """A labeler conditioning through the command line: `labelertok run` with `conditioning`, `image_tower` and
    `taste_start` (the hybrid's heads start from the linear probe), then `score`, `export` and `add-labeler` on what it
    trained (the tables travel with the model; the added labeler's heads start from a probe on their own answers)."""
    from labelertok.data import read_study
    import yaml
    p = tmp_path/'cond.yaml'
    p.write_text(yaml.safe_dump(dict(TINY_PARAMS, data_dir=str(tiny_world), epochs=1, conditioning='hybrid',
                                     image_tower='frozen', taste_start='probe')))
    out = tmp_path/'runs'/'cond'
    r = run(labelertok_cmd() + ['run', str(p), '--out-dir', str(out), '-p', 'fig_root', str(tmp_path/'figures')], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    cfg = json.loads((out/'summary.json').read_text())['model']['config']
    assert (cfg['conditioning'], cfg['image_tower'], cfg['attributes']) == ('hybrid', 'frozen', ['attractive', 'smart', 'trustworthy'])
    summ = json.loads((out/'summary.json').read_text())
    assert cfg['taste_start'] == 'probe' and sorted(summ['taste_start']['rows']) == ['<user1>', '<user2>'], summ.get('taste_start')
    imgs = sorted((tiny_world/'images').glob('*.png'))[:3]
    r = run(labelertok_cmd() + ['score', out, '--labeler', 'all', '--attribute', 'smart', '--images', *imgs,
                                '--out', tmp_path/'scores.csv', '--device', 'cpu'], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    run_scores = pd.read_csv(tmp_path/'scores.csv')
    r = run(labelertok_cmd() + ['export', out, tmp_path/'exported'], env, tmp_path)
    assert r.returncode == 0 and (tmp_path/'exported'/'labeler_tables.safetensors').is_file(), r.stderr[-4000:]
    r = run(labelertok_cmd() + ['score', tmp_path/'exported', '--labeler', 'all', '--attribute', 'smart', '--images', *imgs,
                                '--out', tmp_path/'scores_exported.csv', '--device', 'cpu'], env, tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path/'scores_exported.csv'), run_scores)
    new = read_study(tiny_world, verbose=False)['user_id'].value_counts().index[3]   # not one of the 2 trained labelers
    r = run(labelertok_cmd() + ['add-labeler', tmp_path/'exported', '--answers', tiny_world, '--labeler', new,
                                '--out', tmp_path/'plus', '--device', 'cpu'], env, tmp_path)
    assert r.returncode == 0 and 'own hybrid parameters' not in r.stderr, r.stdout[-2000:] + r.stderr[-4000:]
    card = json.loads((tmp_path/'plus'/'labelertok_export.json').read_text())['card']
    assert card['added_labelers'][0]['method'] == 'own hybrid parameters' and len(card['labelers']) == 3
