"""The job's contract, typed, in one place: what a job asks for, what it gives back, how it failed.

The API builds a :class:`JobSpec` once from the validated request; the store keeps it as
JSON and gives it back typed; the workers read its attributes. Results and errors are
typed the same way. Nothing else reads a job's fields by string key: the JSON forms are
written and read only by the ``to_json`` / ``from_json`` pairs below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from shared.methods import EM, GMM

AUTO = "auto"
# The analyses whose replicates fan out to workers, by the names they have in results,
# progress and task arguments.
BOOTSTRAP = "bootstrap"
COMPONENTS_TEST = "components_test"
ComponentChoice = int | Literal["auto"]


def _floats(values: Sequence[Any]) -> tuple[float | None, ...]:
    return tuple(None if v is None else float(v) for v in values)


def _json_or_none(value: Any) -> Any:
    return None if value is None else value.to_json()


def _read(cls: Any, data: Mapping[str, Any] | None) -> Any:
    return None if data is None else cls.from_json(data)


@dataclasses.dataclass(frozen=True)
class Source:
    """Where the workers fetch draws: one GET of ``url`` per draw."""

    url: str
    draws: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"url": self.url, "draws": self.draws}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Source:
        """Read back :meth:`to_json`."""
        return cls(url=data["url"], draws=int(data["draws"]))


NONPARAMETRIC = "nonparametric"
PARAMETRIC = "parametric"
BOOTSTRAP_KINDS = (NONPARAMETRIC, PARAMETRIC)


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """Percentile intervals for EM's thetas and weights from ``replicates`` refits of
    resampled data: resampled draws (``nonparametric``) or draws simulated from the fit
    (``parametric``)."""

    replicates: int
    kind: str = NONPARAMETRIC
    level: float = 0.95

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"replicates": self.replicates, "kind": self.kind, "level": self.level}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Bootstrap:
        """Read back :meth:`to_json`."""
        return cls(
            replicates=int(data["replicates"]), kind=data["kind"], level=float(data["level"])
        )


@dataclasses.dataclass(frozen=True)
class ComponentsTest:
    """A parametric bootstrap likelihood-ratio test of k against k+1 coins, from k=1 up to
    at most ``max_components``, with ``replicates`` simulated data sets per test."""

    max_components: int
    replicates: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"max_components": self.max_components, "replicates": self.replicates}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ComponentsTest:
        """Read back :meth:`to_json`."""
        return cls(max_components=int(data["max_components"]), replicates=int(data["replicates"]))


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """Everything the workers need to run a job; the seed is fixed, so reruns agree."""

    n_components: ComponentChoice
    max_components: int
    weights: str
    restarts: int
    methods: tuple[str, ...]
    seed: int
    source: Source | None = None
    # Where the job's JSON is POSTed when it ends, if anywhere.
    callback: str | None = None
    bootstrap: Bootstrap | None = None
    test_components: ComponentsTest | None = None

    @property
    def chooses_components(self) -> bool:
        """True when K is chosen (by the components test if asked, else by BIC) rather
        than given."""
        return self.n_components == AUTO

    @property
    def has_replicates(self) -> bool:
        """True when the job runs an analysis whose replicates fan out to workers."""
        return self.bootstrap is not None or self.test_components is not None

    def to_json(self) -> dict[str, Any]:
        """The JSON form, stored with the job."""
        return {
            "source": None if self.source is None else self.source.to_json(),
            "n_components": self.n_components,
            "max_components": self.max_components,
            "weights": self.weights,
            "restarts": self.restarts,
            "methods": list(self.methods),
            "seed": self.seed,
            "callback": None if self.callback is None else {"url": self.callback},
            "bootstrap": _json_or_none(self.bootstrap),
            "test_components": _json_or_none(self.test_components),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSpec:
        """Read back :meth:`to_json` (specs stored before the analyses existed lack them)."""
        source = data.get("source")
        return cls(
            n_components=data["n_components"],
            max_components=int(data["max_components"]),
            weights=data["weights"],
            restarts=int(data["restarts"]),
            methods=tuple(data["methods"]),
            seed=int(data["seed"]),
            source=None if source is None else Source.from_json(source),
            callback=(data.get("callback") or {}).get("url"),
            bootstrap=_read(Bootstrap, data.get("bootstrap")),
            test_components=_read(ComponentsTest, data.get("test_components")),
        )


# Request fields added after Idempotency-Keys were in use: left out of a fingerprint when
# absent, so that a request sent before and after they existed keeps its fingerprint.
_LATER_FIELDS = ("bootstrap", "test_components")


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """A validated ``POST /jobs`` body: exactly one of source, draws or counts, and options."""

    n_components: ComponentChoice
    max_components: int
    weights: str
    restarts: int
    methods: tuple[str, ...]
    seed: int | None
    source: Source | None = None
    draws: tuple[str, ...] | None = None
    counts: tuple[tuple[int, ...], ...] | None = None
    callback: str | None = None
    bootstrap: Bootstrap | None = None
    test_components: ComponentsTest | None = None

    def fingerprint(self) -> str:
        """A digest of the normalised request, before a random seed is drawn: the same
        request gives the same fingerprint (for ``Idempotency-Key``)."""
        fields = dataclasses.asdict(self)
        for name in _LATER_FIELDS:
            if fields[name] is None:
                del fields[name]
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def spec(self, seed: int) -> JobSpec:
        """The job's spec, with ``seed`` used when the request gave none."""
        return JobSpec(
            n_components=self.n_components,
            max_components=self.max_components,
            weights=self.weights,
            restarts=self.restarts,
            methods=self.methods,
            seed=seed if self.seed is None else self.seed,
            source=self.source,
            callback=self.callback,
            bootstrap=self.bootstrap,
            test_components=self.test_components,
        )


