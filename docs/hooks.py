"""mkdocs hook: the documentation site generated from the repository as it is.

On every build it
- executes the notebooks of `nbs/` (as `nbdev_test` does: in their folder, cells flagged with `tst_flags` skipped,
  notebooks with `skip_exec` front matter left as committed), cached in `_proc/exec/` by the notebook's content and
  the modules of `labelertok/` it can reach through imports: a warm build re-executes only what a change can affect,
  with one line of progress per notebook;
- turns each notebook into a page: nbdev directives applied (`#| hide` and `#| exporti` cells dropped, an `#| export`
  cell replaced by the rendered `show_doc` of each public name it defines, `#| exports` shown, directive lines
  removed), outputs kept;
- writes one API reference page per module of `labelertok/` (mkdocstrings);
- builds the navigation from what is there: the front page (`nbs/index.ipynb`), the module notebooks by part folder
  (`nbs/0_study/`, `nbs/1_method/`, ..., in reading order), `nbs/experiments/`, `nbs/how-to/`, the executed results (`figures/<run>/*.ipynb`, with their images), the
  pages of `docs/` by folder, the API reference; every page gets a title of its own;
- renders maths offline: MathJax from the `jupyter_server_mathjax` package is copied into `assets/mathjax/`, and every
  notebook page loads it by a relative path (no CDN); the table of contents of a notebook page links to its headings'
  real ids; `404.html` uses relative links, so the site works from the file system.

A notebook or module added to the repository gets its page without touching `mkdocs.yml`.
Set `LABELERTOK_DOCS_EXECUTE=0` to render the notebooks as committed (fast; no outputs they were not saved with).
"""
from __future__ import annotations

import ast, hashlib, importlib, logging, os, posixpath, re, shutil, subprocess, sys
from pathlib import Path, PurePosixPath

import nbformat
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

log = logging.getLogger('mkdocs.hooks.labelertok')

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
LIB = ROOT/'labelertok'
PROC = ROOT/'_proc'/'site'
EXEC = ROOT/'_proc'/'exec'
FIGURES = ROOT/'figures'
SECTIONS = {'experiments': 'Experiments', 'how-to': 'How-to guides'}   # sub-folders of nbs/, in nav order
PART = re.compile(r'^(\d+)_(\w+)$')   # a part folder of module notebooks: `0_study`, `1_method`, ... (reading order)
_DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+):?(.*)$')
_titles: dict[str, str] = {}   # page URI -> its title as plain text (mkdocs-jupyter drops `code` from a notebook's h1)
_generated: list[tuple[str, Path]] = []   # (page's source URI on the site, its file under _proc/site/)


# -- which notebooks, in which order ------------------------------------------------------------------------------

def _skip(p: Path) -> bool:
    return any(part.startswith(('.', '_')) for part in p.relative_to(NBS).parts)


def parts() -> list[str]:
    "The part folders of `nbs/` that hold the module notebooks, in reading order."
    return sorted((d.name for d in NBS.iterdir() if d.is_dir() and PART.match(d.name)), key=lambda n: int(n.split('_')[0]))


def part_title(part: str) -> str:
    "`1_method` -> '1. Method': the navigation's name of a part folder."
    n, name = PART.match(part).groups()
    return f"{n}. {name.replace('_', ' ').capitalize()}"


def notebooks() -> dict[str, list[Path]]:
    "The notebooks of `nbs/` by section (the part folders of module notebooks first, in reading order), each in file-name order."
    out = {}
    for sub in parts() + sorted(d.name for d in NBS.iterdir() if d.is_dir() and not d.name.startswith(('.', '_'))
                                and not PART.match(d.name)):
        found = sorted(p for p in (NBS/sub).rglob('*.ipynb') if not _skip(p))
        if found: out[sub] = found
    return out


def results() -> list[Path]:
    "Executed experiment notebooks committed beside their figures (`figures/<run>/*.ipynb`), shown as they are."
    return sorted(p for p in FIGURES.rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts) if FIGURES.exists() else []


def modules() -> list[str]:
    "Public modules of `labelertok/`, in file-name order."
    return sorted(p.stem for p in LIB.glob('*.py') if not p.stem.startswith('_'))


