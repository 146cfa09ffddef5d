-- Appends one back-office event's change to the rules log, once per event id (SPEC 3 r2).
--
-- KEYS: rules version, rules log, set of applied event ids.
-- ARGV[1]: the rules version the change was checked against; ARGV[2]: the event id;
-- ARGV[3]: the change JSON.
-- Returns {"dup", version} when the event was applied before (nothing changes),
-- {"stale_rules", version} when the rules moved since the check (the worker checks again),
-- else {"ok", new version}: the change, the version bump and the event id are one write.
local version = redis.call('GET', KEYS[1]) or '0'
if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then
  return {'dup', version}
end
if version ~= ARGV[1] then
  return {'stale_rules', version}
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
return {'ok', tostring(redis.call('INCR', KEYS[1]))}
