"""The experiment notebooks run top to bottom with their defaults as Jupyter runs them: through nbclient, with the
kernel in the notebook's own folder (not papermill, not the CLI).

The defaults are the CPU demo on the full synthetic world (`make data`), which takes minutes. So:
- `test_defaults_from_notebook_folder` runs the notebooks' own parameters and setup cells, unchanged, from their
  folder: the default paths resolve against the repository root and the default stand-in checkpoint loads (or, on a
  checkout without `make data`, the notebook stops early saying to run it);
- `test_run_all` runs every cell, from the notebook's folder, with a cell injected after the parameters cell
  (as papermill injects one) that only shrinks the work: a tiny world and checkpoint, 2 epochs, fewer bootstrap
  draws, a temporary output folder. Every other parameter keeps its default.
The full default runs are timed outside the test suite (README, "Open the notebooks").
"""
import json, os, re
from pathlib import Path
import nbformat, pytest, yaml
from nbclient import NotebookClient
from conftest import ROOT, EXPERIMENTS

WIDGET = 'application/vnd.jupyter.widget-view+json'
DEMO_DATA = (ROOT/'data'/'synthetic'/'big_compare_label.xlsx').exists() and (ROOT/'data'/'tiny_clip_phrases.pt').exists()


@pytest.fixture
def kernel_env(monkeypatch, tmp_path):
    "The kernel inherits this process's environment: this checkout importable, the inline plot backend, a scratch image cache."
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join([str(ROOT)] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])))
    monkeypatch.delenv('MPLBACKEND', raising=False)
    monkeypatch.setenv('LABELERTOK_CACHE', str(tmp_path/'cache'))


def defaults(name: str) -> dict:
    "The values the parameters cell of `name`.ipynb assigns."
    nb = nbformat.read(EXPERIMENTS/f'{name}.ipynb', as_version=4)
    ns = {}
    exec([c for c in nb.cells if 'parameters' in c.metadata.get('tags', [])][0].source, ns)
    return {k: v for k, v in ns.items() if not k.startswith('__')}


def execute(nb, timeout=600):
    "Run `nb` like Jupyter's Run All: nbclient, the kernel started in the notebook's folder; errors are kept in the outputs."
    NotebookClient(nb, timeout=timeout, kernel_name='python3', allow_errors=False,
                   resources={'metadata': {'path': str(EXPERIMENTS)}}).execute()
    return nb


def outputs(nb, kind=None):
    return [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if kind is None or o.output_type == kind]


def text(nb) -> str:
    return ''.join(o.get('text', '') for o in outputs(nb, 'stream'))


@pytest.mark.parametrize('name,demo', [('labeler_tokens', 'two_users_demo'), ('compare', 'compare')])
def test_defaults_are_the_cpu_demo(name, demo):
    "The notebooks' defaults are the CPU demo preset; the study presets set everything the demo sets, so they inherit none of it."
    d, p = defaults(name), yaml.safe_load((EXPERIMENTS/f'{demo}.yaml').read_text())
    assert (d['data_dir'], d['model'], d['pretrained']) == ('data/synthetic', 'tiny-p8', 'data/tiny_clip_phrases.pt')
    assert d['threads'] == 1 and d['group_pairs'] is True
    if name == 'labeler_tokens':   # the 2-labeler demo exactly
        assert {k: d[k] for k in p} == p
    studies = ['two_users', 'six_users'] if name == 'labeler_tokens' else ['compare_study']
    for s in studies:
        q = yaml.safe_load((EXPERIMENTS/f'{s}.yaml').read_text())
        assert set(p) <= set(q), f'{s}.yaml would take {sorted(set(p) - set(q))} from the CPU demo defaults: set them'
        assert (q['model'], q['pretrained']) == ('ViT-B-32', 'openai')


def head(name: str) -> list:
    "The code cells of `name`.ipynb up to its setup cell, unchanged."
    nb = nbformat.read(EXPERIMENTS/f'{name}.ipynb', as_version=4)
    code = [c for c in nb.cells if c.cell_type == 'code']
    return code[:next(i for i, c in enumerate(code) if 'labelertok.paths' in c.source) + 1]


SHOW = ('import json; print("RESOLVED", json.dumps(dict(data_dir=str(data_dir), pretrained=str(pretrained), out_dir=str(out_dir), '
        'fig_root=str(fig_root), cwd=str(Path.cwd()))))')


