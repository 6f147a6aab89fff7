"""Finding the jobs that no task carries any more.

Every step of a job is a task that sends the next before it is acknowledged, so an
unfinished job always has a task waiting in a queue or held by a worker (kombu keeps each
task it hands out in its unacked hash until the ack), except for the moment between a
send and the store's write or a pop and kombu's bookkeeping. A Redis failover can end
that moment badly: the replication is asynchronous, and the promoted replica may have the
pop of a task (BRPOP) that the old master never delivered, or never recorded as unacked.
Seen in the sentinel failover test: a job acknowledged to its client (the replica had it)
stayed queued for good, its fit in no queue, with no worker, in no unacked entry.

A sweep reads, in one script call and so at one instant, the unfinished jobs older than
a grace period and every task message in the queues and the unacked hash, and returns
the jobs named by none. A job is given back to the workers only when two sweeps in a row
find it so (the sweeps are an interval apart), which leaves the moments above out; its
steps are idempotent, so even a job resumed twice is computed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from shared import keys
from shared.replies import text
from shared.store import NOW_MS_LUA
from shared.taskqueue import QUEUES, UNACKED_KEY

# A sweep reads at most this many task messages; with more waiting it reads nothing and
# waits for the next (the script blocks Redis for about 1 µs per message).
MAX_MESSAGES = 20_000

# KEYS: unfinished jobs (scored by creation, ms), the suspects of the last sweep, kombu's
# unacked hash, then the queues. ARGV: grace (ms), job TTL (ms), most messages read, how
# long suspects are kept (ms). Returns {'skip', n} when n messages wait (too many to read),
# else {'ok', suspects, ids...}: how many jobs no task names, and those of them the last
# sweep named too. A message names its task in headers.id, "<job id>.<step>": the first
# "id" key of its JSON (the body is base64; "root_id" and "parent_id" do not match).
_SWEEP = NOW_MS_LUA + """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[2]), now - tonumber(ARGV[1]))
local waiting = redis.call('HLEN', KEYS[3])
for i = 4, #KEYS do waiting = waiting + redis.call('LLEN', KEYS[i]) end
if #old > 0 and waiting > tonumber(ARGV[3]) then return {'skip', waiting} end
local carried = {}
local function mark(message)
  local id = string.match(message, '"id":%s*"([^"]*)"')
  local job = id and string.match(id, '^([^.]+)%.')
  if job then carried[job] = true end
end
if #old > 0 then
  for _, message in ipairs(redis.call('HVALS', KEYS[3])) do mark(message) end
  for i = 4, #KEYS do
    for _, message in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do mark(message) end
  end
end
local lost, answer = {}, {'ok', 0}
for _, id in ipairs(old) do
  if not carried[id] then
    lost[#lost + 1] = id
    if redis.call('SISMEMBER', KEYS[2], id) == 1 then answer[#answer + 1] = id end
  end
end
answer[2] = #lost
redis.call('DEL', KEYS[2])
for first = 1, #lost, 1000 do
  redis.call('SADD', KEYS[2], unpack(lost, first, math.min(first + 999, #lost)))
end
if #lost > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return answer
"""


@dataclass(frozen=True)
class Sweep:
    """What one sweep found: ``lost`` are the jobs two sweeps in a row found carried by no
    task; ``suspects`` how many this one found; ``skipped`` when too many tasks waited."""

    lost: tuple[str, ...] = ()
    suspects: int = 0
    skipped: bool = False


class Orphans:
    """The sweep for jobs no task carries, against the Redis of the store and the broker
    (the service keeps both in one database)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        queues: Sequence[str] = QUEUES,
        max_messages: int = MAX_MESSAGES,
    ):
        self.client = client
        self.queues = tuple(queues)
        self.max_messages = max_messages
        self._sweep = client.register_script(_SWEEP)

    def claim(self, token: str, seconds: float) -> bool:
        """Take the next sweep: True for one caller per ``seconds``, whichever worker."""
        return bool(
            self.client.set(keys.recovery_lock(), token, nx=True, px=max(1, int(seconds * 1000)))
        )

    def sweep(self, *, interval_seconds: float, ttl_seconds: int) -> Sweep:
        """Compare the tasks with the unfinished jobs created over an interval ago (sweeps
        come an interval or a little more apart; suspects older than two are forgotten)."""
        interval_ms = max(1, int(interval_seconds * 1000))
        answer = self._sweep(
            keys=[keys.unfinished_jobs(), keys.recovery_suspects(), UNACKED_KEY, *self.queues],
            args=[interval_ms, ttl_seconds * 1000, self.max_messages, 2 * interval_ms + 1000],
        )
        if text(answer[0]) == "skip":
            return Sweep(skipped=True)
        return Sweep(lost=tuple(text(i) for i in answer[2:]), suspects=int(answer[1]))
