"""The Lua scripts behind the Redis broker's consumer groups (see :mod:`lumi.brokers.redis`).

Each script runs atomically on the server, which is what keeps per-key order across members:

* Members read new entries themselves, with a blocking ``XREADGROUP`` on the topic and the
  group's ``ready`` stream; the group's pending entries list (PEL) holds the events members are
  handling, waiting to be retried, or were handling when they died.
* At most one *ordered* event per partition key is in the PEL at a time (``heads``: key →
  entry). A keyed entry just read is ordered by ``ORDER`` before anyone handles it, and that
  script orders every keyed entry delivered up to it which nobody ordered yet, in id order —
  so two members reading at once cannot invert a key's order. A later event whose key is busy
  is *parked*: its body is pushed on a per-key list and acknowledged out of the PEL. Settling
  the head promotes the next parked event into the group's private ``ready`` stream, from
  which members read it like any other entry (already its key's head).
* So every entry in the PEL may be taken over when its lease runs out: ``XAUTOCLAIM`` with the
  lease as minimum idle time hands members the events of dead members, due retries (a retry
  sets the entry's idle time to ``lease - delay``) and released events (idle = lease); a keyed
  one its dead reader never ordered is ordered then.
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
local function id_after(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  if ams ~= bms then return ams > bms end
  return tonumber(aseq) > tonumber(bseq)
end

-- Order, in id order, the keyed topic entries delivered up to `upto` and not ordered yet (the
-- mark 'ordered' in meta): each becomes its key's head, or is parked behind the head. Entries
-- no longer pending were unkeyed and acknowledged already; keyed ones stay pending until this.
local function adopt(main, group, heads, keyof, meta, parked_prefix, upto)
  local mark = redis.call('HGET', meta, 'ordered') or '0-0'
  if not id_after(upto, mark) then return end
  local start = '(' .. mark
  while true do
    local pending = redis.call('XPENDING', main, group, start, upto, 256)
    for _, p in ipairs(pending) do
      local id = p[1]
      local entry = redis.call('XRANGE', main, id, id)[1]
      local k = entry and field(entry[2], 'key')
      if k then
        local tag = 'm' .. id
        local head = redis.call('HGET', heads, k)
        if head and head ~= tag then
          redis.call('RPUSH', parked_prefix .. k, field(entry[2], 'event') or '')
          redis.call('HINCRBY', meta, 'parked', 1)
          redis.call('XACK', main, group, id)
        else
          redis.call('HSET', heads, k, tag)
          redis.call('HSET', keyof, tag, k)
        end
      end
    end
    if #pending < 256 then break end
    start = '(' .. pending[#pending][1]
  end
  redis.call('HSET', meta, 'ordered', upto)
end
"""

# KEYS: main, ready, heads, keyof, meta
# ARGV: group, member, limit, lease_ms, max_attempts, parked_prefix
# → {items, dead, parked}; items/dead are flat (tag, attempt, body, plain), a tag being the
#   letter and the entry id ('m1700000000000-0'); plain = 1 for a topic entry without a key
#   (its acknowledgement is a bare XACK). New entries are not read here: members read them with
#   a blocking XREADGROUP of their own (ORDER below orders the keyed ones).
CLAIM = (
    _COMMON
    + """
local main, ready, heads, keyof, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, member = ARGV[1], ARGV[2]
local limit, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_attempts, parked_prefix = tonumber(ARGV[5]), ARGV[6]
local found, dead, items = {}, {}, {}
local n, upto = 0, nil

local function add(list, tag, attempt, body, plain)
  list[#list + 1] = tag
  list[#list + 1] = attempt
  list[#list + 1] = body
  list[#list + 1] = plain
end

-- Leases that ran out: dead members' events, due retries, released events.
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
      local k = field(fields, 'key')
      if info[4] > max_attempts then
        add(dead, letter .. id, info[4] - 1, body, 0)
      else
        found[#found + 1] = {letter, id, info[4], body, k}
        n = n + 1
        if letter == 'm' and k and (not upto or id_after(id, upto)) then upto = id end
      end
    end
    -- Entries trimmed away (retention) before they were handled: free their keys.
    for _, id in ipairs(res[3] or {}) do
      settle_key(ready, heads, keyof, meta, parked_prefix, letter .. id)
    end
  end
end

-- A keyed topic entry its reader never ordered (it died first) is ordered now, behind what
-- came before it; one that is not its key's head after that waits its turn.
if upto then adopt(main, group, heads, keyof, meta, parked_prefix, upto) end
for _, f in ipairs(found) do
  local letter, id, attempt, body, k = f[1], f[2], f[3], f[4], f[5]
  if letter == 'r' or not k then
    add(items, letter .. id, attempt, body, (letter == 'm') and 1 or 0)
  elseif redis.call('HGET', heads, k) == 'm' .. id then
    add(items, 'm' .. id, attempt, body, 0)
  end
end
return {items, dead, tonumber(redis.call('HGET', meta, 'parked') or '0')}
"""
)

# KEYS: main, heads, keyof, meta
# ARGV: group, parked_prefix, upto (the newest entry id read), then the tags ('m<id>') and keys
#       of the keyed topic entries the caller read → {flags, parked}: flag 1 = the caller
#       handles that entry now (it is its key's head), 0 = it was parked behind an earlier one.
# Ordering covers every keyed entry the group delivered up to `upto` that nobody ordered yet,
# in id order, whoever read it: two members reading at once cannot invert a key's order.
ORDER = (
    _COMMON
    + """
local main, heads, keyof, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, parked_prefix, upto = ARGV[1], ARGV[2], ARGV[3]
adopt(main, group, heads, keyof, meta, parked_prefix, upto)
local flags = {}
for i = 4, #ARGV, 2 do
  flags[#flags + 1] = (redis.call('HGET', heads, ARGV[i + 1]) == ARGV[i]) and 1 or 0
end
return {flags, tonumber(redis.call('HGET', meta, 'parked') or '0')}
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