def _title(nb, fallback: str) -> str:
    for c in nb.cells:
        if c.cell_type == 'markdown':
            m = re.search(r'^#\s+(.+)$', c.source, flags=re.M)
            if m: return m.group(1).replace('`', '').strip()   # the nav shows plain text: keep what was in `code`
    return fallback


# -- execution (cached) -------------------------------------------------------------------------------------------

def _directives(src: str) -> dict[str, str]:
    "nbdev directives at the top of a cell: {name: rest of line}."
    d = {}
    for line in src.splitlines():
        if not line.strip(): continue
        m = _DIRECTIVE.match(line)
        if not m: break
        d[m.group(1)] = m.group(2).strip()
    return d


def _frontmatter(nb) -> dict[str, str]:
    if nb.cells and nb.cells[0].cell_type in ('markdown', 'raw') and nb.cells[0].source.startswith('---'):
        lines = nb.cells[0].source.strip().splitlines()[1:-1]
        return dict((k.strip(), v.strip()) for k, _, v in (l.partition(':') for l in lines))
    return {}


def _imported(src: str) -> set[str]:
    "Modules of `labelertok` that the Python source `src` imports (anywhere, function-local imports included)."
    try: tree = ast.parse(src)
    except SyntaxError: return {m for m in modules() if re.search(rf'\b{m}\b', src)}   # cells with magics: by name
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            mod = n.module or ''
            if n.level == 1 or mod == 'labelertok':   # `from . import x` / `from labelertok import x` / `from .x import y`
                out |= {mod} if mod and n.level == 1 else {a.name for a in n.names}
            elif mod.startswith('labelertok.'): out.add(mod.split('.')[1])
        elif isinstance(n, ast.Import):
            out |= {a.name.split('.')[1] for a in n.names if a.name.startswith('labelertok.')}
    return out


def _deps(nb_path: Path) -> list[Path]:
    """The files of `labelertok/` a notebook can reach: its own module, what its cells import, and, transitively, what
    those modules import. All of them when the notebook runs a command (`labelertok`, `make`) or another notebook."""
    every = {m: LIB/f'{m}.py' for m in modules()}
    src = '\n'.join(re.sub(r'^\s*[!%].*$', '', c.source, flags=re.M) for c in nbformat.read(nb_path, as_version=4).cells
                    if c.cell_type == 'code')
    if re.search(r'^\s*(!|%%?(?:run|system|bash|sh)\b)|subprocess|papermill|labelertok (run|compare|sweep)', '\n'.join(
            c.source for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == 'code'), flags=re.M):
        return sorted(LIB.glob('*.py'))
    todo = {m for m in _imported(src) if m in every}
    todo |= {d['default_exp'].split()[0] for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == 'code'
             for d in [_directives(c.source)] if 'default_exp' in d} & set(every)
    seen = set()
    while todo:
        m = todo.pop(); seen.add(m)
        todo |= {x for x in _imported(every[m].read_text()) if x in every} - seen
    return [every[m] for m in sorted(seen)] + [LIB/'__init__.py']


def cache_key(nb_path: Path) -> str:
    "What a notebook's executed copy depends on: its own content and the library files it can reach (`_deps`)."
    h = hashlib.sha256(nb_path.read_bytes())
    for f in _deps(nb_path): h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _exec_one(src: Path, dst: Path, flags: set) -> str | None:
    "Execute one notebook with execnb (what nbdev_test does), keeping the outputs. Returns the error, if any."
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    os.environ['IN_TEST'] = '1'
    nb = read_nb(src)

    def no_eval(cell):
        if cell.cell_type != 'code' or 'nbdev_export(' in cell.source: return True
        d = _directives(cell.source)
        return d.get('eval', '').lower() == 'false' or bool(flags & d.keys())

    k = CaptureShell(src)
    try:
        with working_directory(src.parent): k.run_all(nb, exc_stop=True, preproc=no_eval)
    except Exception:
        return k.prettytb(fname=src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dst)


SCRATCH = ROOT/'_proc'/'tree'
_WRITABLE = ('nbs', 'figures')   # copied into the scratch tree: notebooks write figures there, not into the repository


