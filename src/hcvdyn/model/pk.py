"""Linear pharmacokinetics by analytic superposition of doses, and the concentration-effect link.

Two structures, both with first-order absorption from a depot (amounts, not concentrations):

* ``"1cpt"``: depot a, central x;  a' = -ka a,  x' = ka a - (CL/V) x,  C = x / V.
* ``"2cpt"``: depot a, central x1, peripheral x2;
  a' = -ka a,  x1' = ka a - (k10 + k12) x1 + k21 x2,  x2' = k12 x1 - k21 x2,  C = x1 / Vc,
  k10 = CL/Vc, k12 = Q/Vc, k21 = Q/Vp.

Superposition of doses is done exactly: the compartment amounts just after every dose are
computed once per solve by a ``lax.scan`` over the doses (analytic propagation between doses),
and C(t) is then the analytic propagation from the last dose before t. Evaluating C(t) inside the
ODE right-hand side therefore costs one ``searchsorted`` and a handful of exponentials, however
many doses there are. All volumes and clearances are apparent (V/F, CL/F); doses are amounts of
the active moiety (see :mod:`hcvdyn.model.drugs` for prodrug conversion).

Units: time in days, amounts in the drug's amount unit, volumes in L, clearances in L/day.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "expdiff",
    "rate_constants",
    "propagate",
    "post_dose_states",
    "concentration",
    "hill",
    "N_PK_STATES",
]

N_PK_STATES = {"1cpt": 2, "2cpt": 3}


def expdiff(a, b, tau):
    """(exp(-a tau) - exp(-b tau)) / (b - a) for a, b >= 0, tau >= 0, exact also when a == b.

    Written as exp(-min(a,b) tau) * tau * g(|b - a| tau) with g(x) = (1 - exp(-x)) / x, which never
    overflows and tends to tau exp(-a tau) as b -> a.
    """
    m = jnp.minimum(a, b)
    x = jnp.abs(b - a) * tau
    small = x < 1e-8
    x_safe = jnp.where(small, 1.0, x)
    g = jnp.where(small, 1.0 - 0.5 * x, -jnp.expm1(-x_safe) / x_safe)
    return jnp.exp(-m * tau) * tau * g


def rate_constants(kind: str, pk: dict):
    """Micro-constants from the apparent parameters: (ka, ke) for 1cpt, (ka, k10, k12, k21, alpha, beta) for 2cpt.

    alpha > beta are the disposition rates: roots of L^2 - (k10 + k12 + k21) L + k10 k21 = 0.
    """
    if kind == "1cpt":
        return pk["ka"], pk["cl"] / pk["v"]
    if kind == "2cpt":
        k10 = pk["cl"] / pk["vc"]
        k12 = pk["q"] / pk["vc"]
        k21 = pk["q"] / pk["vp"]
        ssum = k10 + k12 + k21
        root = jnp.sqrt(ssum**2 - 4.0 * k10 * k21)
        alpha = 0.5 * (ssum + root)
        beta = k10 * k21 / alpha  # product of the roots; avoids cancellation in (ssum - root)/2
        return pk["ka"], k10, k12, k21, alpha, beta
    raise ValueError(f"unknown PK structure {kind!r}; expected '1cpt' or '2cpt'")


def propagate(kind: str, state, tau, rates):
    """Exact amounts after a time ``tau`` (days) with no dosing, starting from ``state``."""
    if kind == "1cpt":
        ka, ke = rates
        a, x = state[0], state[1]
        return jnp.stack([a * jnp.exp(-ka * tau), x * jnp.exp(-ke * tau) + ka * a * expdiff(ke, ka, tau)])
    ka, k10, k12, k21, alpha, beta = rates
    a, x1, x2 = state[0], state[1], state[2]
    e_ab = expdiff(beta, alpha, tau)  # (e^-beta t - e^-alpha t)/(alpha - beta)
    h11 = jnp.exp(-alpha * tau) + (k21 - beta) * e_ab
    h22 = jnp.exp(-beta * tau) - (k21 - beta) * e_ab
    # Depot input ka*a*exp(-ka s) convolved with the impulse responses.
    e_a = expdiff(alpha, ka, tau)
    e_b = expdiff(beta, ka, tau)
    second = (e_b - e_a) / (alpha - beta)
    from_depot_1 = ka * a * (e_a + (k21 - beta) * second)
    from_depot_2 = ka * a * k12 * second
    return jnp.stack(
        [
            a * jnp.exp(-ka * tau),
            h11 * x1 + k21 * e_ab * x2 + from_depot_1,
            k12 * e_ab * x1 + h22 * x2 + from_depot_2,
        ]
    )


def post_dose_states(kind: str, dose_times, dose_amounts, rates):
    """Amounts just after each dose, shape (n_doses, n_states); doses go into the depot.

    ``dose_times`` must be non-decreasing; padding entries repeat the last time with amount 0.
    """
    n = N_PK_STATES[kind]
    gaps = jnp.diff(dose_times, prepend=dose_times[:1])

    def step(state, inp):
        gap, amount = inp
        state = propagate(kind, state, gap, rates).at[0].add(amount)
        return state, state

    _, states = jax.lax.scan(step, jnp.zeros(n, dtype=dose_amounts.dtype), (gaps, dose_amounts))
    return states


def concentration(kind: str, t, dose_times, states, rates, volume):
    """Concentration at time ``t`` (amount unit / L); zero before the first dose."""
    idx = jnp.searchsorted(dose_times, t, side="right") - 1
    before_first = idx < 0
    idx = jnp.maximum(idx, 0)
    tau = jnp.maximum(t - dose_times[idx], 0.0)
    central = propagate(kind, states[idx], tau, rates)[1]
    return jnp.where(before_first, 0.0, central / volume)


def hill(conc, ec50, n):
    """Fractional effect C^n / (C^n + EC50^n) in [0, 1]; exactly 0 (with finite gradients) at C = 0."""
    positive = conc > 0
    h = jax.nn.sigmoid(n * (jnp.log(jnp.where(positive, conc, 1.0)) - jnp.log(ec50)))
    return jnp.where(positive, h, 0.0)
