"The committed results say only what their tables hold: generated conclusions, and no typed result in the prose."
import json, re

import pandas as pd
import pytest

from conftest import ROOT

COMPARE = ROOT/'figures'/'compare'
RESULT_NUMBER = re.compile(r"\d+\.\d\s?%|[+-]\d+\.\d\b")   # a typed accuracy or gain: 66.6%, +5.2


def _markdown_cells(nb_path):
    return [''.join(c['source']) for c in json.loads(nb_path.read_text())['cells'] if c['cell_type'] == 'markdown']


def test_compare_answer_states_only_numbers_of_its_tables():
    "The answer of the committed comparison is generated from its CSVs: every number it states is one of theirs."
    from labelertok.compare_report import compare_answer, numbers_in_tables, stated_numbers
    text = compare_answer(COMPARE)
    held = numbers_in_tables(COMPARE)
    missing = [x for x in stated_numbers(text) if x not in held]
    assert not missing, (missing, text)
    methods = pd.read_csv(COMPARE/'methods.csv')
    assert methods[methods.method == 'no_token'].n_seeds.iloc[0] >= 5       # claims rest on 5 seeds


def test_committed_compare_notebook_says_the_generated_answer():
    "The executed notebook's answer is today's `compare_answer` of its tables (a stale or edited answer fails)."
    from labelertok.compare_report import compare_answer
    nb = json.loads((COMPARE/'compare.ipynb').read_text())
    outs = [''.join(o.get('data', {}).get('text/markdown', '')) for c in nb['cells'] if c['cell_type'] == 'code'
            and 'compare_answer(' in ''.join(c['source']) for o in c.get('outputs', [])]
    assert outs and outs[0].strip() == compare_answer(COMPARE).strip()


@pytest.mark.parametrize('nb', ['nbs/experiments/compare.ipynb', 'figures/compare/compare.ipynb'])
def test_experiment_prose_types_no_results(nb):
    "Judgement lives in the notebook's prose, numbers in generated sentences: no typed accuracy or gain in markdown."
    typed = [m for s in _markdown_cells(ROOT/nb) for m in RESULT_NUMBER.findall(s)]
    assert not typed, typed


def _conclusions(d) -> str:
    """The conclusions generated from a committed study's `summary.csv`: `sweep_conclusions` of a grid sweep, or
    `conditioning_conclusions` of the conditioning study (its summary has one row per method, not per cell)."""
    s = pd.read_csv(d/'summary.csv')
    if 'method' in s.columns:
        from labelertok.conditioning import conditioning_conclusions
        return conditioning_conclusions(s)
    from labelertok.sweep import sweep_conclusions
    return sweep_conclusions(s)


@pytest.mark.parametrize('name', sorted(p.name for p in (ROOT/'figures'/'sweeps').iterdir() if p.is_dir()))
def test_sweep_conclusions_are_generated(name):
    "Each committed sweep's conclusion is generated from its committed summary, word for word, in results.md too."
    d = ROOT/'figures'/'sweeps'/name
    text = _conclusions(d)
    assert (d/'conclusion.md').read_text().strip() == text.strip()
    assert text.strip() in (d/'results.md').read_text()


GUIDE = ROOT/'docs'/'guide'/'experiments.md'   # where the comparison and the sweeps are described


def test_guide_compare_section_quotes_the_committed_run():
    "The guide's comparison table and answer are the committed tables' numbers, and its wall time is results.md's."
    from labelertok.compare_report import compare_answer, numbers_in_tables, stated_numbers
    readme = GUIDE.read_text()
    sec = readme.split('## What the labeler token buys')[1].split('\n## ')[0]
    assert compare_answer(COMPARE).strip() in sec
    table = '\n'.join(l for l in sec.splitlines() if l.startswith('| `'))
    held = numbers_in_tables(COMPARE)
    assert table and not [x for x in stated_numbers(table) if x not in held]
    wall = re.search(r"Wall time of the whole comparison: ([\d.]+) min", (COMPARE/'results.md').read_text()).group(1)
    assert f"took {wall} minutes" in sec


def test_guide_sweep_conclusions_are_the_generated_ones():
    "The guide quotes each sweep's generated conclusion word for word."
    readme = GUIDE.read_text()
    for d in sorted(p for p in (ROOT/'figures'/'sweeps').iterdir() if p.is_dir()):
        assert _conclusions(d).strip() in readme, d.name



@pytest.mark.parametrize('name', sorted(p.name for p in (ROOT/'figures'/'sweeps').iterdir() if (p/'ratings_summary.csv').is_file()))
def test_sweep_ratings_conclusions_are_generated(name):
    "A sweep with 1-4 ratings: its ratings conclusion is `sweep_ratings_conclusions` of its committed tables, in results.md and the guide too."
    from labelertok.ordinal import sweep_ratings_conclusions
    d = ROOT/'figures'/'sweeps'/name
    text = sweep_ratings_conclusions(pd.read_csv(d/'ratings_summary.csv'), pd.read_csv(d/'ratings_gains.csv'))
    assert text and (d/'ratings_conclusion.md').read_text().strip() == text.strip()
    assert text.strip() in (d/'results.md').read_text() and text.strip() in GUIDE.read_text()


@pytest.mark.parametrize('name', ['conditioning', 'conditioning_readout'])
def test_guide_quotes_the_new_labeler_conclusion(name):
    "The guide quotes each committed conditioning study's generated new-labeler conclusion (its best mode) word for word."
    res = (ROOT/'figures'/'sweeps'/name/'results.md').read_text()
    sec = res.split('## A new labeler from few answers (')[1].split('\n## ')[0]
    conclusion = [l for l in sec.splitlines() if l.startswith('From ')]
    assert len(conclusion) == 1 and '> ' + conclusion[0] in GUIDE.read_text()
