"""Nothing lost, nothing silent: `labelertok run` refuses bad input before a kernel starts and before an existing run is
touched, replaces a run only once the new one has finished, and never loses a finished run's notebook.

In-process and kernel-free (papermill's executor is replaced where a run must "happen"), so the whole file takes seconds."""
import glob, json, os, shutil, tempfile
from pathlib import Path
import nbformat, pytest, yaml
import papermill as pm
from conftest import NOTEBOOK, TINY_PARAMS
from labelertok.cli import main
from labelertok.runs import RUN_MARKER, mark_run_folder


@pytest.fixture
def world(tmp_path, tiny_world) -> Path:
    "A private copy of the tiny world (tests may damage it)."
    d = tmp_path/'study'
    shutil.copytree(tiny_world, d)
    return d


@pytest.fixture
def tiny_yaml(tmp_path, world) -> Path:
    p = tmp_path/'tiny.yaml'
    p.write_text(yaml.safe_dump(dict(TINY_PARAMS, data_dir=str(world))))
    return p


@pytest.fixture
def finished_run(tmp_path) -> Path:
    "A run folder as a finished run leaves it (the files that matter for these tests)."
    r = tmp_path/'runs'/'r'
    mark_run_folder(r)                                  # made by labelertok (its marker, written at creation)
    (r/'checkpoints'/'best').mkdir(parents=True)
    (r/'summary.json').write_text('{"best_epoch": 2}')
    (r/'checkpoints'/'best'/'adapters.safetensors').write_bytes(b'weights')
    (r/'run.ipynb').write_text('the finished run')
    return r


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob('*')) if p.is_file()}


def cli(capsys, *args) -> tuple[int, str]:
    "Run `labelertok ARGS` in this process: (exit status, stderr)."
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith('labelertok: warning:')]
    assert len(lines) == 1 and 'Traceback' not in err, err
    return lines[0]


class FakeKernel:
    "Stands in for `papermill.execute_notebook`: writes the output notebook, then succeeds, fails or is interrupted."
    def __init__(self, outcome='ok'): self.outcome, self.calls = outcome, []
    def __call__(self, nb_in, nb_out, parameters=None, **kw):
        self.calls.append(parameters)
        out = Path(parameters['out_dir'])
        assert out.is_dir() and not (out/'summary.json').exists(), 'the new run must start in an empty folder'
        shutil.copy(nb_in, nb_out)
        (out/'summary.json').write_text('{"new": true}')
        if self.outcome == 'fail':
            raise pm.PapermillExecutionError(3, 5, 'train(...)', 'RuntimeError', 'CUDA out of memory', [])
        if self.outcome == 'interrupt': raise KeyboardInterrupt


# --- refused before anything is touched -------------------------------------------------------------------------------

@pytest.mark.parametrize('args, names', [
    (['-p', 'data_dir', '/no/such/study'], "data folder '/no/such/study' does not exist"),
    (['-p', 'lr', 'abc'], "lr='abc' (a number)"),
])
def test_overwrite_refuses_before_touching_the_run(capsys, tiny_yaml, finished_run, args, names):
    before = snapshot(finished_run)
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', finished_run, '--overwrite', *args)
    assert rc == 2 and names in one_line(err)
    assert snapshot(finished_run) == before and not finished_run.with_name('r.previous').exists()


@pytest.mark.parametrize('where', ['data', 'inside', 'images'])
def test_out_dir_never_in_the_data(capsys, tiny_yaml, world, where):
    before = snapshot(world)
    out = {'data': world, 'inside': world/'runs'/'r', 'images': world/'images'}[where]
    for cmd in (['run', tiny_yaml], ['compare', '-p', 'data_dir', world]):
        rc, err = cli(capsys, *cmd, '--out-dir', out, '--overwrite')
        assert rc == 2 and 'must never write into' in one_line(err)
    assert snapshot(world) == before and not (world/'runs').exists()


