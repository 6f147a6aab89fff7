"""A Redis master, one replica and three sentinels on 127.0.0.1, as child processes.

Every node is the project's own redis-server binary (:func:`redis_server_binary`); a
sentinel is that binary with ``--sentinel`` and a config file of its own, which it
rewrites as the failover goes (so each sentinel gets a writable file).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from localstack.ports import free_port
from localstack.redis_server import redis_server_binary

HOST = "127.0.0.1"


class Node:
    """One redis-server process (a data node or a sentinel), logging to its folder."""

    def __init__(self, name: str, folder: Path, args: list[str], port: int):
        self.name = name
        self.folder = folder
        self.args = args
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self) -> Node:
        """Start the process in its own session."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [redis_server_binary(), *self.args],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def client(self, timeout: float = 1.0) -> redis.Redis:
        """A client of this node (short timeouts: the node may be gone)."""
        return redis.Redis(
            host=HOST, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout,
            decode_responses=True,
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write to disk or to a replica."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()


class SentinelCluster:
    """Master, replica and sentinels watching the master as ``master_name``."""

    def __init__(
        self, folder: Path, *, master_name: str = "emcoins", sentinels: int = 3,
        down_after_ms: int = 1000, quorum: int = 2,
    ):
        self.folder = folder
        self.master_name = master_name
        data = ["--bind", HOST, "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--loglevel", "notice"]
        master_port, replica_port = free_port(), free_port()
        self.master = Node(
            "master", folder / "master", ["--port", str(master_port), *data], master_port
        )
        self.replica = Node(
            "replica",
            folder / "replica",
            ["--port", str(replica_port), *data, "--replicaof", HOST, str(master_port)],
            replica_port,
        )
        self.sentinels: list[Node] = []
        for index in range(sentinels):
            port = free_port()
            node_dir = folder / f"sentinel{index}"
            node_dir.mkdir(parents=True, exist_ok=True)
            config = node_dir / "sentinel.conf"
            config.write_text(
                f"port {port}\nbind {HOST}\ndaemonize no\n"
                f"sentinel monitor {master_name} {HOST} {master_port} {quorum}\n"
                f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
                f"sentinel failover-timeout {master_name} 10000\n"
            )
            self.sentinels.append(Node(f"sentinel{index}", node_dir, [str(config), "--sentinel"],
                                       port))

    @property
    def addresses(self) -> str:
        """The sentinels as EMCOINS_REDIS_SENTINELS wants them."""
        return ",".join(f"{HOST}:{node.port}" for node in self.sentinels)

    def start(self, timeout: float = 30.0) -> SentinelCluster:
        """Start every node; return once the replica is in sync and each sentinel knows the
        replica and the other sentinels (before that, a failover could not happen)."""
        for node in (self.master, self.replica, *self.sentinels):
            node.start()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("the sentinel cluster did not come up")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            with self.master.client() as client:
                info = client.info("replication")
            if info.get("connected_slaves") != 1 or info["slave0"]["state"] != "online":
                return False
            for node in self.sentinels:
                with node.client() as client:
                    replicas = client.execute_command("SENTINEL", "REPLICAS", self.master_name)
                    others = client.execute_command("SENTINEL", "SENTINELS", self.master_name)
                if len(replicas) != 1 or len(others) != len(self.sentinels) - 1:
                    return False
            return True
        except (redis.RedisError, KeyError):
            return False

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for node in self.sentinels:
            try:
                with node.client() as client:
                    address = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                    )
                return int(address[1])
            except redis.RedisError:
                continue
        return None

    def stop(self) -> None:
        """Stop every node (sentinels first, so that they start no failover)."""
        for node in (*self.sentinels, self.replica, self.master):
            node.stop()

    def __enter__(self) -> SentinelCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
