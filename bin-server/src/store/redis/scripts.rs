//! The Lua scripts of the Redis store: each operation that changes more than one key is one
//! script (atomic, one round trip). [`COMMON`] is prepended to each.

use redis::Script;

const COMMON: &str = include_str!("common.lua");

/// Every script, loaded once per store (by SHA; reloaded by the client after `NOSCRIPT`).
pub struct Scripts {
    pub create: Script,
    pub capture: Script,
    pub get: Script,
    pub list: Script,
    pub delete_bin: Script,
    pub delete_request: Script,
    pub clear: Script,
    pub read: Script,
    pub stats: Script,
    pub reap: Script,
}

impl Scripts {
    pub fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{COMMON}\n{body}"));
        Self {
            create: s(CREATE),
            capture: s(CAPTURE),
            get: s(GET),
            list: s(LIST),
            delete_bin: s(DELETE_BIN),
            delete_request: s(DELETE_REQUEST),
            clear: s(CLEAR),
            read: s(READ),
            stats: s(STATS),
            reap: s(REAP),
        }
    }
}

/// The layout this build reads and writes (see mod.rs); kept in `{prefix}layout`.
pub const LAYOUT: u32 = 2;

/// Claims an empty prefix for [`LAYOUT`], or tells which layout it holds. KEYS: 1 the layout
/// key, 2 `stats`, 3 `bins`; ARGV: 1 the layout. Returns the layout found or claimed: `1` for
/// data without a layout key (what bin-servers before layout 2 wrote).
pub const CLAIM_LAYOUT: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then return tonumber(v) end
if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then return 1 end
redis.call('SET', KEYS[1], ARGV[1])
return tonumber(ARGV[1])
"#;

/// Creates (`create`) or creates-or-updates (`put`) a bin. ARGV: 5 name, 6 settings JSON
/// (without the token hash), 7 token hash (hex, or empty), 8 max requests, 9 max body bytes,
/// 10 max bins, 11 mode. Returns `{status, snapshot}` with status `created`, `updated`,
/// `exists` or `full`.
const CREATE: &str = r#"
reap()
local name = ARGV[5]
local bk = bkey(name)
local maxr = tonumber(ARGV[8])
if alive(name) then
  if ARGV[11] == 'create' then return {'exists'} end
  -- Who may reach a bin is fixed when it is created: the token hash stays.
  redis.call('HSET', bk, 'settings', ARGV[6], 'maxr', ARGV[8], 'maxb', ARGV[9], 'act', NOW)
  redis.call('HINCRBY', bk, 'sver', '1')
  local id = redis.call('HGET', bk, 'id')
  trim(name, id, maxr)
  redis.call('ZADD', BINS, NOWS, name)
  sync_acct(name)
  touch(name, id)
  redis.call('PUBLISH', LIVE, 's' .. name)
  return {'updated', snap(name)}
end
if redis.call('ZCARD', BINS) >= tonumber(ARGV[10]) then return {'full'} end
redis.call('DEL', dkey(name))
local id = redis.call('HINCRBY', STATS, 'ids', '1')
redis.call('HSET', bk, 'id', id, 'created', NOW, 'act', NOW, 'settings', ARGV[6],
  'tok', ARGV[7], 'maxr', ARGV[8], 'maxb', ARGV[9], 'seq', 0, 'n', 0, 'bytes', 0, 'evl', 0,
  'evb', 0, 'sver', 1)
redis.call('ZADD', BINS, NOWS, name)
sync_acct(name)
touch(name, id)
-- An instance that cached a bin of this name before it was deleted drops it.
redis.call('PUBLISH', LIVE, 's' .. name)
return {'created', snap(name)}
"#;