def scratch_tree() -> Path:
    """A stand-in for the repository to execute notebooks in: `nbs/` and `figures/` copied, everything else
    linked, so what a notebook writes (e.g. `../figures/explore`) never touches the working tree."""
    if SCRATCH.exists(): shutil.rmtree(SCRATCH)
    SCRATCH.mkdir(parents=True)
    for p in ROOT.iterdir():
        if p.name in ('.git', '_proc', '_docs', 'runs') or p.name.startswith('.cache'): continue
        if p.name in _WRITABLE and p.is_dir(): shutil.copytree(p, SCRATCH/p.name, symlinks=True)
        else: (SCRATCH/p.name).symlink_to(p)
    return SCRATCH


def _exec_subprocess(args) -> tuple[str, str | None]:
    "Run `_exec_one` in a fresh interpreter (each notebook gets its own process, as under nbdev_test)."
    src, dst, flags = args
    r = subprocess.run([sys.executable, __file__, str(src), str(dst), ' '.join(sorted(flags))], cwd=SCRATCH,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                           [str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p])))
    return str(src), (None if r.returncode == 0 else (r.stderr or r.stdout)[-6000:])


def execute(paths: list[Path]) -> dict[Path, Path]:
    "Executed copies of `paths` (from the cache when neither the notebook nor the library changed)."
    from concurrent.futures import ThreadPoolExecutor
    from nbdev.config import get_config
    import threading, time
    flags = set(get_config(path=ROOT).get('tst_flags', '').split())
    out, todo = {}, []
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        if str(_frontmatter(nb).get('skip_exec', '')).lower() == 'true': continue
        dst = EXEC/p.relative_to(NBS)
        key = cache_key(p)
        keyf = dst.with_suffix('.key')
        out[p] = dst
        if dst.exists() and keyf.exists() and keyf.read_text() == key: continue
        todo.append((p, dst, keyf, key))
    if len(out) > len(todo):
        log.info(f"{len(out) - len(todo)} notebook(s) unchanged since their last execution (cached in {EXEC.relative_to(ROOT)}/)")
    if todo:
        workers = max(1, min(int(os.environ.get('LABELERTOK_DOCS_JOBS', os.cpu_count() or 1)), len(todo)))
        log.info(f"executing {len(todo)} notebook(s), {workers} at a time; a cold build takes about 15 minutes on 2 CPU cores")
        tree = scratch_tree()
        t0, done, lock = time.time(), [0], threading.Lock()

        def job(t):
            p, d, keyf, key = t
            t1 = time.time()
            _, err = _exec_subprocess((tree/p.relative_to(ROOT), d, flags))
            if err is None and cache_key(p) == key: keyf.write_text(key)   # cached as soon as it is done (unless edited meanwhile)
            with lock:
                done[0] += 1
                log.info(f"[{done[0]}/{len(todo)}] {p.relative_to(NBS)}: {'failed' if err else 'done'} in {time.time() - t1:.0f} s "
                         f"({(time.time() - t0) / 60:.1f} min so far)")
            return str(p), err
        with ThreadPoolExecutor(max_workers=workers) as ex: res = list(ex.map(job, todo))
        errors = [(s, e) for s, e in res if e]
        if errors:
            raise RuntimeError('notebooks failed while building the docs:\n' + '\n'.join(f'{s}:\n{e}' for s, e in errors))
    return out


# -- nbdev directives -> a page -----------------------------------------------------------------------------------

def _public_names(src: str) -> list[str]:
    "Public names an export cell defines, as show_doc wants them (`Class.method` for `@patch` methods)."
    try: tree = ast.parse(src)
    except SyntaxError: return []
    names = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): continue
        if node.name.startswith('_'): continue
        patched = [d for d in getattr(node, 'decorator_list', []) if ast.unparse(d).split('(')[0] in ('patch', 'patch_to')]
        if patched and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.args.args:
            ann = node.args.args[0].annotation
            if ann is not None: names.append(f'{ast.unparse(ann)}.{node.name}'); continue
        names.append(node.name)
    return names


