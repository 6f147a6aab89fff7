"""CPU accounting for the benchmarks: per process group from /proc, and Redis' own counts.

A *group* is a service of the local stack with every process of its session (gunicorn's
workers, the prefork pool's children, the events process's worker); each was started with
``start_new_session``, so the session id names the whole tree, grandchildren included.
A process's CPU is utime + stime plus cutime + cstime (its reaped children), so a child
that exits during a run is still counted, once, through its parent.

Also a wrapper that runs a Celery worker with cProfile in every prefork child:
``python bench/cpu.py profile-celery OUT_DIR -- <celery arguments>`` (see ``bench/load.py
--profile-worker``). Linux only.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redis

TICK = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def _cpu_ticks(fields: list[str]) -> int:
    # After the name: state(0) ppid(1) pgrp(2) session(3) ... utime(11) stime(12)
    # cutime(13) cstime(14).
    return sum(int(v) for v in fields[11:15])


def session_cpu(sessions: dict[str, int]) -> tuple[dict[str, float], dict[str, float]]:
    """CPU seconds used so far by every process of each named session, and by its
    leader alone (gunicorn's arbiter, Celery's main process), in one /proc scan."""
    by_session = {sid: name for name, sid in sessions.items()}
    totals = dict.fromkeys(sessions, 0.0)
    leaders = dict.fromkeys(sessions, 0.0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None:
            continue
        name = by_session.get(int(fields[3]))
        if name is not None:
            totals[name] += _cpu_ticks(fields) * TICK
            if int(entry) == sessions[name]:
                # Without its reaped children: those are the pool's, not the leader's.
                leaders[name] += sum(int(v) for v in fields[11:13]) * TICK
    return totals, leaders


def own_cpu() -> float:
    """CPU seconds of this process, all threads (the load generator)."""
    times = os.times()
    return times.user + times.system


def machine_busy() -> float:
    """CPU seconds every core spent busy since boot (all users: the noise we share)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) * TICK


@dataclass
class Snapshot:
    """CPU seconds per group, the machine's busy seconds and Redis' command counts."""

    groups: dict[str, float]
    leaders: dict[str, float]
    machine: float
    commands: dict[str, tuple[int, int]] = field(default_factory=dict)  # calls, usec


class CpuMeter:
    """Takes snapshots of the local stack's groups, this process and Redis."""

    def __init__(self, stack, redis_url: str):
        self.sessions: dict[str, int] = {}
        for name, service in stack.services.items():
            if name != "drawsource":  # idle for inline jobs
                self.sessions[group_name(name)] = service.pid
        self.sessions["redis"] = stack.redis.process.pid
        self.redis = redis.Redis.from_url(redis_url)

    def snapshot(self) -> Snapshot:
        """Now."""
        groups, leaders = session_cpu(self.sessions)
        groups["loadgen"] = own_cpu()
        stats = self.redis.info("commandstats")
        commands = {
            name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for name, v in stats.items()
        }
        return Snapshot(groups, leaders, machine_busy(), commands)


def group_name(service: str) -> str:
    """The table's name for a stack service (``worker-cpu-1`` -> ``cpu worker``)."""
    if service.startswith("worker-"):
        _, queue, index = service.split("-")
        return f"{queue} worker" if index == "1" else f"{queue} worker {index}"
    return service


@dataclass
class Usage:
    """What a run cost between two snapshots."""

    groups: dict[str, float]  # CPU seconds
    leaders: dict[str, float]  # CPU seconds of each group's main process alone
    others: float  # CPU seconds the rest of the machine used meanwhile
    commands: dict[str, tuple[int, int]]  # Redis calls and usec

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot) -> Usage:
        groups = {name: after.groups[name] - before.groups.get(name, 0.0) for name in after.groups}
        leaders = {name: after.leaders[name] - before.leaders.get(name, 0.0)
                   for name in after.leaders}
        commands = {}
        for name, (calls, usec) in after.commands.items():
            calls0, usec0 = before.commands.get(name, (0, 0))
            if calls > calls0:
                commands[name] = (calls - calls0, usec - usec0)
        others = (after.machine - before.machine) - sum(groups.values())
        return cls(groups, leaders, max(0.0, others), commands)


def profile_celery(out_dir: str, argv: list[str]) -> None:
    """Run ``celery <argv>`` with cProfile in each prefork child, written to ``out_dir``
    every 50 tasks (children are killed at a stop, so there is no exit to wait for)."""
    import cProfile
    import time

    from celery.signals import task_postrun, worker_process_init

    state: dict = {}

    @worker_process_init.connect(weak=False)
    def _start(**_):
        # CPU time, so that waiting for a task or for Redis does not count.
        state["profile"] = cProfile.Profile(time.process_time)
        state["tasks"] = 0
        state["profile"].enable()

    @task_postrun.connect(weak=False)
    def _count(**_):
        profile = state.get("profile")
        if profile is None:
            return
        state["tasks"] += 1
        if state["tasks"] % 50 == 0:
            profile.disable()
            profile.dump_stats(os.path.join(out_dir, f"worker-{os.getpid()}.prof"))
            Path(out_dir, f"worker-{os.getpid()}.tasks").write_text(str(state["tasks"]))
            profile.enable()

    from celery.__main__ import main

    sys.argv = ["celery", *argv]
    main()


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "profile-celery" and sys.argv[3] == "--":
        # The checkout, not bench/, is where the worker's modules come from.
        sys.path[0] = str(Path(__file__).resolve().parents[1])
        profile_celery(sys.argv[2], sys.argv[4:])
    else:
        sys.exit("usage: cpu.py profile-celery OUT_DIR -- <celery arguments>")
