-- Applies one decided wallet command (allocate_jm / grant_bonus) atomically and idempotently.
--
-- KEYS[1] rules version        KEYS[2] request key (the stored answer)
-- KEYS[3] account HASH (v = version, s = state JSON, as apply.lua)
-- KEYS[4] reward wallet (cents), only when the decision read it
-- ARGV[1] rules version the decision was made with ("" = it read no rules)
-- ARGV[2] the answer (wallet-event JSON): stored under KEYS[2] and returned
-- ARGV[3] expected account version (compare-and-set)
-- ARGV[4] new account state JSON ("" = the account is not changed, e.g. a rejection)
-- ARGV[5] expected reward balance in cents (compare-and-set; only read with KEYS[4])
-- ARGV[6] reward delta in cents (DECRBY for an accepted allocation is a negative delta)
-- Returns {status, payload}:
--   "dup"         the request was answered before: payload is that answer, nothing changes
--   "stale_rules" the rules moved since the decision: payload is the version; nothing changes
--   "conflict"    the account or reward balance moved: re-read and decide again
--   "ok"          applied: payload is the answer
-- A rejection is checked too: it was decided on a snapshot, so it is only final if that
-- snapshot is still what Redis holds.
local stored = redis.call('GET', KEYS[2])
if stored then
  return {'dup', stored}
end
if ARGV[1] ~= '' then
  local version = redis.call('GET', KEYS[1]) or '0'
  if version ~= ARGV[1] then
    return {'stale_rules', version}
  end
end
local av = tonumber(redis.call('HGET', KEYS[3], 'v') or '0')
if av ~= tonumber(ARGV[3]) then
  return {'conflict', ''}
end
if KEYS[4] then
  local balance = tonumber(redis.call('GET', KEYS[4]) or '0')
  if balance ~= tonumber(ARGV[5]) then
    return {'conflict', ''}
  end
  local delta = tonumber(ARGV[6])
  if delta ~= 0 then
    redis.call('INCRBY', KEYS[4], delta)
  end
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], 'v', av + 1, 's', ARGV[4])
end
redis.call('SET', KEYS[2], ARGV[2])
return {'ok', ARGV[2]}
