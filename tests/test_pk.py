"""PK against closed-form multiple-dose formulas (Gibaldi & Perrier), dose/CL, and published PK figures."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

import hcvdyn
from hcvdyn.model import pk
from hcvdyn.model.drugs import DRUGS


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


# ---- closed forms, written independently of hcvdyn.model.pk --------------------------------------------
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


@pytest.mark.parametrize("drug_name,dose,tau", [("celgosivir", 146.0, 0.5), ("celgosivir", 292.0, 1.0)])
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


@pytest.mark.parametrize("drug_name,dose,tau,n", [("ribavirin", 500.0, 0.5, 60), ("peginterferon_alfa2b", 1.5, 7.0, 12)])
def test_two_compartment_matches_closed_form(drug_name, dose, tau, n):
    drug = DRUGS[drug_name]
    p = defaults(drug)
    f = conc_fn(drug, p, np.arange(n) * tau, np.full(n, dose))
    t = np.linspace(0.001, n * tau + 5, 2001)
    n_given = np.minimum(np.floor(t / tau + 1e-12) + 1, n)
    expected = two_cpt_multi(t, dose, tau, n_given, *(p[k] for k in drug.pk_names))
    got = np.asarray(f(jnp.asarray(t)))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12 * expected.max())


@pytest.mark.parametrize("drug_name,dose,tau,days", [("peginterferon_alfa2b", 1.5, 7.0, 1400), ("ribavirin", 500.0, 0.5, 400), ("celgosivir", 146.0, 1.0, 400)])
def test_steady_state_auc_equals_dose_over_cl(drug_name, dose, tau, days):
    """At steady state the AUC over one interval equals F*dose/CL (F absorbed in the apparent CL/F)."""
    drug = DRUGS[drug_name]
    p = defaults(drug)
    n = int(round(days / tau))  # > 30 terminal half-lives (pegIFN's slow phase: about 31 days)
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



def test_pegifn_alfa2b_reproduces_its_published_accumulation_and_profile():
    """Daud et al. 2011 (PMC3043235, Table 3) at 6 ug/kg weekly, scaled to 1.5 ug/kg: week-1 Cmax 0.995 and
    Cavg 0.48 ug/L, t1/2 46 h; week-8 Cmax 1.27, Cmin 0.325 ug/L; accumulation R = AUC(week 8) / AUC(week 1) 1.69."""
    ifn = DRUGS["peginterferon_alfa2b"]
    pi = defaults(ifn)
    times, amounts = hcvdyn.Regimen("peginterferon_alfa2b", 1.5, "ug/kg", 7.0, stop_day=63.0).doses(83.0)
    assert np.all(amounts == 1.5)  # per-kg PK: a per-kg dose is the same amount per kg at any weight
    f = conc_fn(ifn, pi, times, amounts)
    t = np.linspace(0.0, 56.0, 56 * 96 + 1)
    c = np.asarray(f(jnp.asarray(t)))
    w1, w8 = t <= 7.0, t >= 49.0
    accumulation = np.trapezoid(c[w8], t[w8]) / np.trapezoid(c[w1], t[w1])
    assert accumulation == pytest.approx(1.69, rel=0.2), f"accumulation by week 8 {accumulation:.3f} vs 1.69"
    assert accumulation == pytest.approx(1.69, rel=0.05)
    assert c[w1].max() == pytest.approx(3.98 / 4, rel=0.05)
    assert np.trapezoid(c[w1], t[w1]) / 7.0 == pytest.approx(1.93 / 4, rel=0.12)
    assert c[w8].max() == pytest.approx(5.07 / 4, rel=0.05)
    assert c[w8].min() == pytest.approx(1.30 / 4, rel=0.08)
    late = (t >= 2.0) & w1
    slope = np.polyfit(t[late], np.log(c[late]), 1)[0]
    assert -math.log(2) / slope * 24 == pytest.approx(46.0, rel=0.05)  # apparent week-1 half-life


def test_per_kg_pk_divides_flat_doses_by_weight():
    flat = hcvdyn.Regimen("peginterferon_alfa2b", 120.0, "ug", 7.0, stop_day=14.0)
    per_kg = hcvdyn.Regimen("peginterferon_alfa2b", 1.5, "ug/kg", 7.0, stop_day=14.0)
    for w in (50.0, 80.0, 120.0):
        assert flat.doses(w)[1][0] == pytest.approx(120.0 / w)
        assert per_kg.doses(w)[1][0] == pytest.approx(1.5)
    rbv = hcvdyn.Regimen("ribavirin", 500.0, "mg", 0.5, stop_day=1.0)
    assert rbv.doses(50.0)[1][0] == rbv.doses(120.0)[1][0] == 500.0  # ribavirin's PK is per patient, not per kg


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
