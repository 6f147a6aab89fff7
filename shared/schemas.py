"""Request and response schemas of the jobs API, declared once.

They validate requests and describe responses in the OpenAPI document that the
API serves. Settings-dependent limits are checked in :mod:`shared.limits`.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from shared.contract import (
    BOOTSTRAP_KINDS,
    NONPARAMETRIC,
    Bootstrap,
    ComponentsTest,
    JobRequest,
    Source,
)
from shared.draws import parse_flip_string
from shared.errors import InvalidDrawError
from shared.methods import EM, METHODS
from shared.status import JobStatus

DATA_FIELDS = ("source", "draws", "counts")


class FlipString(fields.String):
    """A draw as a string of H and T (any case)."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            parse_flip_string(text)
        except InvalidDrawError as exc:
            raise ValidationError(str(exc)) from None
        return text


class ComponentCount(fields.Field):
    """A number of coins: a positive integer, or ``"auto"`` to choose it by BIC."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> int | str:
        if value == "auto":
            return value
        if type(value) is not int:
            raise ValidationError('Must be a positive integer or "auto".')
        if value < 1:
            raise ValidationError("Must be at least 1.")
        return value

    def _serialize(self, value: Any, attr, obj, **kwargs) -> Any:
        return value


class Number(fields.Float):
    """A JSON number: not a string of digits, not true or false."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> float:
        if type(value) not in (int, float):
            raise ValidationError("Not a valid number.")
        return super()._deserialize(value, attr, data, **kwargs)


class CountRow(fields.Field):
    """One row of ``counts``: ``[heads, flips]`` for one draw, or ``[heads, flips, count]``
    for ``count`` draws alike (a histogram is then one small request)."""

    def _deserialize(self, value: Any, attr, data, **kwargs) -> tuple[int, ...]:
        if not isinstance(value, list | tuple) or len(value) not in (2, 3):
            raise ValidationError("Must be [heads, flips] or [heads, flips, count].")
        # bool is an int subclass; true/false are not counts.
        bad = {i: "Not a valid integer." for i, v in enumerate(value) if type(v) is not int}
        if bad:
            raise ValidationError(bad)
        heads, flips = value[0], value[1]
        if flips < 1:
            raise ValidationError(f"flips must be at least 1, got {flips}.")
        if heads < 0:
            raise ValidationError(f"heads must not be negative, got {heads}.")
        if heads > flips:
            raise ValidationError(f"heads ({heads}) cannot exceed flips ({flips}).")
        if len(value) == 3 and value[2] < 1:
            raise ValidationError({2: f"count must be at least 1, got {value[2]}."})
        return tuple(value)


class SourceSchema(Schema):
    """Where the workers fetch draws: one GET of ``url`` per draw."""

    url = fields.Url(
        required=True,
        schemes={"http", "https"},
        require_tld=False,
        metadata={"description": "Endpoint answering each GET with one draw."},
    )
    draws = fields.Integer(
        strict=True,
        load_default=30,
        validate=validate.Range(min=1),
        metadata={"description": "How many draws to fetch."},
    )


class CallbackSchema(Schema):
    """Where to POST the job's JSON when it ends (signed as Standard Webhooks says)."""

    url = fields.Url(
        required=True,
        schemes={"http", "https"},
        require_tld=False,
        metadata={"description": "Receiver; its origin must be in EMCOINS_CALLBACK_ALLOWLIST."},
    )


class BootstrapSchema(Schema):
    """Bootstrap intervals for EM's thetas and weights (needs "em" in methods)."""

    replicates = fields.Integer(
        strict=True, load_default=1000, validate=validate.Range(min=1),
        metadata={"description": "B: refits of resampled data (at most "
                  "EMCOINS_MAX_REPLICATES, 10,000 by default)."},
    )
    kind = fields.String(
        load_default=NONPARAMETRIC, validate=validate.OneOf(BOOTSTRAP_KINDS),
        metadata={"description": "nonparametric: the draws resampled with replacement; "
                  "parametric: draws simulated from the EM fit, with the same flips each."},
    )
    level = Number(
        load_default=0.95,
        validate=validate.Range(min=0, max=1, min_inclusive=False, max_inclusive=False),
        metadata={"description": "Coverage of the percentile intervals, strictly between "
                  "0 and 1."},
    )


