"""The pool's trust boundary as data: which queues a backend may write, which tasks run there, and the Redis ACL
users that make it real (README "Security defaults" prints `acl_rules()`; tests/integration/test_trust.py runs a
pool and a backend under exactly these rules).
"""

from __future__ import annotations

from tasks.contract import COMPLETION_STREAM, UPLOAD_KEY_PREFIX, WAKE_KEY_PREFIX

# Queues a backend writes: "router" (the pool's client sends there) and Celery's default "celery" (a backend's own
# app with no routes sends there). Only PUBLIC_TASKS run from them; every other task name is refused unread.
PUBLIC_QUEUES = frozenset({"router", "celery"})
PUBLIC_TASKS = frozenset({"enrich_detection"})

# The pool's own task queues: every message on them must carry the pool's signature (POOL_SIGNING_KEY).
INTERNAL_QUEUES = frozenset({"assemble"})
INTERNAL_QUEUE_PREFIXES = ("gpu.", "cpu.")

# Keys a backend may write (frames it sends by image_key; frames the pool's client uploads for an event, which the
# pool deletes once the event is done), and what it may read.
BACKEND_KEY_PREFIX = "backend:"


def is_public(queue: str) -> bool:
    return queue in PUBLIC_QUEUES


def is_internal(queue: str) -> bool:
    return queue in INTERNAL_QUEUES or queue.startswith(INTERNAL_QUEUE_PREFIXES)


# What a backend needs, command by command (Redis 7 ACL selectors keep each set of commands to its own keys):
# - send enrich_detection: LPUSH to the public queues; kombu reads the exchange's bindings (SMEMBERS) and declares
#   the queue (SADD of the binding; LLEN of the queue and of its priority lists, "router\x06\x163" ..., in a MULTI)
#   before it publishes; then it rings the queue's doorbell (LPUSH _wake.router) so that an idle router takes it now;
# - read results: GET enrichment:* and celery-task-meta-*, and the result channels AsyncResult.get() subscribes to;
# - the completion channel enrichment.completed;
# - frames sent by image_key: SET (with a TTL) under backend:* and, through the pool's client, frame-upload:*,
#   never DEL (it cannot delete anything);
# - the completion stream enrichment.completed (a key, apart from the channel of the same name): its consumer group
#   created, read, acknowledged, stale entries claimed; never XADD or XTRIM.
BACKEND_RULES = (
    "resetkeys", "resetchannels", "-@all",
    "+ping", "+hello", "+auth", "+client|setname", "+client|id", "+select",
    "+subscribe", "+unsubscribe",  # no PSUBSCRIBE: a pattern would hear every task's result
    "&enrichment.completed", "&celery-task-meta-*",
    "+multi", "+exec", "+discard",
    "~router", "~celery", "~router??[0-9]", "~celery??[0-9]", f"~{WAKE_KEY_PREFIX}router", f"~{WAKE_KEY_PREFIX}celery",
    "+lpush", "+llen",
    "(~_kombu.binding.router ~_kombu.binding.celery ~_kombu.binding_permanent.router"
    " ~_kombu.binding_permanent.celery +sadd +smembers)",
    "(%R~enrichment:* %R~celery-task-meta-* +get +mget +exists +ttl +type +strlen)",
    f"(~{BACKEND_KEY_PREFIX}* ~{UPLOAD_KEY_PREFIX}* +set +expire +pexpire +exists +ttl)",
    f"(~{COMPLETION_STREAM} +xgroup|create +xreadgroup +xack +xautoclaim +xpending +xlen +xrange +xinfo|groups)",
)
# The pool: every key and channel, no administration (no FLUSHALL, CONFIG, KEYS, DEBUG, SHUTDOWN ...).
POOL_RULES = ("resetkeys", "resetchannels", "~*", "&*", "+@all", "-@dangerous", "+info",
              "+client|setname", "+client|id")


def acl_rules(pool_password: str = "<pool-password>", backend_password: str = "<backend-password>",
              pool_user: str = "pool", backend_user: str = "backend") -> list[list[str]]:
    """The ACL SETUSER argument lists for the pool user and the backend user, and one that turns `default` off."""
    return [
        ["ACL", "SETUSER", pool_user, "reset", "on", f">{pool_password}", *POOL_RULES],
        ["ACL", "SETUSER", backend_user, "reset", "on", f">{backend_password}", *BACKEND_RULES],
        ["ACL", "SETUSER", "default", "off"],
    ]


def acl_lines(**passwords: str) -> list[str]:
    """acl_rules() as redis-cli command lines (a selector in double quotes), as README "Security defaults" shows them."""
    return [" ".join(f'"{arg}"' if " " in arg else arg for arg in rule) for rule in acl_rules(**passwords)]