def test_defaults_from_notebook_folder(kernel_env):
    """Both notebooks' parameters and setup cells as shipped, run from nbs/experiments/ (one kernel, one after the
    other): paths resolve against the repository root and the default stand-in checkpoint loads."""
    made = not (ROOT/'runs'/'compare_notebook').exists()
    new = nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = (head('labeler_tokens') + [new(SHOW), new('clip = create_model(model, pretrained, tokens=user_tokens(n_users), '
                                                          'device="cpu"); print("MODEL", clip.image_size)')]
                + head('compare') + [new(SHOW)])
    try:
        if DEMO_DATA:
            execute(nb, timeout=300)
            found = [json.loads(m) for m in re.findall(r'RESOLVED (.*)', text(nb))]
            assert len(found) == 2
            for r, run in zip(found, ['labeler_tokens', 'compare_notebook']):
                assert Path(r['cwd']).resolve() == EXPERIMENTS.resolve()   # the kernel ran in the notebook's folder
                assert r['data_dir'] == str(ROOT/'data'/'synthetic') and r['pretrained'] == str(ROOT/'data'/'tiny_clip_phrases.pt')
                assert r['fig_root'] == str(ROOT/'figures') and r['out_dir'] == str(ROOT/'runs'/run)
            assert 'MODEL 64' in text(nb)   # the stand-in checkpoint loads
        else:   # a checkout without `make data`: the notebook stops at once and says how to get the data
            with pytest.raises(Exception): execute(nb, timeout=300)
            err = json.dumps([o for o in outputs(nb, 'error')])
            assert 'FileNotFoundError' in err and 'make data' in err
    finally:
        d = ROOT/'runs'/'compare_notebook'
        if made and d.is_dir() and not any(d.iterdir()): d.rmdir()


INJECT = {
    'labeler_tokens': lambda w, p, t: dict(data_dir=str(w), pretrained=str(p), out_dir=str(t/'runs'/'lt'), fig_root=str(t/'figures'),
                                           epochs=2, n_boot=50),
    'compare': lambda w, p, t: dict(data_dir=str(w), pretrained=str(p), out_dir=str(t/'runs'/'cmp'), fig_root=str(t/'figures'),
                                    n_users=4, epochs=1, n_boot=50, fewshot_user='<user2>', fewshot_ks=[5, 10],
                                    fewshot_min_eval=20, token_steps=5),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', ['labeler_tokens', 'compare'])
def test_run_all(name, tmp_path, tiny_world, tiny_pretrained, kernel_env):
    "Every cell from the notebook's folder; an injected cell only shrinks the work. Results are shown inline, one line per epoch, no widgets."
    nb = nbformat.read(EXPERIMENTS/f'{name}.ipynb', as_version=4)
    over = INJECT[name](tiny_world, tiny_pretrained, tmp_path)
    i = next(i for i, c in enumerate(nb.cells) if 'parameters' in c.metadata.get('tags', []))
    cell = nbformat.v4.new_code_cell('\n'.join(f'{k} = {v!r}' for k, v in over.items()))
    cell.metadata['tags'] = ['injected-parameters']
    nb.cells.insert(i + 1, cell)
    execute(nb)
    assert not outputs(nb, 'error')
    assert not [o for o in outputs(nb) if WIDGET in o.get('data', {})], 'widgets in a non-interactive run'
    last = nb.cells[-1].outputs
    assert any('text/markdown' in o.get('data', {}) for o in last) and any('image/png' in o.get('data', {}) for o in last)
    if name == 'labeler_tokens':
        lines = [l for l in text(nb).splitlines() if l.startswith('epoch ')]
        assert [int(re.match(r'epoch +(\d+)/', l).group(1)) for l in lines] == [0, 1, 2], lines   # one line per epoch
        assert (tmp_path/'runs'/'lt'/'summary.json').exists() and (tmp_path/'figures'/'lt'/'results.md').exists()
    else:
        assert (tmp_path/'figures'/'compare_notebook'/'results.md').exists()
        assert json.loads((tmp_path/'runs'/'cmp'/'params.json').read_text())['seeds'] == [0]   # the default: one seed


@pytest.mark.parametrize('frontend', [True, False])
def test_progress_bars_only_interactive(frontend, kernel_env):
    "In an interactive frontend (allow_stdin, as JupyterLab sends) tqdm draws widget bars; under nbclient/papermill, none."
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name='python3', cwd=str(EXPERIMENTS))
    try:
        code = ('from labelertok.paths import interactive\nfrom tqdm.auto import tqdm\nprint("INTERACTIVE", interactive())\n'
                'if interactive():\n    b = tqdm(total=3, desc="epoch 1/1")\n    b.update(3); b.close()')
        msg_id = kc.execute(code, allow_stdin=frontend)
        got = []
        while True:
            m = kc.get_iopub_msg(timeout=60)
            if m['parent_header'].get('msg_id') != msg_id: continue
            if m['msg_type'] == 'status' and m['content']['execution_state'] == 'idle': break
            got.append(m)
        out = ''.join(m['content'].get('text', '') for m in got if m['msg_type'] == 'stream')
        assert f'INTERACTIVE {frontend}' in out, (out, [m['content'] for m in got if m['msg_type'] == 'error'])
        widgets = [m for m in got if m['msg_type'] == 'display_data' and WIDGET in m['content']['data']]
        assert bool(widgets) == frontend
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)
