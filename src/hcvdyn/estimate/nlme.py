"""Population (nonlinear mixed-effects) objective by the Laplace approximation, FOCE-I and Laplace, with exact
gradients; generic in the prediction function, so it can be checked on models with closed-form likelihoods.

Patient i has random effects eta_i ~ N(0, Omega) (q of them) and individual parameters, on their declared
scales (:attr:`hcvdyn.model.parameters.Param.scale`),

    u_i = offset_i + X_i beta + E_i eta_i                                   (m values)

beta the fixed effects (typical values, shared drug effects, covariate coefficients). Its log10 loads are
f_i(u_i) and, with residual SD sigma (log10 IU/mL) and the M3 likelihood for censored samples (Beal 2001),

    g_i(eta) = sum_obs [((y - f) / sigma)^2 + ln(2 pi sigma^2)] - 2 sum_cens ln Phi((LLOQ - f) / sigma)
               + eta' Omega^-1 eta.

exp(-g_i / 2) is the joint density of the data and eta_i up to (2 pi)^(q/2) |Omega|^(1/2), so the Laplace
approximation of minus twice the marginal log-likelihood is (Wang 2007, J Pharmacokinet Pharmacodyn 34:575)

    OFV = sum_i [ g_i(eta_i^) + ln|Omega| + ln|H_i| ],   eta_i^ = argmin g_i,

H_i = (1/2) d2 g_i / d eta2 exactly ("laplace"), or its Gauss-Newton form Omega^-1 + A_i' W_i A_i ("foce-i",
A_i = d f_i / d eta at eta_i^, W_i = 1/sigma^2 for observed samples and (d ln Phi / df)^2 / (-2 ln Phi) for censored
ones: the Gauss-Newton weight of the residual form sqrt(-2 ln Phi)). With an additive residual on the log10 scale
there is no eta-sigma interaction to carry; "I" says the model is linearised at eta_i^, not at 0.

Exact gradient. At each outer point the modes are found by Levenberg-Marquardt (vmapped, warm-started; each step
scaled by the curvature of g_i along it, which the last step measured), and
f_i is expanded to second order (third for Laplace) about u_i(eta_i^): its derivatives by forward-mode JAX
through the ODE solver. On that expansion the mode is written as one Newton step with a held Hessian,
eta~ = eta^ - H_g^-1 grad g(eta^), whose derivative is the implicit-function derivative of the mode, and
the OFV is differentiated by reverse mode. Value and first derivatives equal those of the OFV itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

__all__ = ["METHODS", "Layout", "PopulationArrays", "neg2ll", "gn_weights", "Engine", "engine"]

METHODS = ("foce-i", "laplace")
_TINY = 1e-300
DECREMENT_TOL = 1e-8  # a mode is found when a Newton step would lower g_i by less than 2e-8 (Gauss-Newton model);
# it is accepted as found up to 100 times that, where the solver's error (atol 1e-7 on ln-states) stalls the iteration
SCALE_RANGE = (0.1, 2.0)  # bounds of the factor on the Levenberg-Marquardt step (one_mode)


@dataclass(frozen=True)
class Layout:
    """Where each outer value sits in the vector x = (beta, Cholesky factor of Omega, sigma).

    The Cholesky factor L (Omega = L L') holds its q diagonal entries first (each omega_k when Omega is
    diagonal), then, for a block Omega, the entries below the diagonal row by row. sigma is last when estimated.
    """

    n_beta: int
    n_eta: int
    block: bool = False
    estimate_sigma: bool = True

    @property
    def n_offdiag(self) -> int:
        return self.n_eta * (self.n_eta - 1) // 2 if self.block else 0

    @property
    def size(self) -> int:
        return self.n_beta + self.n_eta + self.n_offdiag + int(self.estimate_sigma)

    def split(self, x, sigma_fixed):
        """(beta, L, sigma) of x."""
        nb, q = self.n_beta, self.n_eta
        beta = x[:nb]
        L = jnp.diag(x[nb : nb + q])
        if self.n_offdiag:
            rows, cols = np.tril_indices(q, -1)
            L = L.at[rows, cols].set(x[nb + q : nb + q + self.n_offdiag])
        sigma = x[-1] if self.estimate_sigma else jnp.asarray(sigma_fixed, dtype=jnp.float64)
        return beta, L, sigma


class PopulationArrays(eqx.Module):
    """Per-patient arrays, stacked on a leading patient axis (padded samples have ``mask`` False)."""

    offset: jnp.ndarray  # (N, m)
    design: jnp.ndarray  # (N, m, n_beta)
    effects: jnp.ndarray  # (N, m, q)
    y: jnp.ndarray  # (N, n) log10 IU/mL; censored samples hold the log10 limit
    cens: jnp.ndarray  # (N, n) bool
    lloq: jnp.ndarray  # (N, n) log10 limit
    mask: jnp.ndarray  # (N, n) bool
    context: object  # pytree with leading axis N: what ``predict`` needs besides u (times, doses, fixed values)

    def patient(self, i: int) -> "PopulationArrays":
        return jax.tree_util.tree_map(lambda a: a[i : i + 1], self)


def neg2ll(f, y, cens, lloq, mask, sigma):
    """-2 ln p(y | f) of one patient's samples (M3 for censored ones), all constants included."""
    z = (y - f) / sigma
    obs = z**2 + jnp.log(2.0 * jnp.pi * sigma**2)
    cen = -2.0 * log_ndtr((lloq - f) / sigma)
    return jnp.sum(jnp.where(mask, jnp.where(cens, cen, obs), 0.0))