class ComponentsTestSchema(Schema):
    """A parametric bootstrap likelihood-ratio test of k against k+1 coins, from k=1 up,
    stopping at the first test not significant at 0.05 (needs "em" in methods)."""

    max_components = fields.Integer(
        strict=True, load_default=4, validate=validate.Range(min=2),
        metadata={"description": "Largest K the test may select; its own, under the same "
                  "limits as n_components."},
    )
    replicates = fields.Integer(
        strict=True, load_default=99, validate=validate.Range(min=1),
        metadata={"description": "B: simulated data sets per test (at most "
                  "EMCOINS_MAX_REPLICATES)."},
    )


class JobRequestSchema(Schema):
    """A new estimation job: exactly one of ``source``, ``draws`` or ``counts``."""

    source = fields.Nested(SourceSchema)
    draws = fields.List(
        FlipString(),
        validate=validate.Length(min=1),
        metadata={"description": 'Inline draws, e.g. ["HTTHHTHTHH", ...].'},
    )
    counts = fields.List(
        CountRow(
            metadata={
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "minItems": 2,
                "maxItems": 3,
            }
        ),
        validate=validate.Length(min=1),
        metadata={
            "description": "Inline [heads, flips] rows, one per draw, or [heads, flips, count] "
            "rows standing for count draws each."
        },
    )
    n_components = ComponentCount(
        load_default=2,
        metadata={
            "description": 'Number of coins, or "auto" to choose it by BIC.',
            "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["auto"]}],
        },
    )
    max_components = fields.Integer(
        strict=True, load_default=4, validate=validate.Range(min=1),
        metadata={"description": 'Largest K tried when n_components is "auto".'},
    )
    weights = fields.String(load_default="learn", validate=validate.OneOf(["learn", "equal"]))
    restarts = fields.Integer(
        strict=True, load_default=10, validate=validate.Range(min=1),
        metadata={"description": "EM restarts."},
    )
    methods = fields.List(
        fields.String(validate=validate.OneOf(METHODS)),
        load_default=list(METHODS),
        validate=validate.Length(min=1),
    )
    seed = fields.Integer(
        strict=True, load_default=None, allow_none=True,
        validate=validate.Range(min=0, max=2**32 - 1),
        metadata={"description": "Makes the fits repeatable; chosen at random if absent."},
    )
    callback = fields.Nested(CallbackSchema)
    bootstrap = fields.Nested(BootstrapSchema)
    test_components = fields.Nested(
        ComponentsTestSchema,
        metadata={"description": 'With n_components "auto", the K the test selects is '
                  "the one fitted; otherwise the test only reports."},
    )

    @validates_schema
    def _one_data_field(self, data: dict[str, Any], **kwargs) -> None:
        given = [name for name in DATA_FIELDS if name in data]
        if len(given) != 1:
            message = "Give exactly one of source, draws or counts."
            if given:
                message += f" Got {', '.join(given)}."
            raise ValidationError(message, field_name="_schema")
        if len(set(data["methods"])) != len(data["methods"]):
            raise ValidationError("Each method may appear once.", field_name="methods")
        for name in ("bootstrap", "test_components"):
            if name in data and EM not in data["methods"]:
                raise ValidationError(
                    f'{name} analyses the EM fit: it needs "em" in methods.', field_name=name
                )

    @post_load
    def _typed(self, data: dict[str, Any], **kwargs) -> JobRequest:
        source = data.get("source")
        counts = data.get("counts")
        draws = data.get("draws")
        return JobRequest(
            n_components=data["n_components"],
            max_components=data["max_components"],
            weights=data["weights"],
            restarts=data["restarts"],
            methods=tuple(data["methods"]),
            seed=data["seed"],
            source=None if source is None else Source(url=source["url"], draws=source["draws"]),
            draws=None if draws is None else tuple(draws),
            counts=None if counts is None else tuple(tuple(pair) for pair in counts),
            callback=data["callback"]["url"] if "callback" in data else None,
            bootstrap=Bootstrap(**data["bootstrap"]) if "bootstrap" in data else None,
            test_components=(
                ComponentsTest(**data["test_components"]) if "test_components" in data else None
            ),
        )


class JobCreatedSchema(Schema):
    """The answer to a new job."""

    id = fields.String(required=True)
    status = fields.Enum(JobStatus, by_value=True, required=True)
    url = fields.String(required=True, metadata={"description": "Path to poll: /jobs/<id>."})


class ReplicateProgressSchema(Schema):
    """Replicates done in the stage running now of the bootstrap or the components test."""

    analysis = fields.String(
        required=True, validate=validate.OneOf(["bootstrap", "components_test"])
    )
    stage = fields.Integer(
        required=True, allow_none=True,
        metadata={"description": "The components test's k (k coins against k+1); null "
                  "for the bootstrap."},
    )
    done = fields.Integer(required=True)
    total = fields.Integer(required=True)


