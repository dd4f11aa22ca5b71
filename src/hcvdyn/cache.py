"""The persistent compilation cache: compiled solves and fits are kept on disk between processes, so that a
command's second run on a machine does not compile again.

The folder is ``$HCVDYN_CACHE_DIR`` when set (``off`` disables the cache), else ``$XDG_CACHE_HOME/hcvdyn/jax``
or ``~/.cache/hcvdyn/jax``. Entries are keyed by JAX on the compiled program, the JAX version and the machine, so a
stale entry is never used. The ``hcvdyn`` command enables it; library users call :func:`enable_compilation_cache`.
The folder is not pruned (tens of megabytes after every command and the tests; delete it at any time). JAX's own
size limit (``jax_compilation_cache_max_size``) is not set: its bookkeeping made a second ``hcvdyn report`` 17 s
slower (75 s against 58 s on 2 cores, 2026-12-05).

JAX does not store programs that call back into Python. Equinox's runtime checks inside diffrax do so unless
``EQX_ON_ERROR=nan``, which ``hcvdyn`` sets at import when the variable is unset: a failed check then yields NaN,
which every solver path reports as a failed solve (``Trajectory.ok``, :class:`hcvdyn.solve.options.NumericalError`).

XLA's CPU compiler orders a program's operations for concurrency by default, so that independent ones can run on
several threads. The adaptive solves are while loops of a few hundred steps, each of many tiny operations, and on
2 cores the handing of those between threads cost more than it saved: ``hcvdyn`` sets
``--xla_cpu_enable_concurrency_optimized_scheduler=false`` in ``XLA_FLAGS`` at import, unless the variable already
names that flag (set it ``=true`` to keep XLA's default). A batch of 19 patients' residuals and Jacobians took 18 ms
a call with the scheduler off against 28 ms with it, and the bundled trial's per-arm fits 40 against 60 ms per patient (2 cores,
2026-12-05); the virtual-trial grid solver was unchanged (4.1-4.2 s). XLA reads the variable when its CPU backend
starts, so the setting has no effect in a process that ran JAX before importing hcvdyn.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["ENV", "XLA_CPU_FLAG", "cache_dir", "enable_compilation_cache", "xla_flags"]

ENV = "HCVDYN_CACHE_DIR"
# Every program is kept, however fast it compiles: reading one back takes milliseconds. At a 0.5 s threshold the
# main job compiled ten small programs (0.3 s in all) on every run; without it its second run took 4.9 s, not 5.4 s
# (2 cores, 3 runs each).
MIN_COMPILE_SECONDS = 0.0
XLA_CPU_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


def xla_flags(current: str) -> str:
    """``XLA_FLAGS`` as hcvdyn sets it at import: ``current`` with :data:`XLA_CPU_FLAG` ``=false`` appended, or
    ``current`` itself when it already names that flag (see the module docstring)."""
    if re.search(rf"(^|\s)--?{XLA_CPU_FLAG.lstrip('-')}(=|\s|$)", current):
        return current
    return f"{current} {XLA_CPU_FLAG}=false".strip()


def cache_dir() -> Path | None:
    """The cache folder (see the module docstring), or None when ``$HCVDYN_CACHE_DIR`` is ``off``."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() in ("off", "0", "none", "false"):
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hcvdyn" / "jax"


def enable_compilation_cache(folder: str | os.PathLike | None = None) -> Path | None:
    """Keep compiled programs in ``folder`` (default :func:`cache_dir`); returns the folder, or None when disabled
    or when the folder cannot be created (the cache is an optimisation: nothing fails without it)."""
    import jax

    path = Path(folder) if folder is not None else cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path
