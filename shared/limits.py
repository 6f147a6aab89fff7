"""Checks of a validated job request against the configured limits.

The schema checks shapes and types; these checks need the settings (and the
identifiability rule of the estimators), so they run after it. Each problem is
reported under the path of the field it concerns, e.g. ``counts.3.1``.
"""

from __future__ import annotations

from shared.allowlist import source_url_error
from shared.config import Settings
from shared.contract import AUTO, JobRequest


def max_identifiable_components(max_flips: int) -> int:
    """Largest K identifiable from draws of at most ``max_flips`` flips: a mixture of K
    binomials needs n >= 2K - 1 (Teicher 1963). Written out here so that the API does not
    load the estimators (scikit-learn, scipy) to check a request."""
    return (max_flips + 1) // 2


def limit_errors(request: JobRequest, settings: Settings) -> dict[str, str]:
    """Map each field path that breaks a limit to what is wrong with it."""
    errors: dict[str, str] = {}
    source = request.source
    if source is not None:
        # Each fetched draw is one row at most: a source job obeys the inline limits too.
        for limit, what, setting in (
            (settings.max_source_draws, "draws", "EMCOINS_MAX_SOURCE_DRAWS"),
            (settings.max_draws, "draws", "EMCOINS_MAX_DRAWS"),
            (settings.max_rows, "rows", "EMCOINS_MAX_ROWS"),
        ):
            if source.draws > limit:
                errors["source.draws"] = f"At most {limit} {what} per job ({setting})."
                break
    if source is not None:
        refused = source_url_error(source.url, settings.source_allowlist)
        if refused:
            errors["source.url"] = refused
    if request.callback is not None:
        if not settings.webhook_secret:
            errors["callback"] = (
                "Callbacks are off: the service has no EMCOINS_WEBHOOK_SECRET to sign them with."
            )
        elif refused := source_url_error(
            request.callback,
            settings.callback_allowlist,
            what="callback receiver",
            setting="EMCOINS_CALLBACK_ALLOWLIST",
        ):
            errors["callback.url"] = refused
    flips = _flips_per_draw(request)
    field = "draws" if request.draws is not None else "counts"
    if _draw_total(request) > settings.max_draws:
        errors[field] = f"At most {settings.max_draws} draws per job (EMCOINS_MAX_DRAWS)."
    elif len(flips) > settings.max_rows:
        errors[field] = f"At most {settings.max_rows} rows per job (EMCOINS_MAX_ROWS)."
    for path, n in flips.items():
        if n > settings.max_flips:
            errors[path] = f"At most {settings.max_flips} flips per draw (EMCOINS_MAX_FLIPS)."
            break
    for name, value, limit, setting in (
        ("max_components", request.max_components, settings.max_components,
         "EMCOINS_MAX_COMPONENTS"),
        ("restarts", request.restarts, settings.max_restarts, "EMCOINS_MAX_RESTARTS"),
    ):
        if value > limit:
            errors[name] = f"At most {limit} ({setting})."
    errors.update(_analysis_errors(request, settings, flips))
    k = request.n_components
    if k != AUTO and k > settings.max_components:
        errors["n_components"] = f"At most {settings.max_components} (EMCOINS_MAX_COMPONENTS)."
    elif k != AUTO and flips:
        most = max(flips.values())
        if k > max_identifiable_components(most):
            errors["n_components"] = (
                f"n_components={k} cannot be identified from draws of at most {most} flips: "
                f"a mixture of K binomials needs at least 2K-1 flips per draw (Teicher 1963)."
            )
    return errors


def _analysis_errors(
    request: JobRequest, settings: Settings, flips: dict[str, int]
) -> dict[str, str]:
    """B within EMCOINS_MAX_REPLICATES; the components test's largest K within the limits
    of ``n_components`` (the setting, and for inline draws Teicher's rule)."""
    errors: dict[str, str] = {}
    for name, asked in (("bootstrap", request.bootstrap),
                        ("test_components", request.test_components)):
        if asked is not None and asked.replicates > settings.max_replicates:
            errors[f"{name}.replicates"] = (
                f"At most {settings.max_replicates} (EMCOINS_MAX_REPLICATES)."
            )
    test = request.test_components
    if test is None:
        return errors
    top = test.max_components
    if top > settings.max_components:
        errors["test_components.max_components"] = (
            f"At most {settings.max_components} (EMCOINS_MAX_COMPONENTS)."
        )
    elif flips and top > max_identifiable_components(most := max(flips.values())):
        errors["test_components.max_components"] = (
            f"max_components={top} cannot be identified from draws of at most {most} flips: "
            f"a mixture of K binomials needs at least 2K-1 flips per draw (Teicher 1963)."
        )
    return errors


def distinct_pairs_error(request: JobRequest, distinct: int) -> dict[str, str]:
    """The error at ``n_components`` (or the components test's ``max_components``) when
    inline data has fewer distinct ``(heads, flips)`` pairs than the coins asked for (no
    mixture of K coins can be fitted to fewer)."""
    errors = {}
    k = request.n_components
    if k != AUTO and distinct < k:
        errors["n_components"] = (
            f"n_components={k} needs at least {k} distinct (heads, flips) pairs; "
            f"the data has {distinct}."
        )
    test = request.test_components
    if test is not None and distinct < test.max_components:
        errors["test_components.max_components"] = (
            f"max_components={test.max_components} needs at least {test.max_components} "
            f"distinct (heads, flips) pairs; the data has {distinct}."
        )
    return errors


def _draw_total(request: JobRequest) -> int:
    """Draws of inline data, counting a counts row's multiplicity (one when it has none)."""
    if request.draws is not None:
        return len(request.draws)
    if request.counts is not None:
        return sum(row[2] if len(row) > 2 else 1 for row in request.counts)
    return 0


def _flips_per_draw(request: JobRequest) -> dict[str, int]:
    """Flips of each inline draw by field path; empty for a source job."""
    if request.draws is not None:
        return {f"draws.{i}": len(d) for i, d in enumerate(request.draws)}
    if request.counts is not None:
        return {f"counts.{i}.1": pair[1] for i, pair in enumerate(request.counts)}
    return {}
