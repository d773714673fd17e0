"""Taking a message off a queue in one step Redis does whole: nothing is lost when a worker dies right after.

kombu's Redis transport takes a message with BRPOP, so from the moment Redis answers until kombu has written the
message into its `unacked` hash, the only copy is in the worker's socket buffer: a worker killed -9 in that window
loses the message (issue 28: 1 event lost in 16 router-kill rounds). Redis has no blocking pop over several lists
that keeps what it pops, so the pool's channel (trusted_transport.Channel) takes in two steps instead:

- wait: BRPOP on the queues' doorbells (`_wake.<queue>`, tasks/contract.py), keys that only ever hold tokens, for
  at most TAKE_WAIT_SECONDS; pool processes ring a queue's doorbell when they publish to it, and so does the pool's
  client (tasks/client.py) after it sends enrich_detection, so an idle worker wakes at once. A message from a sender
  that does not ring (a backend's own Celery app) is taken when the wait ends: Redis ends blocking waits on its
  `hz` tick, so within about 0.1 s with Redis's default hz 10, and only when the worker was idle (the wait is
  skipped while the last take saw more work waiting);
- take: TAKE_SCRIPT, which empties the doorbells (the worker is awake) and pops the next message in kombu's order,
  pushing it onto that queue's taking list (`_taking.<queue key>`), in one script. Kombu then records it in
  `unacked` and removes it from the taking list in one MULTI (trusted_transport.TakingQoS), so a message is always
  in its queue, its taking list, or `unacked`.

A worker puts back what its queues' taking lists hold when it starts and after every reconnect (nothing of its own
can be in flight then; unacked.RestoreTaken); a put-back that fails means Redis is unreachable, and the reconnect
that follows puts back again. The
scripts pop before they push, so Redis runs them at maxmemory as it runs BRPOP (a script's first write decides).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tasks.contract import wake_key

TAKING_PREFIX = "_taking."
TAKE_WAIT_SECONDS = 0.1

# ARGV[1]: n; KEYS[1..n]: queue keys in the order to take from; KEYS[n+1..2n]: their taking lists; the rest: the
# doorbells, emptied first (a write, so that Redis runs the rest at maxmemory; whatever is published after this script
# rings again). Returns {queue key, message, 1 when more waits in any of the queues else 0}, or nil.
TAKE_SCRIPT = """
local n = tonumber(ARGV[1])
for i = 2 * n + 1, #KEYS do
  redis.call('DEL', KEYS[i])
end
for i = 1, n do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    redis.call('LPUSH', KEYS[n + i], item)
    local more = 0
    for j = i, n do
      if redis.call('LLEN', KEYS[j]) > 0 then
        more = 1
        break
      end
    end
    return {KEYS[i], item, more}
  end
end
return false
"""

# KEYS[1]: a taking list, KEYS[2]: its queue; ARGV[1]: the message as taken, ARGV[2]: as it goes back. Only a message
# still in the taking list goes back (a record or another put-back may have removed it): none is put back twice.
PUT_BACK_SCRIPT = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS[1]: a taking list, KEYS[2]: its queue. Moves all of it back where the next take finds it first.
RESTORE_SCRIPT = """
local moved = 0
local item = redis.call('RPOP', KEYS[1])
while item do
  redis.call('RPUSH', KEYS[2], item)
  moved = moved + 1
  item = redis.call('RPOP', KEYS[1])
end
return moved
"""


def taking_key(queue_key: str) -> str:
    """The list a message taken from `queue_key` sits in until kombu has recorded it."""
    return TAKING_PREFIX + queue_key


def take_args(queue_keys: list[str], queues: Iterable[str] = ()) -> list[Any]:
    """EVAL's arguments after the script: the key count, the queue keys, their taking lists, the doorbells of
    `queues`, and n."""
    doorbells = [wake_key(queue) for queue in queues]
    return [2 * len(queue_keys) + len(doorbells), *queue_keys, *(taking_key(key) for key in queue_keys), *doorbells,
            len(queue_keys)]


def ring(pipe: Any, queue: str) -> None:
    """Queue on `pipe` the commands that wake a consumer of `queue` waiting on its doorbell: one token, kept at one
    (a queue whose worker is gone is not taken from, so nothing empties its doorbell)."""
    pipe.lpush(wake_key(queue), 1)
    pipe.ltrim(wake_key(queue), 0, 0)


def put_back(client: Any, queue_key: str, raw: bytes | str, payload: bytes | str | None = None) -> bool:
    """Put a taken, unrecorded message back at the head of its queue (as `payload` when given); False when it was
    not in its taking list any more (recorded, or put back already)."""
    return bool(client.eval(PUT_BACK_SCRIPT, 2, taking_key(queue_key), queue_key, raw,
                            raw if payload is None else payload))


def restore(client: Any, queue_keys: Iterable[str]) -> dict[str, int]:
    """Move everything the taking lists of `queue_keys` hold back onto their queues; how many per queue key. Only
    when no take of theirs is in flight: a worker's own, at its start, or a dead predecessor's."""
    moved = {}
    for key in queue_keys:
        count = int(client.eval(RESTORE_SCRIPT, 2, taking_key(key), key))
        if count:
            moved[key] = count
    return moved


def queue_keys(channel: Any, queues: Iterable[str]) -> list[str]:
    """Every Redis list kombu keeps for `queues` (one per priority step), as the channel names them, in the order
    kombu's BRPOP takes from them: by priority, then queue."""
    queues = list(queues)
    return [channel._q_for_pri(queue, pri) for pri in channel.priority_steps for queue in queues]
