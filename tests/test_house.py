"""The package's layout, measured from the notebooks and the exported modules: modules read in order (no module
imports one whose notebook comes later, no circle), public seams (no module imports another's private names), and
export cells of about one definition each. `python tests/test_house.py [ROOT]` prints the numbers."""
import ast, json, re, sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_EXP = re.compile(r'^\s*#\|\s*default_exp\s+(\S+)', flags=re.M)
_EXPORT = re.compile(r'^\s*#\|\s*export\s*$', flags=re.M)


def _cells(nb: Path) -> list[str]:
    "The sources of the code cells of notebook `nb`."
    return [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']


def module_notebooks(root: Path = ROOT) -> dict[str, Path]:
    "Module name -> its notebook, for every notebook of `nbs/` with a `default_exp`."
    out = {}
    for nb in sorted((root/'nbs').rglob('*.ipynb')):
        if '.ipynb_checkpoints' in nb.parts: continue
        for src in _cells(nb):
            m = _DEFAULT_EXP.search(src)
            if m: out[m.group(1)] = nb
    return out


def reading_order(root: Path = ROOT) -> list[str]:
    "The modules in the order their notebooks are read: by path under `nbs/` (part folder, then file name)."
    nbs = module_notebooks(root)
    return sorted(nbs, key=lambda m: nbs[m].relative_to(root/'nbs').as_posix())


def _imports(tree: ast.AST, mods: set[str]) -> list[tuple[str, str, bool]]:
    "(module, name or '', function-local?) for each import of a labelertok module in `tree`."
    out = []
    def visit(node, local):
        for n in ast.iter_child_nodes(node):
            inner = local or isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(n, ast.ImportFrom):
                mod = n.module or ''
                if n.level == 1 and mod: out.extend((mod.split('.')[0], a.name, local) for a in n.names)
                elif mod.startswith('labelertok.'): out.extend((mod.split('.')[1], a.name, local) for a in n.names)
                elif n.level == 1 or mod == 'labelertok':
                    out.extend((a.name, '', local) for a in n.names if a.name in mods)
            elif isinstance(n, ast.Import):
                out.extend((a.name.split('.')[1], '', local) for a in n.names if a.name.startswith('labelertok.'))
            visit(n, inner)
    visit(tree, False)
    return [(m, nm, loc) for m, nm, loc in out if m in mods]


def _local_imports(tree: ast.AST) -> int:
    "Import statements of labelertok modules inside functions."
    return len({id(s) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                for s in ast.walk(f)
                if isinstance(s, ast.ImportFrom) and (s.level > 0 or (s.module or '').startswith('labelertok'))
                or isinstance(s, ast.Import) and any(a.name.startswith('labelertok') for a in s.names)})


def _module_attrs(tree: ast.AST, mods: set[str]) -> set[tuple[str, str]]:
    "(module, attribute) for `mod.attr` where `mod` is a labelertok module imported as a whole."
    bound = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and (n.level == 1 and not n.module or n.module == 'labelertok'):
            bound.update({(a.asname or a.name): a.name for a in n.names if a.name in mods})
    return {(bound[n.value.id], n.attr) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in bound}


def graph(root: Path = ROOT) -> dict[str, dict]:
    "For each module: the modules it imports, the private names it takes from them, its function-local imports."
    lib = root/'labelertok'
    mods = {p.stem for p in lib.glob('*.py') if not p.stem.startswith('_')}
    out = {}
    for m in sorted(mods):
        tree = ast.parse((lib/f'{m}.py').read_text())
        imps = _imports(tree, mods)
        deps = {d for d, _, _ in imps} | {d for d, _ in _module_attrs(tree, mods)}
        private = {(d, nm) for d, nm, _ in imps if nm.startswith('_')} | {(d, a) for d, a in _module_attrs(tree, mods)
                                                                          if a.startswith('_') and not a.startswith('__')}
        out[m] = dict(deps=deps - {m}, private={p for p in private if p[0] != m},
                      local=_local_imports(tree), lines=len((lib/f'{m}.py').read_text().splitlines()))
    return out


def circles(g: dict) -> list[list[str]]:
    "The strongly connected components of more than one module (each holds at least one circle)."
    index, low, stack, on, comps, i = {}, {}, [], set(), [], [0]
    def strong(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in g[v]['deps']:
            if w not in g: continue
            if w not in index: strong(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: comps.append(sorted(comp))
    for v in sorted(g):
        if v not in index: strong(v)
    return comps


def upward_imports(g: dict, order: list[str]) -> list[tuple[str, str]]:
    "(module, imported module) where the imported module's notebook is read after the importing one's."
    pos = {m: i for i, m in enumerate(order)}
    return sorted((m, d) for m in g for d in g[m]['deps'] if m in pos and d in pos and pos[d] > pos[m])


def forward_references(root: Path = ROOT) -> list[tuple[str, str]]:
    "(notebook, module) where a module notebook's code (its tests included) imports a module read after it."
    nbs, order = module_notebooks(root), reading_order(root)
    pos, mods, out = {m: i for i, m in enumerate(order)}, set(nbs), set()
    for m, nb in nbs.items():
        for src in _cells(nb):
            src = re.sub(r'^\s*[!%].*$', '', src, flags=re.M)
            try: tree = ast.parse(src)
            except SyntaxError: continue
            deps = {d for d, _, _ in _imports(tree, mods)} | {d for d, _ in _module_attrs(tree, mods)}
            out |= {(nb.relative_to(root/'nbs').as_posix(), d) for d in deps if pos[d] > pos[m]}
    return sorted(out)


def _definitions(tree: ast.Module) -> int:
    "Top-level definitions of an export cell: functions and classes (a `@patch`ed method counts as one)."
    return sum(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for s in tree.body)


def _chained(tree: ast.AST) -> int:
    "Statements that share a line with the statement before them (`a; b`)."
    n = 0
    for node in ast.walk(tree):
        for field in ('body', 'orelse', 'finalbody', 'handlers'):
            body = getattr(node, field, None)
            if isinstance(body, list):
                stmts = [s for s in body if isinstance(s, ast.stmt)]
                n += sum(b.lineno == a.end_lineno for a, b in zip(stmts, stmts[1:]))
    return n


def export_cells(root: Path = ROOT) -> list[dict]:
    "Each export cell of the module notebooks: its notebook, lines, definitions and `;`-chained statements."
    out = []
    for m, nb in module_notebooks(root).items():
        for src in _cells(nb):
            if not _EXPORT.search(src.split('\n', 1)[0] + '\n'): continue
            body = '\n'.join(l for l in src.splitlines() if not l.lstrip().startswith('#|'))
            tree = ast.parse(body)
            defs = _definitions(tree)
            out.append(dict(notebook=nb.relative_to(root/'nbs').as_posix(), lines=len(body.strip().splitlines()),
                            defs=defs, chained=_chained(tree)))
    return out


def measure(root: Path = ROOT) -> dict:
    "Every number of the layout, as a dict."
    root = Path(root)
    g, order = graph(root), reading_order(root)
    cells = export_cells(root)
    lines = {m: v['lines'] for m, v in g.items()}
    big = max(lines, key=lines.get)
    return dict(
        modules=len(g), circles=circles(g), upward_imports=upward_imports(g, order),
        private_imports=sorted(f'{m} <- {d}.{nm}' for m in g for d, nm in g[m]['private']),
        forward_references=forward_references(root), local_imports=sum(v['local'] for v in g.values()),
        export_cells=len(cells), defs_per_cell=round(sum(c['defs'] for c in cells) / len(cells), 2),
        lines_per_cell=round(sum(c['lines'] for c in cells) / len(cells), 1),
        longest_cell=max(c['lines'] for c in cells), cells_over_80=sum(c['lines'] > 80 for c in cells),
        chained_statements=sum(c['chained'] for c in cells),
        largest_module=f'{big} ({lines[big]} lines)', largest_module_lines=lines[big])


def test_modules_read_in_order():
    "No circle, and no module imports one whose notebook is read after it (exported code and notebook tests)."
    stray = [str(nb) for nb in module_notebooks().values() if not re.match(r'^\d+_\w+$', nb.parent.name)]
    assert not stray, f'module notebooks outside a part folder (nbs/0_study/, nbs/1_method/, ...): {stray}'
    g = graph()
    assert not circles(g), circles(g)
    assert not upward_imports(g, reading_order()), upward_imports(g, reading_order())
    assert not forward_references(), forward_references()


def test_public_seams():
    "What one module takes from another is public."
    g = graph()
    assert not [(m, p) for m in g for p in g[m]['private']], [(m, p) for m in g for p in g[m]['private']]


def test_export_cells():
    "About one definition per export cell, on average over the package."
    cells = export_cells()
    assert sum(c['defs'] for c in cells) / len(cells) <= 1.3, sum(c['defs'] for c in cells) / len(cells)


if __name__ == '__main__':
    r = measure(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    for k, v in r.items(): print(f'{k}: {len(v)} {v}' if isinstance(v, list) else f'{k}: {v}')
