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
    from labelertok.experiment import run_experiment
    monkeypatch.setattr(pm, 'execute_notebook', FakeKernel('ok'))
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), 'labelertok_nb_*')))
    run_experiment(tiny_yaml, out_dir=tmp_path/'o', notebook=untagged, echo=False)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), 'labelertok_nb_*'))) == before


# --- a command deletes or replaces only what it made ------------------------------------------------------------------

def _two_runs(d: Path) -> Path:
    "A folder holding two finished runs (each marked): the folder itself was not made by `labelertok run`."
    for n in ('a', 'b'):
        mark_run_folder(d/n); (d/n/'summary.json').write_text('{}')
    return d


@pytest.mark.parametrize('kind', ['thesis', 'runs'])
def test_overwrite_refuses_a_folder_labelertok_did_not_make(capsys, monkeypatch, tmp_path, tiny_yaml, kind):
    kernel = FakeKernel(); monkeypatch.setattr(pm, 'execute_notebook', kernel)
    d = tmp_path/'notes'
    if kind == 'thesis': d.mkdir(); (d/'thesis.tex').write_text('t')
    else: _two_runs(d)
    before = snapshot(d)
    rc, err = cli(capsys, 'run', tiny_yaml, '--overwrite', '--out-dir', d)
    assert rc == 2 and 'was not made by labelertok' in one_line(err) and not kernel.calls
    assert snapshot(d) == before and not d.with_name('notes.previous').exists()


def test_a_new_run_folder_is_marked_and_can_be_replaced(capsys, monkeypatch, tmp_path, tiny_yaml):
    monkeypatch.setattr(pm, 'execute_notebook', FakeKernel())
    out = tmp_path/'o'
    assert cli(capsys, 'run', tiny_yaml, '--out-dir', out)[0] == 0 and (out/RUN_MARKER).is_file()
    assert cli(capsys, 'run', tiny_yaml, '--out-dir', out, '--overwrite')[0] == 0 and (out/RUN_MARKER).is_file()


def _score_args(source, out, *more):
    return ['score', source, '--attribute', 'trustworthy', '--out', out, *more]


def test_score_out_never_replaces_what_score_did_not_write(capsys, tmp_path, finished_run, world):
    img = world/'images'/'00001.png'
    (finished_run/'checkpoints'/'best'/'labelertok_model.json').write_text('{}')
    cases = [(finished_run/'summary.json', 'lies inside'),                  # the run's own file
             (img, 'is one of the inputs'),                                 # an input image
             (tmp_path, 'is a folder')]                                      # a folder (used to fail after scoring)
    notes = tmp_path/'notes.csv'; notes.write_text('name,grade\nme,1\n')
    cases.append((notes, 'was not written by `labelertok score`'))          # somebody's CSV
    for out, says in cases:
        before = Path(out).read_bytes() if Path(out).is_file() else None
        rc, err = cli(capsys, *_score_args(finished_run, out, '--images', img, '--overwrite'))
        assert rc == 2 and says in one_line(err), (out, err)
        if before is not None: assert Path(out).read_bytes() == before
    from labelertok.score import _check_out, written_by_score
    mine = tmp_path/'scores.csv'; mine.write_text('image,labeler,attribute,score,rank\na.png,x,y,1.0,1\n')
    assert written_by_score(mine) and _check_out(mine, True, finished_run, [img]) == mine
    pairs = tmp_path/'p.csv'; pairs.write_text('im1,im2,label,labeler,attribute,p_im1\na,b,2,x,y,0.5\n')
    assert written_by_score(pairs)
    empty = tmp_path/'empty.csv'; empty.write_text('')
    rc, err = cli(capsys, *_score_args(finished_run, tmp_path/'s.csv', '--pairs', empty))
    assert rc == 2 and 'is empty: it needs a header row im1,im2' in one_line(err)


# --- no wrong read passes silently -------------------------------------------------------------------------------------

def test_excel_boolean_cells_refused(world):
    import openpyxl
    from labelertok.data import read_study
    f = world/'big_compare_label.xlsx'
    wb = openpyxl.load_workbook(f); ws = wb.active
    header = [c.value for c in ws[1]]
    col = header.index('trustworthy') + 1
    ws.cell(row=3, column=col).value = True; ws.cell(row=5, column=col).value = False   # real Excel booleans
    wb.save(f)
    with pytest.raises(ValueError, match=r"true/false values where answer codes belong \(column 'trustworthy', 2 row\(s\): 3, 5\)"):
        read_study(world, verbose=False)