def gn_weights(f, cens, lloq, mask, sigma):
    """Per-sample Gauss-Newton weights (module docstring): 1/sigma^2 observed; (d ln Phi/df)^2/(-2 ln Phi) censored,
    in logs so that a sample predicted far below its limit gets weight -> 0 with finite derivatives."""
    zc = (lloq - f) / sigma
    lphi = log_ndtr(zc)
    log_q = log_ndtr(-zc)  # ln(1 - Phi(zc)); -ln Phi = q + q^2/2 + ... for small q
    log_neg_lphi = jnp.where(zc > 5.0, log_q + jnp.log1p(0.5 * jnp.exp(log_q)), jnp.log(-jnp.minimum(lphi, -1e-300)))
    log_w = 2.0 * (-0.5 * zc**2 - 0.5 * jnp.log(2.0 * jnp.pi) - lphi - jnp.log(sigma)) - jnp.log(2.0) - log_neg_lphi
    return jnp.where(mask, jnp.where(cens, jnp.exp(log_w), 1.0 / sigma**2), 0.0)


def _omega_parts(L):
    """(L^-1, ln|Omega|) of the Cholesky factor L."""
    q = L.shape[0]
    Linv = jax.scipy.linalg.solve_triangular(L, jnp.eye(q), lower=True)
    return Linv, 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diag(L))))


def _jets(predict, laplace: bool):
    """u0, ctx, E -> (f, J, K_E[, T_EE]): the loads at u0 and the derivatives the OFV's gradient needs, by forward
    mode: J = df/du (n, m), K_E = d2f/(du dE) (n, q, m), and for Laplace T_EE = d3f/(du dE dE) (n, q, q, m), where
    dE is a derivative along a random effect (a column of E, (m, q)).

    Every order comes out of one nested forward pass through the solver: each level returns the lower orders it
    carries as its primal (``has_aux``), so the solve is traced and compiled once, at the highest depth, not once per
    order."""

    def keep(fn):
        """x -> (d fn(x)[0] / dx, fn(x)): the derivative of fn's first output, and all of fn's outputs, in one pass."""
        return jax.jacfwd(lambda x: (lambda r: (r[0], r))(fn(x)), has_aux=True)

    def jets(u0, ctx, E):
        zero = jnp.zeros(E.shape[1])

        def first(u):  # (df/dE (n, q), (f,))
            return keep(lambda a: (predict(u + E @ a, ctx),))(zero)

        if not laplace:
            def slopes_and_loads(u):  # ((df/dE, f),): one output, whose derivative in u is (K, J)
                d1, (f,) = first(u)
                return ((d1, f),)

            (K, J), ((_, f),) = keep(slopes_and_loads)(u0)
            return f, J, K

        def second(u):  # (d2f/dE2 (n, q, q), df/dE, f)
            d2, (d1, (f,)) = keep(lambda a: first(u + E @ a))(zero)
            return d2, d1, f

        (T, K, J), ((_, _, f),) = keep(lambda u: (second(u),))(u0)
        return f, J, K, T

    return jets


def _surrogate(jet, E, eps, delta):
    """f at u0 + E eps + delta from :func:`_jets`, exact in value and in every derivative the OFV's gradient uses
    (terms of second order in the fixed-effect step delta are left out: they reach only second derivatives in x)."""
    f = jet[0] + jet[1] @ (E @ eps + delta)
    K = jet[2]
    KEE = jnp.einsum("nqm,mr->nqr", K, E)
    f = f + 0.5 * jnp.einsum("nab,a,b->n", KEE, eps, eps) + jnp.einsum("nam,a,m->n", K, eps, delta)
    if len(jet) > 3:
        T = jet[3]
        TEEE = jnp.einsum("nabm,mc->nabc", T, E)
        f = f + jnp.einsum("nabc,a,b,c->n", TEEE, eps, eps, eps) / 6.0 + 0.5 * jnp.einsum("nabm,a,b,m->n", T, eps, eps, delta)
    return f


