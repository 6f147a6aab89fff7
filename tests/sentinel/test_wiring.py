"""The sentinel settings, the clients built from them and the replica wait, without a
failover (fast; these run in ``make test``)."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from shared.config import Settings
from shared.errors import ConfigError
from shared.replication import Replication
from shared.store import connect
from shared.taskqueue import celery_config
from tests.sentinel.cluster import SentinelCluster

SENTINELS = {"EMCOINS_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380"}


@pytest.mark.parametrize("value", ["redis", "redis:", ":26379", "redis:port", "redis:0",
                                   "redis:65536", "a:1,b"])
def test_a_sentinel_must_be_host_and_port(value):
    with pytest.raises(ConfigError, match="EMCOINS_REDIS_SENTINELS must be host:port"):
        Settings.from_env({"EMCOINS_REDIS_SENTINELS": value})


@pytest.mark.parametrize("value", ["", "my master"])
def test_the_master_name_is_one_word(value):
    with pytest.raises(ConfigError, match="EMCOINS_REDIS_MASTER must be a name"):
        Settings.from_env({"EMCOINS_REDIS_MASTER": value})


def test_sentinels_parse_and_empty_means_none():
    assert Settings.from_env(SENTINELS).redis_sentinels == ("10.0.0.1:26379", "10.0.0.2:26380")
    assert Settings.from_env({"EMCOINS_REDIS_SENTINELS": ""}).redis_sentinels == ()


def test_without_sentinels_the_broker_is_the_redis_url():
    config = celery_config(Settings(redis_url="redis://cache:6379/2"))
    assert config["broker_url"] == "redis://cache:6379/2"
    assert "master_name" not in config["broker_transport_options"]


def test_with_sentinels_celery_uses_kombus_sentinel_transport():
    settings = Settings.from_env(
        {**SENTINELS, "EMCOINS_REDIS_MASTER": "jobs", "EMCOINS_REDIS_URL": "redis://:pw@x:1/3"}
    )
    config = celery_config(settings)
    assert config["broker_url"] == (
        "sentinel://:pw@10.0.0.1:26379/3;sentinel://:pw@10.0.0.2:26380/3"
    )
    assert config["broker_transport_options"]["master_name"] == "jobs"
    assert config["broker_transport_options"]["visibility_timeout"] == settings.visibility_timeout


def test_with_sentinels_the_store_follows_the_named_master():
    settings = Settings.from_env(
        {**SENTINELS, "EMCOINS_REDIS_MASTER": "jobs", "EMCOINS_REDIS_URL": "redis://:pw@x:1/3",
         "EMCOINS_REDIS_TIMEOUT": "0.7"}
    )
    pool = connect(settings).connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "jobs" and pool.is_master
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (3, "pw", 0.7)
    addresses = [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in pool.sentinel_manager.sentinels
    ]
    assert addresses == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]


@pytest.mark.sentinel
def test_closing_the_store_client_closes_its_sentinel_connections(cluster: SentinelCluster):
    settings = Settings(redis_sentinels=tuple(cluster.addresses.split(",")),
                        redis_master=cluster.master_name)
    client = connect(settings)
    assert client.ping()
    ours = {
        "{}:{}".format(*connection._sock.getsockname())
        for sentinel in client.connection_pool.sentinel_manager.sentinels
        for connection in sentinel.connection_pool._available_connections
        if connection._sock is not None
    }
    assert ours, "the client asked a sentinel for the master"
    client.close()
    for node in cluster.sentinels:
        with node.client() as sentinel:
            seen = {entry["addr"] for entry in sentinel.client_list()}
        assert not ours & seen, "a connection to a sentinel outlived its client"


def test_without_sentinels_nothing_waits(redis_client):
    replication = Replication.from_settings(Settings())
    assert replication.replicas == 0
    assert replication.write(redis_client, lambda c: c.incr("n")) == 1


def test_a_missing_replica_delays_one_write_then_none(redis_server, caplog):
    client = redis.Redis.from_url(redis_server.url)
    client.delete("n")
    replication = Replication(1, timeout_ms=300)
    with caplog.at_level(logging.WARNING, logger="shared.replication"):
        started = time.monotonic()
        assert replication.write(client, lambda c: c.incr("n")) == 1
        waited = time.monotonic() - started
        started = time.monotonic()
        assert replication.write(client, lambda c: c.incr("n")) == 2
        second = time.monotonic() - started
    # This Redis has no replica: the first write waits out the WAIT, the next ones do not.
    assert waited >= 0.3 and second < 0.2
    assert "0 of 1 replicas acknowledged" in caplog.text


def test_a_replayed_job_still_queued_has_its_tasks_sent_again(client, redis_client):
    # The first request stored the job, then its tasks were lost with the master.
    body = {"counts": [[3, 10], [7, 10]], "n_components": 1}
    headers = {"Idempotency-Key": "lost-tasks"}
    first = client.post("/jobs", json=body, headers=headers)
    sent = redis_client.llen("cpu")
    assert first.status_code == 202 and sent >= 1
    redis_client.delete("cpu")
    again = client.post("/jobs", json=body, headers=headers)
    assert again.status_code == 202 and again.get_json()["id"] == first.get_json()["id"]
    assert redis_client.llen("cpu") == sent
