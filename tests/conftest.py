"""Test configuration: 64-bit floats, and one JAX compilation cache shared by every process of a run.

The suite runs in parallel (pytest-xdist, one worker per core, whole files per worker), and some tests start
the ``hcvdyn`` command in a subprocess. All of them share one compilation cache (:mod:`hcvdyn.cache`), so a
program compiled in one process is read, not compiled again, in another. The cache is ``$HCVDYN_CACHE_DIR`` when
set (set it to ``~/.cache/hcvdyn/jax`` to keep compiled programs between runs), else a fresh temporary folder, so
that a clean run is measured cold.
"""

import os
import shutil
import tempfile

import jax
import pytest

jax.config.update("jax_enable_x64", True)
OWN_CACHE = []  # the temporary cache folder this process made (and removes at the end)


def pytest_configure(config):
    if "HCVDYN_CACHE_DIR" not in os.environ:  # the first process of the run; workers and subprocesses inherit it
        os.environ["HCVDYN_CACHE_DIR"] = tempfile.mkdtemp(prefix="hcvdyn-test-cache-")
        OWN_CACHE.append(os.environ["HCVDYN_CACHE_DIR"])
    from hcvdyn.cache import enable_compilation_cache

    enable_compilation_cache()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``docs`` (the README and tutorials run as written, 9 min) are collected only when ``-m``
    names them (``python -m pytest -m docs``): not by the default run, ``.ci/run`` or ``-m slow``."""
    if "docs" in (config.option.markexpr or ""):
        return
    docs = [item for item in items if item.get_closest_marker("docs")]
    if docs:
        config.hook.pytest_deselected(items=docs)
        items[:] = [item for item in items if not item.get_closest_marker("docs")]


def pytest_unconfigure(config):
    for folder in OWN_CACHE:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("HCVDYN_CACHE_DIR", None)


@pytest.fixture(scope="module")
def bundled():
    """The bundled synthetic trial's fit specification and data (fits/tcl_recovery.toml)."""
    import hcvdyn

    spec = hcvdyn.load_fit_spec(hcvdyn.files.find_fit_spec("tcl_recovery"))
    return spec, spec.read_data()