def _show_doc_md(expr: str, mod, api_page: str | None = None) -> str:
    """Markdown of `show_doc(...)` evaluated against the exported module `mod`; its "source" link points at the
    object on the API reference page `api_page` (relative URL), which shows the source."""
    from nbdev.showdoc import show_doc
    for _ in range(5):   # annotations may name modules the library imports lazily (e.g. torch)
        try:
            r = eval(expr, dict(vars(mod), show_doc=show_doc))
            break
        except NameError as e:   # give the module the name its annotations refer to, then try again
            setattr(mod, e.name, importlib.import_module(e.name))
    md = show_tokens(r._repr_markdown_() if hasattr(r, '_repr_markdown_') else str(r))
    m = re.fullmatch(r'show_doc\(\s*([\w.]+)', expr.split(',')[0].strip().rstrip(')'))
    href = None
    if api_page and m:
        name = last = m.group(1)
        if '.' in name:   # a `@patch`ed method is a module-level function in the source, so in the API reference
            last = name.rsplit('.', 1)[1]
            if name in _public_names(Path(mod.__file__).read_text()): name = last
        href = f'{api_page}#{mod.__name__}.{name}'
    # Quarto's link attributes, `[source](url){target="_blank" ...}`, as a plain HTML link
    return re.sub(r'\[([^\]]+)\]\(([^)\s]+)\)\{([^}]*)\}',
                  lambda l: f'<a href="{href or l.group(2)}" style="float:right; font-size:smaller">{l.group(1)}</a>', md)


def _site_uri(target: Path) -> str | None:
    "The site page of a repository file: notebooks of nbs/, pages of docs/, executed results of figures/."
    for base, ext, prefix in ((NBS, '.ipynb', ''), (ROOT/'docs', '.md', ''), (FIGURES, '.ipynb', 'results/')):
        if target.suffix == ext and target.is_relative_to(base): return prefix + target.relative_to(base).with_suffix('.html').as_posix()


def _fix_links(md: str, src: Path, uri: str | None = None) -> str:
    """Relative links to notebooks and to `docs/` pages, written to work on the repository's web view
    (e.g. `../docs/study/results.md` from a notebook), point at their pages on the site (`uri`: the page of `src`)."""
    page_dir = PurePosixPath(uri or src.relative_to(NBS).as_posix()).parent
    def repl(m):
        link, anchor = m.group(1), m.group(2) or ''
        uri = _site_uri((src.parent/link).resolve())
        if uri is None: return m.group(0)
        return '](' + posixpath.relpath(uri, page_dir.as_posix() or '.') + anchor + ')'
    return re.sub(r'\]\(([^)\s:#]+\.(?:ipynb|md))(#[^)\s]*)?\)', repl, md)


_TOKEN = re.compile(r'<(user\d+)>')   # a labeler token, which a renderer would take for an HTML tag and hide


def show_tokens(md: str) -> str:
    """Markdown with every labeler token outside code (`<user1>`) written as text (`&lt;user1&gt;`), so that it is
    seen; code spans and fenced blocks are left as they are. Generated markdown already writes tokens as code
    (`labelertok.paths.md_code`); this keeps the site readable for notebooks executed before that."""
    parts = re.split(r'(```.*?```|`[^`\n]*`)', md, flags=re.S)
    return ''.join(x if i % 2 else _TOKEN.sub(r'&lt;\1&gt;', x) for i, x in enumerate(parts))


