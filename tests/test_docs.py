"""The documentation site builds (strict: a broken link or a failing page stops it) with a page per notebook,
per module of `labelertok/` and per page of `docs/`. The notebooks are rendered as committed here
(`LABELERTOK_DOCS_EXECUTE=0`); `make docs` also executes them."""
import html, importlib.util, re, subprocess, sys
from conftest import ROOT

HOOKS = ROOT/'docs'/'hooks.py'


def _hooks():
    spec = importlib.util.spec_from_file_location('docs_hooks', HOOKS)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m


def test_links_point_at_pages():
    h = _hooks()
    nb = h.NBS/'01_data.ipynb'
    assert h._fix_links('[f](../docs/study/data_format.md#files)', nb) == '[f](study/data_format.html#files)'
    assert h._fix_links('[s](02_synthetic.ipynb)', nb) == '[s](02_synthetic.html)'
    assert h._fix_links('[s](../../docs/study/results.md)', h.NBS/'how-to'/'x.ipynb') == '[s](../study/results.html)'
    assert h._fix_links('[w](https://example.org/a.md) [x](../README.md)', nb) == '[w](https://example.org/a.md) [x](../README.md)'


def test_show_doc_names():
    h = _hooks()
    src = "@patch\ndef save(self:LabelerCLIP, path): pass\ndef _private(): pass\nclass Run: pass\nX = 1\n"
    assert h._public_names(src) == ['LabelerCLIP.save', 'Run']


def test_site_builds_with_a_page_per_notebook(tmp_path, env):
    site = tmp_path/'site'
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '-d', str(site)], cwd=ROOT,
                       env=dict(env, LABELERTOK_DOCS_EXECUTE='0'), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    h = _hooks()
    nbs = [p for ps in h.notebooks().values() for p in ps] + [h.NBS/'index.ipynb']
    assert any('how-to' in p.parts for p in nbs), 'no how-to guide found'
    missing = [p for p in nbs if not (site/p.relative_to(h.NBS).with_suffix('.html')).exists()]
    assert not missing, f'notebooks without a page: {missing}'
    for m in h.modules():
        page = (site/'api'/f'{m}.html').read_text()
        assert f'labelertok.{m}' in page and 'doc doc-object' in page, f'API page of labelertok.{m} is empty'
    for md in (ROOT/'docs').rglob('*.md'):
        assert (site/md.relative_to(ROOT/'docs').with_suffix('.html')).exists(), md
    front = html.unescape(re.sub(r'<[^>]+>', '', (site/'index.html').read_text()))   # text, as a reader sees it
    assert 'make demo' in front and 'make test' in front, "the front page lacks the set-up commands"
    data = (site/'01_data.html').read_text()
    assert '#| export' not in data and '#| hide' not in data, 'nbdev directives leaked into a page'
    assert 'load_labeler_data' in data   # show_doc of an exported function
    # every show_doc "source" link opens its object's entry in the API reference
    for page in site.glob('[0-9]*.html'):
        for api, anchor in re.findall(r'href="(api/[^"#]+)#([^"]+)"[^>]*>source<', page.read_text()):
            assert f'id="{anchor}"' in (site/api).read_text(), f'{page.name}: no {anchor} in {api}'