def test_score_and_export_refuse_a_run_in_progress(capsys, tmp_path, finished_run, world):
    from labelertok.runs import RunLock
    (finished_run/'checkpoints'/'best'/'labelertok_model.json').write_text('{}')
    with RunLock(finished_run):
        rc, err = cli(capsys, *_score_args(finished_run, tmp_path/'s.csv', '--images', world/'images'/'00001.png'))
        assert rc == 2 and 'is a run still in progress' in one_line(err)
        rc, err = cli(capsys, 'export', finished_run, tmp_path/'exp')
        assert rc == 2 and 'is a run still in progress' in one_line(err) and not (tmp_path/'exp').exists()


@pytest.fixture(scope='module')
def export_dir(tmp_path_factory) -> Path:
    "An exported folder of the tiny model (random init, 2 labelers): what `labelertok export` writes."
    from labelertok.model import create_model
    from labelertok.score import Scorer
    from labelertok.share import save_export
    from labelertok.tokens import user_tokens
    sc = Scorer.from_model(create_model('tiny', None, tokens=user_tokens(2)))
    return save_export(sc, tmp_path_factory.mktemp('export')/'e')


def test_export_checked_against_its_manifest(tmp_path, export_dir):
    from labelertok.runs import DamagedFile
    from labelertok.score import ADAPTER_CONFIG, EXPORT_MANIFEST, EXPORT_META, folder_kind
    assert folder_kind(export_dir) == 'export' and (export_dir/EXPORT_MANIFEST).is_file()
    n = iter(range(10))
    def edited(name, change):
        d = tmp_path/f'e{next(n)}'; shutil.copytree(export_dir, d)
        f = d/name; f.write_text(change(f.read_text())); return d
    d = edited(EXPORT_META, lambda s: s.replace('"temperature": 0.15', '"temperature": 0.05'))
    with pytest.raises(ValueError, match=f"differ from the export's manifest.*{EXPORT_META}"): folder_kind(d)
    d = edited(ADAPTER_CONFIG, lambda s: s[:-5])                                  # invalid JSON, manifest not updated
    with pytest.raises(ValueError, match='differ from the export'): folder_kind(d)
    from labelertok.score import export_manifest
    for change, says in ((lambda s: s[:-5], 'is damaged'), (lambda s: s.replace('"r": 4', '"r": 8'), 'r: adapter_config.json 8')):
        d = edited(ADAPTER_CONFIG, change)                                        # edited consistently with the manifest
        (d/EXPORT_MANIFEST).write_text(json.dumps(dict(files=export_manifest(d))))
        with pytest.raises(ValueError, match=says): folder_kind(d)


def test_sweep_run_killed_before_its_notebook_ended_is_not_finished(tmp_path):
    from labelertok.sweep import SweepRun
    out = tmp_path/'cell'/'seed0'; out.mkdir(parents=True)
    (out/'summary.json').write_text('{"status": "complete"}'); (out/'test_predictions.csv').write_text('x\n1\n')
    r = SweepRun({'lora_rank': 2}, 0, {}, out)
    assert not r.done                                                         # trained, but the notebook never ended
    (out/'run.ipynb').write_text('{}'); (out/'sweep_run.json').write_text('{"wall_s": 1}')
    assert r.done


class LockProbe(FakeKernel):
    "A kernel that, while it runs, tries what a second command would: the lock must still be held."
    def __init__(self, capsys, yaml_file): super().__init__('ok'); self.capsys, self.yaml, self.seen = capsys, yaml_file, {}
    def __call__(self, nb_in, nb_out, parameters=None, **kw):
        from labelertok.runs import HELD_LOCKS_ENV, lock_owner
        out = Path(parameters['out_dir'])
        self.seen['owner'] = lock_owner(out)
        self.seen['env'] = os.environ.get(HELD_LOCKS_ENV, '')
        self.seen['runtime'] = os.environ.get('JUPYTER_RUNTIME_DIR')
        self.seen['resume'] = main(['run', str(self.yaml), '--out-dir', str(out), '-p', 'resume', 'true'])
        self.seen['fresh'] = main(['run', str(self.yaml), '--out-dir', str(out)])
        self.seen['err'] = self.capsys.readouterr().err
        return super().__call__(nb_in, nb_out, parameters, **kw)


