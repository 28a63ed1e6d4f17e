-- Shared by every script of the Redis store (prepended to each). All keys hang off the prefix
-- in ARGV[1]; the layout is described in mod.rs. ARGV[2]: the caller's clock (ms since the
-- epoch), ARGV[3]: the idle TTL in ms (0: none), ARGV[4]: extra ms a bin's keys outlive the TTL
-- (Redis frees them by itself if no instance reaps the bin first). Script arguments start at 5.
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
-- Numbers go to redis.call as text made here: a Lua number handed to redis.call is formatted
-- with sprintf's '%.17g' (Redis 7.0), several times slower than '%d'.
local NOWS = ARGV[2]
local function I(n) return string.format('%d', n) end
local TTL = tonumber(ARGV[3])
local GRACE = tonumber(ARGV[4])
local STATS = P .. 'stats'
local BINS = P .. 'bins'
local LEDGER = P .. 'ledger'
local ACCT = P .. 'acct'
local LIVE = P .. 'live'

local function bkey(name) return P .. 'b:' .. name end
local function rkey(id) return P .. 'r:' .. id end
local function ikey(id) return P .. 'i:' .. id end
-- Named by the bin's name, not its id: the capture writes into it with a plain command (the
-- caller knows the name only). Request ids are random, and a bin created anew starts by
-- deleting it, so a re-created bin never meets the old one's data.
local function dkey(name) return P .. 'd:' .. name end

-- The snapshot fields of a bin, in the order mod.rs reads them.
local SNAP = {'id', 'created', 'act', 'settings', 'tok', 'maxr', 'maxb', 'seq', 'n', 'bytes',
  'evl', 'evb', 'sver'}

local function snap(name)
  return redis.call('HMGET', bkey(name), unpack(SNAP))
end

-- The bin's counters as the reaper needs them once its own keys may be gone.
local function sync_acct(name)
  local b = redis.call('HMGET', bkey(name), 'id', 'n', 'bytes')
  if b[1] then
    redis.call('HSET', ACCT, name, b[1] .. ':' .. b[2] .. ':' .. b[3])
  end
end

-- Every key of a bin expires TTL + GRACE after its last activity.
local function touch(name, id)
  if TTL > 0 then
    local ms = I(TTL + GRACE)
    redis.call('PEXPIRE', bkey(name), ms)
    redis.call('PEXPIRE', rkey(id), ms)
    redis.call('PEXPIRE', ikey(id), ms)
    redis.call('PEXPIRE', dkey(name), ms)
  end
end

-- A request's entry in the ledger: the bin's id and name and the request's id (16 bytes, last).
-- Built from strings only: Lua formats a number with sprintf, a cost per request.
local function entry(id, name, uuid) return id .. ':' .. name .. ':' .. uuid end

