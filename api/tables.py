"""Tables a client may ask for as CSV (``Accept: text/csv``) instead of JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from flask import Response, request


def wants_csv() -> bool:
    """Whether the request's Accept header prefers CSV to JSON."""
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


def csv_response(header: Sequence[str], rows: Iterable[Sequence[Any]], name: str) -> Response:
    """Rows as a CSV download named ``<name>.csv``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response


def json_or_csv(schema_name: str) -> dict[str, Any]:
    """OpenAPI content of a 200 answered as JSON (``schema_name``) or CSV."""
    return {
        "responses": {
            "200": {
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{schema_name}"}
                    },
                    "text/csv": {"schema": {"type": "string"}},
                }
            }
        }
    }
