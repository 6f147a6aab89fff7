"""Independent reference computations for the estimation tests (scipy and plain Python)."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from scipy.stats import binom


def mixture_log_pmf(heads, trials, thetas, weights) -> np.ndarray:
    """log sum_k w_k Binom(h | n, theta_k) per draw, via scipy.stats."""
    h = np.asarray(heads)[:, None]
    n = np.broadcast_to(np.asarray(trials), np.asarray(heads).shape)[:, None]
    comp = binom.logpmf(h, n, np.asarray(thetas)[None, :]) + np.log(weights)[None, :]
    return logsumexp(comp, axis=1)


def total_log_likelihood(heads, trials, thetas, weights) -> float:
    """Total mixture log-likelihood over all draws."""
    return float(mixture_log_pmf(heads, trials, thetas, weights).sum())


def posterior(heads, trials, thetas, weights) -> np.ndarray:
    """Bayes' rule with plain pmf values: w_k f_k / sum_j w_j f_j per draw."""
    h = np.asarray(heads)[:, None]
    n = np.broadcast_to(np.asarray(trials), np.asarray(heads).shape)[:, None]
    joint = binom.pmf(h, n, np.asarray(thetas)[None, :]) * np.asarray(weights)[None, :]
    return joint / joint.sum(axis=1, keepdims=True)


def numerical_standard_errors(heads, trials, thetas, weights, *, learn, fixed=()):
    """SEs of the free thetas from a central-difference Hessian of the log-likelihood.

    Parameters are the thetas not in ``fixed`` and, when ``learn``, the first K-1 weights
    (the last is one minus the others).
    """
    thetas = np.asarray(thetas, dtype=float)
    weights = np.asarray(weights, dtype=float)
    k = thetas.size
    free = [j for j in range(k) if j not in fixed]

    def unpack(x):
        th = thetas.copy()
        th[free] = x[: len(free)]
        if learn:
            w = np.append(x[len(free) :], 1 - x[len(free) :].sum())
        else:
            w = weights
        return th, w

    x0 = np.concatenate((thetas[free], weights[:-1] if learn else []))

    def f(x):
        return total_log_likelihood(heads, trials, *unpack(x))

    p = x0.size
    step = 1e-5
    hess = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            ei, ej = np.eye(p)[i] * step, np.eye(p)[j] * step
            hess[i, j] = (f(x0 + ei + ej) - f(x0 + ei - ej) - f(x0 - ei + ej) + f(x0 - ei - ej)) / (
                4 * step**2
            )
    cov = np.linalg.inv(-hess)
    out = np.full(k, np.nan)
    out[free] = np.sqrt(np.diag(cov)[: len(free)])
    return out
