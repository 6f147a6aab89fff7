"""Checks of a validated job request against the configured limits.

The schema checks shapes and types; these checks need the settings (and the
identifiability rule of the estimators), so they run after it. Each problem is
reported under the path of the field it concerns, e.g. ``counts.3.1``.
"""

from __future__ import annotations

from typing import Any

from shared.allowlist import source_url_error
from shared.config import Settings
from shared.estimation import max_identifiable_components


def limit_errors(data: dict[str, Any], settings: Settings) -> dict[str, str]:
    """Map each field path that breaks a limit to what is wrong with it."""
    errors: dict[str, str] = {}
    source = data.get("source")
    if source and source["draws"] > settings.max_source_draws:
        errors["source.draws"] = (
            f"At most {settings.max_source_draws} draws per job (EMCOINS_MAX_SOURCE_DRAWS)."
        )
    if source:
        refused = source_url_error(source["url"], settings.source_allowlist)
        if refused:
            errors["source.url"] = refused
    flips = _flips_per_draw(data)
    if len(flips) > settings.max_draws:
        field = "draws" if "draws" in data else "counts"
        errors[field] = f"At most {settings.max_draws} draws per job (EMCOINS_MAX_DRAWS)."
    for path, n in flips.items():
        if n > settings.max_flips:
            errors[path] = f"At most {settings.max_flips} flips per draw (EMCOINS_MAX_FLIPS)."
            break
    for name, limit, setting in (
        ("max_components", settings.max_components, "EMCOINS_MAX_COMPONENTS"),
        ("restarts", settings.max_restarts, "EMCOINS_MAX_RESTARTS"),
    ):
        if data[name] > limit:
            errors[name] = f"At most {limit} ({setting})."
    k = data["n_components"]
    if k != "auto" and k > settings.max_components:
        errors["n_components"] = f"At most {settings.max_components} (EMCOINS_MAX_COMPONENTS)."
    elif k != "auto" and flips:
        most = max(flips.values())
        if k > max_identifiable_components(most):
            errors["n_components"] = (
                f"n_components={k} cannot be identified from draws of at most {most} flips: "
                f"a mixture of K binomials needs at least 2K-1 flips per draw (Teicher 1963)."
            )
    return errors


def _flips_per_draw(data: dict[str, Any]) -> dict[str, int]:
    """Flips of each inline draw by field path; empty for a source job."""
    if "draws" in data:
        return {f"draws.{i}": len(d) for i, d in enumerate(data["draws"])}
    if "counts" in data:
        return {f"counts.{i}.1": pair[1] for i, pair in enumerate(data["counts"])}
    return {}
