"""The Lua scripts behind the Redis broker's consumer groups (see :mod:`lumi.brokers.redis`).

Each script runs atomically on the server, which is what keeps per-key order across members:

* A group reads its topic's stream with ``XREADGROUP``; its pending entries list (PEL) holds the
  events members are handling, waiting to be retried, or were handling when they died.
* At most one event per partition key is in the PEL at a time (``heads``: key → entry). A later
  event whose key is busy is *parked*: its body is pushed on a per-key list and acknowledged out
  of the PEL. Settling the head promotes the next parked event into the group's private
  ``ready`` stream, from which members read it like any other entry.
* So every entry in the PEL may be taken over when its lease runs out: ``XAUTOCLAIM`` with the
  lease as minimum idle time hands members the events of dead members, due retries (a retry
  sets the entry's idle time to ``lease - delay``) and released events (idle = lease).
* Attempts are the PEL's delivery counts.

Entries are tagged ``m<id>`` (topic stream) or ``r<id>`` (ready stream).
"""

from __future__ import annotations

_COMMON = """
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return false
end

local function promote(ready, heads, keyof, meta, parked_prefix, k)
  local nxt = redis.call('LPOP', parked_prefix .. k)
  if nxt then
    redis.call('HINCRBY', meta, 'parked', -1)
    local id = redis.call('XADD', ready, '*', 'event', nxt, 'key', k)
    redis.call('HSET', heads, k, 'r' .. id)
    redis.call('HSET', keyof, 'r' .. id, k)
  else
    redis.call('HDEL', heads, k)
  end
end

local function settle_key(ready, heads, keyof, meta, parked_prefix, tag)
  local k = redis.call('HGET', keyof, tag)
  if k then
    redis.call('HDEL', keyof, tag)
    if redis.call('HGET', heads, k) == tag then
      promote(ready, heads, keyof, meta, parked_prefix, k)
    end
  end
end
"""

# KEYS: main, ready, heads, keyof, meta
# ARGV: group, member, limit, lease_ms, max_attempts, window, parked_prefix
# → {items, dead, drained, last_main, last_ready}; items/dead are flat (tag, attempt, body), a
#   tag being the letter and the entry id ('m1700000000000-0'): three replies an event, not four
CLAIM = (
    _COMMON
    + """
local main, ready, heads, keyof, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, member = ARGV[1], ARGV[2]
local limit, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_attempts, window = tonumber(ARGV[5]), tonumber(ARGV[6])
local parked_prefix = ARGV[7]
local items, dead = {}, {}
local n = 0

local function add(list, letter, id, attempt, body)
  list[#list + 1] = letter .. id
  list[#list + 1] = attempt
  list[#list + 1] = body
end

-- 1. Leases that ran out: dead members' events, due retries, released events.
for _, pair in ipairs({{'r', ready}, {'m', main}}) do
  local letter, stream = pair[1], pair[2]
  if n < limit then
    local cursor_field = 'cursor:' .. letter
    local cursor = redis.call('HGET', meta, cursor_field) or '0-0'
    local res = redis.call('XAUTOCLAIM', stream, group, member, lease, cursor, 'COUNT', limit - n)
    redis.call('HSET', meta, cursor_field, res[1])
    for _, entry in ipairs(res[2]) do
      local id, fields = entry[1], entry[2]
      local info = redis.call('XPENDING', stream, group, id, id, 1)[1]
      local body = field(fields, 'event') or ''
      if info[4] > max_attempts then
        add(dead, letter, id, info[4] - 1, body)
      else
        add(items, letter, id, info[4], body)
        n = n + 1
      end
    end
    -- Entries trimmed away (retention) before they were handled: free their keys.
    for _, id in ipairs(res[3] or {}) do
      settle_key(ready, heads, keyof, meta, parked_prefix, letter .. id)
    end
  end
end

-- 2. New entries: promoted and replayed ones first, then the topic (unless too much is parked).
local drained = 1
local sources = {{'r', ready}}
if tonumber(redis.call('HGET', meta, 'parked') or '0') < window then
  sources[2] = {'m', main}
else
  drained = 0
end
for _, pair in ipairs(sources) do
  local letter, stream = pair[1], pair[2]
  if n < limit then
    local want = limit - n
    local res = redis.call('XREADGROUP', 'GROUP', group, member, 'COUNT', want,
                           'STREAMS', stream, '>')
    local entries = res and res[1][2] or {}
    if #entries == want then drained = 0 end
    for _, entry in ipairs(entries) do
      local id, fields = entry[1], entry[2]
      local body = field(fields, 'event') or ''
      local k = field(fields, 'key')
      local tag = letter .. id
      if k and letter == 'm' then
        local head = redis.call('HGET', heads, k)
        if head and head ~= tag then
          redis.call('RPUSH', parked_prefix .. k, body)
          redis.call('HINCRBY', meta, 'parked', 1)
          redis.call('XACK', main, group, id)
          body = false
        else
          redis.call('HSET', heads, k, tag)
          redis.call('HSET', keyof, tag, k)
        end
      end
      if body then
        add(items, letter, id, 1, body)
        n = n + 1
      end
    end
  else
    drained = 0
  end
end

local function last(stream)
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #top == 0 then return '0-0' end
  return top[1][1]
end
return {items, dead, drained, last(main), last(ready)}
"""
)

