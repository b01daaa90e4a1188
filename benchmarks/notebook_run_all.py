#!/usr/bin/env python
"""Wall time of "Run All" on each experiment notebook with its defaults, executed as Jupyter executes it: nbclient,
the kernel started in the notebook's own folder (nbs/experiments/).

    python benchmarks/notebook_run_all.py              # both experiment notebooks -> benchmarks/notebook_run_all.md
    python benchmarks/notebook_run_all.py compare      # one of them

Every parameter keeps its default (the CPU demo: the synthetic world and the tiny CLIP stand-in from `make data`)
except where the results go: `out_dir` and `fig_root` point into a temporary folder, so that runs/ and figures/
of the checkout are left alone. The table records the machine's CPU count and load average, since the time
depends on what else runs there.
"""
import argparse, os, platform, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT/'nbs'/'experiments'


def run_all(name: str, out: Path) -> dict:
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(EXPERIMENTS/f'{name}.ipynb', as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if 'parameters' in c.metadata.get('tags', []))
    cell = nbformat.v4.new_code_cell(f'out_dir = {str(out/"runs"/name)!r}\nfig_root = {str(out/"figures")!r}')
    cell.metadata['tags'] = ['injected-parameters']
    nb.cells.insert(i + 1, cell)
    load0, t0 = os.getloadavg()[0], time.time()
    NotebookClient(nb, timeout=3600, kernel_name='python3', resources={'metadata': {'path': str(EXPERIMENTS)}}).execute()
    wall = time.time() - t0
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']
    return dict(notebook=f'nbs/experiments/{name}.ipynb', wall_s=round(wall, 1), ok=not errors,
                load_start=round(load0, 1), load_end=round(os.getloadavg()[0], 1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('names', nargs='*', default=['labeler_tokens', 'compare'])
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'notebook_run_all.md'))
    a = ap.parse_args(argv)
    os.environ['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else []))
    os.environ.pop('MPLBACKEND', None)   # the kernel's inline backend, as in Jupyter
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in a.names:
            r = run_all(n, Path(d)); rows.append(r)
            print(f"{r['notebook']}: {'ok' if r['ok'] else 'FAILED'} in {r['wall_s']:.0f} s "
                  f"(load average {r['load_start']} -> {r['load_end']})", flush=True)
    lines = ['# "Run All" on the experiment notebooks with their defaults', '',
             f'`python benchmarks/notebook_run_all.py` — nbclient, kernel in `nbs/experiments/`; {os.cpu_count()} CPUs, '
             f'{platform.processor() or platform.machine()}, Python {platform.python_version()}. The load average is the '
             '1-minute figure at the start and end of each run (above the CPU count: other processes shared the CPU).', '',
             '| notebook | result | wall time | load average (start → end) |', '|---|---|---|---|']
    lines += [f"| `{r['notebook']}` | {'ok' if r['ok'] else 'failed'} | {r['wall_s'] / 60:.1f} min ({r['wall_s']:.0f} s) | "
              f"{r['load_start']} → {r['load_end']} |" for r in rows]
    Path(a.out).write_text('\n'.join(lines) + '\n')
    print(f'wrote {a.out}')
    return 0 if all(r['ok'] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
