"""A durable schedule of members due at a time, worked under a lease.

One Redis sorted set holds `member -> due time (ms)`. A consumer *claims* due members: their score
moves to `now + lease`, so no other consumer sees them until the lease runs out, and a consumer that
dies (SIGKILL included) simply lets the lease expire and the member falls due again. A claim token
fences a late consumer out. Members may own a FIFO list (`{name}:q:{member}`): the member stays
scheduled while its list has items, which gives strict order within a member and independence
between members. Timers, LiveKit's inbound events and webhook deliveries all run on this.

A wake list lets producers cut a sleeping consumer's wait short, so latency is not a poll interval.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from worker.keys import PREFIX

_WAKE_KEEP = 64

# KEYS: due, leases   ARGV: now_ms, limit, lease_ms, token_prefix
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[3])
for i, m in ipairs(due) do
  local token = ARGV[4] .. i
  redis.call('ZADD', KEYS[1], until_ms, m)
  redis.call('HSET', KEYS[2], m, token)
  out[#out + 1] = m
  out[#out + 1] = token
end
return out
"""

# KEYS: due, leases, list (may be a dummy), wake
# ARGV: member, token, next_ms ('' = by list), now_ms, wake_keep
_RELEASE = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
elseif redis.call('LLEN', KEYS[3]) > 0 then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
-- A consumer may be asleep until the lease's end: the member is due sooner now, so wake it.
redis.call('RPUSH', KEYS[4], 1)
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[5]), -1)
return 1
"""

# KEYS: due, leases, list   ARGV: member, token, expected_head, lease_until_ms
_POP = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return -1 end
if redis.call('LINDEX', KEYS[3], 0) == ARGV[3] then redis.call('LPOP', KEYS[3]) end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
return redis.call('LLEN', KEYS[3])
"""

# KEYS: due, leases   ARGV: member, token, lease_until_ms
_EXTEND = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


def now_ms() -> int:
    """Wall-clock milliseconds: every process compares the same Redis scores."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Claim:
    """A member this consumer holds until its lease runs out."""

    member: str
    token: str


class Schedule:
    """The sorted set `{prefix}{name}:due` and its leases, wake list and per-member lists."""

    def __init__(self, redis: Redis, name: str) -> None:
        self.redis = redis
        self.name = name
        self.due_key = f"{PREFIX}{name}:due"
        self.lease_key = f"{PREFIX}{name}:lease"
        self.wake_key = f"{PREFIX}{name}:wake"
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._pop = redis.register_script(_POP)
        self._extend = redis.register_script(_EXTEND)

    def list_key(self, member: str) -> str:
        """The FIFO list a member owns."""
        return f"{PREFIX}{self.name}:q:{member}"

    # Producers add commands to a caller's pipeline, so a state change and the work it causes
    # commit together.
    def add(self, pipe: Any, member: str, at_ms: int, *, replace: bool = False) -> None:
        """Schedule `member` at `at_ms` (keeping an earlier/leased time unless `replace`)."""
        if replace:
            pipe.zadd(self.due_key, {member: at_ms})
        else:
            pipe.zadd(self.due_key, {member: at_ms}, nx=True)
        self._wake(pipe)

    def push(self, pipe: Any, member: str, item: str, at_ms: int) -> None:
        """Append `item` to `member`'s list and make sure the member is scheduled."""
        pipe.rpush(self.list_key(member), item)
        self.add(pipe, member, at_ms)

    def remove(self, pipe: Any, member: str) -> None:
        """Unschedule a member (a timer that no longer applies)."""
        pipe.zrem(self.due_key, member)

    def _wake(self, pipe: Any) -> None:
        pipe.rpush(self.wake_key, 1)
        pipe.ltrim(self.wake_key, -_WAKE_KEEP, -1)

    async def claim(self, limit: int, lease_ms: int, at_ms: int | None = None) -> list[Claim]:
        """Take up to `limit` due members under a fresh lease."""
        prefix = secrets.token_hex(6) + ":"
        now = now_ms() if at_ms is None else at_ms
        raw = await self._claim(
            keys=[self.due_key, self.lease_key], args=[now, limit, lease_ms, prefix]
        )
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
        return [Claim(items[i], items[i + 1]) for i in range(0, len(items), 2)]

    async def release(self, claim: Claim, next_ms: int | None = None) -> bool:
        """Give a member back: due at `next_ms`, or now while its list has items, else gone."""
        ok = await self._release(
            keys=[self.due_key, self.lease_key, self.list_key(claim.member), self.wake_key],
            args=[
                claim.member,
                claim.token,
                "" if next_ms is None else next_ms,
                now_ms(),
                _WAKE_KEEP,
            ],
        )
        return bool(ok)

    async def pop(self, claim: Claim, head: str, lease_ms: int) -> int:
        """Drop the handled head of a member's list, renew the lease; -1 if the lease was lost."""
        return int(
            await self._pop(
                keys=[self.due_key, self.lease_key, self.list_key(claim.member)],
                args=[claim.member, claim.token, head, now_ms() + lease_ms],
            )
        )

    async def extend(self, claim: Claim, lease_ms: int) -> bool:
        """Renew a lease during long work; False if another consumer has taken over."""
        return bool(
            await self._extend(
                keys=[self.due_key, self.lease_key],
                args=[claim.member, claim.token, now_ms() + lease_ms],
            )
        )

    async def head(self, member: str) -> str | None:
        """The oldest item of a member's list."""
        raw = await self.redis.lindex(self.list_key(member), 0)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def next_due_ms(self) -> int | None:
        """When the earliest member falls due (leased members included)."""
        first = await self.redis.zrange(self.due_key, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def size(self) -> int:
        """How many members are scheduled."""
        return int(await self.redis.zcard(self.due_key))

    async def wait(self, redis: Redis, timeout: float) -> None:
        """Block on the wake list (on a connection of the caller's) for at most `timeout` s."""
        await redis.blpop([self.wake_key], timeout=max(timeout, 0.001))