# KEYS: main, ready, heads, keyof, meta, dlq_stream, dlq_registry
# ARGV: group, parked_prefix, dlq_maxlen, dlq_topic, acks (how many acknowledgements follow),
#       the tags acknowledged, then per dead letter: tag, dlq_body, dlq_has_key ('1'/'0'),
#       dlq_key. An acknowledgement costs one argument: most settlements are one.
SETTLE = (
    _COMMON
    + """
local main, ready, heads, keyof, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local dlq, registry = KEYS[6], KEYS[7]
local group, parked_prefix, maxlen, dlq_topic = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local acks = tonumber(ARGV[5])
local settled = 0
local entries = {}
for i = 6, 5 + acks do entries[#entries + 1] = {ARGV[i], ''} end
for i = 6 + acks, #ARGV, 4 do
  entries[#entries + 1] = {ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]}
end
for _, e in ipairs(entries) do
  local tag, body, has_key, k = e[1], e[2], e[3], e[4]
  local letter, id = string.sub(tag, 1, 1), string.sub(tag, 2)
  local stream = main
  if letter == 'r' then stream = ready end
  if redis.call('XACK', stream, group, id) == 1 then
    settled = settled + 1
    if body ~= '' then
      local args = {'XADD', dlq}
      if maxlen > 0 then
        args[#args + 1] = 'MAXLEN'
        args[#args + 1] = '~'
        args[#args + 1] = maxlen
      end
      args[#args + 1] = '*'
      args[#args + 1] = 'event'
      args[#args + 1] = body
      if has_key == '1' then
        args[#args + 1] = 'key'
        args[#args + 1] = k
      end
      redis.call(unpack(args))
      redis.call('SADD', registry, dlq_topic)
    end
    if letter == 'r' then redis.call('XDEL', ready, id) end
    settle_key(ready, heads, keyof, meta, parked_prefix, letter .. id)
  end
end
return settled
"""
)

# KEYS: main, ready; ARGV: group, member, mode ('extend'|'retry'|'release'), idle_ms,
#       then pairs letter, id. Only entries this member still owns are touched.
LEASE = """
local main, ready = KEYS[1], KEYS[2]
local group, member, mode, idle = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
for i = 5, #ARGV, 2 do
  local stream = main
  if ARGV[i] == 'r' then stream = ready end
  local id = ARGV[i + 1]
  local mine = redis.call('XPENDING', stream, group, id, id, 1, member)[1]
  if mine then
    if mode == 'extend' then
      redis.call('XCLAIM', stream, group, member, 0, id, 'JUSTID')
    elseif mode == 'retry' then
      redis.call('XCLAIM', stream, group, member, 0, id, 'IDLE', idle, 'JUSTID')
    else
      local count = math.max(0, mine[4] - 1)
      redis.call('XCLAIM', stream, group, member, 0, id, 'IDLE', idle,
                 'RETRYCOUNT', count, 'JUSTID')
    end
  end
end
return 1
"""

# KEYS: ready, heads, keyof, meta, dlq_stream
# ARGV: parked_prefix, dlq_entry_id, body, has_key, key → 1 if the dead letter was re-queued
REPLAY = """
local ready, heads, keyof, meta, dlq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local parked_prefix, dlq_id, body, has_key, k = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('XDEL', dlq, dlq_id) == 0 then return 0 end
if has_key == '1' then
  if redis.call('HGET', heads, k) then
    redis.call('RPUSH', parked_prefix .. k, body)
    redis.call('HINCRBY', meta, 'parked', 1)
  else
    local id = redis.call('XADD', ready, '*', 'event', body, 'key', k)
    redis.call('HSET', heads, k, 'r' .. id)
    redis.call('HSET', keyof, 'r' .. id, k)
  end
else
  redis.call('XADD', ready, '*', 'event', body)
end
return 1
"""