/// Numbers and indexes a batch of requests, in the order given: each gets the next sequence
/// number of its bin (its score in `r:{id}`, whose member is the request id), its index and
/// ledger entries, the counters, both caps, the TTL, atomically. The request bytes are not
/// here: the caller writes them into `d:{name}` with `HSET` before this script and publishes
/// them after it, in the same `MULTI` (mod.rs, `batch.rs`), so Lua never copies or hashes a
/// request-sized string. Per bin, not per request, it writes in one command, trims the bin
/// in a few and refreshes activity and TTL once. ARGV: 5 byte budget, 6 the server's requests
/// per bin, 7 how many requests, 8 the batch's token, then four per request: name, request id
/// (16 bytes), stored bytes, truncated (0/1). Publishes `q{token} {seq} {seq}...` (what the
/// caller's batch event that follows is numbered with) and returns one number per request:
/// its sequence number, or 0 when its bin does not exist (its data is deleted then).
const CAPTURE: &str = r#"
reap()
local cap = tonumber(ARGV[6])
local k = tonumber(ARGV[7])
local out, shown, bins, order, ledger = {}, {}, {}, {}, {}
local arrival = redis.call('HINCRBY', STATS, 'arrivals', I(k)) - k
local total, bytes, truncated = 0, 0, 0
for i = 1, k do
  local a = 9 + (i - 1) * 4
  local name = ARGV[a]
  local b = bins[name]
  if b == nil then
    b = false
    if alive(name) then
      local h = redis.call('HMGET', bkey(name), 'id', 'maxr', 'seq')
      -- A bin's limit, within this instance's (one started with a lower limit applies it).
      b = {id = h[1], maxr = math.min(tonumber(h[2]), cap), seq = tonumber(h[3]), z = {},
        ix = {}, n = 0, bytes = 0}
      order[#order + 1] = name
    else
      -- The data the caller wrote for a bin that is not there.
      redis.call('DEL', dkey(name))
    end
    bins[name] = b
  end
  if b then
    local seq = b.seq + 1
    b.seq = seq
    arrival = arrival + 1
    -- Numbers are formatted once each, as integers (a number handed to redis.call or
    -- concatenated is formatted with sprintf's '%.17g' each time: a cost per request).
    local s = string.format('%d', seq)
    local uuid = ARGV[a + 1]
    local size = ARGV[a + 2]
    local z, ix = b.z, b.ix
    z[#z + 1] = s
    z[#z + 1] = uuid
    ix[#ix + 1] = uuid
    ix[#ix + 1] = size
    ledger[#ledger + 1] = string.format('%d', arrival)
    ledger[#ledger + 1] = entry(b.id, name, uuid)
    size = tonumber(size)
    b.n = b.n + 1
    b.bytes = b.bytes + size
    total = total + 1
    bytes = bytes + size
    if ARGV[a + 3] == '1' then truncated = truncated + 1 end
    out[i] = seq
    shown[i] = s
  else
    out[i] = 0
    shown[i] = '0'
  end
end
redis.call('PUBLISH', LIVE, 'q' .. ARGV[8] .. ' ' .. table.concat(shown, ' '))
if total == 0 then return out end
for _, name in ipairs(order) do
  local b = bins[name]
  local bk = bkey(name)
  redis.call('ZADD', rkey(b.id), unpack(b.z))
  redis.call('HSET', ikey(b.id), unpack(b.ix))
  redis.call('HSET', bk, 'seq', I(b.seq), 'act', NOWS)
  redis.call('HINCRBY', bk, 'n', I(b.n))
  redis.call('HINCRBY', bk, 'bytes', I(b.bytes))
end
redis.call('ZADD', LEDGER, unpack(ledger))
redis.call('HINCRBY', STATS, 'captures', I(total))
redis.call('HINCRBY', STATS, 'requests', I(total))
redis.call('HINCRBY', STATS, 'bytes', I(bytes))
if truncated > 0 then redis.call('HINCRBY', STATS, 'truncated', I(truncated)) end
for _, name in ipairs(order) do
  trim(name, bins[name].id, bins[name].maxr)
end
enforce_budget(tonumber(ARGV[5]))
for _, name in ipairs(order) do
  redis.call('ZADD', BINS, NOWS, name)
  sync_acct(name)
  touch(name, bins[name].id)
end
return out
"#;

/// ARGV: 5 name. Returns `{'ok', snapshot}` or `{'nobin'}`.
const GET: &str = r#"
if not alive(ARGV[5]) then return {'nobin'} end
return {'ok', snap(ARGV[5])}
"#;

/// Returns `{name, snapshot, ...}` of every bin.
const LIST: &str = r#"
while reap() == 64 do end
local out = {}
for _, name in ipairs(redis.call('ZRANGE', BINS, 0, -1)) do
  local s = snap(name)
  if s[1] then
    out[#out + 1] = name
    out[#out + 1] = s
  end
end
return out
"#;

/// ARGV: 5 name. Returns `{'ok'}` or `{'nobin'}`.
const DELETE_BIN: &str = r#"
if not alive(ARGV[5]) then return {'nobin'} end
gone(ARGV[5])
return {'ok'}
"#;

/// ARGV: 5 name, 6 `seq` or `uuid`, 7 the sequence number or the 16 bytes of the id. Returns
/// `{'ok'}`, `{'nobin'}` or `{'noreq'}`.
const DELETE_REQUEST: &str = r#"
local name = ARGV[5]
if not alive(name) then return {'nobin'} end
local id = redis.call('HGET', bkey(name), 'id')
local uuid
if ARGV[6] == 'seq' then
  uuid = redis.call('ZRANGEBYSCORE', rkey(id), ARGV[7], ARGV[7])[1]
elseif redis.call('ZSCORE', rkey(id), ARGV[7]) then
  uuid = ARGV[7]
end
if not uuid then return {'noreq'} end
redis.call('ZREM', rkey(id), uuid)
forget(name, id, uuid, nil)
redis.call('PUBLISH', LIVE, 'd' .. name .. '\n' .. uuid)
return {'ok'}
"#;

/// ARGV: 5 name. Returns `{'ok', how many}` or `{'nobin'}`.
const CLEAR: &str = r#"
local name = ARGV[5]
if not alive(name) then return {'nobin'} end
local bk = bkey(name)
local b = redis.call('HMGET', bk, 'id', 'n', 'bytes')
local id, n, bytes = b[1], tonumber(b[2]), tonumber(b[3])
unledger(id, name, redis.call('ZRANGE', rkey(id), 0, -1))
redis.call('DEL', rkey(id), ikey(id), dkey(name))
redis.call('HSET', bk, 'n', 0, 'bytes', 0)
redis.call('HINCRBY', STATS, 'requests', I(0 - n))
redis.call('HINCRBY', STATS, 'bytes', I(0 - bytes))
sync_acct(name)
redis.call('PUBLISH', LIVE, 'C' .. name)
return {'ok', n}
"#;

/// Reads a bin's requests. ARGV: 5 name, 6 mode, then by mode:
/// - `after` (7 seq, 8 limit): oldest first above seq;
/// - `page` (7 after, 8 before, 9 limit; exclusive bounds, `-inf`/`+inf` for none): newest
///   first, with the count of the range; limit -1: the whole range;
/// - `seq` (7 seq) / `uuid` (7 the id's 16 bytes): one request.
///
/// Returns `{'ok', n, evl, evb, matched, request, seq, request, seq...}` (each request's bytes
/// from `d:{name}`, by the ids the index gives) or `{'nobin'}`.
const READ: &str = r#"
local name = ARGV[5]
if not alive(name) then return {'nobin'} end
local b = redis.call('HMGET', bkey(name), 'id', 'n', 'evl', 'evb')
local r = rkey(b[1])
local out = {'ok', b[2], b[3], b[4], 0}
local ms
local mode = ARGV[6]
if mode == 'after' then
  ms = redis.call('ZRANGEBYSCORE', r, '(' .. ARGV[7], '+inf', 'WITHSCORES', 'LIMIT', 0,
    ARGV[8])
elseif mode == 'page' then
  out[5] = redis.call('ZCOUNT', r, ARGV[7], ARGV[8])
  ms = redis.call('ZREVRANGEBYSCORE', r, ARGV[8], ARGV[7], 'WITHSCORES', 'LIMIT', 0,
    ARGV[9])
else
  if mode == 'uuid' then
    local seq = redis.call('ZSCORE', r, ARGV[7])
    ms = {}
    if seq then ms = {ARGV[7], seq} end
  else
    ms = redis.call('ZRANGEBYSCORE', r, ARGV[7], ARGV[7], 'WITHSCORES')
  end
end
-- HMGET in slices: Lua unpacks at most a few thousand values at once.
local d = dkey(name)
for s = 1, #ms, 2000 do
  local ids = {}
  for i = s, math.min(s + 1999, #ms), 2 do ids[#ids + 1] = ms[i] end
  local data = redis.call('HMGET', d, unpack(ids))
  for j = 1, #ids do
    out[#out + 1] = data[j]
    out[#out + 1] = ms[s + 2 * j - 1]
  end
end
return out
"#;

/// Returns `{bins, requests, bytes, captures, evl, evb, truncated}`.
const STATS: &str = r#"
reap()
local s = redis.call('HMGET', STATS, 'requests', 'bytes', 'captures', 'evl', 'evb', 'truncated')
return {redis.call('ZCARD', BINS), s[1], s[2], s[3], s[4], s[5], s[6]}
"#;

/// Deletes idle bins; returns how many (at most 64 a call).
const REAP: &str = r#"
return reap()
"#;