-- Takes the ledger entries of the request ids `uuids` of a bin out, a thousand per command.
local function unledger(id, name, uuids)
  for s = 1, #uuids, 1000 do
    local es = {}
    for i = s, math.min(s + 999, #uuids) do es[#es + 1] = entry(id, name, uuids[i]) end
    redis.call('ZREM', LEDGER, unpack(es))
  end
end

-- Removes a bin, its requests, their ledger entries and their weight in the totals. Its
-- counters come from ACCT, so this is exact even when Redis already expired the bin's keys.
local function drop_bin(name)
  local bk = bkey(name)
  local id = redis.call('HGET', bk, 'id')
  if id then
    unledger(id, name, redis.call('ZRANGE', rkey(id), 0, -1))
    redis.call('DEL', bk, rkey(id), ikey(id))
  end
  redis.call('DEL', dkey(name))
  local acct = redis.call('HGET', ACCT, name)
  if acct then
    local n, bytes = string.match(acct, '^%d+:(%-?%d+):(%-?%d+)$')
    redis.call('HINCRBY', STATS, 'requests', I(0 - tonumber(n)))
    redis.call('HINCRBY', STATS, 'bytes', I(0 - tonumber(bytes)))
    redis.call('HDEL', ACCT, name)
  end
  redis.call('ZREM', BINS, name)
end

local function gone(name)
  drop_bin(name)
  redis.call('PUBLISH', LIVE, 'x' .. name)
end

-- Deletes up to 64 bins idle for longer than the TTL; returns how many.
local function reap()
  if TTL == 0 then return 0 end
  local names = redis.call('ZRANGEBYSCORE', BINS, '-inf', '(' .. (NOW - TTL), 'LIMIT', 0, 64)
  for _, name in ipairs(names) do gone(name) end
  return #names
end

-- Whether the bin exists and is not past its TTL (one that is gets deleted now).
local function alive(name)
  local act = redis.call('HGET', bkey(name), 'act')
  if not act then
    if redis.call('ZSCORE', BINS, name) then gone(name) end
    return false
  end
  if TTL > 0 and tonumber(act) < NOW - TTL then
    gone(name)
    return false
  end
  return true
end

-- Removes one stored request, its data and its weight (its member, the request id, was already
-- taken out of the bin's set) and counts it under `counter` ('evl', 'evb') when it was evicted.
local function forget(name, id, uuid, counter)
  local size = tonumber(redis.call('HGET', ikey(id), uuid) or '0')
  redis.call('HDEL', ikey(id), uuid)
  redis.call('HDEL', dkey(name), uuid)
  redis.call('ZREM', LEDGER, entry(id, name, uuid))
  local bk = bkey(name)
  redis.call('HINCRBY', bk, 'n', '-1')
  redis.call('HINCRBY', bk, 'bytes', I(0 - size))
  redis.call('HINCRBY', STATS, 'requests', '-1')
  redis.call('HINCRBY', STATS, 'bytes', I(0 - size))
  if counter then
    redis.call('HINCRBY', bk, counter, '1')
    redis.call('HINCRBY', STATS, counter, '1')
  end
  sync_acct(name)
end

-- Evicts the oldest requests of the bin beyond `max`, up to 1,000 a command (a batch of
-- captures evicts as many as it added in a handful of commands, not ten per request). The
-- caller then calls sync_acct.
local function trim(name, id, max)
  local bk = bkey(name)
  local over = tonumber(redis.call('HGET', bk, 'n')) - max
  while over > 0 do
    -- The ids alone: ZPOPMIN would answer each score too, formatted as a double.
    local uuids = redis.call('ZRANGE', rkey(id), '0', I(math.min(over, 1000) - 1))
    if #uuids == 0 then break end
    redis.call('ZREMRANGEBYRANK', rkey(id), '0', I(#uuids - 1))
    local entries = {}
    for i = 1, #uuids do entries[i] = entry(id, name, uuids[i]) end
    local bytes = 0
    for _, v in ipairs(redis.call('HMGET', ikey(id), unpack(uuids))) do
      if v then bytes = bytes + tonumber(v) end
    end
    local count = #uuids
    redis.call('HDEL', ikey(id), unpack(uuids))
    redis.call('HDEL', dkey(name), unpack(uuids))
    redis.call('ZREM', LEDGER, unpack(entries))
    redis.call('HINCRBY', bk, 'n', I(0 - count))
    redis.call('HINCRBY', bk, 'bytes', I(0 - bytes))
    redis.call('HINCRBY', bk, 'evl', I(count))
    redis.call('HINCRBY', STATS, 'requests', I(0 - count))
    redis.call('HINCRBY', STATS, 'bytes', I(0 - bytes))
    redis.call('HINCRBY', STATS, 'evl', I(count))
    over = over - count
  end
end

-- Evicts the oldest requests across bins until the byte budget holds. Ledger entries of
-- requests already gone (their bin expired in Redis before any instance reaped it) are skipped.
local function enforce_budget(max)
  local bytes = tonumber(redis.call('HGET', STATS, 'bytes') or '0')
  while bytes > max do
    local e = redis.call('ZPOPMIN', LEDGER)
    if #e == 0 then break end
    -- The request id is binary (it may hold ':'): it is the last 16 bytes.
    local id = string.match(e[1], '^(%d+):')
    local name = string.sub(e[1], #id + 2, -18)
    local uuid = string.sub(e[1], -16)
    if redis.call('ZREM', rkey(id), uuid) == 1 then
      forget(name, id, uuid, 'evb')
      bytes = tonumber(redis.call('HGET', STATS, 'bytes'))
    end
  end
end
