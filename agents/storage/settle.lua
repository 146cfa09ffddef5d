-- Hourly IB settlement (SPEC 6): settles closed hours into an outbox and claims what is due.
--
-- KEYS[1] dirty hours ZSET (hour label -> hour start epoch; apply.lua adds to it)
-- KEYS[2] outbox ZSET (settlement record JSON -> lease expiry epoch; 0 = due now)
-- KEYS[3 + 2(i-1)], KEYS[4 + 2(i-1)]: totals HASH and emitted HASH of the i-th hour
-- ARGV[1] cutoff: an hour whose start epoch is at or before it is closed (end + grace <= now)
-- ARGV[2] now (epoch seconds)   ARGV[3] lease expiry for what this call claims
-- ARGV[4] most outbox records to claim    ARGV[5 ..] the hour labels, in KEYS order
--
-- Per closed hour still dirty, for each IB of its totals (<ib>|c cents, <ib>|n count):
--   never emitted and non-zero   -> record [ib, hour, 0, c, n]          (ib_settlement)
--   emitted and totals moved     -> record [ib, hour, seq, dc, dn]      (adjustment seq)
-- The emitted HASH (<ib>|c, <ib>|n, <ib>|seq) then holds the totals, the records go into the
-- outbox and the hour leaves the dirty set; all in this one call, so two workers flushing at
-- once settle an hour once. An hour another call already settled is no longer dirty: skipped.
-- Late credits make the hour dirty again (apply.lua), and the next call emits the difference.
--
-- Then every outbox record due (lease <= now) is leased until ARGV[3] and returned: the
-- caller publishes them and removes them (ZREM) once the broker acknowledged. A worker that
-- dies holding a lease loses nothing: the records are due again when the lease ends (same
-- settlement ids, so a consumer can dedupe).
-- Returns the claimed records (JSON arrays [ib, hour, seq, cents, count], numbers as strings).
local cutoff = tonumber(ARGV[1])
local function num(v)
  return tonumber(v or '0')
end
for i = 5, #ARGV do
  local hour = ARGV[i]
  local totals_key = KEYS[3 + 2 * (i - 5)]
  local emitted_key = KEYS[4 + 2 * (i - 5)]
  local score = redis.call('ZSCORE', KEYS[1], hour)
  if score and tonumber(score) <= cutoff then
    local flat = redis.call('HGETALL', totals_key)
    local totals = {}
    for j = 1, #flat, 2 do
      totals[flat[j]] = flat[j + 1]
    end
    flat = redis.call('HGETALL', emitted_key)
    local emitted = {}
    for j = 1, #flat, 2 do
      emitted[flat[j]] = flat[j + 1]
    end
    for field, value in pairs(totals) do
      if string.sub(field, -2) == '|c' then
        local ib = string.sub(field, 1, -3)
        local c, n = num(value), num(totals[ib .. '|n'])
        local seq, dc, dn
        if emitted[ib .. '|c'] == nil then
          seq, dc, dn = 0, c, n
        else
          seq = num(emitted[ib .. '|seq']) + 1
          dc, dn = c - num(emitted[ib .. '|c']), n - num(emitted[ib .. '|n'])
        end
        if dc ~= 0 or dn ~= 0 then
          redis.call('HSET', emitted_key, ib .. '|c', string.format('%d', c),
            ib .. '|n', string.format('%d', n), ib .. '|seq', seq)
          local record = cjson.encode({ib, hour, string.format('%d', seq),
            string.format('%d', dc), string.format('%d', dn)})
          redis.call('ZADD', KEYS[2], 0, record)
        end
      end
    end
    redis.call('ZREM', KEYS[1], hour)
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
for _, record in ipairs(due) do
  redis.call('ZADD', KEYS[2], 'XX', ARGV[3], record)
end
return due
