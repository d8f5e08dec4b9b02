package redis

import goredis "github.com/redis/go-redis/v9"

// luaSHA256 defines sha256(s) -> 64 lowercase hex characters, in Lua 5.1 with Redis's bit library (LuaBitOp).
// Bit operations return signed 32-bit numbers; additions are done on doubles and normalised with bit.tobit,
// which reduces modulo 2^32 exactly for the magnitudes involved (well below 2^51).
const luaSHA256 = `
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, ror, tobit, tohex = bit.rshift, bit.ror, bit.tobit, bit.tohex
local sbyte, schar, srep, floor = string.byte, string.char, string.rep, math.floor
local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
for i = 1, 64 do K[i] = tobit(K[i]) end

local function be32(n)
  return schar(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
end

local function sha256(msg)
  local len = #msg
  local bits = len * 8
  local zeros = (55 - len) % 64
  msg = msg .. "\128" .. srep("\0", zeros) .. be32(floor(bits / 4294967296)) .. be32(bits % 4294967296)
  local h0, h1, h2, h3 = tobit(0x6a09e667), tobit(0xbb67ae85), tobit(0x3c6ef372), tobit(0xa54ff53a)
  local h4, h5, h6, h7 = tobit(0x510e527f), tobit(0x9b05688c), tobit(0x1f83d9ab), tobit(0x5be0cd19)
  local w = {}
  for off = 1, #msg, 64 do
    for j = 1, 16 do
      local p = off + (j - 1) * 4
      local a, b, c, d = sbyte(msg, p, p + 3)
      w[j] = tobit(((a * 256 + b) * 256 + c) * 256 + d)
    end
    for j = 17, 64 do
      local x, y = w[j - 15], w[j - 2]
      local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
      local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
      w[j] = tobit(w[j - 16] + s0 + w[j - 7] + s1)
    end
    local a, b, c, d, e, f, g, h = h0, h1, h2, h3, h4, h5, h6, h7
    for j = 1, 64 do
      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = h + S1 + ch + K[j] + w[j]
      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      local t2 = S0 + maj
      h = g
      g = f
      f = e
      e = tobit(d + t1)
      d = c
      c = b
      b = a
      a = tobit(t1 + t2)
    end
    h0, h1, h2, h3 = tobit(h0 + a), tobit(h1 + b), tobit(h2 + c), tobit(h3 + d)
    h4, h5, h6, h7 = tobit(h4 + e), tobit(h5 + f), tobit(h6 + g), tobit(h7 + h)
  end
  return tohex(h0, 8) .. tohex(h1, 8) .. tohex(h2, 8) .. tohex(h3, 8) ..
    tohex(h4, 8) .. tohex(h5, 8) .. tohex(h6, 8) .. tohex(h7, 8)
end
`

// scriptSHA256 exists for tests: it returns sha256(ARGV[1]) computed by the same Lua code the commit script
// uses.
var scriptSHA256 = goredis.NewScript(luaSHA256 + `
return sha256(ARGV[1])
`)

// scriptCommit applies a store.Batch atomically.
//
// KEYS: [1] audit seq counter, [2] audit head hash, [3] audit log hash; then, per put, the record key, the
// index keys the record occupies now (as recorded in its x field) and the index keys it will occupy.
// ARGV: [1] number of puts, [2] number of audit events; then, per put: id, expected version ("0": must not
// exist), expected x, new version, new json, new x, number of old index keys, number of new index keys, and
// one score per new index key; then the raw JSON of each audit event followed by its store.ContentDigest.
//
// Every check runs before any write, so a conflict leaves nothing written. Returns {"ok", firstSeq, lastSeq}
// or {"conflict", put index}.
var scriptCommit = goredis.NewScript(luaSHA256 + `
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
  local prev = redis.call("GET", KEYS[2])
  if not prev then prev = "0000000000000000000000000000000000000000000000000000000000000000" end
  for e = 1, nev do
    local raw, digest = ARGV[a], ARGV[a + 1]
    a = a + 2
    local seq = redis.call("INCR", KEYS[1])
    local s = string.format("%d", seq)
    -- The content digest is computed by the client (store.ContentDigest); hashing only the short link here
    -- keeps the script's time in Redis small. A wrong digest is caught by store.VerifyChain.
    local h = sha256(prev .. "\n" .. s .. "\n" .. digest)
    redis.call("HSET", KEYS[3], s, prev .. "\n" .. h .. "\n" .. raw)
    prev = h
    if e == 1 then first = seq end
    last = seq
  end
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

// scriptLockAcquire: KEYS[1] lock key, KEYS[2] fence counter; ARGV holder, ttl ms. The lock value is
// holder|fence. Returns the fence (as a string), or nil when another holder owns the lock.
var scriptLockAcquire = goredis.NewScript(`
local cur = redis.call("GET", KEYS[1])
if cur then
  local h, f = string.match(cur, "^(.*)|(%d+)$")
  if h == ARGV[1] then
    redis.call("PEXPIRE", KEYS[1], ARGV[2])
    return f
  end
  return false
end
local f = string.format("%d", redis.call("INCR", KEYS[2]))
redis.call("SET", KEYS[1], ARGV[1] .. "|" .. f, "PX", ARGV[2])
return f
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
