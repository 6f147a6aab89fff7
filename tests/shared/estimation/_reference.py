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


def distinct_pairs(heads, trials, counts=None):
    """Distinct (heads, trials) pairs and their total counts, by a plain dict."""
    heads = np.asarray(heads).tolist()
    trials = np.broadcast_to(np.asarray(trials), (len(heads),)).tolist()
    counts = [1] * len(heads) if counts is None else np.asarray(counts).tolist()
    tally: dict[tuple[int, int], int] = {}
    for h, n, c in zip(heads, trials, counts, strict=True):
        tally[(h, n)] = tally.get((h, n), 0) + c
    pairs = sorted(tally)
    return (
        np.array([p[0] for p in pairs]),
        np.array([p[1] for p in pairs]),
        np.array([tally[p] for p in pairs], dtype=float),
    )


def _pairs_log_likelihood(h, n, c, thetas, weights) -> float:
    comp = binom.logpmf(h[:, None], n[:, None], thetas[None, :]) + np.log(weights)[None, :]
    return float(c @ logsumexp(comp, axis=1))


def reference_maximum(h, n, c, k, *, n_starts=20, em_iter=400, seed=0):
    """The maximum log-likelihood of K binomials, computed without the code under test.

    Plain EM (written out here) from ``n_starts`` random starts, then each of the three
    best end points polished by scipy's BFGS in logit(theta) / log-weight coordinates.
    Returns (log-likelihood, thetas, weights), thetas ascending.
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    rng = np.random.RandomState(seed)
    thetas = rng.uniform(0.05, 0.95, size=(n_starts, k))
    weights = rng.dirichlet(np.ones(k), size=n_starts)
    for _ in range(em_iter):
        log_f = (
            h[None, :, None] * np.log(thetas[:, None, :])
            + (n - h)[None, :, None] * np.log1p(-thetas[:, None, :])
            + np.log(weights[:, None, :])
        )  # (S, M, K)
        post = np.exp(log_f - logsumexp(log_f, axis=2, keepdims=True)) * c[None, :, None]
        thetas = np.clip(
            (post * h[None, :, None]).sum(1) / (post * n[None, :, None]).sum(1), 1e-12, 1 - 1e-12
        )
        weights = np.maximum(post.sum(1) / c.sum(), 1e-300)
    scores = [_pairs_log_likelihood(h, n, c, thetas[s], weights[s]) for s in range(n_starts)]

    def unpack(x):
        lw = np.append(x[k:], 0.0)
        return expit(x[:k]), np.exp(lw - logsumexp(lw))

    def negative(x):
        return -_pairs_log_likelihood(h, n, c, *unpack(x))

    best = (-np.inf, None, None)
    for s in np.argsort(scores)[-3:]:
        th = np.clip(thetas[s], 1e-9, 1 - 1e-9)
        lw = np.log(weights[s])
        x0 = np.concatenate((np.log(th / (1 - th)), lw[:-1] - lw[-1]))
        result = minimize(negative, x0, method="BFGS", options={"gtol": 1e-8, "maxiter": 2000})
        value = max(-result.fun, scores[s])
        if value > best[0]:
            th, w = unpack(result.x) if -result.fun >= scores[s] else (thetas[s], weights[s])
            order = np.argsort(th)
            best = (value, th[order], w[order])
    return best