@dataclass(frozen=True, eq=False)
class Engine:
    """Compiled population objective for one prediction function, layout and method (:func:`engine`).

    modes(x, arrays, eta0) -> (eta^, ok, iterations): conditional modes by Levenberg-Marquardt.
    objective(x, arrays, eta^) -> (OFV_i, dOFV_i/dx, (eta~, decrement, g_i(eta^), f, df/deta)): per patient (N,)
        and (N, size), exact (module docstring); eta~ the exact Newton point from eta^ and the squared decrement of
        g_i/2 (inf where the exact Hessian of g_i is not positive definite), with which the modes are polished; the
        loads (N, n) and their derivatives in eta (N, n, q) at eta^ come with them.
    conditional(x, arrays, eta) -> (g_i, H_i, OFV_i): g, the method's H and the OFV terms at given eta, without
        derivatives in x (importance sampling, finite-difference comparisons).
    """

    layout: Layout
    method: str
    sigma_fixed: float
    modes: Callable
    objective: Callable
    conditional: Callable
    predict_batch: Callable  # (x, arrays, eta) -> f (N, n)

    def linearised(self, x, arrays, eta):
        """(f (N, n), d f / d eta (N, n, q)) at ``eta``, from the objective's own program (nothing more to compile)."""
        return self.objective(x, arrays, eta)[2][3:]


