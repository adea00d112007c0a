# -*- test-case-name: tests.test_cluster -*-
"""
The Lua scripts that keep the cluster's shared state in Redis consistent.

Each script runs atomically in Redis, so two nodes racing for the last place
in a room, or two survivors sweeping the same dead node, cannot both win.
Every script takes the key prefix as C{ARGV[1]} and the calling node's id as
C{ARGV[2]}, and builds its key names from them (so they need a single Redis,
not Redis Cluster).

Keys under the prefix C{P}:

    - C{P nodes}: the set of registered node ids;
    - C{P node:N}: node C{N}'s heartbeat, expiring after the node timeout;
    - C{P node:N:users}: the user ids node C{N} has logged in;
    - C{P node:N:rooms}: hash, unique id -> room number, of node C{N}'s members;
    - C{P dead:N}: node C{N} was declared dead (expires after a day);
    - C{P user:U}: the node user C{U} is logged in on;
    - C{P room:R}: hash, unique id -> member record, of room C{R};
    - C{P uid}: the unique id counter (on the first shard);
    - C{P shards}: the shards the nodes were given (on every shard).

With several shards, each holds the keys of the rooms and users that hash
to it, and its own C{nodes}, C{node:N} and C{dead:N} keys: every shard
sweeps its part of a dead node.

A room's events are published on the channel C{P room:R:stream}; the
enter and leave events are published by the scripts that change the
membership, so they take their place in the room's order atomically.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Script:
    """
    A Lua script and its SHA1 (for EVALSHA).
    """

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


_DEAD = "if redis.call('EXISTS', p .. 'dead:' .. node) == 1 then return -1 end\n"

#: Log a user in: 1, or 0 if another node has it, or -1 if this node was
#: declared dead. ARGV: prefix, node, user id.
CLAIM = Script(
    "claim",
    "local p, node, user = ARGV[1], ARGV[2], ARGV[3]\n"
    + _DEAD
    + """
local key = p .. 'user:' .. user
local owner = redis.call('GET', key)
if owner and owner ~= node then return 0 end
redis.call('SET', key, node)
redis.call('SADD', p .. 'node:' .. node .. ':users', user)
return 1
""",
)

#: Log a user out, if this node has it. ARGV: prefix, node, user id.
RELEASE = Script(
    "release",
    """
local p, node, user = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'user:' .. user
if redis.call('GET', key) == node then redis.call('DEL', key) end
redis.call('SREM', p .. 'node:' .. node .. ':users', user)
return 1
""",
)

#: Enter a room: 1, or 0 if it is full, or -1 if this node was declared
#: dead. On success publishes C{E header record members...} on the room's
#: stream, the members being those before the entry. ARGV: prefix, node,
#: room, unique id field, member record, event header, capacity.
ENTER = Script(
    "enter",
    "local p, node = ARGV[1], ARGV[2]\n"
    + _DEAD
    + """
local room, uid, record = p .. 'room:' .. ARGV[3], ARGV[4], ARGV[5]
if redis.call('HLEN', room) >= tonumber(ARGV[7]) then return 0 end
local members = redis.call('HVALS', room)
redis.call('HSET', room, uid, record)
redis.call('HSET', p .. 'node:' .. node .. ':rooms', uid, ARGV[3])
local event = 'E' .. ARGV[6] .. record .. table.concat(members)
redis.call('PUBLISH', room .. ':stream', event)
return 1
""",
)

#: Leave a room: publishes C{L uid} on its stream if the member was there.
#: ARGV: prefix, node, room, unique id field.
LEAVE = Script(
    "leave",
    """
local p, node, room, uid = ARGV[1], ARGV[2], ARGV[1] .. 'room:' .. ARGV[3], ARGV[4]
redis.call('HDEL', p .. 'node:' .. node .. ':rooms', uid)
if redis.call('HDEL', room, uid) == 1 then
    redis.call('PUBLISH', room .. ':stream', 'L' .. uid)
end
return 1
""",
)

#: Put back what this node holds after Redis lost it (restarted empty): one
#: user and, if it is in a room, its membership, without notifies. 1, or 0
#: if another node has the user id now, or -1 if this node was declared dead.
#: An empty user id puts back the membership only (the user's presence is on
#: another shard). ARGV: prefix, node, user id[, room, unique id field,
#: member record].
REGISTER = Script(
    "register",
    "local p, node, user = ARGV[1], ARGV[2], ARGV[3]\n"
    + _DEAD
    + """
