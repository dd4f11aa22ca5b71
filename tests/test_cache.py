"""The compilation settings: the cache folder and the XLA flag hcvdyn sets at import."""

import os

from hcvdyn.cache import XLA_CPU_FLAG, cache_dir, xla_flags


def test_xla_flags_append_the_scheduler_flag_and_keep_a_users_choice():
    assert xla_flags("") == f"{XLA_CPU_FLAG}=false"
    assert xla_flags("--xla_force_host_platform_device_count=2") == f"--xla_force_host_platform_device_count=2 {XLA_CPU_FLAG}=false"
    mine = f"{XLA_CPU_FLAG}=true --xla_cpu_enable_fast_math=false"
    assert xla_flags(mine) == mine
    other = f"{XLA_CPU_FLAG}_of_another_kind=1"  # a longer name is not the flag
    assert xla_flags(other) == f"{other} {XLA_CPU_FLAG}=false"
    # conftest.py imports hcvdyn before any JAX computation: the variable is set for the whole suite
    assert XLA_CPU_FLAG.lstrip("-") in os.environ["XLA_FLAGS"]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HCVDYN_CACHE_DIR", "off")
    assert cache_dir() is None
    monkeypatch.setenv("HCVDYN_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("HCVDYN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "hcvdyn" / "jax"