@pytest.mark.parametrize('k, v, names', [
    ('epochs', 'true', 'epochs=True (an int)'),           # a bool is not an int (it used to run 1 epoch)
    ('lr', 'abc', "lr='abc' (a number)"),
    ('seed', 'abc', "seed='abc' (an int)"),
    ('n_users', '0', 'n_users=0 (an int >= 1'),           # named n_users, not k
    ('n_users', '99', 'asked for 99 labelers but the data has only 6'),
    ('batch_size', '0', 'batch_size=0 (int >= 1)'),
    ('token_mode', 'bogus', "token_mode='bogus' (one of ('text', 'learned'))"),
    ('model', 'ViT-Z-99', "model='ViT-Z-99'"),
    ('split', 'pairs', "split='pairs' (one of"),
    ('pretrained', 'nope/w.pt', "pretrained='"),
])
def test_bad_parameter_named_before_a_kernel(capsys, monkeypatch, tmp_path, tiny_yaml, k, v, names):
    kernel = FakeKernel(); monkeypatch.setattr(pm, 'execute_notebook', kernel)
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', tmp_path/'new', '-p', k, v)
    assert rc == 2 and names in one_line(err) and not kernel.calls and not (tmp_path/'new').exists()


def test_bad_sheets_named(capsys, tmp_path, tiny_yaml, world):
    (world/'big_compare_label.xlsx').write_bytes(b'not a zip file')
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', tmp_path/'o')
    assert rc == 2 and 'big_compare_label.xlsx: BadZipFile' in one_line(err)
    import pandas as pd
    pd.DataFrame(columns=['item_id', 'user_id', 'attractive', 'smart', 'trustworthy']).to_excel(world/'big_compare_label.xlsx', index=False)
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', tmp_path/'o')
    assert rc == 2 and 'big_compare_label.xlsx has no data rows' in one_line(err)


def test_undecodable_image_refused_before_a_kernel(capsys, monkeypatch, tmp_path, tiny_yaml, world):
    kernel = FakeKernel(); monkeypatch.setattr(pm, 'execute_notebook', kernel)
    (world/'images'/'00003.png').write_bytes(b'garbage')
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', tmp_path/'o')
    assert rc == 2 and '00003.png' in one_line(err) and not kernel.calls


def test_malformed_yaml_and_file_as_out_dir(capsys, tmp_path, tiny_yaml):
    bad = tmp_path/'bad.yaml'; bad.write_text('data_dir: [unclosed\nlr: 1\n')
    rc, err = cli(capsys, 'run', bad)
    assert rc == 2 and 'bad.yaml is not valid YAML (line' in one_line(err)
    f = tmp_path/'notes.txt'; f.write_text('mine')
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', f)
    assert rc == 2 and 'is a file, not a folder' in one_line(err) and f.read_text() == 'mine'


def test_unexpected_error_is_one_line_unless_debug(capsys, monkeypatch, tmp_path, tiny_yaml):
    def boom(*a, **k): raise RuntimeError('disk on fire')
    monkeypatch.setattr(pm, 'execute_notebook', boom)
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', tmp_path/'o')
    assert rc == 1 and 'RuntimeError: disk on fire (run it again with --debug' in one_line(err)
    with pytest.raises(RuntimeError): main(['run', str(tiny_yaml), '--out-dir', str(tmp_path/'o2'), '--debug'])


def test_warns_about_labeler_without_validation_samples(capsys, monkeypatch, tmp_path):
    from labelertok.data import write_fixture
    monkeypatch.setattr(pm, 'execute_notebook', FakeKernel())
    items = [(f"it{k}", f"{k:05d}.png", f"{(k + 1) % 30:05d}.png") for k in range(30)]
    labels = [(f"it{k}", u, 2 if (k + j) % 3 else 1, 1, 2) for k in range(30) for j, u in enumerate(("u_a", "u_b"))]
    study = write_fixture(tmp_path/'s', n_images=30, items=items, labels=labels + [("it0", "u_small", 2, 1, 1)], image_size=16)
    p = tmp_path/'p.yaml'; p.write_text(yaml.safe_dump(dict(TINY_PARAMS, data_dir=str(study), n_users=3)))
    rc, err = cli(capsys, 'run', p, '--out-dir', tmp_path/'o')
    assert rc == 0 and 'labelertok: warning:' in err and '<user3> (u_small)' in err


