"""The documentation site builds (strict: a broken link or a failing page stops it) with a page per notebook,
per module of `labelertok/` and per page of `docs/`; every local link, image and anchor of the built site resolves,
every page has a title of its own, maths is typeset by the site's own copy of MathJax, and labeler tokens are seen
as text on every page. The notebooks are rendered as committed here (`LABELERTOK_DOCS_EXECUTE=0`); `make docs`
also executes them."""
import html, importlib.util, re, subprocess, sys
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest
from conftest import ROOT

HOOKS = ROOT/'docs'/'hooks.py'


def _hooks():
    spec = importlib.util.spec_from_file_location('docs_hooks', HOOKS)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m


def visible_text(page_html: str) -> str:
    "The text of an HTML page as a reader sees it (tags, scripts and styles dropped, entities decoded)."
    t = re.sub(r'<(script|style)\b.*?</\1>', '', page_html, flags=re.S)
    return html.unescape(re.sub(r'<[^>]+>', '', t))


def site_problems(site: Path) -> tuple[list[str], dict]:
    """(broken local links: a missing page, image or anchor, an absolute or empty path; {title: pages} of the titles
    that more than one page has) over every HTML page of the built `site`."""
    pages = sorted(site.rglob('*.html'))
    ids = {p: set(re.findall(r'\s(?:id|name)="([^"]+)"', p.read_text(errors='replace'))) for p in pages}
    broken, titles = [], {}
    for p in pages:
        t, here = p.read_text(errors='replace'), p.relative_to(site).as_posix()
        m = re.search(r'<title>(.*?)</title>', t, flags=re.S)
        if m and p.name != '404.html': titles.setdefault(html.unescape(m.group(1)).strip(), []).append(here)
        for attr, url in re.findall(r'\s(href|src)="([^"]*)"', t):
            u = urlsplit(html.unescape(url))
            if u.scheme or url.startswith('//'): continue
            if not u.path and not u.fragment:
                if attr == 'src': broken.append(f'{here}: empty src')
                continue
            if u.path.startswith('/'): broken.append(f'{here}: {url} (absolute path)'); continue
            target = (p.parent/unquote(u.path)).resolve() if u.path else p
            if target.is_dir(): target = target/'index.html'
            if not target.exists(): broken.append(f'{here}: {url} (no such file)'); continue
            if u.fragment and target in ids and unquote(u.fragment) not in ids[target]:
                broken.append(f'{here}: {url} (no such anchor)')
    return broken, {k: v for k, v in titles.items() if len(v) > 1}


def test_link_check_finds_what_is_broken(tmp_path):
    (tmp_path/'sub').mkdir()
    (tmp_path/'index.html').write_text('<title>A</title><h2 id="x">x</h2><a href="#x">ok</a><a href="#y">no anchor</a>'
                                       '<a href="sub/b.html#z">ok</a><img src="missing.png"><a href="/abs.html">abs</a>'
                                       '<a href="https://example.org/x">external</a>')
    (tmp_path/'sub'/'b.html').write_text('<title>A</title><p id="z"></p><a href="../index.html">up</a><script src=""></script>')
    broken, dup = site_problems(tmp_path)
    assert broken == ['index.html: #y (no such anchor)', 'index.html: missing.png (no such file)',
                      'index.html: /abs.html (absolute path)', 'sub/b.html: empty src'], broken
    assert dup == {'A': ['index.html', 'sub/b.html']}


def test_generated_reports_show_labeler_tokens():
    "Every committed report, rendered as GitHub or the site renders markdown, shows each labeler token it names."
    import markdown
    for md in sorted((ROOT/'figures').rglob('*.md')):
        src = re.sub(r'!\[[^\]]*\]\([^)]*\)', '', md.read_text())   # an image's alt text is not read beside the image
        seen = visible_text(markdown.markdown(src, extensions=['tables']))
        for tok in sorted(set(re.findall(r'<user\d+>', src))):
            assert seen.count(tok) == src.count(tok), \
                f'{md.relative_to(ROOT)}: {tok} is written as an HTML tag, so it is not seen (labelertok.paths.md_code)'


def test_tokens_shown_on_the_site():
    h = _hooks()
    assert h.show_tokens('per labeler <user1> 81%, `<user2>` 59%') == 'per labeler &lt;user1&gt; 81%, `<user2>` 59%'
    assert h.show_tokens('```\nprint("<user1>")\n```') == '```\nprint("<user1>")\n```'


