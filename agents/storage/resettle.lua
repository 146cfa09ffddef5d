-- Applies one login's late re-settlement (engine/late.py) atomically: all of it or nothing.
--
-- KEYS[1]: rules version; KEYS[2]: SETTLE_DIRTY; KEYS[3]: the job's done HASH; KEYS[4]: the
-- login's account HASH.
-- ARGV[1]: the rules version it was computed with; ARGV[2]: the login (field of the done
-- HASH); ARGV[3]: expected account version; ARGV[4]: the account's new state JSON; ARGV[5]: the
-- outputs emitted (JSON list), kept in the done HASH until the job is removed;
-- ARGV[6..]: one JSON item per re-settled deal:
--   d  deal key     sr expected standing revision ("" = none)   r  the new revision
--   o  output JSON  ns new standing JSON ("" = nothing stands)  j  journal entry JSON
--   w, s, l  reward, payout-slot and tier-lots increments as in apply.lua
-- The deal's seq is left as it is: the bridge's revisions still compare against it.
-- Returns {"dup", outputs} when this job re-settled the login before (a rerun after a crash:
-- publish the same outputs again), {"stale_rules", version}, {"conflict", ""} when the account
-- or a deal moved since they were loaded (reload and recompute), else {"ok", new version}.
local done = redis.call('HGET', KEYS[3], ARGV[2])
if done then
  return {'dup', done}
end
local version = redis.call('GET', KEYS[1]) or '0'
if version ~= ARGV[1] then
  return {'stale_rules', version}
end
local av = tonumber(redis.call('HGET', KEYS[4], 'v') or '0')
if av ~= tonumber(ARGV[3]) then
  return {'conflict', ''}
end
local items = {}
for i = 6, #ARGV do
  local it = cjson.decode(ARGV[i])
  if (redis.call('HGET', it.d, 'srev') or '') ~= it.sr then
    return {'conflict', ''}
  end
  items[#items + 1] = it
end
redis.call('HSET', KEYS[4], 'v', av + 1, 's', ARGV[4])
for _, it in ipairs(items) do
  redis.call('HSET', it.d, 'rev:' .. it.r, it.o)
  redis.call('HSET', it.d, 'j:' .. redis.call('HINCRBY', it.d, 'n', 1), it.j)
  if it.ns == '' then
    redis.call('HDEL', it.d, 'srev', 'standing')
  else
    redis.call('HSET', it.d, 'srev', it.r, 'standing', it.ns)
  end
  for _, w in ipairs(it.w) do
    redis.call('INCRBY', w[1], w[2])
  end
  for _, s in ipairs(it.s) do
    redis.call('HINCRBY', s[1], s[2] .. '|c', s[3])
    redis.call('HINCRBY', s[1], s[2] .. '|n', s[4])
    redis.call('ZADD', KEYS[2], s[6], s[5])
  end
  for _, l in ipairs(it.l) do
    redis.call('HINCRBY', l[1], l[2], l[3])
    redis.call('ZADD', KEYS[2], l[5], l[4])
  end
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
return {'ok', tostring(av + 1)}
