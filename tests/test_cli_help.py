"""Every command explains itself: `labelertok --version`, a help text for every option and positional argument of
every subcommand, and the default of every option that has one."""
import argparse, re
from conftest import ROOT, labelertok_cmd, run
from labelertok import __version__
from labelertok.cli import build_parser


def _subcommands():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_version(env):
    r = run(labelertok_cmd() + ['--version'], env, ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f'labelertok {__version__}', r.stdout + r.stderr


def test_every_option_has_help():
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}"
               for name, s in _subcommands().items() for a in s._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or '').strip()]
    assert not missing, f'options without help text: {missing}'


def test_defaults_are_shown():
    for name, s in _subcommands().items():
        text = ' '.join(s.format_help().split())
        for a in s._actions:
            if not a.option_strings or a.default in (None, argparse.SUPPRESS) or a.default is False or a.default == []: continue
            flag = a.option_strings[-1]
            i = text.index(flag + ' ', text.index('options:'))
            assert re.search(rf'default[: ]', text[i:i + 400]), f'labelertok {name} {flag}: default {a.default!r} not shown'
    h = ' '.join(_subcommands()['add-labeler'].format_help().split())
    assert 'held out to measure accuracy (default: 0.3)' in h