class ProgressSchema(Schema):
    """How many draws have been fetched, and replicates done while an analysis runs."""

    draws_fetched = fields.Integer(required=True)
    draws_total = fields.Integer(required=True)
    replicates = fields.Nested(ReplicateProgressSchema)


class AveragedSchema(Schema):
    """The restart-averaged EM estimate."""

    thetas = fields.List(fields.Float(), required=True)
    weights = fields.List(fields.Float(), required=True)
    std = fields.List(fields.Float(), required=True)
    restarts = fields.Integer(required=True)


class PosteriorsSchema(Schema):
    """For each distinct (heads, flips) pair, its count and the probability of each coin;
    the result keeps the most frequent pairs (GET /jobs/<id>/posteriors serves all)."""

    pairs = fields.List(
        fields.List(fields.Integer()), required=True,
        metadata={"description": "[heads, flips, count] rows, most frequent first."},
    )
    probabilities = fields.List(
        fields.List(fields.Float()), required=True,
        metadata={"description": "P(coin k | row), rows in the order of pairs."},
    )
    truncated = fields.Boolean(
        required=True, metadata={"description": "True when pairs were left out."}
    )


class TrajectorySchema(Schema):
    """The best run's log-likelihood and thetas after each iteration."""

    log_likelihood = fields.List(fields.Float(), required=True)
    thetas = fields.List(fields.List(fields.Float()), required=True)


class RestartSummarySchema(Schema):
    """How the restarts ended."""

    restarts = fields.Integer(required=True)
    at_best = fields.Integer(
        required=True,
        metadata={"description": "Restarts within tolerance of the best log-likelihood."},
    )
    tolerance = fields.Float(required=True)
    best = fields.Float(required=True)
    worst = fields.Float(required=True)
    spread = fields.Float(
        required=True, metadata={"description": "best - worst log-likelihood."}
    )


class FitWarningSchema(Schema):
    """Something to know about a fit."""

    code = fields.String(
        required=True,
        validate=validate.OneOf(["degenerate_component", "max_iter_reached", "overdispersed"]),
    )
    message = fields.String(required=True)


class BootstrapIntervalsSchema(Schema):
    """Percentile intervals from the bootstrap, in the order of the EM thetas and weights."""

    replicates = fields.Integer(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(BOOTSTRAP_KINDS))
    level = fields.Float(required=True)
    thetas = fields.List(
        fields.List(fields.Float(allow_none=True)), required=True,
        metadata={"description": "[lo, hi] per theta (empty when every replicate failed)."},
    )
    weights = fields.List(
        fields.List(fields.Float(allow_none=True)), required=True,
        metadata={"description": "[lo, hi] per weight."},
    )
    failed = fields.Integer(
        required=True, metadata={"description": "Refits that failed, left out."}
    )
    ambiguous = fields.Integer(
        required=True,
        metadata={"description": "Refits whose coins matched the fit's labels with a "
                  "margin too small to be sure (kept)."},
    )


class LikelihoodRatioTestSchema(Schema):
    """One test of k coins against k+1."""

    k = fields.Integer(required=True)
    statistic = fields.Float(required=True, metadata={"description": "2 (log L(k+1) - log L(k))."})
    p_value = fields.Float(required=True)


class ComponentsTestResultSchema(Schema):
    """The tests run, from k=1 to the first not significant at 0.05, and the K selected."""

    replicates = fields.Integer(required=True)
    tests = fields.List(fields.Nested(LikelihoodRatioTestSchema), required=True)
    selected = fields.Integer(required=True)


class EmResultSchema(Schema):
    """The binomial-mixture EM's best restart, and what shows its work."""

    thetas = fields.List(fields.Float(), required=True)
    weights = fields.List(fields.Float(), required=True)
    standard_errors = fields.List(fields.Float(allow_none=True), required=True)
    log_likelihood = fields.Float(required=True)
    iterations = fields.Integer(required=True)
    converged = fields.Boolean(required=True)
    averaged = fields.Nested(AveragedSchema, required=True)
    restart_summary = fields.Nested(RestartSummarySchema, allow_none=True)
    posteriors = fields.Nested(PosteriorsSchema, allow_none=True)
    trajectory = fields.Nested(TrajectorySchema, allow_none=True)
    bootstrap = fields.Nested(BootstrapIntervalsSchema)


class GmmResultSchema(Schema):
    """The Gaussian-mixture baseline on heads fractions."""

    means = fields.List(fields.Float(), required=True)
    weights = fields.List(fields.Float(), required=True)
    stds = fields.List(fields.Float(), required=True)
    converged = fields.Boolean(required=True)
    iterations = fields.Integer(required=True)