@lru_cache(maxsize=16)
def engine(predict: Callable, layout: Layout, method: str, sigma_fixed: float = 0.2, max_iter: int = 100) -> Engine:
    """The compiled :class:`Engine` of ``predict(u, ctx) -> f`` (log10 loads of one patient, NaN on failure)."""
    if method not in METHODS:
        raise ValueError(f"population method {method!r}: use one of {METHODS}")
    jet = _jets(predict, method == "laplace")

    def u_of(pat, beta, eta):
        return pat.offset + pat.design @ beta + pat.effects @ eta

    def one_mode(x, pat, eta0):
        beta, L, sigma = layout.split(x, sigma_fixed)
        Linv, _ = _omega_parts(L)
        oinv = Linv.T @ Linv

        def state(eta):
            A, f = jax.jacfwd(lambda e: (predict(u_of(pat, beta, e), pat.context),) * 2, has_aux=True)(eta)
            g = neg2ll(f, pat.y, pat.cens, pat.lloq, pat.mask, sigma) + jnp.sum((Linv @ eta) ** 2)
            s = 0.5 * jax.grad(neg2ll)(f, pat.y, pat.cens, pat.lloq, pat.mask, sigma)
            grad = A.T @ s + oinv @ eta  # (1/2) dg/deta
            H = A.T @ (gn_weights(f, pat.cens, pat.lloq, pat.mask, sigma)[:, None] * A) + oinv
            g = jnp.where(jnp.isfinite(g), g, jnp.inf)
            return g, grad, H

        def body(c):
            eta, g, grad, H, lam, nu, scale, it, _ = c
            direction = -jnp.linalg.solve(H + lam * jnp.diag(jnp.diag(H)), grad)  # the damped Gauss-Newton step
            step = scale * direction
            cand = eta + step
            g_c, grad_c, H_c = state(cand)
            predicted = -(grad @ step + 0.5 * step @ H @ step)  # decrease of g/2 by the Gauss-Newton model
            gain = 0.5 * (g - g_c) / jnp.maximum(predicted, _TINY)
            accept = jnp.isfinite(g_c) & (gain > 0)
            pick = lambda a, b: jnp.where(accept, a, b)  # noqa: E731
            # damping update of Nielsen (1999), as in Madsen, Nielsen & Tingleff 2004, section 3.2
            lam = jnp.where(accept, lam * jnp.maximum(1 / 3, 1 - (2 * gain - 1) ** 3), lam * nu)
            nu = jnp.where(accept, 2.0, 2.0 * nu)
            # The step's length along its direction, corrected by g's own curvature there (a parabola through g,
            # g's slope and g_c): where the exact Hessian of g exceeds Gauss-Newton's, Gauss-Newton steps overshoot
            # and the iteration zigzags (up to 25 steps for patients of the bundled trial; at most 9 with the scale).
            slope = 2.0 * grad @ step
            curvature = 2.0 * (g_c - g - slope)
            best = jnp.where(curvature > 0, -slope / jnp.where(curvature > 0, curvature, 1.0), SCALE_RANGE[1])
            scale = jnp.where(jnp.isfinite(g_c), jnp.clip(scale * best, *SCALE_RANGE), scale)
            eta, g, grad, H = pick(cand, eta), pick(g_c, g), pick(grad_c, grad), pick(H_c, H)
            decrement = grad @ jnp.linalg.solve(H, grad)  # squared Newton decrement of g/2
            # the model's gain is below the solver's noise in g, judged on the unscaled step: a small scale alone
            # (after steps that overshot) must not end the search short of the mode
            stalled = ~accept & (-(grad @ direction + 0.5 * direction @ H @ direction) < DECREMENT_TOL)
            done = (decrement < DECREMENT_TOL) | stalled | (lam > 1e16)
            return eta, g, grad, H, lam, nu, scale, it + 1, done

        g0, grad0, H0 = state(eta0)
        found = grad0 @ jnp.linalg.solve(H0, grad0) < DECREMENT_TOL / 100  # a warm start already at its mode
        init = (eta0, g0, grad0, H0, jnp.float64(1e-3), jnp.float64(2.0), jnp.float64(1.0), 0, ~jnp.isfinite(g0) | found)
        eta, g, grad, H, lam, nu, scale, it, done = jax.lax.while_loop(lambda c: ~c[8] & (c[7] < max_iter), body, init)
        ok = jnp.isfinite(g) & (grad @ jnp.linalg.solve(H, grad) < 100 * DECREMENT_TOL)  # within the solver's noise
        return eta, ok, it

    def ofv_point(x, pat, eta_hat, beta0, j):
        beta, L, sigma = layout.split(x, sigma_fixed)
        Linv, logdet_omega = _omega_parts(L)
        delta = pat.design @ (beta - beta0)

        def f_of(eta):
            return _surrogate(j, pat.effects, eta - eta_hat, delta)

        def g(eta):
            return neg2ll(f_of(eta), pat.y, pat.cens, pat.lloq, pat.mask, sigma) + jnp.sum((Linv @ eta) ** 2)

        held = jax.lax.stop_gradient(jax.hessian(g)(eta_hat))
        grad_hat = jax.grad(g)(eta_hat)
        step = jnp.linalg.solve(held, grad_hat)
        eta = eta_hat - step  # implicit derivative of the mode
        if method == "laplace":
            H = 0.5 * jax.hessian(g)(eta)
        else:
            A = jax.jacfwd(f_of)(eta)
            w = gn_weights(f_of(eta), pat.cens, pat.lloq, pat.mask, sigma)
            H = A.T @ (w[:, None] * A) + Linv.T @ Linv
        # the exact Newton decrement of g/2 at eta^ (inf where g's Hessian is not positive definite): how far the
        # Gauss-Newton mode may still lie from the true one along a direction where g's exact curvature is small
        positive = jnp.linalg.eigvalsh(held)[0] > 0
        decrement = jnp.where(positive, 0.5 * grad_hat @ step, jnp.inf)
        newton = jax.lax.stop_gradient((eta, decrement, g(eta_hat), j[0], j[1] @ pat.effects))
        return g(eta) + logdet_omega + jnp.linalg.slogdet(H)[1], newton

    def one_objective(x, pat, eta_hat):
        beta, _, _ = layout.split(x, sigma_fixed)
        j = jet(u_of(pat, beta, eta_hat), pat.context, pat.effects)
        (value, newton), grad = jax.value_and_grad(ofv_point, has_aux=True)(x, pat, eta_hat, beta, j)
        return value, grad, newton

    def one_conditional(x, pat, eta):
        beta, L, sigma = layout.split(x, sigma_fixed)
        Linv, logdet_omega = _omega_parts(L)

        def g(e):
            f = predict(u_of(pat, beta, e), pat.context)
            return neg2ll(f, pat.y, pat.cens, pat.lloq, pat.mask, sigma) + jnp.sum((Linv @ e) ** 2)

        if method == "laplace":  # forward over forward: reverse mode cannot pass the solver's while loop
            H = 0.5 * jax.jacfwd(jax.jacfwd(g))(eta)
        else:
            A, f = jax.jacfwd(lambda e: (predict(u_of(pat, beta, e), pat.context),) * 2, has_aux=True)(eta)
            H = A.T @ (gn_weights(f, pat.cens, pat.lloq, pat.mask, sigma)[:, None] * A) + Linv.T @ Linv
        gi = g(eta)
        return gi, H, gi + logdet_omega + jnp.linalg.slogdet(H)[1]

    def one_predict(x, pat, eta):
        beta, _, _ = layout.split(x, sigma_fixed)
        return predict(u_of(pat, beta, eta), pat.context)

    batch = lambda fn: jax.jit(jax.vmap(fn, in_axes=(None, 0, 0)))  # noqa: E731
    return Engine(layout, method, float(sigma_fixed), batch(one_mode), batch(one_objective), batch(one_conditional),
                  batch(one_predict))

