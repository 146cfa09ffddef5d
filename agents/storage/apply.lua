-- Applies a batch of settled fill revisions atomically and idempotently (SPEC 7).
--
-- ARGV[1]: the rules version the batch was computed with. If the rules moved since, nothing is
--          applied and {"stale_rules", version} is returned: the worker refolds and recomputes.
-- ARGV[2..]: one JSON item per fill revision:
--   a  account key        av expected account version (compare-and-set)   as new state JSON
--   d  deal key           r  revision    sr expected standing revision ("" = none)
--   ns new standing JSON ("" = nothing stands)   nsr its revision
--   q  the fill's seq as a decimal string without leading zeros ("" = none); not above the
--      deal's stored seq: "stale". Compared as digit strings (longer is larger), so a seq
--      beyond 2^53 stays exact, where Lua's numbers (doubles) would round it.
--   o  output JSON (credits + events) stored under rev:<r>, returned again on re-delivery
--   w  [[reward key, cents], ...]
--   s  [[settle key, ib, cents, count delta, slot, payable epoch], ...] (IB commission credits)
--   l  [[tier lots key, ib, 10^-10 lots as a decimal string, slot, payable epoch], ...]
--      (a tiered IB's direct earning fill; negative when reversed)
--   j  journal entry JSON (the fill's bytes, outcome, reasons: SPEC 4.3 [r2]), stored under
--      j:<n>, n the deal's next order number (field n); `explain --live` reads them in order
--   x  [login deals key, "server:deal", close_time epoch]: the login's deal index (ZSET);
--      [r2, late re-settlement] optionally then [settled key, floor epoch]: the same member in
--      the login's bounded index of settled deals, trimmed below the floor (keys.LOGIN_SETTLED)
--   p  present for a fill whose login is not attributed yet (SPEC 4.2 r2): it is parked
--      instead, {k: the login's park ZSET, a: the global one, q: the park counter, l: login,
--      s: the SET of logins with parked fills,
--      m: the fill as received, c: close_time, t: now (epoch seconds as strings)}; its journal
--      entry rev:<r> says "parked", so a redelivery parks nothing twice, and the settlement
--      of it once its account has arrived (an item without p) is not taken for a duplicate.
--      A parked fill gets its j:<n> entry and deal index when it is settled.
-- Every revision the worker settles comes here, earning or not (SPEC 7 [r2]): a redelivery
-- must find itself under rev:<r>, never be settled again against a later revision's standing.
-- A duplicate or stale message only counts itself in the deal's `dups` / `stales` fields.
-- Returns {rules_version, status_1, payload_1, status_2, payload_2, ...} with status
--   "ok" (payload: new account version), "dup" (payload: the stored output), "stale" (a seq
--   not above the deal's: nothing applied), "parked" (now or before) or "conflict" (state
--   moved under us: the worker reloads and recomputes that item); "parked" has payload "again"
--   when it was parked before (a duplicate).
--
-- Keys are computed from ARGV, so this script is for a single Redis (not Redis Cluster).
local version = redis.call('GET', KEYS[1]) or '0'
if version ~= ARGV[1] then
  return {'stale_rules', version}
end
local function above(a, b)
  return #a > #b or (#a == #b and a > b)
end
local PARKED = 'parked'
local function park(it)
  local member = string.format('%012d', redis.call('INCR', it.p.q)) .. '|' .. it.p.m
  redis.call('ZADD', it.p.k, it.p.c, member)
  redis.call('ZADD', it.p.a, it.p.t, it.p.l .. '|' .. member)
  redis.call('SADD', it.p.s, it.p.l)
  redis.call('HSET', it.d, 'rev:' .. it.r, PARKED)
end
local out = {version}
-- Once an account or deal was not applied as the worker assumed, its later items in this
-- batch were computed on a false premise: they must not apply even if a version matches.
local broken = {}
for i = 2, #ARGV do
  local it = cjson.decode(ARGV[i])
  local stored = redis.call('HGET', it.d, 'rev:' .. it.r)
  if stored == PARKED and not it.p then
    stored = false  -- parked, and attributed now: settled (unparked once its credits are out)
  end
  local current = it.q ~= '' and redis.call('HGET', it.d, 'seq')
  local stale = current and not stored and not above(it.q, current)
  if it.p and (not stored or stored == PARKED) then
    out[#out + 1] = PARKED
    out[#out + 1] = stored and 'again' or ''  -- again: a redelivery, parked before
    if stored then
      redis.call('HINCRBY', it.d, 'dups', 1)
    else
      park(it)
    end
  elseif stored or stale then
    -- Recorded as a count per deal (SPEC 4.3 [r2]: duplicate and stale are reasons too):
    -- bounded however often a crash makes Kafka redeliver, unlike a journal entry each.
    redis.call('HINCRBY', it.d, stored and 'dups' or 'stales', 1)
    broken[it.a] = true
    broken[it.d] = true
    out[#out + 1] = stored and 'dup' or 'stale'
    out[#out + 1] = stored or ''
  else
    local av = tonumber(redis.call('HGET', it.a, 'v') or '0')
    local sr = redis.call('HGET', it.d, 'srev') or ''
    if broken[it.a] or broken[it.d] or av ~= it.av or sr ~= it.sr then
      broken[it.a] = true
      broken[it.d] = true
      out[#out + 1] = 'conflict'
      out[#out + 1] = ''
    else
      redis.call('HSET', it.a, 'v', av + 1, 's', it.as)
      redis.call('HSET', it.d, 'rev:' .. it.r, it.o)
      redis.call('HSET', it.d, 'j:' .. redis.call('HINCRBY', it.d, 'n', 1), it.j)
      redis.call('ZADD', it.x[1], it.x[3], it.x[2])
      if it.x[4] then
        redis.call('ZADD', it.x[4], it.x[3], it.x[2])
        redis.call('ZREMRANGEBYSCORE', it.x[4], '-inf', '(' .. it.x[5])
      end
      if it.q ~= '' then
        redis.call('HSET', it.d, 'seq', it.q)
      end
      if it.ns == '' then
        redis.call('HDEL', it.d, 'srev', 'standing')
      else
        redis.call('HSET', it.d, 'srev', it.nsr, 'standing', it.ns)
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
      out[#out + 1] = 'ok'
      out[#out + 1] = tostring(av + 1)
    end
  end
end
return out