@dataclasses.dataclass(frozen=True)
class JobError:
    """Why a job failed: a code clients match on, a message people read, details."""

    code: str
    message: str
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"code": self.code, "message": self.message, "details": dict(self.details)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobError:
        """Read back :meth:`to_json`."""
        return cls(code=data["code"], message=data["message"], details=data.get("details") or {})


@dataclasses.dataclass(frozen=True)
class Averaged:
    """The restart-averaged EM estimate, restarts aligned by label."""

    thetas: tuple[float | None, ...]
    weights: tuple[float | None, ...]
    std: tuple[float | None, ...]
    restarts: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "thetas": list(self.thetas),
            "weights": list(self.weights),
            "std": list(self.std),
            "restarts": self.restarts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Averaged:
        """Read back :meth:`to_json`."""
        return cls(
            thetas=_floats(data["thetas"]),
            weights=_floats(data["weights"]),
            std=_floats(data["std"]),
            restarts=int(data["restarts"]),
        )


@dataclasses.dataclass(frozen=True)
class Posteriors:
    """The paper's central table: for each distinct (heads, flips) pair, its count and the
    probability of each coin. The result keeps the most frequent pairs only."""

    pairs: tuple[tuple[int, int, int], ...]
    probabilities: tuple[tuple[float, ...], ...]
    truncated: bool

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "pairs": [list(pair) for pair in self.pairs],
            "probabilities": [list(row) for row in self.probabilities],
            "truncated": self.truncated,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Posteriors:
        """Read back :meth:`to_json`."""
        return cls(
            pairs=tuple(tuple(int(v) for v in pair) for pair in data["pairs"]),
            probabilities=tuple(tuple(float(v) for v in row) for row in data["probabilities"]),
            truncated=bool(data["truncated"]),
        )


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """The best run's log-likelihood and thetas after each iteration (the paper's Fig. 1b)."""

    log_likelihood: tuple[float, ...]
    thetas: tuple[tuple[float, ...], ...]

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "log_likelihood": list(self.log_likelihood),
            "thetas": [list(row) for row in self.thetas],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trajectory:
        """Read back :meth:`to_json`."""
        return cls(
            log_likelihood=tuple(float(v) for v in data["log_likelihood"]),
            thetas=tuple(tuple(float(v) for v in row) for row in data["thetas"]),
        )


@dataclasses.dataclass(frozen=True)
class RestartSummary:
    """How the restarts ended: how many reached the best log-likelihood (within
    ``tolerance``), and the spread of their log-likelihoods."""

    restarts: int
    at_best: int
    tolerance: float
    best: float
    worst: float
    spread: float

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RestartSummary:
        """Read back :meth:`to_json`."""
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class FitWarning:
    """Something a user should know about a fit: ``degenerate_component``,
    ``max_iter_reached`` or ``overdispersed``."""

    code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FitWarning:
        """Read back :meth:`to_json`."""
        return cls(code=data["code"], message=data["message"])


def _intervals(rows: Sequence[Sequence[Any]]) -> tuple[tuple[float | None, float | None], ...]:
    return tuple((_floats(row)[0], _floats(row)[1]) for row in rows)