def test_lock_held_until_the_notebook_ends(capsys, monkeypatch, tmp_path, tiny_yaml):
    out = tmp_path/'o'
    probe = LockProbe(capsys, tiny_yaml); monkeypatch.setattr(pm, 'execute_notebook', probe)
    assert cli(capsys, 'run', tiny_yaml, '--out-dir', out)[0] == 0
    s = probe.seen
    assert s['owner']['pid'] == os.getpid() and str(out.resolve()) in s['env']          # held, and handed to the kernel
    resume_err, fresh_err = s['err'].splitlines()
    assert s['resume'] == 2 and 'is in use by another run' in resume_err, s['err']      # a second resume: refused
    assert s['fresh'] == 2 and 'is in use by another run' in fresh_err, s['err']         # a second fresh start too
    assert not (out/'.lock').exists()                                                    # released once it ended
    assert s['runtime'] and 'labelertok_kernels_' in s['runtime'] and not Path(s['runtime']).exists()


def test_untrained_and_unsafe_weights_refused_before_a_kernel(capsys, monkeypatch, tmp_path, tiny_yaml):
    import pickle
    kernel = FakeKernel(); monkeypatch.setattr(pm, 'execute_notebook', kernel)
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', tmp_path/'o', '-p', 'epochs', '0')
    assert rc == 2 and 'epochs=0 (an int >= 1' in one_line(err)
    class Obj:
        def __reduce__(self): return (print, ('ran',))
    (tmp_path/'w.pt').write_bytes(pickle.dumps({'w': Obj()}))
    (tmp_path/'w.safetensors').write_bytes(b'\x10' + b'\0' * 7 + b'not json')
    for f, says in (('w.pt', 'pickles Python objects other than tensors'), ('w.safetensors', 'not a readable safetensors file')):
        rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', tmp_path/'o', '-p', 'pretrained', tmp_path/f)
        line = one_line(err)
        assert rc == 2 and says in line and f"pretrained='{tmp_path/f}'" in line and 'weights_only' not in line
    assert not kernel.calls and not (tmp_path/'o').exists()
    from labelertok.backbone import resolve_weights          # the same check where an export names its weights
    with pytest.raises(ValueError, match='pickles Python objects'): resolve_weights('tiny', str(tmp_path/'w.pt'))


def test_resume_with_other_settings_refused_before_a_kernel(capsys, monkeypatch, tiny_yaml, finished_run):
    kernel = FakeKernel(); monkeypatch.setattr(pm, 'execute_notebook', kernel)
    st = finished_run/'state'/'epoch_0002'; st.mkdir(parents=True)
    (finished_run/'state'/'latest.json').write_text('{"epoch": 2, "dir": "epoch_0002"}')
    (st/'meta.json').write_text(json.dumps(dict(config=dict(lr=2e-3, batch_size=64, epochs=2, seed=42),
                                                 model_config=dict(model='tiny', tokens=['<user1>', '<user2>'], lora_rank=4))))
    rc, err = cli(capsys, 'run', tiny_yaml, '--out-dir', finished_run, '-p', 'resume', 'true', '-p', 'n_users', '3',
                  '-p', 'lr', '0.01')
    line = one_line(err)
    assert rc == 2 and 'cannot resume' in line and "n_users: saved 2 (labeler tokens ['<user1>', '<user2>']), now 3" in line
    assert 'lr: saved 0.002, now 0.01' in line and not kernel.calls
    (finished_run/'summary.json').unlink()
    assert cli(capsys, 'run', tiny_yaml, '--out-dir', finished_run, '-p', 'resume', 'true', '-p', 'epochs', '5')[0] == 0
    from labelertok.runs import open_run
    with pytest.raises(FileExistsError, match=r'`-p resume true` on the command line'): open_run(finished_run, resume=False)


def test_bad_parameter_refused_at_once_without_torch(tmp_path, tiny_yaml, env):
    """The checks run before any kernel and import neither torch nor open_clip: under 2 CPU-seconds, where importing
    torch alone takes about 5 here (a margin for a machine whose cores other work shares)."""
    import resource, subprocess, sys, time
    code = ("import sys; from labelertok.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules, 'torch imported'; sys.exit(rc)")
    for k, v in (('lr', '-1'), ('token_mode', 'bogus'), ('model', 'ViT-Z-99'), ('n_users', '0'), ('device', 'gpu')):
        before = resource.getrusage(resource.RUSAGE_CHILDREN); t0 = time.time()
        p = subprocess.run([sys.executable, '-c', code, 'run', str(tiny_yaml), '--out-dir', str(tmp_path/'o'), '-p', k, v],
                           env=env, capture_output=True, text=True)
        wall, after = time.time() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        assert p.returncode == 2 and f'{k}=' in p.stderr and 'torch imported' not in p.stderr, p.stderr
        assert cpu < 2.0, (k, cpu, wall)


