package redis

import goredis "github.com/redis/go-redis/v9"

// scriptCommit applies a store.Batch atomically.
//
// KEYS: [1] audit seq counter, [2] audit head hash, [3] audit log hash; then, per put, the record key, the
// index keys the record occupies now (as recorded in its x field) and the index keys it will occupy.
// ARGV: [1] number of puts, [2] number of audit events; then, per put: id, expected version ("0": must not
// exist), expected x, new version, new json, new x, number of old index keys, number of new index keys, and
// one score per new index key; then the audit head the client chained onto (its seq and hash) and, per audit
// event, its raw JSON and its link hash (store.ChainHash, computed by the client); then, for a fenced batch,
// the lock's expected value, its key being the last of KEYS.
//
// Every check runs before any write, so a conflict leaves nothing written. Returns {"ok", firstSeq, lastSeq},
// {"conflict", put index}, {"lost", 0} when the fencing lock is not held as given, or {"stale", seq, hash} when the audit head moved (the client re-chains and retries).
var scriptCommit = goredis.NewScript(`
local nputs, nev = tonumber(ARGV[1]), tonumber(ARGV[2])
local a, k = 3, 4
local puts = {}
for i = 1, nputs do
  local p = {key = KEYS[k], id = ARGV[a], prev = ARGV[a + 1], oldx = ARGV[a + 2], ver = ARGV[a + 3],
             j = ARGV[a + 4], x = ARGV[a + 5], old = {}, new = {}, scores = {}}
  local nold, nnew = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])
  a = a + 8
  k = k + 1
  for q = 1, nold do
    p.old[q] = KEYS[k]
    k = k + 1
  end
  for q = 1, nnew do
    p.new[q] = KEYS[k]
    p.scores[q] = ARGV[a]
    k = k + 1
    a = a + 1
  end
  puts[i] = p
end

local headSeq, headHash = ARGV[a], ARGV[a + 1]
a = a + 2

-- An optional last key is the lock that fences the batch (store.Batch.Fence); the last argument is the value
-- the lock must hold (holder|fence). An expired lock reads as absent.
if KEYS[k] then
  if redis.call("GET", KEYS[k]) ~= ARGV[#ARGV] then return {"lost", 0} end
end
if nev > 0 then
  local curSeq = redis.call("GET", KEYS[1]) or "0"
  local curHead = redis.call("GET", KEYS[2]) or "0000000000000000000000000000000000000000000000000000000000000000"
  if curSeq ~= headSeq or curHead ~= headHash then return {"stale", tonumber(curSeq), curHead} end
end

for i, p in ipairs(puts) do
  if p.prev == "0" then
    if redis.call("EXISTS", p.key) == 1 then return {"conflict", i} end
  else
    local cur = redis.call("HMGET", p.key, "v", "x")
    if cur[1] ~= p.prev or (cur[2] or "") ~= p.oldx then return {"conflict", i} end
  end
end

for _, p in ipairs(puts) do
  for _, key in ipairs(p.old) do redis.call("ZREM", key, p.id) end
  redis.call("HSET", p.key, "v", p.ver, "j", p.j, "x", p.x)
  for q, key in ipairs(p.new) do redis.call("ZADD", key, p.scores[q], p.id) end
end

local first, last = 0, 0
if nev > 0 then
  local prev = headHash
  local seq = tonumber(headSeq)
  for e = 1, nev do
    local raw, h = ARGV[a], ARGV[a + 1]
    a = a + 2
    seq = seq + 1
    local s = string.format("%d", seq)
    redis.call("HSET", KEYS[3], s, prev .. "\n" .. h .. "\n" .. raw)
    prev = h
    if e == 1 then first = seq end
    last = seq
  end
  redis.call("SET", KEYS[1], string.format("%d", seq))
  redis.call("SET", KEYS[2], prev)
end
return {"ok", first, last}
`)

// scriptClaimDue: KEYS[1] due index; ARGV now ms, limit (-1: all), hidden-until ms. Returns the claimed ids,
// earliest first.
var scriptClaimDue = goredis.NewScript(`
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
for _, id in ipairs(ids) do redis.call("ZADD", KEYS[1], ARGV[3], id) end
return ids
`)

// luaTakeLock takes the lock at KEYS[1] for holder ARGV[1] for ARGV[2] ms, KEYS[2] being its fence counter,
// and sets f to the lock's fence (as a string); it returns false when another holder owns the lock. The lock
// value is holder|fence; the same holder taking the lock again renews it and keeps its fence.
const luaTakeLock = `
local f
local cur = redis.call("GET", KEYS[1])
if cur then
  local h, held = string.match(cur, "^(.*)|(%d+)$")
  if h ~= ARGV[1] then return false end
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  f = held
else
  f = string.format("%d", redis.call("INCR", KEYS[2]))
  redis.call("SET", KEYS[1], ARGV[1] .. "|" .. f, "PX", ARGV[2])
end
`

// scriptLockAcquire: KEYS[1] lock key, KEYS[2] fence counter; ARGV holder, ttl ms. Returns the fence (as a
// string), or nil when another holder owns the lock.
var scriptLockAcquire = goredis.NewScript(luaTakeLock + `return f`)

// scriptLockAcquireList is scriptLockAcquire that, once the lock is held, also reads a binding's index and
// some of its records. KEYS[1] lock key, KEYS[2] fence counter, KEYS[3] the binding's index, KEYS[4..] the
// record keys to read; ARGV holder, ttl ms, how many index entries to read at most, then per record key the
// version the caller has (its JSON is not sent back while the record is at that version). Returns nil when
// another holder owns the lock, else {fence, {member, score, ...} newest first, {{j or nil, v, x} per record
// key}}.
var scriptLockAcquireList = goredis.NewScript(luaTakeLock + `
local idx = redis.call("ZREVRANGEBYSCORE", KEYS[3], "+inf", "-inf", "WITHSCORES", "LIMIT", 0, ARGV[3])
local recs = {}
for i = 4, #KEYS do
  local r = redis.call("HMGET", KEYS[i], "v", "x")
  if r[1] and r[1] == ARGV[i] then
    recs[#recs + 1] = {false, r[1], r[2]}
  else
    recs[#recs + 1] = redis.call("HMGET", KEYS[i], "j", "v", "x")
  end
end
return {f, idx, recs}
`)

// scriptLockRenew: KEYS[1] lock key; ARGV holder|fence, ttl ms. Returns 1 when renewed, 0 when not held.
var scriptLockRenew = goredis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// scriptLockRelease: KEYS[1] lock key; ARGV holder|fence. Returns 1 when deleted, 0 when not held.
var scriptLockRelease = goredis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
`)
