"""`make lab`: JupyterLab from the project's environment, at the repository root, on 127.0.0.1 with token auth."""
import json, os, re, secrets, signal, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path
import pytest
from conftest import ROOT, free_port

VENV = Path(sys.prefix)   # the environment running the tests plays .venv


def get(url: str, token: str|None=None):
    req = urllib.request.Request(url, headers={'Authorization': f'token {token}'} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r: return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e: return e.code, None


def test_makefile_lab_keeps_auth_and_localhost():
    "The target never turns authentication off and binds to this machine only."
    mk = (ROOT/'Makefile').read_text()
    recipe = mk.split('\nlab:')[1].split('\n\n')[0]
    assert '--ServerApp.ip=127.0.0.1' in recipe and 'jupyter lab' in recipe and '$(CURDIR)' in recipe
    for off in ["token=''", 'token=""', 'password=', 'disable_check_xsrf', "--ip=0.0.0.0", 'allow_origin']:
        assert off not in mk, off


@pytest.mark.skipif(not (VENV/'bin'/'jupyter').exists(), reason='jupyter is not installed in this environment')
def test_make_lab_serves_notebooks(tmp_path):
    "`make lab` (install and data steps taken as done) starts a server that lists the notebooks to its token and to no one else."
    stamp, data, ckpt = VENV/'.installed', tmp_path/'data', tmp_path/'stand_in.pt'
    data.mkdir(); (data/'big_compare_label.xlsx').touch(); ckpt.touch()   # `data`'s outputs: make only checks they exist
    port, token = free_port(), secrets.token_hex(16)
    args = '--no-browser'   # as root, the target adds --allow-root itself
    env = dict(os.environ, JUPYTER_TOKEN=token, JUPYTER_RUNTIME_DIR=str(tmp_path/'runtime'), JUPYTER_CONFIG_DIR=str(tmp_path/'config'))
    cmd = ['make', '--no-print-directory', '-o', str(stamp), 'lab', f'VENV={VENV}', f'DATA={data}', f'PRETRAINED={ckpt}',
           f'LAB_PORT={port}', f'LAB_ARGS={args}']
    log = open(tmp_path/'lab.log', 'w')
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        t0, status = time.time(), None
        while time.time() - t0 < 25 and p.poll() is None:
            try: status, root = get(f'{base}/api/contents', token)
            except OSError: status = None
            if status == 200: break
            time.sleep(0.5)
        assert status == 200, (tmp_path/'lab.log').read_text()[-3000:]
        assert {'nbs', 'README.md', 'Makefile'} <= {c['name'] for c in root['content']}   # opened at the repository root
        _, nbs = get(f'{base}/api/contents/nbs', token)
        assert {'index.ipynb', '0_study', '2_training', 'experiments'} <= {c['name'] for c in nbs['content']}
        _, ex = get(f'{base}/api/contents/nbs/experiments', token)
        assert {'labeler_tokens.ipynb', 'compare.ipynb'} <= {c['name'] for c in ex['content']}
        _, ks = get(f'{base}/api/kernelspecs', token)   # the kernel the notebooks name runs this environment's Python
        argv0 = Path(ks['kernelspecs']['python3']['spec']['argv'][0])
        assert argv0.parent == VENV/'bin' or argv0 == Path(sys.executable), argv0
        assert get(f'{base}/api/contents')[0] == 403                         # no token: refused
        assert get(f'{base}/api/contents', 'not-the-token')[0] == 403       # a wrong token: refused
        printed = (tmp_path/'lab.log').read_text()
        assert f'http://127.0.0.1:{port}/lab' in printed and 'token' in printed   # how to open it
        assert 'make lab: JupyterLab on this machine only' in printed             # what it does, before it does it
        if hasattr(os, 'geteuid') and os.geteuid() == 0: assert '--allow-root' in printed
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(timeout=10)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
        log.close()
