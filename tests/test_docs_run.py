"""The README and the tutorials run as written: every shell and Python block, in order, in a fresh copy of the
working tree with its own virtual environment (so the README's `pip install -e .` cannot move the test
machine's installation).

9 minutes on 2 cores (2026-12-05), so it has its own tier: ``python -m pytest -m docs``. The default run, ``.ci/run`` and
``-m slow`` leave it out (tests/conftest.py); see docs/index.md. The README's test command is the one block not
run here (it would run this suite inside itself). It checks that each block succeeds, not the outputs the docs
quote.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/tutorials.md")
FENCE = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, first line) of each fenced bash or python block of a Markdown file, in order."""
    text = path.read_text()
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 2) for m in FENCE.finditer(text)]


def copy_working_tree(dest: Path) -> None:
    """The files git would clone plus untracked ones it does not ignore (symlinks kept), as they are on disk; without
    git, the whole folder less its build outputs."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        top_level = {".git", "build", "dist", "results"}
        shutil.copytree(ROOT, dest, symlinks=True, ignore=lambda folder, names: [
            n for n in names if (Path(folder) == ROOT and n in top_level) or n.endswith(".egg-info") or n == "__pycache__"])
        return
    for name in filter(None, listed.stdout.split("\0")):
        src, dst = ROOT / name, dest / name
        if not (src.is_symlink() or src.is_file()):  # deleted in the working tree
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def test_blocks_are_found():
    found = blocks(ROOT / "README.md")
    assert found[0][0] == "bash" and "hcvdyn simulate celgosivir_phase2" in found[0][1]
    assert any(lang == "python" for lang, _, _ in found)
    assert sum("python -m pytest" in code for _, code, _ in found) == 1  # the one block left out


@pytest.mark.docs
def test_readme_and_tutorials_run_as_written(tmp_path):
    source, venv = tmp_path / "hcvdyn", tmp_path / "venv"
    copy_working_tree(source)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    times = []
    for doc in DOCS:
        for lang, code, line in blocks(ROOT / doc):
            if "python -m pytest" in code:
                continue
            cmd = ["bash", "-e", "-o", "pipefail", "-c", code] if lang == "bash" else [str(venv / "bin" / "python"), "-c", code]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, cwd=source, env=env, capture_output=True, text=True, timeout=1800)
            times.append((time.perf_counter() - t0, f"{doc}:{line}"))
            assert done.returncode == 0, (f"{doc}, block at line {line} exited {done.returncode}:\n{code}\n"
                                          f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}")
    print("\n".join(f"{t:7.1f} s  {where}" for t, where in times))