def process(src: Path, executed: Path | None, uri: str | None = None) -> Path:
    "Write the page notebook of `src` to `_proc/site/<uri>` (default: its path under nbs/); returns its path."
    uri = uri or src.relative_to(NBS).as_posix()
    nb = nbformat.read(executed or src, as_version=4)
    module = None
    for c in nb.cells:
        if c.cell_type == 'code' and 'default_exp' in _directives(c.source):
            module = _directives(c.source)['default_exp'].split()[0]
    mod = importlib.import_module(f'labelertok.{module}') if module else None
    api_page = posixpath.relpath(f'api/{module}.html', posixpath.dirname(uri) or '.') if module else None
    cells, images = [], set()
    injected = any('injected-parameters' in c.get('metadata', {}).get('tags', []) for c in nb.cells)
    for i, c in enumerate(nb.cells):
        if i == 0 and _frontmatter(nb): continue
        if injected and 'parameters' in c.get('metadata', {}).get('tags', []): continue   # papermill's values follow
        if c.get('outputs'):   # an image shown twice (a plot, then again among the report's figures): once
            keep = []
            for o in c.outputs:
                if 'text/markdown' in (o.get('data') or {}): o['data']['text/markdown'] = show_tokens(o['data']['text/markdown'])
                png = (o.get('data') or {}).get('image/png')
                if png and png in images: continue
                if png: images.add(png)
                keep.append(o)
            c.outputs = keep
        if c.cell_type == 'raw': continue
        if c.cell_type == 'markdown':
            c.source = show_tokens(_fix_links(c.source, src, uri))
            cells.append(c); continue
        d = _directives(c.source)
        if d.keys() & {'hide', 'exporti', 'default_exp'}: continue
        if d.keys() & {'export'}:
            for nm in _public_names(c.source):
                try: md = _show_doc_md(f'show_doc({nm})', mod, api_page)
                except Exception as e:
                    log.warning(f'{src.name}: show_doc({nm}) failed: {e!r}'); continue
                cells.append(nbformat.v4.new_markdown_cell(md))
            continue
        lines = [l for l in c.source.splitlines() if not _DIRECTIVE.match(l) and not re.search(r'#\|\s*hide_line\s*$', l)]
        c.source = '\n'.join(lines).strip()
        if re.fullmatch(r'show_doc\(.*\)', c.source, flags=re.S) and mod:
            cells.append(nbformat.v4.new_markdown_cell(_show_doc_md(c.source, mod, api_page))); continue
        if not c.source and not c.get('outputs'): continue
        cells.append(c)
    nb.cells = cells
    dst = PROC/uri
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return dst


# -- mkdocs events ------------------------------------------------------------------------------------------------

def _api_page(mod: str) -> str:
    return f'# `labelertok.{mod}`\n\n::: labelertok.{mod}\n'


def build(execute_nbs: bool) -> tuple[list, list]:
    "Process everything; returns (nav, generated files)."
    if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
    by_section = notebooks()
    every = [NBS/'index.ipynb'] + [p for ps in by_section.values() for p in ps]
    executed = execute(every) if execute_nbs else {}
    gen, nav = [], []
    titles = {}
    for p in every:
        dst = process(p, executed.get(p))
        uri = p.relative_to(NBS).as_posix()
        gen.append((uri, dst))
        titles[p] = _titles[uri] = _title(nbformat.read(p, as_version=4), p.stem)
    nav.append({'Home': 'index.ipynb'})
    nav.append({'Notebooks': [{part_title(part): [{titles[p]: p.relative_to(NBS).as_posix()} for p in by_section[part]]}
                              for part in parts() if part in by_section]})
    for sub in list(SECTIONS) + sorted(set(by_section) - set(SECTIONS) - set(parts())):
        if sub in by_section:
            nav.append({SECTIONS.get(sub, sub.replace('_', ' ').capitalize()):
                        [{titles[p]: p.relative_to(NBS).as_posix()} for p in by_section[sub]]})
    res = []
    for p in results():
        uri = 'results/' + p.relative_to(FIGURES).as_posix()
        gen.append((uri, process(p, None, uri)))
        _titles[uri] = f'{p.parent.name}: {_title(nbformat.read(p, as_version=4), p.stem)}'   # one title per page
        res.append({_titles[uri]: uri})
        for img in sorted(p.parent.glob('*.png')):   # the images its report (a markdown output) links to
            gen.append(('results/' + img.relative_to(FIGURES).as_posix(), img))
    if res: nav.append({'Results': res})
    docs = ROOT/'docs'
    for d in sorted(x for x in docs.iterdir() if x.is_dir() and not x.name.startswith(('.', '_'))):
        pages = sorted(d.glob('*.md'))
        if pages:
            nav.append({d.name.replace('_', ' ').capitalize():
                        [{_md_title(p): p.relative_to(docs).as_posix()} for p in pages]})
    api = []
    for m in modules():
        page = PROC/'api'/f'{m}.md'
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(_api_page(m))
        gen.append((f'api/{m}.md', page))
        api.append({f'labelertok.{m}': f'api/{m}.md'})
    nav.append({'API reference': api})
    return nav, gen


