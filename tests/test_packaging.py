"""The package as a user installs it: a wheel, installed into a fresh virtual environment and run from a
folder that is not the repository, finds its bundled parameter sets, trials and fit specifications."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_and_runs_the_main_job_models_and_a_fit_from_any_folder(tmp_path):
    wheels, env_dir, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    run = lambda *cmd, cwd=work: subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)  # noqa: E731
    source = tmp_path / "source"  # a clean copy: no stale build/ folder can leak old modules into the wheel
    top_level = {".git", "build", "dist", "results"}  # at the repository's top only: src/hcvdyn/results is code
    shutil.copytree(ROOT, source, symlinks=True, ignore=lambda folder, names: [
        n for n in names if (Path(folder) == ROOT and n in top_level) or n.endswith(".egg-info") or n == "__pycache__"
        or n.endswith("_cache")])
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source))
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("hcvdyn-*.whl")
    # the environment sees the test machine's numpy/jax/diffrax/lmfit, but hcvdyn only from the wheel
    assert run(sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)).returncode == 0
    python, hcvdyn = env_dir / "bin" / "python", env_dir / "bin" / "hcvdyn"
    installed = run(str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel))
    assert installed.returncode == 0, installed.stderr
    where = run(str(python), "-c", "import hcvdyn; print(hcvdyn.__file__)")
    assert str(env_dir) in where.stdout, f"hcvdyn imported from {where.stdout!r}, not from the wheel"

    models = run(str(hcvdyn), "models")
    assert models.returncode == 0, models.stderr
    assert "celgosivir_phase2" in models.stdout and "g1_nonresponder_population" in models.stdout

    sim = run(str(hcvdyn), "simulate", "celgosivir_phase2")
    assert sim.returncode == 0, sim.stderr
    summary = (work / "results" / "celgosivir_phase2" / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("arm,virtual_mean_drop") and len(summary) == 4

    fit = run(str(hcvdyn), "fit", "tcl_recovery", "--out", "results/fit")
    assert fit.returncode == 0, fit.stderr
    result = json.loads((work / "results" / "fit" / "result.json").read_text())
    assert result["converged"] and abs(result["estimates"]["eps"]["value"] - 0.85) < 0.05
