"""The Lua scripts of the Redis Streams queue: each queue step is one atomic script.

KEYS (all share one hash tag, so a Redis Cluster keeps them in one slot):
  1 stream      the ready and claimed jobs (fields ``ev`` = event id, ``at`` = ready since)
  2 leases      ZSET stream entry id -> lease deadline (claimed jobs)
  3 delayed     ZSET event id -> visible at (delayed enqueues and retries)
  4 entries     HASH event id -> stream entry id, or ``d`` while delayed (one job per event)
  5 deliveries  HASH event id -> times claimed
  6 dead        HASH event id -> reason (dead-lettered, until enqueued again)
  7 dlq         the dead-letter stream, capped, for inspection
ARGV[1] is always the group name and ARGV[2] the caller's clock (seconds).
"""

from __future__ import annotations

PRELUDE = """
local stream, leases, delayed, entries, deliveries, dead, dlq =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local group, now = ARGV[1], tonumber(ARGV[2])
local function ensure_group()
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  end
end
local function add_ready(ev, at)
  ensure_group()
  local id = redis.call('XADD', stream, '*', 'ev', ev, 'at', at)
  redis.call('HSET', entries, ev, id)
end
local function held(ev, id, n)
  return redis.call('HGET', entries, ev) == id and redis.call('HGET', deliveries, ev) == n
    and redis.call('ZSCORE', leases, id)
end
local function remove(id)
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  redis.call('ZREM', leases, id)
end
"""

ENQUEUE = (
    PRELUDE
    + """
-- one or more jobs, two arguments each: event id, visible at (one job per event id)
for i = 3, #ARGV, 2 do
  local ev, visible = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('HDEL', dead, ev)
  local current = redis.call('HGET', entries, ev)
  if current then
    if current == 'd' then redis.call('ZADD', delayed, 'LT', visible, ev) end
  elseif visible > now then
    redis.call('ZADD', delayed, visible, ev)
    redis.call('HSET', entries, ev, 'd')
  else
    add_ready(ev, ARGV[2])
  end
end
return 0
"""
)

CLAIM = (
    PRELUDE
    + """
local consumer, deadline, limit = ARGV[3], ARGV[4], tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #due, 2 do
  redis.call('ZREM', delayed, due[i])
  add_ready(due[i], due[i + 1])
end
local out = {}
local function take(id, fields)
  local ev
  for i = 1, #fields, 2 do if fields[i] == 'ev' then ev = fields[i + 1] end end
  if ev == nil then return end
  redis.call('ZADD', leases, deadline, id)
  local n = redis.call('HINCRBY', deliveries, ev, 1)
  out[#out + 1] = {ev, id, tostring(n)}
end
-- leases that lapsed: their worker died or stalled; hand the entries to this consumer
local lapsed = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(lapsed) do
  redis.call('ZREM', leases, id)
  local claimed = redis.call('XCLAIM', stream, group, consumer, 0, id)
  if claimed[1] then take(claimed[1][1], claimed[1][2]) end
end
if #out < limit and redis.call('EXISTS', stream) == 1 then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #out,
    'STREAMS', stream, '>')
  if read and read[1] then
    for _, entry in ipairs(read[1][2]) do take(entry[1], entry[2]) end
  end
end
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local next_due = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')[2]
local next_lapse = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')[2]
return {out, last[1] and last[1][1] or '0-0', next_due or '', next_lapse or ''}
"""
)

EXTEND = (
    PRELUDE
    + """
local deadline = ARGV[3]
for i = 4, #ARGV, 3 do
  if held(ARGV[i], ARGV[i + 1], ARGV[i + 2]) then
    redis.call('ZADD', leases, 'XX', deadline, ARGV[i + 1])
  end
end
return 0
"""
)

SETTLE = (
    PRELUDE
    + """
-- one or more settlements, five arguments each: event id, entry id, deliveries, outcome, arg
for i = 3, #ARGV, 5 do
  local ev, id, n, outcome, arg = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  if held(ev, id, n) then
    remove(id)
    if outcome == 'retry' then
      redis.call('ZADD', delayed, tonumber(arg), ev)
      redis.call('HSET', entries, ev, 'd')
    else
      redis.call('HDEL', entries, ev)
      redis.call('HDEL', deliveries, ev)
      if outcome == 'dead' then
        redis.call('HSET', dead, ev, arg)
        redis.call('XADD', dlq, 'MAXLEN', '~', 10000, '*', 'ev', ev, 'reason', arg, 'at', ARGV[2])
      end
    end
  end
end
return 0
"""
)

STATS = (
    PRELUDE
    + """
local length = redis.call('XLEN', stream)
local claimed = redis.call('ZCARD', leases)
local lapsed = redis.call('ZCOUNT', leases, '-inf', now)
local waiting = redis.call('ZCARD', delayed)
local due = redis.call('ZCOUNT', delayed, '-inf', now)
local oldest = ''
local candidates = {}
local first_due = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')[2]
if first_due and tonumber(first_due) <= now then candidates[#candidates + 1] = first_due end
local first_lapse = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')[2]
if first_lapse and tonumber(first_lapse) <= now then candidates[#candidates + 1] = first_lapse end
if length > claimed then
  local last_delivered = '0-0'
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    for i = 1, #info, 2 do
      if info[i] == 'name' and info[i + 1] ~= group then break end
      if info[i] == 'last-delivered-id' then last_delivered = info[i + 1] end
    end
  end
  local first = redis.call('XRANGE', stream, '(' .. last_delivered, '+', 'COUNT', 1)[1]
  if first then
    for i = 1, #first[2], 2 do
      if first[2][i] == 'at' then candidates[#candidates + 1] = first[2][i + 1] end
    end
  end
end
for _, at in ipairs(candidates) do
  if oldest == '' or tonumber(at) < tonumber(oldest) then oldest = at end
end
return {length - claimed + lapsed + due, claimed - lapsed, waiting - due,
  redis.call('HLEN', dead), oldest}
"""
)
