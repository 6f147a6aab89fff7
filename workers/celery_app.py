"""The only Celery instance of the workers, configured from the settings object.

Start workers with ``celery -A workers.celery_app worker -Q io -P threads`` (fetching)
and ``celery -A workers.celery_app worker -Q cpu`` (fitting). Task names, queues and the
configuration come from :mod:`shared.taskqueue`, which the API's client reads too.
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from shared import logs
from shared.config import get_settings
from shared.taskqueue import celery_config
from workers.webhooks import WebhookStep

app = Celery("emcoins", include=["workers.tasks"])
app.conf.update(celery_config(get_settings()))
# Completion callbacks are sent by a loop in each io worker, not by tasks (see its module).
app.steps["worker"].add(WebhookStep)


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _log_format(logger: logging.Logger, **_) -> None:
    """Worker log lines in EMCOINS_LOG_FORMAT (JSON by default), with the task's job id."""
    logs.apply_format(logger, get_settings().log_format)
