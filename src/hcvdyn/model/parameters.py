"""Parameter declarations: one row per parameter with unit, default, bounds and source.

Every model assembles its table from these rows; lmfit ``Parameters``, the docs tables and
figure labels are derived from the same rows, so a value lives in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

__all__ = ["Param", "ParamTable", "check_values", "to_scale", "from_scale", "untransform"]


@dataclass(frozen=True)
class Param:
    """One model parameter.

    name: identifier used in code, TOML files and result tables.
    unit: physical unit ("1" for dimensionless).
    default: default value, in ``unit``.
    lower, upper: admissible range (inclusive), used for validation and as fit bounds.
    source: the publication (or documented derivation) behind ``default``.
    description: what the parameter means, one line.
    symbol: the symbol used in the papers, for figure labels (LaTeX without $).
    scale: the one scale on which the parameter varies, everywhere: Wald intervals, multi-start draws,
        between-patient variability of populations, the VPC's redraws and calibration knobs. "log" (declared for
        positive rates, loads and potencies), "logit" (fractions: unit "1" and bounds [0, 1], set automatically),
        or "linear" (normal variability). :meth:`to_scale` and :meth:`from_scale` map values to and from it.
    """

    name: str
    unit: str
    default: float
    lower: float
    upper: float
    source: str
    description: str
    symbol: str = ""
    scale: str = "linear"

    def __post_init__(self):
        if not self.unit:
            raise ValueError(f"parameter {self.name!r}: unit is empty")
        if not self.source:
            raise ValueError(f"parameter {self.name!r}: source is empty")
        if not (self.lower <= self.default <= self.upper):
            raise ValueError(
                f"parameter {self.name!r}: default {self.default} outside its bounds "
                f"[{self.lower}, {self.upper}]"
            )
        if self.scale not in ("linear", "log", "logit"):
            raise ValueError(f"parameter {self.name!r}: scale must be 'linear', 'log' or 'logit', got {self.scale!r}")
        if self.scale == "log" and self.lower <= 0:
            raise ValueError(f"parameter {self.name!r}: log scale needs a positive lower bound")
        if self.scale == "logit" and not (0.0 <= self.lower and self.upper <= 1.0):
            raise ValueError(f"parameter {self.name!r}: logit scale needs bounds within [0, 1]")
        if self.scale == "linear" and self.unit == "1" and (self.lower, self.upper) == (0.0, 1.0):
            object.__setattr__(self, "scale", "logit")  # a fraction varies on the logit scale

    @property
    def interval_scale(self) -> str:
        """The parameter's :attr:`scale` (the name under which Wald intervals first used it)."""
        return self.scale

    def to_scale(self, x):
        """Values (float or array) on the parameter's scale; fractions are kept 1e-12 inside (0, 1)."""
        x = np.asarray(x, dtype=float)
        if self.scale == "log":
            return np.log(x)
        if self.scale == "logit":
            x = np.clip(x, 1e-12, 1 - 1e-12)
            return np.log(x / (1 - x))
        return x

    def from_scale(self, y):
        """Inverse of :meth:`to_scale`."""
        y = np.asarray(y, dtype=float)
        if self.scale == "log":
            return np.exp(y)
        if self.scale == "logit":
            return 1.0 / (1.0 + np.exp(-y))
        return y

    def label(self) -> str:
        """Axis label such as ``$\\delta$ (1/day)``."""
        sym = f"${self.symbol}$" if self.symbol else self.name
        return sym if self.unit == "1" else f"{sym} ({self.unit})"

    def replace(self, **changes) -> "Param":
        from dataclasses import replace

        return replace(self, **changes)


class ParamTable(tuple):
    """An ordered, immutable collection of :class:`Param` with lookup by name."""

    def __new__(cls, params: Iterable[Param]):
        params = tuple(params)
        names = [p.name for p in params]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate parameter names: {sorted(dup)}")
        return super().__new__(cls, params)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self)

    def __getitem__(self, key):
        if isinstance(key, str):
            for p in self:
                if p.name == key:
                    return p
            raise KeyError(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        if isinstance(key, str):
            return key in self.names
        return super().__contains__(key)

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self}

    def with_defaults(self, overrides: Mapping[str, float]) -> "ParamTable":
        """A copy whose defaults are replaced by ``overrides`` (validated)."""
        check_values(self, overrides)
        return ParamTable(p.replace(default=float(overrides[p.name])) if p.name in overrides else p for p in self)


def check_values(table: ParamTable, values: Mapping[str, float], where: str = "") -> None:
    """Raise ValueError naming the parameter when a name is unknown or a value is not admissible."""
    prefix = f"{where}: " if where else ""
    for name, value in values.items():
        if name not in table:
            close = [n for n in table.names if n.split("_")[0] == name.split("_")[0]]
            hint = f"; known parameters: {', '.join(table.names)}" if not close else f"; did you mean {close}?"
            raise ValueError(f"{prefix}unknown parameter {name!r}{hint}")
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{prefix}parameter {name!r}: value {value!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{prefix}parameter {name!r}: value {v} is not finite")
        p = table[name]
        if not (p.lower <= v <= p.upper):
            raise ValueError(
                f"{prefix}parameter {name!r} = {v} outside its admissible range [{p.lower}, {p.upper}] ({p.unit})"
            )


def to_scale(values, scales) -> list[float]:
    """Values on the named scales ("log", "logit" or "linear"; a parameter's own is :attr:`Param.scale`); as
    :meth:`Param.to_scale`, fractions are kept 1e-12 inside (0, 1), so that the bounds 0 and 1 map to finite values."""
    out = []
    for v, s in zip(values, scales):
        if s == "logit":
            v = min(max(v, 1e-12), 1 - 1e-12)
        out.append(math.log(v) if s == "log" else math.log(v / (1 - v)) if s == "logit" else v)
    return out


def from_scale(x, scales) -> list[float]:
    """Inverse of :func:`to_scale`."""
    return [math.exp(v) if s == "log" else 1 / (1 + math.exp(-v)) if s == "logit" else float(v) for v, s in zip(x, scales)]


def untransform(scales, y):
    """Traceable (JAX) :meth:`Param.from_scale` of a vector ``y`` whose entries are on ``scales`` (a tuple)."""
    import jax.numpy as jnp

    y = jnp.asarray(y)
    log = jnp.array([s == "log" for s in scales])
    logit = jnp.array([s == "logit" for s in scales])
    return jnp.where(log, jnp.exp(jnp.where(log, y, 0.0)), jnp.where(logit, 1.0 / (1.0 + jnp.exp(-y)), y))