def test_links_point_at_pages():
    h = _hooks()
    nb = h.NBS/'0_study'/'02_data.ipynb'
    assert h._fix_links('[f](../../docs/study/data_format.md#files)', nb) == '[f](../study/data_format.html#files)'
    assert h._fix_links('[s](05_synthetic.ipynb)', nb) == '[s](05_synthetic.html)'
    assert h._fix_links('[m](../1_method/06_model.ipynb)', nb) == '[m](../1_method/06_model.html)'
    assert h._fix_links('[s](../../docs/study/results.md)', h.NBS/'how-to'/'x.ipynb') == '[s](../study/results.html)'
    assert h._fix_links('[w](https://example.org/a.md) [x](../README.md)', nb) == '[w](https://example.org/a.md) [x](../README.md)'


def test_show_doc_names():
    h = _hooks()
    src = "@patch\ndef save(self:LabelerCLIP, path): pass\ndef _private(): pass\nclass Run: pass\nX = 1\n"
    assert h._public_names(src) == ['LabelerCLIP.save', 'Run']


def test_execution_cache_follows_imports():
    "A notebook is executed again when a module it can reach changes, and only then."
    h = _hooks()
    deps = {p.stem for p in h._deps(h.NBS/'0_study'/'05_synthetic.ipynb')}
    assert {'synthetic', 'data'} <= deps and 'train' not in deps and 'cli' not in deps, deps
    assert {'report', 'runs'} <= {p.stem for p in h._deps(h.NBS/'3_results'/'10_report.ipynb')}


@pytest.mark.slow
def test_site_builds_with_a_page_per_notebook(tmp_path, env):
    site = tmp_path/'site'
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '-d', str(site)], cwd=ROOT,
                       env=dict(env, LABELERTOK_DOCS_EXECUTE='0', NO_MKDOCS_2_WARNING='1'),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert 'Traceback' not in r.stderr and 'DeprecationWarning' not in r.stderr, r.stderr[-4000:]
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
    front = visible_text((site/'index.html').read_text())
    assert 'make demo' in front and 'make test' in front, "the front page lacks the set-up commands"
    assert front.index('Quick start') < front.index('labelertok.paths'), 'the front page starts with the module table'
    data = (site/'0_study'/'02_data.html').read_text()
    assert '#| export' not in data and '#| hide' not in data, 'nbdev directives leaked into a page'
    assert 'load_labeler_data' in data   # show_doc of an exported function
    # every show_doc "source" link opens its object's entry in the API reference
    for page in site.glob('[0-9]_*/*.html'):
        for api, anchor in re.findall(r'href="\.\./(api/[^"#]+)#([^"]+)"[^>]*>source<', page.read_text()):
            assert f'id="{anchor}"' in (site/api).read_text(), f'{page.name}: no {anchor} in {api}'
    # no broken link, image or anchor (tables of contents included); one title per page
    broken, dup = site_problems(site)
    assert not broken, f'{len(broken)} broken link(s), image(s) or anchor(s): ' + '; '.join(broken[:20])
    assert not dup, f'pages sharing a title: {dup}'
    # maths: typeset by the site's own MathJax, by a path relative to the page; no script from another site
    assert (site/'assets'/'mathjax'/'MathJax.js').is_file()
    assert (site/'assets'/'mathjax'/'fonts'/'HTML-CSS'/'STIX-Web').is_dir()   # the fonts the pages ask MathJax for
    synth = (site/'0_study'/'05_synthetic.html').read_text()
    assert '$$u_' in synth and re.search(r'<script src="\.\./assets/mathjax/MathJax\.js\?config=[^"]+">', synth)
    assert 'preferredFont: "STIX-Web"' in synth
    assert re.search(r'<script src="\.\./assets/mathjax/MathJax\.js', (site/'how-to'/'add_a_labeler.html').read_text())
    for page in site.rglob('*.html'):
        t = page.read_text(errors='replace')
        assert not re.search(r'<script[^>]+src="(https?:)?//', t), f'{page.name} loads a script from another site'
        # a labeler token in the page's HTML as a tag is invisible to the reader
        assert not re.search(r'<user\d+>', t), f'{page.relative_to(site)}: a labeler token is an HTML tag there, so it is not seen'
    demo = visible_text((site/'results'/'two_users_demo'/'two_users_demo.html').read_text())
    assert 'Per labeler on the test split: <user1>' in demo, 'the result page does not show the labeler tokens'
    assert 'default runs/<preset>' not in demo, "the notebook's default parameters shown beside papermill's"
    imgs = re.findall(r'<img[^>]+src="(data:image/png[^"]+)"', (site/'results'/'two_users_demo'/'two_users_demo.html').read_text())
    assert imgs and len(imgs) == len(set(imgs)), 'an image is shown twice on the result page'
