"""Every command on a study folder in the real format WITHOUT ground truth (`study_like.write_study_like`): other
machines' image paths, extra columns, 0/blank answers, repeated pairs — and the same without repeats."""
import json, shutil
from pathlib import Path
import pandas as pd, pytest
from conftest import TINY_PARAMS, labelertok_cmd, run

# the study's comparison preset shrunk to seconds: the tiny random-init model, 1 epoch, 2 seeds
COMPARE_TINY = dict(model='tiny', pretrained='null', epochs=1, seeds=2, n_users=3, batch_size=64, eval_batch_size=256,
                    n_boot=100, leakage_splits='[sample, pair]', leakage_seeds=1, leakage_epochs=1, fewshot_epochs=1,
                    fewshot_ks='[5, 10]', fewshot_reps=2, fewshot_min_eval=20, token_steps=5, device='cpu', threads=1)


def run_on_study(tmp_path, study_world, env, out, n_users, **extra):
    "`labelertok run` of the tiny model for 1 epoch on the study folder into `out` (figures under tmp_path, never the checkout's)."
    import yaml
    preset = tmp_path/'tiny.yaml'
    preset.write_text(yaml.safe_dump(dict(TINY_PARAMS, data_dir=str(study_world), epochs=1, n_users=n_users,
                                          fig_root=str(tmp_path/'run_figures'), **extra)))
    r = run(labelertok_cmd() + ['run', preset, '--out-dir', out], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


def compare(preset_overrides, data_dir, tmp_path, env):
    out, figs = tmp_path/'runs'/'cmp', tmp_path/'figures'
    ps = dict(COMPARE_TINY, data_dir=data_dir, fig_root=figs, **preset_overrides)
    r = run(labelertok_cmd() + ['compare', 'compare_study', '--out-dir', out] + [x for k, v in ps.items() for x in ('-p', k, v)],
            env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return out, (figs/'compare_study'/'results.md').read_text()


def table_rows(md: str, section: str = '## All methods') -> dict:
    rows = [l for l in md.split(section)[1].split('\n## ')[0].splitlines() if l.startswith('| ') and not l.startswith('| method')]
    return {l.split(' | ')[0].strip('| '): l for l in rows}


def test_compare_study_without_ground_truth(tmp_path, study_world, env):
    "`labelertok compare compare_study -p data_dir <study>` finishes: every method's row, and the bounds from test-retest (no ceiling row)."
    assert not (study_world/'ground_truth.json').exists()
    out, md = compare({}, study_world, tmp_path, env)
    from labelertok.baselines import METHODS
    rows = table_rows(md)
    for m in METHODS: assert m in rows or m == 'ceiling', m
    assert 'ceiling' not in rows                   # no Bayes ceiling without ground truth: bounds instead
    for m in ('no_token_study', 'tokens_text_study', 'tokens_learned_study'): assert m in rows, m   # the study's protocol
    for b in ('bound_lower', 'bound_upper'):       # overall: a value with an interval from the repeated pairs
        cell = rows[b].split(' | ')[2]
        assert '[' in cell and cell[0].isdigit(), rows[b]
    assert 'test–retest' in md and 'crossed design' in md and 'Satterthwaite' in md
    assert 'Bounds n/a: `<user3>`: only' in md       # too few repeats for the third labeler: said, not crashed
    assert '## Gap closed' in md and '| upper bound |' in md
    for section in ['## Personalisation gain per labeler', '## Leakage', '## A new labeler from few answers', '## Taste map']:
        assert section in md, section
    assert '## What the backbone can see' not in md  # needs latent features: synthetic worlds only
    sec = md.split('## Ratings (1–4) per method')[1].split('## Figures')[0]   # the study's rating sheets: every trained model on ratings
    for m in ('no_token', 'tokens_text', 'tokens_learned', 'mean_rating', 'mlp_labeler', 'mlp_population'): assert f'| `{m}`' in sec, m
    assert 'Bayes ceiling' not in sec and '`tokens_learned` | `no_token` |' in sec and '### Ratings: conclusion' in sec
    assert json.loads((out/'params.json').read_text())['seeds'] == [0, 1]


@pytest.mark.slow
def test_compare_study_without_repeats(tmp_path, study_world_no_repeats, env):
    "No repeated pairs at all: no ceiling or bound rows, the reason said; every method still has its row."
    _, md = compare(dict(seeds=1, leakage='false', fewshot='false'), study_world_no_repeats, tmp_path, env)
    rows = table_rows(md)
    assert not {'ceiling', 'bound_lower', 'bound_upper'} & set(rows), rows.keys()
    assert 'Bounds n/a' in md and 'no repeated pairs' in md and 'tokens_learned' in rows


def test_run_report_explore(tmp_path, study_world, env):
    "`labelertok run`, `labelertok report` (two runs called `run` keep their own figures) and exploration on the study folder."
    runs = [tmp_path/'a'/'run', tmp_path/'b'/'run']
    run_on_study(tmp_path, study_world, env, runs[0], n_users=3)
    shutil.copytree(runs[0], runs[1])                      # a second finished run with the same folder name
    figs = tmp_path/'figures'
    r = run(labelertok_cmd() + ['report'] + runs + ['--fig-root', figs], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    reports = sorted(figs.rglob('results.md'))
    assert len(reports) == 2, reports                      # not one folder `run` overwritten by the other
    md = reports[0].read_text()
    assert 'Test–retest' in md and 'n/a' in md             # <user3> has too few repeats
    from labelertok.report import load_run, study_protocol_accuracy
    sp = study_protocol_accuracy(load_run(runs[0]))        # the selected weights scored the study's way (one template)
    assert sp is not None and sp['lo'] <= sp['acc'] <= sp['hi'] and sp['n'] > 0, sp
    from labelertok.explore import explore_study, EXPLORE_FIGURES
    tables = explore_study(study_world, tmp_path/'explore', verbose=False)
    rc = tables['retest_ceilings'].set_index('token')
    assert rc.loc['<user1>', 'upper_lo'] < rc.loc['<user1>', 'upper'] < rc.loc['<user1>', 'upper_hi']
    assert rc.loc['<user1>', 'lower_lo'] < rc.loc['<user1>', 'lower'] < rc.loc['<user1>', 'lower_hi'] < rc.loc['<user1>', 'upper_hi']
    for f in EXPLORE_FIGURES: assert (tmp_path/'explore'/f).exists(), f


def test_score_export_on_study_data(tmp_path, study_world, env):
    "A run on the real-format study, then `labelertok score` (images, pairs in the study's 2/1 coding) and `export`."
    out = tmp_path/'run'
    run_on_study(tmp_path, study_world, env, out, n_users=2)
    imgs = sorted(study_world.rglob('*.png'))[:4]
    r = run(labelertok_cmd() + ['score', out, '--labeler', 'all', '--attribute', 'all', '--images', *imgs,
                                '--out', tmp_path/'scores.csv'], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    df = pd.read_csv(tmp_path/'scores.csv')
    assert len(df) == 4 * 2 * 3 and df['score'].notna().all()
    pd.DataFrame(dict(im1=[str(p) for p in imgs[:2]], im2=[str(p) for p in imgs[2:]], label=[2, 1])).to_csv(tmp_path/'pairs.csv', index=False)
    r = run(labelertok_cmd() + ['score', out, '--labeler', 'user1', '--attribute', 'smart', '--pairs', tmp_path/'pairs.csv',
                                '--out', tmp_path/'probs.csv'], env, tmp_path)
    assert r.returncode == 0 and '95% CI' in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]
    assert pd.read_csv(tmp_path/'probs.csv')['p_im1'].between(0, 1).all()
    r = run(labelertok_cmd() + ['export', out, tmp_path/'exported'], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    card = json.loads((tmp_path/'exported'/'labelertok_export.json').read_text())
    assert {u['user_id'] for u in card['card']['labelers']} <= set(pd.read_excel(study_world/'big_compare_label.xlsx')['user_id'].astype(str))
    res = json.loads((out/'ratings.json').read_text())   # a comparisons run on a folder with rating sheets: cut-points fitted after
    assert res['task'] == 'compare' and res['head'].startswith('fitted') and res['ceilings'] is None


def test_ratings_on_study_data(tmp_path, study_world, env):
    """The 1-4 ratings of the real-format study without ground truth (other machines' paths, a 0 or 5, the small set as
    .csv): a `task both` run, its report, `score --ratings` on the run and on its export, and the refusals."""
    assert not (study_world/'ground_truth.json').exists()
    out = tmp_path/'run'
    run_on_study(tmp_path, study_world, env, out, n_users=3, task='both', select_metric='auto', ratings='on')
    h = pd.read_csv(out/'history.csv')
    assert {'val_rate_loss', 'val_rate_exact', 'val_rate_mae', 'val_joint_loss', 'train_rate_loss'} <= set(h.columns)
    assert h['val_rate_loss'].notna().all() and h.loc[h.epoch > 0, 'train_rate_loss'].notna().all()
    res = json.loads((out/'ratings.json').read_text())
    assert res['task'] == 'both' and res['head'] == 'trained with the model' and res['ceilings'] is None
    groups = [r['group'] for r in res['metrics']]
    assert groups[0] == 'overall' and set(groups[1:]) <= {'<user1>', '<user2>', '<user3>'} and len(groups) > 2
    assert set(res['baselines']) == {'mean_rating', 'mlp_labeler', 'mlp_population'} and set(res['gains']) == set(res['baselines'])
    o = res['metrics'][0]
    assert 0 <= o['exact'] <= 1 and o['exact_lo'] <= o['exact'] <= o['exact_hi'] and 0 <= o['mae'] <= 3
    md = (tmp_path/'run_figures'/'run'/'results.md').read_text()
    sec = md.split('## Ratings (1–4)')[1].split('\n## ')[0]
    assert '| `<user1>` |' in sec and '<user1>' not in sec.replace('`<user1>`', '') and 'Bayes' not in sec.split('|---')[0]
    assert 'trained on `both`' in md
    imgs = sorted(study_world.rglob('*.png'))[:3]
    r = run(labelertok_cmd() + ['score', out, '--labeler', 'all', '--attribute', 'smart', '--images', *imgs, '--ratings',
                                '--out', tmp_path/'rated.csv'], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    df = pd.read_csv(tmp_path/'rated.csv')
    assert list(df.columns) == ['image', 'labeler', 'attribute', 'p1', 'p2', 'p3', 'p4', 'rating', 'expected'] and len(df) == 3 * 3
    assert ((df[['p1', 'p2', 'p3', 'p4']].sum(axis=1) - 1).abs() < 1e-4).all() and df['rating'].between(1, 4).all()
    r = run(labelertok_cmd() + ['score', out, '--attribute', 'smart', '--images', *imgs, '--ratings', '--out', tmp_path/'x.csv'], env, tmp_path)
    assert r.returncode == 2 and 'ratings need a labeler' in r.stderr, r.stderr[-2000:]
    r = run(labelertok_cmd() + ['score', out, '--labeler', 'user9', '--attribute', 'smart', '--images', *imgs, '--ratings',
                                '--out', tmp_path/'x.csv'], env, tmp_path)
    assert r.returncode == 2 and "unknown labeler 'user9'" in r.stderr, r.stderr[-2000:]
    r = run(labelertok_cmd() + ['export', out, tmp_path/'exported'], env, tmp_path)
    assert r.returncode == 0 and (tmp_path/'exported'/'rating_head.safetensors').is_file(), r.stderr[-2000:]
    r = run(labelertok_cmd() + ['score', tmp_path/'exported', '--labeler', 'all', '--attribute', 'smart', '--images', *imgs,
                                '--ratings', '--out', tmp_path/'rated_export.csv'], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path/'rated_export.csv'), df, atol=1e-5)
    r = run(labelertok_cmd() + ['run', tmp_path/'tiny.yaml', '--out-dir', tmp_path/'no', '-p', 'task', 'rate', '-p', 'select_metric', 'val_acc'], env, tmp_path)
    assert r.returncode == 2 and "select_metric='val_acc' with task='rate'" in r.stderr, r.stderr[-2000:]


def test_quality_on_study_data(tmp_path, study_world, env):
    """`labelertok quality` on the real-format study (ratings with other machines' paths, a 0 or 5 among them, the small
    set as .csv): the fast random clicker (<user3>, one to two seconds between answers) is the one labeler flagged."""
    out = tmp_path/'quality'
    r = run(labelertok_cmd() + ['quality', study_world, '--out', out], env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert (study_world/'small_label.csv').exists()
    q = pd.read_csv(out/'quality.csv')
    assert q.loc[q.flagged, 'token'].tolist() == ['<user3>'], q[['token', 'reasons']]
    assert q.set_index('token').loc['<user3>', 'reasons'].startswith('fast:') and (q.n_ratings > 0).all()
    md = (out/'quality.md').read_text()
    assert '1 outside 1–4' in md and '(big_label + small_label)' in md     # the 0 or 5 planted by write_study_like: counted, not read
    assert '| `<user1>` | `' in md and '<user1>' not in md.replace('`<user1>`', '')
    r = run(labelertok_cmd() + ['quality', study_world, '--out', out], env, tmp_path)   # its own report: replaced
    assert r.returncode == 0, r.stderr[-2000:]
    (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'quality.csv').write_text('my table')
    r = run(labelertok_cmd() + ['quality', study_world, '--out', tmp_path/'mine'], env, tmp_path)
    assert r.returncode == 2 and 'not written by a quality report' in r.stderr
    assert (tmp_path/'mine'/'quality.csv').read_text() == 'my table'


def test_learning_curves_on_study_data(tmp_path, study_world, env):
    """`labelertok compare learning_curves` on a study folder (no ground truth): token model and probe at each share of
    every labeler's answers with intervals; the visible ceiling is the probe curve's extrapolation, labelled an estimate."""
    out, figs = tmp_path/'runs'/'lc', tmp_path/'figures'
    ps = dict(COMPARE_TINY, data_dir=study_world, fig_root=figs, seeds=1, curves_fractions='[0.5, 1.0]', curves_seeds=2)
    for k in ('leakage_splits', 'leakage_seeds', 'leakage_epochs', 'fewshot_epochs', 'fewshot_ks', 'fewshot_reps', 'fewshot_min_eval', 'token_steps'):
        ps.pop(k)
    r = run(labelertok_cmd() + ['compare', 'learning_curves', '--out-dir', out] + [x for k, v in ps.items() for x in ('-p', k, v)],
            env, tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    md = (figs/'learning_curves'/'results.md').read_text()
    lc = pd.read_csv(figs/'learning_curves'/'learning_curves.csv')
    assert set(lc.method) == {'labeler tokens (learned)', 'linear probe'} and sorted(lc.fraction.unique()) == [0.5, 1.0]
    assert set(lc.group) == {'overall', '<user1>', '<user2>', '<user3>'} and (lc.n_seeds == 2).all()
    assert (lc.lo <= lc['mean']).all() and (lc['mean'] <= lc.hi).all() and lc.bayes.isna().all()
    half = lc[(lc.fraction == 0.5) & (lc.group == '<user1>')].n_answers.iloc[0]
    full = lc[(lc.fraction == 1.0) & (lc.group == '<user1>')].n_answers.iloc[0]
    assert 0.3 * full < half < 0.7 * full
    assert '## Learning curves: how many answers per labeler?' in md and 'an estimate' in md
    assert '| visible_ceiling | visible ceiling |' in md and 'visible ceiling (estimate)' in md
    assert (figs/'learning_curves'/'learning_curves.png').is_file()
    assert '## Leakage' not in md and '## A new labeler from few answers' not in md
