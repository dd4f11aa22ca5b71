"""PK against closed-form multiple-dose formulas (Gibaldi & Perrier), dose/CL, and published PK figures."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

import hcvdyn
from hcvdyn import pk
from hcvdyn.drugs import DRUGS


def conc_fn(drug, params, times, amounts):
    """C(t) of a drug for the given dose list, using hcvdyn.pk."""
    pkp = {k.split("_", 1)[1]: params[k] for k in drug.pk_names}
    rates = pk.rate_constants(drug.pk_kind, pkp)
    times, amounts = jnp.asarray(times, float), jnp.asarray(amounts, float)
    states = pk.post_dose_states(drug.pk_kind, times, amounts, rates)
    vol = params[drug.volume_name]
    return jax.jit(jax.vmap(lambda t: pk.concentration(drug.pk_kind, t, times, states, rates, vol)))


def defaults(drug):
    return {p.name: p.default for p in drug.pk_params}


# ---- closed forms, written independently of hcvdyn.pk --------------------------------------------
def one_cpt_multi(t, dose, tau, n_given, ka, ke, v):
    tp = t - (n_given - 1) * tau
    acc = lambda k: (1 - np.exp(-n_given * k * tau)) / (1 - np.exp(-k * tau))  # noqa: E731
    return dose * ka / (v * (ka - ke)) * (np.exp(-ke * tp) * acc(ke) - np.exp(-ka * tp) * acc(ka))


def two_cpt_multi(t, dose, tau, n_given, ka, cl, vc, q, vp):
    k10, k12, k21 = cl / vc, q / vc, q / vp
    kmat = np.array([[-(k10 + k12), k21], [k12, -k21]])
    alpha, beta = sorted(-np.linalg.eigvals(kmat).real, reverse=True)
    tp = t - (n_given - 1) * tau
    coef = {
        alpha: (k21 - alpha) / ((ka - alpha) * (beta - alpha)),
        beta: (k21 - beta) / ((ka - beta) * (alpha - beta)),
        ka: (k21 - ka) / ((alpha - ka) * (beta - ka)),
    }
    return ka * dose / vc * sum(c * np.exp(-lam * tp) * (1 - np.exp(-n_given * lam * tau)) / (1 - np.exp(-lam * tau)) for lam, c in coef.items())


@pytest.mark.parametrize("drug_name,dose,tau", [("peginterferon_alfa2b", 105.0, 7.0), ("celgosivir", 146.0, 0.5)])
def test_one_compartment_matches_closed_form(drug_name, dose, tau):
    drug = DRUGS[drug_name]
    p = defaults(drug)
    n = 10
    f = conc_fn(drug, p, np.arange(n) * tau, np.full(n, dose))
    ka, ke, v = p[f"{drug.prefix}_ka"], p[f"{drug.prefix}_cl"] / p[f"{drug.prefix}_v"], p[f"{drug.prefix}_v"]
    t = np.linspace(0.001, n * tau, 997)
    n_given = np.minimum(np.floor(t / tau + 1e-12) + 1, n)
    expected = one_cpt_multi(t, dose, tau, n_given, ka, ke, v)
    got = np.asarray(f(jnp.asarray(t)))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12 * expected.max())


def test_two_compartment_matches_closed_form():
    drug = DRUGS["ribavirin"]
    p = defaults(drug)
    n, tau, dose = 60, 0.5, 500.0
    f = conc_fn(drug, p, np.arange(n) * tau, np.full(n, dose))
    t = np.linspace(0.001, n * tau + 5, 2001)
    n_given = np.minimum(np.floor(t / tau + 1e-12) + 1, n)
    expected = two_cpt_multi(t, dose, tau, n_given, *(p[k] for k in drug.pk_names))
    got = np.asarray(f(jnp.asarray(t)))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12 * expected.max())


@pytest.mark.parametrize("drug_name,dose,tau", [("peginterferon_alfa2b", 105.0, 7.0), ("ribavirin", 500.0, 0.5), ("celgosivir", 146.0, 1.0)])
def test_steady_state_auc_equals_dose_over_cl(drug_name, dose, tau):
    """At steady state the AUC over one interval equals F*dose/CL (F absorbed in the apparent CL/F)."""
    drug = DRUGS[drug_name]
    p = defaults(drug)
    n = int(round(400 / tau))  # 400 days: > 30 terminal half-lives for every drug
    f = conc_fn(drug, p, np.arange(n) * tau, np.full(n, dose))
    t_start = (n - 1) * tau
    auc, _ = quad(lambda t: float(f(jnp.array([t]))[0]), t_start, t_start + tau, epsabs=0, epsrel=1e-11, limit=200)
    assert auc == pytest.approx(dose / p[f"{drug.prefix}_cl"], rel=1e-7)


def test_ribavirin_approach_to_steady_state_follows_its_half_life():
    """Trough gap to steady state decays with the 298-h terminal half-life; 90% of steady state in 3-12 weeks."""
    drug = DRUGS["ribavirin"]
    p = defaults(drug)
    rates = pk.rate_constants("2cpt", {k.split("_", 1)[1]: p[k] for k in drug.pk_names})
    beta = float(rates[5])
    assert math.log(2) / beta * 24 == pytest.approx(298.0, rel=0.005)  # Glue et al. 1999
    tau, n = 0.5, 400 * 2
    f = conc_fn(drug, p, np.arange(n) * tau, np.full(n, 500.0))
    troughs_t = np.arange(1, n) * tau - 1e-9
    troughs = np.asarray(f(jnp.asarray(troughs_t)))
    c_ss = troughs[-1]
    gap = c_ss - troughs
    late = (troughs_t > 70) & (troughs_t < 120)
    slope = np.polyfit(troughs_t[late], np.log(gap[late]), 1)[0]
    assert -slope == pytest.approx(beta, rel=2e-3)
    t90 = troughs_t[np.argmax(troughs >= 0.9 * c_ss)]
    alpha = float(rates[4])
    assert math.log(10) / alpha < t90 < math.log(10) / beta
    assert t90 == pytest.approx(28.0, abs=0.5)  # Glue et al. 1999: steady state by about 4 weeks
    assert 21 <= t90 <= 84  # Bruchfeld et al. 2002: 3-12 weeks to steady state


def test_published_pk_figures_reproduced():
    """Each PK default reproduces the published summary it was derived from (docs/pk.md)."""
    rbv = DRUGS["ribavirin"]
    p = defaults(rbv)
    assert p["rbv_cl"] == pytest.approx(21.5 * 24, rel=1e-9)  # Jen 2000
    single = conc_fn(rbv, p, [0.0], [1.0])
    t = np.linspace(1e-4, 0.5, 50001)
    c = np.asarray(single(jnp.asarray(t)))
    assert t[np.argmax(c)] * 24 == pytest.approx(1.5, abs=0.01)  # tmax, Glue 1999
    accumulation = (1.0 / p["rbv_cl"]) / np.trapezoid(c, t)
    assert accumulation == pytest.approx(10.5, rel=2e-3)  # AUC(0-12h) accumulation index, BJCP 2003

    cel = DRUGS["celgosivir"]
    pc = defaults(cel)
    assert math.log(2) / (pc["cel_cl"] / pc["cel_v"]) * 24 == pytest.approx(2.5, rel=2e-3)  # Sung 2016
    reg = hcvdyn.Regimen("celgosivir", 200, "mg", 0.5, stop_day=10)
    times, amounts = reg.doses()
    f = conc_fn(cel, pc, times, amounts)
    t = np.linspace(9.0, 9.5, 5001)
    c = np.asarray(f(jnp.asarray(t))) * 1000  # mg/L -> ng/mL
    assert c.max() == pytest.approx(5727, rel=5e-3)  # Cmax, Sung 2016
    assert c[-1] == pytest.approx(430, rel=5e-3)  # trough, Sung 2016

    ifn = DRUGS["peginterferon_alfa2b"]
    pi = defaults(ifn)
    assert math.log(2) / (pi["ifn_cl"] / pi["ifn_v"]) == pytest.approx(46 / 24, rel=2e-3)  # t1/2 46 h
    assert math.log(2) / pi["ifn_ka"] * 24 == pytest.approx(4.6, rel=2e-3)  # absorption t1/2, Zeuzem 2003


def test_expdiff_limits_and_values():
    a, tau = 0.7, 3.0
    for b in (0.7, 0.7 + 1e-12, 0.7 - 1e-10):
        assert float(pk.expdiff(a, b, tau)) == pytest.approx(tau * math.exp(-a * tau), rel=1e-8)
    for a, b in ((0.1, 5.0), (5.0, 0.1), (3.0, 3.5)):
        exact = (math.exp(-a * tau) - math.exp(-b * tau)) / (b - a)
        assert float(pk.expdiff(a, b, tau)) == pytest.approx(exact, rel=1e-13)
    # no overflow for huge gaps (padding) and a finite gradient at a == b
    assert float(pk.expdiff(0.01, 500.0, 1e6)) == 0.0
    g = jax.grad(lambda x: pk.expdiff(x, 0.7, tau))(0.7)
    assert np.isfinite(float(g))


def test_hill_link():
    assert float(pk.hill(0.45, 0.45, 2.0)) == pytest.approx(0.5)
    assert float(pk.hill(0.0, 0.45, 2.0)) == 0.0
    c = jnp.array([0.0, 0.1, 0.45, 1.0, 10.0])
    h = np.asarray(pk.hill(c, 0.45, 2.0))
    np.testing.assert_allclose(h[1:], np.asarray(c[1:]) ** 2 / (np.asarray(c[1:]) ** 2 + 0.45**2), rtol=1e-14)
    grads = jax.grad(lambda n, e: pk.hill(0.0, e, n), argnums=(0, 1))(2.0, 0.45)
    assert all(np.isfinite(float(g)) and float(g) == 0.0 for g in grads)


def test_concentration_zero_before_first_dose_and_padding_is_inert():
    drug = DRUGS["ribavirin"]
    p = defaults(drug)
    f = conc_fn(drug, p, [2.0, 2.5], [500.0, 500.0])
    g = conc_fn(drug, p, [2.0, 2.5, 2.5, 2.5], [500.0, 500.0, 0.0, 0.0])
    t = jnp.linspace(0, 6, 61)
    assert np.all(np.asarray(f(t))[t < 2.0] == 0.0)
    np.testing.assert_array_equal(np.asarray(f(t)), np.asarray(g(t)))


def test_unknown_pk_structure():
    with pytest.raises(ValueError, match="unknown PK structure '3cpt'"):
        pk.rate_constants("3cpt", {})
