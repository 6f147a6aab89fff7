"""The only Celery instance of the workers, configured from the settings object.

Start workers with ``celery -A workers.celery_app worker -Q io -P threads`` (fetching)
and ``celery -A workers.celery_app worker -Q cpu`` (fitting, then replicate chunks when no
fit waits); ``-Q replicates`` starts a worker of replicate chunks only. Task names, queues
and the configuration come from :mod:`shared.taskqueue`, which the API's client reads too.
"""

from __future__ import annotations

import logging

from celery import Celery, signals
from kombu import Exchange, Queue

from shared import logs
from shared.config import get_settings
from shared.taskqueue import celery_config, worker_queues
from workers.heap import keep_heap
from workers.recovery import RecoveryStep
from workers.threads import one_thread
from workers.webhooks import WebhookStep

app = Celery("emcoins", include=["workers.tasks", "workers.replicates"])
app.conf.update(celery_config(get_settings()))
# Completion callbacks are sent by a loop in each io worker, not by tasks (see its module).
app.steps["worker"].add(WebhookStep)
# Every worker takes its turn at the sweep for jobs whose tasks were lost (see its module).
app.steps["worker"].add(RecoveryStep)


@signals.celeryd_after_setup.connect
def _replicates_after_fits(sender: str, instance, **_) -> None:
    """A cpu worker takes replicate chunks too, polled after its fits: every deployment
    that runs cpu workers runs the chunks, with or without workers of their own."""
    queues = instance.app.amqp.queues
    named = list(queues.consume_from or queues)
    for queue in worker_queues(named)[len(named):]:
        # Bound as a queue named on -Q is (an exchange of its name), so that every sender
        # routes to it alike, whichever worker declared it.
        queues.select_add(Queue(queue, Exchange(queue), routing_key=queue))


@signals.worker_process_init.connect
def _prepare_child(**_) -> None:
    """Fixed malloc thresholds and one BLAS and OpenMP thread in each child of a prefork
    pool, where the fits run (see their modules); a threads pool (the io workers) sends
    no such signal and keeps the defaults."""
    keep_heap()
    one_thread()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _log_format(logger: logging.Logger, **_) -> None:
    """Worker log lines in EMCOINS_LOG_FORMAT (JSON by default), with the task's job id."""
    logs.apply_format(logger, get_settings().log_format)
