"""Celery speaks JSON only: a pickled task message is refused before it is unpickled."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import kombu
import pytest
from kombu import serialization
from kombu.exceptions import ContentDisallowed

from workers.celery_app import app


def _ran(path: str) -> None:
    """What a malicious pickle would call on loading: here, it leaves a file behind."""
    Path(path).write_text("code ran in the worker")


class Payload:
    """Unpickling this calls :func:`_ran`: the classic pickle code-execution gadget."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (_ran, (self.path,))


def test_the_app_sends_and_accepts_json_only():
    conf = app.conf
    assert conf.task_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    # No result backend: results live in the job store, so no result is ever deserialized.
    assert not conf.result_backend


def test_the_serialization_registry_refuses_pickle_under_the_apps_accept(tmp_path):
    marker = tmp_path / "ran"
    content_type, encoding, data = serialization.dumps(
        ((Payload(marker),), {}, {}), serializer="pickle"
    )
    assert content_type == "application/x-python-serialize"
    with pytest.raises(ContentDisallowed):
        serialization.loads(data, content_type, encoding, accept=app.conf.accept_content)
    assert not marker.exists()
    # The same bytes, unpickled, would run the code: the gadget is real.
    pickle.loads(data)
    assert marker.read_text() == "code ran in the worker"


def test_a_pickled_task_message_on_the_broker_is_refused_by_the_workers_consumer(
    redis_client, tmp_path
):
    marker = tmp_path / "ran"
    queue = kombu.Queue(f"emcoins-test-pickle-{uuid.uuid4().hex[:8]}")
    delivered, refused = [], []
    with app.connection_for_write() as connection:
        producer = kombu.Producer(connection)
        producer.publish(
            ((Payload(marker),), {}, {"callbacks": None, "errbacks": None, "chain": None}),
            serializer="pickle",
            routing_key=queue.name,
            declare=[queue],
            headers={"lang": "py", "task": "emcoins.fit", "id": str(uuid.uuid4())},
        )
        # The consumer a worker builds for its queues, with the app's accept_content.
        with app.amqp.TaskConsumer(
            connection.default_channel,
            queues=[queue],
            callbacks=[lambda body, message: delivered.append(body)],
            on_decode_error=lambda message, exc: (refused.append(exc), message.ack()),
        ):
            connection.drain_events(timeout=5)
    assert delivered == []
    assert len(refused) == 1 and isinstance(refused[0], ContentDisallowed)
    assert "application/x-python-serialize" in str(refused[0])
    assert not marker.exists()