class ResultSchema(Schema):
    """A finished job's estimates, per method; a method that failed is null, with its
    error under ``errors``."""

    n_components = fields.Integer(required=True, allow_none=True)
    bic = fields.Dict(keys=fields.String(), values=fields.Float(), allow_none=True, required=True)
    icl = fields.Dict(
        keys=fields.String(), values=fields.Float(), allow_none=True,
        metadata={"description": "ICL per K tried (lower is better); K is chosen by BIC."},
    )
    warnings = fields.List(fields.Nested(FitWarningSchema))
    em = fields.Nested(EmResultSchema, allow_none=True)
    gmm = fields.Nested(GmmResultSchema, allow_none=True)
    components_test = fields.Nested(ComponentsTestResultSchema, allow_none=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(lambda: ErrorBodySchema()),
        metadata={"description": "Why a method failed, by method, when another succeeded; "
                  "and why the components test could not run (components_test)."},
    )


class ErrorBodySchema(Schema):
    """What went wrong: a code, a message, and details such as field paths."""

    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class SpecSchema(Schema):
    """The normalised request a job runs: every option, with the seed actually used."""

    source = fields.Nested(SourceSchema, allow_none=True, required=True)
    n_components = ComponentCount(
        required=True,
        metadata={
            "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["auto"]}]
        },
    )
    max_components = fields.Integer(required=True)
    weights = fields.String(required=True)
    restarts = fields.Integer(required=True)
    methods = fields.List(fields.String(), required=True)
    seed = fields.Integer(required=True)
    callback = fields.Nested(CallbackSchema, allow_none=True, required=True)
    bootstrap = fields.Nested(BootstrapSchema, allow_none=True, required=True)
    test_components = fields.Nested(ComponentsTestSchema, allow_none=True, required=True)


class CallbackStateSchema(Schema):
    """Where the job's completion callback stands."""

    url = fields.String(required=True)
    state = fields.String(
        required=True, validate=validate.OneOf(["pending", "delivered", "failed"])
    )
    attempts = fields.Integer(required=True)
    last_status = fields.Integer(allow_none=True, required=True)


class JobSchema(Schema):
    """A job as polled."""

    id = fields.String(required=True)
    status = fields.Enum(JobStatus, by_value=True, required=True)
    progress = fields.Nested(ProgressSchema, required=True)
    spec = fields.Nested(SpecSchema, required=True)
    result = fields.Nested(ResultSchema, allow_none=True, required=True)
    error = fields.Nested(ErrorBodySchema, allow_none=True, required=True)
    callback = fields.Nested(CallbackStateSchema, allow_none=True, required=True)
    created_at = fields.String(required=True)
    started_at = fields.String(allow_none=True, required=True)
    finished_at = fields.String(allow_none=True, required=True)


class JobSummarySchema(Schema):
    """A job as listed: no spec, counts or result."""

    id = fields.String(required=True)
    url = fields.String(required=True)
    status = fields.Enum(JobStatus, by_value=True, required=True)
    progress = fields.Nested(ProgressSchema, required=True)
    created_at = fields.String(required=True)
    started_at = fields.String(allow_none=True, required=True)
    finished_at = fields.String(allow_none=True, required=True)


class JobListSchema(Schema):
    """One page of the caller's jobs, newest first (Google AIP-158 pagination)."""

    jobs = fields.List(fields.Nested(JobSummarySchema), required=True)
    next_page_token = fields.String(
        required=True,
        metadata={"description": "Pass as page_token for the next page; empty at the end."},
    )


class JobListArgsSchema(Schema):
    """Query parameters of GET /jobs."""

    status = fields.Enum(JobStatus, by_value=True)
    page_size = fields.Integer(
        strict=False, load_default=50, validate=validate.Range(min=1, max=500),
        metadata={"description": "Jobs per page (default 50, at most 500)."},
    )
    page_token = fields.String(
        load_default="", metadata={"description": "next_page_token of the previous page."}
    )


class DrawCountsSchema(Schema):
    """A job's draws, aggregated: one ``[heads, flips, count]`` row per distinct pair."""

    counts = fields.List(fields.List(fields.Integer()), required=True)


class ErrorSchema(Schema):
    """The envelope of every error response."""

    error = fields.Nested(ErrorBodySchema, required=True)



_JOB = JobSchema()


def dump_job(job: dict[str, Any]) -> dict[str, Any]:
    """A job's JSON form exactly as ``GET /jobs/<id>`` answers it (for the event stream's
    ``done`` and the completion callback). One schema instance: building one costs more
    than the dump."""
    return _JOB.dump(job)
