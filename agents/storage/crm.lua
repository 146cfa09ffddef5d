-- Appends one back-office event's change to the rules log, once per event id (SPEC 3 r2).
--
-- KEYS: rules version, rules log, ZSET of applied event ids, re-settlement jobs (LIST).
-- ARGV[1]: the rules version the change was checked against; ARGV[2]: the event id;
-- ARGV[3]: the change JSON; ARGV[4]: the id's score (epoch seconds: the later of now and the
-- event's `at`); ARGV[5]: now - correction window (ids scored below are forgotten: keys.py
-- CRM_SEEN says why that is safe); ARGV[6]: the re-settlement job JSON (agents/late.py), ""
-- when the change touches no login.
-- Returns {"dup", version} when the event was applied before (nothing changes),
-- {"stale_rules", version} when the rules moved since the check (the worker checks again),
-- else {"ok", new version}: the change, the version bump, the event id and the job are one
-- write, so a crash never loses the re-settlement of a change that is in the log.
if redis.call('TYPE', KEYS[3]).ok == 'set' then
  -- Written by an engine before the window bounded it: keep the ids, scored as of now.
  local ids = redis.call('SMEMBERS', KEYS[3])
  redis.call('DEL', KEYS[3])
  for _, id in ipairs(ids) do
    redis.call('ZADD', KEYS[3], ARGV[4], id)
  end
end
local version = redis.call('GET', KEYS[1]) or '0'
if redis.call('ZSCORE', KEYS[3], ARGV[2]) then
  return {'dup', version}
end
if version ~= ARGV[1] then
  return {'stale_rules', version}
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[5])
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[4], ARGV[6])
end
return {'ok', tostring(redis.call('INCR', KEYS[1]))}
