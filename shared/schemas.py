"""Request and response schemas of the jobs API, declared once.

They validate requests and describe responses in the OpenAPI document that the
API serves. Settings-dependent limits are checked in :mod:`shared.limits`.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from shared.contract import JobRequest, Source
from shared.draws import parse_flip_string
from shared.errors import InvalidDrawError
from shared.methods import METHODS
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


def _count_pair(pair: tuple[int, int]) -> None:
    heads, flips = pair
    if flips < 1:
        raise ValidationError(f"flips must be at least 1, got {flips}.")
    if heads < 0:
        raise ValidationError(f"heads must not be negative, got {heads}.")
    if heads > flips:
        raise ValidationError(f"heads ({heads}) cannot exceed flips ({flips}).")


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


class JobRequestSchema(Schema):
    """A new estimation job: exactly one of ``source``, ``draws`` or ``counts``."""

    source = fields.Nested(SourceSchema)
    draws = fields.List(
        FlipString(),
        validate=validate.Length(min=1),
        metadata={"description": 'Inline draws, e.g. ["HTTHHTHTHH", ...].'},
    )
    counts = fields.List(
        fields.Tuple(
            (fields.Integer(strict=True), fields.Integer(strict=True)), validate=_count_pair
        ),
        validate=validate.Length(min=1),
        metadata={"description": "Inline [heads, flips] pairs, one per draw."},
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
        )


class JobCreatedSchema(Schema):
    """The answer to a new job."""

    id = fields.String(required=True)
    status = fields.Enum(JobStatus, by_value=True, required=True)
    url = fields.String(required=True, metadata={"description": "Path to poll: /jobs/<id>."})


class ProgressSchema(Schema):
    """How many draws have been fetched."""

    draws_fetched = fields.Integer(required=True)
    draws_total = fields.Integer(required=True)


class AveragedSchema(Schema):
    """The restart-averaged EM estimate."""

    thetas = fields.List(fields.Float(), required=True)
    weights = fields.List(fields.Float(), required=True)
    std = fields.List(fields.Float(), required=True)
    restarts = fields.Integer(required=True)


class EmResultSchema(Schema):
    """The binomial-mixture EM's best restart."""

    thetas = fields.List(fields.Float(), required=True)
    weights = fields.List(fields.Float(), required=True)
    standard_errors = fields.List(fields.Float(allow_none=True), required=True)
    log_likelihood = fields.Float(required=True)
    iterations = fields.Integer(required=True)
    converged = fields.Boolean(required=True)
    averaged = fields.Nested(AveragedSchema, required=True)


class GmmResultSchema(Schema):
    """The Gaussian-mixture baseline on heads fractions."""

    means = fields.List(fields.Float(), required=True)
    weights = fields.List(fields.Float(), required=True)
    stds = fields.List(fields.Float(), required=True)
    converged = fields.Boolean(required=True)
    iterations = fields.Integer(required=True)


class ResultSchema(Schema):
    """A finished job's estimates, per method."""

    n_components = fields.Integer(required=True)
    bic = fields.Dict(keys=fields.String(), values=fields.Float(), allow_none=True, required=True)
    em = fields.Nested(EmResultSchema)
    gmm = fields.Nested(GmmResultSchema)


class ErrorBodySchema(Schema):
    """What went wrong: a code, a message, and details such as field paths."""

    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class JobSchema(Schema):
    """A job as polled."""

    id = fields.String(required=True)
    status = fields.Enum(JobStatus, by_value=True, required=True)
    progress = fields.Nested(ProgressSchema, required=True)
    result = fields.Nested(ResultSchema, allow_none=True, required=True)
    error = fields.Nested(ErrorBodySchema, allow_none=True, required=True)
    created_at = fields.String(required=True)
    started_at = fields.String(allow_none=True, required=True)
    finished_at = fields.String(allow_none=True, required=True)


class ErrorSchema(Schema):
    """The envelope of every error response."""

    error = fields.Nested(ErrorBodySchema, required=True)