# --- overwrite is the last step, and undone when the new run does not finish -------------------------------------------

def test_overwrite_replaces_only_a_finished_new_run(capsys, monkeypatch, tiny_yaml, finished_run):
    monkeypatch.setattr(pm, 'execute_notebook', FakeKernel('ok'))
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', finished_run, '--overwrite')
    assert rc == 0, err
    assert json.loads((finished_run/'summary.json').read_text()) == {'new': True}
    assert not finished_run.with_name('r.previous').exists() and not (finished_run/'checkpoints').exists()
    assert (finished_run/'run.ipynb').exists() and not (finished_run/'run.running.ipynb').exists()


@pytest.mark.parametrize('outcome, rc_want', [('fail', 1), ('interrupt', 130)])
def test_overwrite_undone_when_the_new_run_fails(capsys, monkeypatch, tiny_yaml, finished_run, outcome, rc_want):
    before = snapshot(finished_run)
    monkeypatch.setattr(pm, 'execute_notebook', FakeKernel(outcome))
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', finished_run, '--overwrite')
    line = one_line(err)
    assert rc == rc_want and 'the earlier run' in line and 'unchanged' in line
    after = snapshot(finished_run)
    assert after.pop('run.failed.ipynb') and after == before                 # the old run, plus the failed notebook
    assert not finished_run.with_name('r.previous').exists()


def test_overwrite_refused_while_a_previous_copy_waits(capsys, tiny_yaml, finished_run):
    finished_run.with_name('r.previous').mkdir()
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', finished_run, '--overwrite')
    assert rc == 2 and 'r.previous exists' in one_line(err) and (finished_run/'summary.json').exists()


# --- a finished run's notebook survives failed and interrupted attempts ------------------------------------------------

def test_failed_resumes_keep_the_finished_notebook(capsys, monkeypatch, tiny_yaml, finished_run):
    for outcome in ('fail', 'fail', 'interrupt'):
        monkeypatch.setattr(pm, 'execute_notebook', FakeKernel(outcome))
        (finished_run/'summary.json').unlink()
        rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', finished_run, '-p', 'resume', 'true')
        assert rc in (1, 130) and 'run.ipynb of the earlier finished attempt is unchanged' in one_line(err)
        assert (finished_run/'run.ipynb').read_text() == 'the finished run'
        assert (finished_run/'run.failed.ipynb').exists() and not (finished_run/'run.running.ipynb').exists()
    monkeypatch.setattr(pm, 'execute_notebook', FakeKernel('ok'))              # a resume that finishes takes over
    (finished_run/'summary.json').unlink()
    assert cli(capsys, 'run', tiny_yaml, '--out-dir', finished_run, '-p', 'resume', 'true')[0] == 0
    assert (finished_run/'run.previous.ipynb').read_text() == 'the finished run'


def test_no_temporary_folders_left(capsys, monkeypatch, tmp_path, tiny_yaml):
    "An untagged notebook is re-tagged in a temporary copy, which is removed after the run."
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    for c in nb.cells: c.metadata.pop('tags', None)
    untagged = tmp_path/'untagged.ipynb'; nbformat.write(nb, str(untagged))
    from labelertok.cli import run_experiment
    monkeypatch.setattr(pm, 'execute_notebook', FakeKernel('ok'))
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), 'labelertok_nb_*')))
    run_experiment(tiny_yaml, out_dir=tmp_path/'o', notebook=untagged, echo=False)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), 'labelertok_nb_*'))) == before