@dataclasses.dataclass(frozen=True)
class BootstrapIntervals:
    """Percentile intervals at ``level`` for each theta and weight of the EM fit, in its
    order, from ``replicates`` refits; ``failed`` refits are left out of the intervals, and
    ``ambiguous`` ones matched the fit's labels with too small a margin to be sure."""

    replicates: int
    kind: str
    level: float
    thetas: tuple[tuple[float | None, float | None], ...]
    weights: tuple[tuple[float | None, float | None], ...]
    failed: int
    ambiguous: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form (``result.em.bootstrap``)."""
        return {
            "replicates": self.replicates,
            "kind": self.kind,
            "level": self.level,
            "thetas": [list(pair) for pair in self.thetas],
            "weights": [list(pair) for pair in self.weights],
            "failed": self.failed,
            "ambiguous": self.ambiguous,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BootstrapIntervals:
        """Read back :meth:`to_json`."""
        return cls(
            replicates=int(data["replicates"]),
            kind=data["kind"],
            level=float(data["level"]),
            thetas=_intervals(data["thetas"]),
            weights=_intervals(data["weights"]),
            failed=int(data["failed"]),
            ambiguous=int(data["ambiguous"]),
        )


@dataclasses.dataclass(frozen=True)
class LikelihoodRatioTest:
    """One step of the components test: k coins against k+1, its statistic
    2 (log L(k+1) - log L(k)) and its bootstrap p-value."""

    k: int
    statistic: float
    p_value: float

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"k": self.k, "statistic": self.statistic, "p_value": self.p_value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LikelihoodRatioTest:
        """Read back :meth:`to_json`."""
        return cls(k=int(data["k"]), statistic=float(data["statistic"]),
                   p_value=float(data["p_value"]))


@dataclasses.dataclass(frozen=True)
class ComponentsTestResult:
    """The tests run, from k=1 up to the first that was not significant, and the K they
    select (``result.components_test``)."""

    replicates: int
    tests: tuple[LikelihoodRatioTest, ...]
    selected: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "replicates": self.replicates,
            "tests": [test.to_json() for test in self.tests],
            "selected": self.selected,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ComponentsTestResult:
        """Read back :meth:`to_json`."""
        return cls(
            replicates=int(data["replicates"]),
            tests=tuple(LikelihoodRatioTest.from_json(t) for t in data["tests"]),
            selected=int(data["selected"]),
        )


@dataclasses.dataclass(frozen=True)
class EmEstimate:
    """The binomial-mixture EM's best restart, and what shows its work."""

    thetas: tuple[float | None, ...]
    weights: tuple[float | None, ...]
    standard_errors: tuple[float | None, ...]
    log_likelihood: float
    iterations: int
    converged: bool
    averaged: Averaged
    posteriors: Posteriors | None = None
    trajectory: Trajectory | None = None
    restart_summary: RestartSummary | None = None
    bootstrap: BootstrapIntervals | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form; ``bootstrap`` only when the job asked for one."""
        data = {
            "thetas": list(self.thetas),
            "weights": list(self.weights),
            "standard_errors": list(self.standard_errors),
            "log_likelihood": self.log_likelihood,
            "iterations": self.iterations,
            "converged": self.converged,
            "averaged": self.averaged.to_json(),
            "restart_summary": _json_or_none(self.restart_summary),
            "posteriors": _json_or_none(self.posteriors),
            "trajectory": _json_or_none(self.trajectory),
        }
        if self.bootstrap is not None:
            data["bootstrap"] = self.bootstrap.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmEstimate:
        """Read back :meth:`to_json` (results stored before these parts existed lack them)."""
        return cls(
            thetas=_floats(data["thetas"]),
            weights=_floats(data["weights"]),
            standard_errors=_floats(data["standard_errors"]),
            log_likelihood=float(data["log_likelihood"]),
            iterations=int(data["iterations"]),
            converged=bool(data["converged"]),
            averaged=Averaged.from_json(data["averaged"]),
            posteriors=_read(Posteriors, data.get("posteriors")),
            trajectory=_read(Trajectory, data.get("trajectory")),
            restart_summary=_read(RestartSummary, data.get("restart_summary")),
            bootstrap=_read(BootstrapIntervals, data.get("bootstrap")),
        )


@dataclasses.dataclass(frozen=True)
class GmmEstimate:
    """The Gaussian-mixture baseline on heads fractions."""

    means: tuple[float | None, ...]
    weights: tuple[float | None, ...]
    stds: tuple[float | None, ...]
    converged: bool
    iterations: int

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "means": list(self.means),
            "weights": list(self.weights),
            "stds": list(self.stds),
            "converged": self.converged,
            "iterations": self.iterations,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GmmEstimate:
        """Read back :meth:`to_json`."""
        return cls(
            means=_floats(data["means"]),
            weights=_floats(data["weights"]),
            stds=_floats(data["stds"]),
            converged=bool(data["converged"]),
            iterations=int(data["iterations"]),
        )


Estimate = EmEstimate | GmmEstimate
_ESTIMATES: dict[str, type[EmEstimate] | type[GmmEstimate]] = {EM: EmEstimate, GMM: GmmEstimate}


@dataclasses.dataclass(frozen=True)
class Part:
    """One method's fit, or why it failed, saved on its own until every method is in."""

    method: str
    n_components: int | None
    bic: Mapping[str, float] | None
    estimate: Estimate | None
    error: JobError | None = None
    icl: Mapping[str, float] | None = None
    warnings: tuple[FitWarning, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "method": self.method,
            "n_components": self.n_components,
            "bic": None if self.bic is None else dict(self.bic),
            "icl": None if self.icl is None else dict(self.icl),
            "estimate": None if self.estimate is None else self.estimate.to_json(),
            "error": None if self.error is None else self.error.to_json(),
            "warnings": [warning.to_json() for warning in self.warnings],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Part:
        """Read back :meth:`to_json`."""
        method, estimate, error = data["method"], data.get("estimate"), data.get("error")
        return cls(
            method=method,
            n_components=data.get("n_components"),
            bic=data.get("bic"),
            estimate=None if estimate is None else _ESTIMATES[method].from_json(estimate),
            error=None if error is None else JobError.from_json(error),
            icl=data.get("icl"),
            warnings=tuple(FitWarning.from_json(w) for w in data.get("warnings") or ()),
        )


@dataclasses.dataclass(frozen=True)
class JobResult:
    """A finished job's estimates: K, the BIC per K tried, each method asked for, and the
    errors of the methods that failed (their estimate is null)."""

    n_components: int | None
    bic: Mapping[str, float] | None
    em: EmEstimate | None = None
    gmm: GmmEstimate | None = None
    errors: Mapping[str, JobError] = dataclasses.field(default_factory=dict)
    icl: Mapping[str, float] | None = None
    warnings: tuple[FitWarning, ...] = ()
    components_test: ComponentsTestResult | None = None

    @classmethod
    def merge(
        cls,
        parts: Sequence[Part],
        *,
        components_test: ComponentsTestResult | None = None,
        test_error: JobError | None = None,
    ) -> JobResult:
        """The result of a job from its methods' parts (K was chosen once for all of them),
        with the components test's outcome, or its error under ``errors``, if it ran."""
        fitted = [part for part in parts if part.estimate is not None]
        first = fitted[0] if fitted else parts[0]
        estimates = {part.method: part.estimate for part in fitted}
        warnings: list[FitWarning] = []
        for part in parts:
            warnings += [w for w in part.warnings if w not in warnings]
        return cls(
            n_components=first.n_components,
            bic=first.bic,
            em=estimates.get(EM),  # type: ignore[arg-type]
            gmm=estimates.get(GMM),  # type: ignore[arg-type]
            errors={
                **{part.method: part.error for part in parts if part.error is not None},
                **({COMPONENTS_TEST: test_error} if test_error is not None else {}),
            },
            icl=first.icl,
            warnings=tuple(warnings),
            components_test=components_test,
        )

    @property
    def failed(self) -> bool:
        """True when no method gave an estimate."""
        return self.em is None and self.gmm is None

    def to_json(self) -> dict[str, Any]:
        """The JSON form; a method (or the components test) that was not asked for has no
        key, one that failed is null and has its error under ``errors``."""
        data: dict[str, Any] = {
            "n_components": self.n_components,
            "bic": None if self.bic is None else dict(self.bic),
            "icl": None if self.icl is None else dict(self.icl),
            "warnings": [warning.to_json() for warning in self.warnings],
        }
        if self.components_test is not None or COMPONENTS_TEST in self.errors:
            data[COMPONENTS_TEST] = _json_or_none(self.components_test)
        for method, estimate in ((EM, self.em), (GMM, self.gmm)):
            if estimate is not None:
                data[method] = estimate.to_json()
            elif method in self.errors:
                data[method] = None
        if self.errors:
            data["errors"] = {method: error.to_json() for method, error in self.errors.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobResult:
        """Read back :meth:`to_json`."""
        errors = data.get("errors") or {}
        return cls(
            n_components=data.get("n_components"),
            bic=data.get("bic"),
            em=EmEstimate.from_json(data[EM]) if data.get(EM) else None,
            gmm=GmmEstimate.from_json(data[GMM]) if data.get(GMM) else None,
            errors={method: JobError.from_json(error) for method, error in errors.items()},
            icl=data.get("icl"),
            warnings=tuple(FitWarning.from_json(w) for w in data.get("warnings") or ()),
            components_test=_read(ComponentsTestResult, data.get(COMPONENTS_TEST)),
        )
