"""``GET /jobs/<id>/posteriors``: which coin each draw came from, for every distinct draw.

A job's result keeps the most frequent pairs only; this serves every row, computed from
the job's stored counts and its EM estimate (pure numpy: no estimator is loaded).
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from api import auth
from api.errors import APIError
from api.tables import csv_response, json_or_csv, wants_csv
from shared.posteriors import posterior_rows
from shared.schemas import ErrorSchema, PosteriorsSchema
from shared.status import JobStatus

blp = Blueprint("posteriors", __name__, url_prefix="/jobs", description="Posterior tables.")


@blp.route("/<job_id>/posteriors")
class JobPosteriors(MethodView):
    """A succeeded job's posterior table."""

    @blp.response(200, PosteriorsSchema)
    @blp.doc(**json_or_csv("Posteriors"))
    @blp.alt_response(404, schema=ErrorSchema, description="No such job.")
    @blp.alt_response(
        409, schema=ErrorSchema, description="The job has not succeeded, or has no EM fit."
    )
    def get(self, job_id: str):
        """Every distinct ``[heads, flips, count]`` row with the probability of each coin,
        most frequent first; CSV with ``Accept: text/csv``."""
        record = auth.job_or_404(job_id)
        em = record.result.em if record.result is not None else None
        if record.status is not JobStatus.SUCCEEDED or em is None or record.counts is None:
            raise APIError(
                409,
                f"Job {job_id} is {record.status.value}; it has posteriors once it succeeded "
                "with an EM fit.",
                details={"status": record.status.value},
            )
        rows = sorted(record.counts, key=lambda row: (-row[2], row[1], row[0]))
        probabilities = posterior_rows(rows, em.thetas, em.weights).tolist()
        if wants_csv():
            header = ["heads", "flips", "count"] + [f"p_{k + 1}" for k in range(len(em.thetas))]
            table = [row + probs for row, probs in zip(rows, probabilities, strict=True)]
            return csv_response(header, table, f"{job_id}-posteriors")
        return {"pairs": rows, "probabilities": probabilities, "truncated": False}