def _md_title(p: Path) -> str:
    m = re.search(r'^#\s+(.+)$', p.read_text(), flags=re.M)
    return m.group(1).strip() if m else p.stem


def on_config(config):
    execute_nbs = os.environ.get('LABELERTOK_DOCS_EXECUTE', '1') not in ('0', 'false', 'no')
    nav, gen = build(execute_nbs)
    _generated[:] = gen
    config['nav'] = nav
    return config


@event_priority(100)   # before mkdocs-jupyter wraps the notebooks
def on_files(files, config):
    for uri, src in _generated:
        if files.get_file_from_path(uri): files.remove(files.get_file_from_path(uri))
        if src.is_relative_to(PROC):
            files.append(File(uri, src_dir=str(PROC), dest_dir=config['site_dir'], use_directory_urls=config['use_directory_urls']))
        else:   # an image of figures/<run>/ at results/<run>/
            files.append(File.generated(config, uri, abs_src_path=str(src)))
    return files


def on_page_content(html, page, config, files):
    """Navigation and page titles of notebooks as `_title` reads them (with the words that were in `code`); the table of
    contents of a notebook page from its headings as rendered (mkdocs-jupyter's own drops the words in `code`, so its
    links pointed nowhere)."""
    if page.file.src_uri == 'index.ipynb': page.title = 'Home'
    elif page.file.src_uri in _titles: page.title = _titles[page.file.src_uri]
    if page.file.src_uri.endswith('.ipynb'):
        from mkdocs.structure.toc import get_toc
        root: list = []
        stack = [(0, root)]
        for level, hid, inner in re.findall(r'<h([1-3]) id="([^"]+)"[^>]*>(.*?)</h\1>', html, flags=re.S):
            name = re.sub(r'<[^>]+>', '', re.sub(r'<a class="anchor-link".*?</a>', '', inner)).strip()
            tok = dict(level=int(level), id=hid, name=name, children=[])
            while stack[-1][0] >= int(level): stack.pop()
            stack[-1][1].append(tok); stack.append((int(level), tok['children']))
        page.toc = get_toc(root)
    return html


MATHJAX_URL = 'MATHJAX_LOCAL_COPY'   # mkdocs.yml's custom_mathjax_url: replaced by each page's relative path


def on_post_page(output, page, config):
    "Notebook pages load MathJax from the site's own copy (`assets/mathjax/`), by a path relative to the page."
    rel = posixpath.relpath('assets/mathjax/MathJax.js', posixpath.dirname(page.file.dest_uri) or '.')
    fonts = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({"HTML-CSS": {availableFonts: ["STIX-Web"], '
             'preferredFont: "STIX-Web", webFont: "STIX-Web", imageFont: null}});</script>\n')   # the fonts the copy has
    return output.replace(f'<script src="{MATHJAX_URL}">', f'{fonts}<script src="{rel}?config=TeX-AMS-MML_HTMLorMML-full,Safe">')


def on_post_build(config):
    """MathJax copied into the site (from the `jupyter_server_mathjax` package: no CDN); `404.html` made relative (it is
    written with absolute `/...` links, which break when the site is opened from the file system)."""
    import jupyter_server_mathjax
    site = Path(config['site_dir'])
    mj = Path(jupyter_server_mathjax.__file__).parent/'static'
    dst = site/'assets'/'mathjax'
    if dst.exists(): shutil.rmtree(dst)
    shutil.copytree(mj, dst, ignore=lambda d, names: [n for n in names if n.startswith(('.', '__'))])
    nf = site/'404.html'
    if nf.is_file():
        nf.write_text(re.sub(r'(href|src)="/(?!/)', r'\1="', nf.read_text()))


def on_serve(server, config, builder):
    for p in (NBS, LIB): server.watch(str(p))
    return server


if __name__ == '__main__':   # python docs/hooks.py SRC DST "FLAGS": execute one notebook (used by `execute`)
    err = _exec_one(Path(sys.argv[1]), Path(sys.argv[2]), set(sys.argv[3].split()))
    if err: sys.stderr.write(err); sys.exit(1)
