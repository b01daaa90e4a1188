"""Shared fixtures of the end-to-end tests: a tiny synthetic world, the `labelertok` command, a clean env."""
import json, os, shutil, socket, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))   # works before `pip install -e .` too
EXPERIMENTS = ROOT/'nbs'/'experiments'
NOTEBOOK = EXPERIMENTS/'labeler_tokens.ipynb'

# A run that is fast on 2 CPU cores: the tiny random-init model on a tiny world, 2 labelers, 2 epochs.
TINY_PARAMS = dict(n_users=2, split='sample', seed=42, model='tiny', pretrained=None, token_mode='text',
                   lora_rank=4, lora_alpha=1.0, temperature=0.15, epochs=2, batch_size=64, eval_batch_size=256,
                   lr=2e-3, weight_decay=0.01, device='cpu', n_boot=200)


def labelertok_cmd() -> list[str]:
    "The console script of this venv if installed, else the same entry point through this interpreter."
    exe = Path(sys.executable).parent/'labelertok'
    if exe.exists(): return [str(exe)]
    return [sys.executable, '-c', 'import sys; from labelertok.cli import main; sys.exit(main())']


def run(cmd, env, cwd, timeout=600):
    "Run `cmd` (its items as strings) in `cwd` with `env`, capturing its text output."
    return subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    "A TCP port on 127.0.0.1 that is free now."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='session')
def env(tmp_path_factory):
    "Environment for subprocesses: headless matplotlib, an image cache outside the home folder."
    e = dict(os.environ, MPLBACKEND='Agg', PYTHONUNBUFFERED='1',
             LABELERTOK_CACHE=str(tmp_path_factory.mktemp('cache')))
    e['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + ([e['PYTHONPATH']] if e.get('PYTHONPATH') else []))
    return e


@pytest.fixture(scope='session')
def tiny_world(tmp_path_factory) -> Path:
    "A synthetic world at 5% of the demo scale (a few hundred comparisons), 64 px faces for the tiny model."
    from labelertok.synthetic import make_world
    d = tmp_path_factory.mktemp('world')/'synthetic'
    make_world(d, scale=0.05, seed=0, image_size=64, verbose=False)
    return d


@pytest.fixture(scope='session')
def tiny_pretrained(tmp_path_factory) -> Path:
    "A (briefly) pretrained tiny CLIP checkpoint (tiny-p8, the default recipe `phrases-p8`), as `make data` writes data/tiny_clip_phrases.pt."
    from labelertok.pretrain import pretrain_clip
    return pretrain_clip(tmp_path_factory.mktemp('pretrained')/'tiny_clip.pt', n_images=200, epochs=1, batch_size=64,
                         verbose=False).resolve()


@pytest.fixture
def preset(tmp_path, tiny_world) -> Path:
    "A papermill parameter file for the tiny run (what a user's own YAML preset looks like)."
    import yaml
    p = tmp_path/'tiny.yaml'
    p.write_text(yaml.safe_dump(dict(TINY_PARAMS, data_dir=str(tiny_world))))
    return p


@pytest.fixture(scope='session')
def study_world(tmp_path_factory) -> Path:
    """A study folder in the real data's format WITHOUT ground truth: image paths of another machine (Windows and
    /home/...), extra columns, 0/blank answers and some pairs a labeler answered twice (a test-retest ceiling)."""
    from labelertok.study_like import write_study_like
    d = tmp_path_factory.mktemp('study')/'study'
    write_study_like(d, scale=0.05, seed=0, image_size=64, verbose=False)
    return d


@pytest.fixture(scope='session')
def study_world_no_repeats(tmp_path_factory) -> Path:
    "As `study_world`, with every repeated pair removed: no test-retest ceiling can be computed."
    from labelertok.study_like import write_study_like
    d = tmp_path_factory.mktemp('study_norep')/'study'
    write_study_like(d, scale=0.05, seed=0, image_size=64, repeats=False, verbose=False)
    return d


@pytest.fixture(scope='session')
def trained_folders(tmp_path_factory, tiny_world) -> dict:
    "A 2-labeler run on `tiny_world` (2 epochs of the tiny model; the stand-in's weights when `make data` wrote them) and its export."
    from labelertok import share
    from labelertok.data import load_labeler_data
    from labelertok.model import create_model
    from labelertok.tokens import user_tokens
    from labelertok.train import TrainConfig, train
    tmp = tmp_path_factory.mktemp('trained')
    stand_in = ROOT/'data'/'tiny_clip_phrases.pt'
    data = load_labeler_data(tiny_world, n_users=2, split='sample', image_size=64, cache_dir=tmp/'cache', verbose=False)
    from labelertok.pretrain import standin_model
    m = create_model(standin_model(stand_in) if stand_in.is_file() else 'tiny', str(stand_in) if stand_in.is_file() else None,
                     tokens=user_tokens(2))
    train(data, m, TrainConfig(epochs=2, batch_size=64, lr=2e-3, device='cpu', n_boot=100, progress=False), tmp/'run')
    share.export(tmp/'run', tmp/'export')
    return dict(run=tmp/'run', export=tmp/'export')


def git_status(root: Path = ROOT) -> str | None:
    "`git status --porcelain` of the checkout (untracked files included), or None outside a git checkout."
    try: r = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'], cwd=root, capture_output=True,
                            text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired): return None
    return r.stdout if r.returncode == 0 else None


@pytest.fixture(scope='session', autouse=True)
def repository_stays_clean():
    """The tests write only to temporary folders: after the session, `git status` of the checkout is what it was
    before (a test that leaves a file in the repository, or rewrites a committed one, fails the session)."""
    before = git_status()
    yield
    after = git_status()
    if before is not None and after is not None and after != before:
        new = sorted(set(after.splitlines()) - set(before.splitlines()))
        pytest.fail(f'the tests changed the repository (git status): {new[:20]}', pytrace=False)


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: the second tier, run by `make test-slow` (after `make test` in `.ci/run`): '
                                       'the longest end-to-end runs, the documentation site and checks on the demo data')