if user ~= '' then
    local key = p .. 'user:' .. user
    local owner = redis.call('GET', key)
    if owner and owner ~= node then return 0 end
    redis.call('SET', key, node)
    redis.call('SADD', p .. 'node:' .. node .. ':users', user)
end
if ARGV[4] then
    redis.call('HSET', p .. 'room:' .. ARGV[4], ARGV[5], ARGV[6])
    redis.call('HSET', p .. 'node:' .. node .. ':rooms', ARGV[5], ARGV[4])
end
return 1
""",
)

#: Lua: the members of node C{other} leave their rooms (with a leave event
#: each), its users are logged out and its keys are removed.
_SWEEP = """
local function sweep(p, other)
    local rooms = p .. 'node:' .. other .. ':rooms'
    local held = redis.call('HGETALL', rooms)
    for i = 1, #held, 2 do
        local uid, room = held[i], p .. 'room:' .. held[i + 1]
        if redis.call('HDEL', room, uid) == 1 then
            redis.call('PUBLISH', room .. ':stream', 'L' .. uid)
        end
    end
    local users = p .. 'node:' .. other .. ':users'
    for _, user in ipairs(redis.call('SMEMBERS', users)) do
        if redis.call('GET', p .. 'user:' .. user) == other then
            redis.call('DEL', p .. 'user:' .. user)
        end
    end
    redis.call('DEL', rooms, users, p .. 'node:' .. other)
    redis.call('SREM', p .. 'nodes', other)
end
"""

#: The node's heartbeat, and the sweep of nodes whose heartbeat expired,
#: which are then marked dead; all in one atomic step, so exactly one
#: survivor sweeps each dead node. Returns C{{state, swept node ids...}},
#: C{state} being 1 if this node's heartbeat was alive, 0 if it had expired
#: or was never set (Redis may have lost this node's state), -1 if this node
#: was declared dead (nothing else done). ARGV: prefix, node, timeout in
#: milliseconds.
HEARTBEAT = Script(
    "heartbeat",
    _SWEEP
    + "local p, node = ARGV[1], ARGV[2]\n"
    + _DEAD
    + """
local beat = p .. 'node:' .. node
local alive = redis.call('EXISTS', beat)
redis.call('SET', beat, '1', 'PX', ARGV[3])
redis.call('SADD', p .. 'nodes', node)
local result = {alive}
for _, other in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
    if redis.call('EXISTS', p .. 'node:' .. other) == 0 then
        sweep(p, other)
        redis.call('SET', p .. 'dead:' .. other, '1', 'EX', 86400)
        table.insert(result, other)
    end
end
return result
""",
)

#: A node starting (ARGV[3] = 'start') or stopping: what an earlier process
#: with this node id left behind, or what this one still holds, is swept
#: (leave events for its members, its users logged out); a starting node is
#: then registered with its heartbeat. ARGV: prefix, node, 'start' or
#: 'stop', timeout in milliseconds.
RESET = Script(
    "reset",
    _SWEEP
    + """
local p, node = ARGV[1], ARGV[2]
redis.call('DEL', p .. 'dead:' .. node)
sweep(p, node)
if ARGV[3] == 'start' then
    redis.call('SET', p .. 'node:' .. node, '1', 'PX', ARGV[4])
    redis.call('SADD', p .. 'nodes', node)
end
return 1
""",
)

#: Check that this node was given the same shards as the cluster's live
#: nodes: 1 (and the shards are recorded), or the shards the others use.
#: ARGV: prefix, node, the shards (C{ClusterConfig.layout}).
JOIN = Script(
    "join",
    """
local p, node, layout = ARGV[1], ARGV[2], ARGV[3]
local current = redis.call('GET', p .. 'shards')
if current and current ~= layout then
    for _, other in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
        if other ~= node and redis.call('EXISTS', p .. 'node:' .. other) == 1 then
            return current
        end
    end
end
redis.call('SET', p .. 'shards', layout)
return 1
""",
)

#: Take a block of unique ids; returns its last id. The counter never goes
#: below the current time in microseconds, so a Redis that restarted empty
#: does not hand out ids again (unless more than a million were taken per
#: second on average). ARGV: prefix, node, block size.
UNIQUE_IDS = Script(
    "unique-ids",
    """
local key, count = ARGV[1] .. 'uid', tonumber(ARGV[3])
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = redis.call('INCRBY', key, count)
if last < floor + count then
    last = floor + count
    redis.call('SET', key, string.format('%.0f', last))
end
return last
""",
)
