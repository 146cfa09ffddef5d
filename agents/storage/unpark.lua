-- Takes fills out of the park (SPEC 4.2 r2) once what they led to is published.
--
-- KEYS[1]: the global park ZSET; KEYS[2]: the SET of logins with parked fills. ARGV[1]: "settled" (their account arrived and their credits
-- are out) or "dead" (park_hours ran out and their dead letters are out). ARGV[2..]: one JSON
-- entry per fill: {k: the login's park ZSET, m: its member there, l: its global member,
-- d: deal key, r: revision, n: login}.
-- A "settled" fill whose journal still says "parked" was parked again (the rules changed
-- between the check and the settlement): it stays. A "dead" one leaves the journal too, so
-- that the fill re-published after its account is added is settled like a new one.
-- Returns how many fills left the park.
local removed = 0
for i = 2, #ARGV do
  local e = cjson.decode(ARGV[i])
  local parked = redis.call('HGET', e.d, 'rev:' .. e.r) == 'parked'
  if ARGV[1] == 'dead' or not parked then
    if parked then
      redis.call('HDEL', e.d, 'rev:' .. e.r)
    end
    removed = removed + redis.call('ZREM', e.k, e.m)
    redis.call('ZREM', KEYS[1], e.l)
    if redis.call('EXISTS', e.k) == 0 then
      redis.call('SREM', KEYS[2], e.n)
    end
  end
end
return removed
