"""The explorer as a user meets it: `labelertok app` started on a free port, called through `gradio_client` (the same
probabilities as `Scorer`), and its page rendered by headless Chromium (labelers' names, a non-empty gallery, no request
to another site), on a run folder and on an exported folder."""
import os, re, shutil, subprocess, time, urllib.request
from pathlib import Path
import numpy as np, pandas as pd, pytest

from labelertok import score as S
from conftest import free_port, labelertok_cmd


def _serve(source, env, tmp_path):
    "Start `labelertok app SOURCE --port P` as a user would; returns (process, url) once the page answers."
    port = free_port()
    log = open(tmp_path / "app.log", "w")
    p = subprocess.Popen(labelertok_cmd() + ["app", str(source), "--port", str(port), "--device", "cpu"], env=env,
                         cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        if p.poll() is not None: break
        try:
            urllib.request.urlopen(url, timeout=2).read(); return p, url
        except OSError: time.sleep(0.5)
    p.kill(); p.wait()
    raise AssertionError(f"the app did not start: {(tmp_path / 'app.log').read_text()[-2000:]}")


def _stop(p):
    p.terminate()
    try: p.wait(20)
    except subprocess.TimeoutExpired: p.kill(); p.wait()


@pytest.fixture(scope="module")
def served(trained_folders, env, tmp_path_factory):
    "The app of the run folder and of the export, each started once for this module: {kind: url}."
    procs, urls = [], {}
    try:
        for kind in ("run", "export"):
            p, urls[kind] = _serve(trained_folders[kind], env, tmp_path_factory.mktemp(f"app_{kind}"))
            procs.append(p)
        yield urls
    finally:
        for p in procs: _stop(p)


@pytest.mark.parametrize("kind", ["run", "export"])
def test_app_answers_as_scorer(trained_folders, served, kind):
    from gradio_client import Client, handle_file
    sc = S.load(trained_folders[kind], device="cpu")
    url = served[kind]
    c = Client(url, verbose=False)
    imgs = sorted(str(f) for f in (Path(sc.card["data"]["data_dir"]) / "images").glob("*.png"))
    times = []
    for a, b in [(imgs[0], imgs[1]), (imgs[5], imgs[2]), (imgs[7], imgs[9])]:
        t = time.perf_counter()
        r = c.predict(handle_file(a), handle_file(b), api_name="/compare")
        times.append(time.perf_counter() - t)
        got = pd.DataFrame(r["data"], columns=r["headers"])
        assert list(got.columns) == ["labeler"] + sc.attributes
        for i, tok in enumerate(sc.model.tokens):
            assert got.labeler[i].startswith(tok)
            want = [float(sc.compare([a], [b], at, tok)[0]) for at in sc.attributes]
            np.testing.assert_allclose(got.iloc[i, 1:].astype(float).to_numpy(), want, atol=1e-4)
    gal, words = c.predict("<user2> (" + sc.labeler_name("<user2>") + ")", sc.attributes[0], api_name="/rank")
    want = sc.rank(imgs, sc.attributes[0], "<user2>").image.head(12).map(lambda s: Path(s).stem).tolist()
    assert [Path(g["image"]["path"] if isinstance(g["image"], dict) else g["image"]).stem for g in gal] == want
    assert "`<user2>`" in words
    print(f"app ({kind}): compare request {np.median(times):.3f} s (median of {len(times)})")


def test_app_page_in_chromium(trained_folders, served, tmp_path):
    "The page, rendered headless with every other host unreachable: labelers' names, a non-empty gallery, a non-blank screenshot, nothing from another site."
    browser = shutil.which("chromium")
    if browser is None: pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    sc = S.load(trained_folders["run"], device="cpu")
    url = served["run"]
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--window-size=1280,1400", "--virtual-time-budget=20000", f"--user-data-dir={tmp_path / 'profile'}",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]   # offline: no other host can be reached
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    png = tmp_path / "app.png"
    subprocess.run(flags + [f"--screenshot={png}", url], capture_output=True, text=True, timeout=180)
    for t in sc.model.tokens: assert f"&lt;{t[1:-1]}&gt;" in dom or t in dom, f"{t} not on the page"
    assert sc.labeler_name("<user1>") in dom
    assert 'id="ranked-gallery"' in dom, "no gallery on the first page"
    start = dom.index('id="ranked-gallery"')
    end = dom.find('class="block', start + 50)
    gallery = re.findall(r'<img[^>]+src="http://127\.0\.0\.1:\d+/gradio_api/file=[^"]*"', dom[start:end if end > 0 else None])
    assert len(gallery) == 12, f"{len(gallery)} faces in the ranked gallery (12 expected)"
    external = [u for u in re.findall(r'(?:src|href)="(https?://[^"]+)"', dom) if not u.startswith("http://127.0.0.1")]
    assert not external, f"the page loads from other sites: {external[:5]}"
    assert "fonts.googleapis" not in dom
    from PIL import Image
    im = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert im.shape == (1400, 1280) and im.std() > 10, "the screenshot is blank"
