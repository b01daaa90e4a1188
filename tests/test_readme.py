"""The README's Python example (the ```python block under "## Use the library") must keep working."""
import re, subprocess, sys
from pathlib import Path
from conftest import ROOT

README = ROOT/'README.md'


def readme_snippet(text: str) -> str:
    "The first ```python block of the '## Use the library' section."
    m = re.search(r'^## Use the library[ \t]*\n(.*?)(?=^## |\Z)', text, flags=re.M | re.S)
    assert m, "README.md has no '## Use the library' section"
    code = re.search(r'^```python[ \t]*\n(.*?)^```', m.group(1), flags=re.M | re.S)
    assert code, "the '## Use the library' section of README.md has no ```python block"
    return code.group(1)


def test_snippet_extraction():
    text = "# x\n## Use the library\nSome words.\n```python\nprint(1)\n```\n## Next\n```python\nprint(2)\n```\n"
    assert readme_snippet(text) == 'print(1)\n'


def test_readme_python_runs(tmp_path, env):
    "Runs the snippet in a fresh interpreter, in an empty folder (it writes data/ and runs/ there)."
    code = readme_snippet(README.read_text())
    (tmp_path/'snippet.py').write_text(code)
    r = subprocess.run([sys.executable, 'snippet.py'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"README snippet failed:\n{code}\n--- stderr ---\n{r.stderr[-4000:]}"