# --- nothing left behind -------------------------------------------------------------------------------------------------

def test_stale_temp_files_and_a_stopped_checkpoint_save_recovered(tmp_path):
    import subprocess, sys, warnings
    from labelertok.runs import atomic_write, readable_checkpoint, save_checkpoint
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    stale = tmp_path/f'.summary.json.{dead.stdout.strip()}.tmp'; stale.write_text('half')   # a writer killed mid-write
    atomic_write(tmp_path/'summary.json', '{}')
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ['summary.json']
    ck = tmp_path/'checkpoints'; (ck/'.best.old').mkdir(parents=True); (ck/'.best.old'/'w').write_text('epoch 3')
    with warnings.catch_warnings(record=True) as w:                          # killed between the two renames
        warnings.simplefilter('always')
        assert readable_checkpoint(ck/'best') == ck/'.best.old' and 'a save was stopped midway' in str(w[0].message)
    class M:
        def save(self, p): Path(p).mkdir(); (Path(p)/'w').write_text('epoch 4')
    save_checkpoint(M(), ck/'best')
    assert (ck/'best'/'w').read_text() == 'epoch 4' and sorted(p.name for p in ck.iterdir()) == ['best']


def test_kernel_folders_of_killed_commands_removed(capsys, monkeypatch, tmp_path, tiny_yaml):
    import subprocess, sys
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout.strip()
    left = Path(tempfile.gettempdir())/f'labelertok_kernels_{dead}_x'; left.mkdir(exist_ok=True)
    (left/'kernel-1.json').write_text('{}')
    monkeypatch.setattr(pm, 'execute_notebook', FakeKernel())
    assert cli(capsys, 'run', tiny_yaml, '--out-dir', tmp_path/'o')[0] == 0
    assert not left.exists()
    assert not glob.glob(os.path.join(tempfile.gettempdir(), f'labelertok_kernels_{os.getpid()}_*'))


# --- hints ----------------------------------------------------------------------------------------------------------------

def test_unicode_names_tables_and_unreachable_weights_explained(tmp_path, monkeypatch):
    import unicodedata
    from labelertok.data import resolve_images
    d = tmp_path/'images'; d.mkdir(); (d/unicodedata.normalize('NFD', 'José.png')).write_bytes(b'x')   # as macOS writes it
    with pytest.raises(FileNotFoundError, match=r'differ from a file on disk only in how accented letters are encoded \(Unicode NFC vs NFD'):
        resolve_images([unicodedata.normalize('NFC', 'José.png')], [(None, d)], verbose=False)
    from labelertok.report import md_table
    rows = md_table(['token', 'labeler id'], [['`<user1>`', 'ann|bob\nsmith']]).splitlines()
    assert len(rows) == 3 and rows[2] == '| `<user1>` | ann\\|bob smith |'                 # one row, two cells
    from labelertok import backbone
    import huggingface_hub
    monkeypatch.setenv('HF_HUB_OFFLINE', '1'); monkeypatch.setattr(huggingface_hub, 'try_to_load_from_cache', lambda *a, **k: None)
    backbone.weights_reachable.cache_clear()
    from labelertok.experiment import check_parameters
    p = {**TINY_PARAMS, 'model': 'ViT-B-32', 'pretrained': 'openai'}
    with pytest.raises(ValueError, match=r"pretrained='openai' \(the ViT-B-32 weights 'openai' are not in the local cache"):
        check_parameters(p, NOTEBOOK)
    backbone.weights_reachable.cache_clear()


def test_a_first_attempt_that_failed_before_writing_is_simply_run_again(capsys, monkeypatch, tmp_path, tiny_yaml):
    out = tmp_path/'o'
    monkeypatch.setattr(pm, 'execute_notebook', FakeKernel('interrupt'))
    assert cli(capsys, 'run', tiny_yaml, '--out-dir', out)[0] == 130
    (out/'summary.json').unlink()                       # stopped before the run wrote anything (the stand-in writes it first)
    monkeypatch.setattr(pm, 'execute_notebook', FakeKernel('ok'))
    assert cli(capsys, 'run', tiny_yaml, '--out-dir', out)[0] == 0 and (out/RUN_MARKER).is_file()
