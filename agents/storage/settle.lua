-- IB settlement per payout slot (SPEC 6): settles payable slots into an outbox, claims what
-- is due. A slot is an IB payout period with its hold (engine/settlement.py `slot_label`).
--
-- KEYS[1] dirty slots ZSET (slot label -> payable epoch: period end + hold; apply.lua adds)
-- KEYS[2] outbox ZSET (record JSON -> lease expiry epoch; 0 = due now)
-- KEYS[3 + 3(i-1)], KEYS[4 + 3(i-1)], KEYS[5 + 3(i-1)]: totals HASH, emitted HASH and tier
--   lots HASH of the i-th slot
-- ARGV[1] cutoff: a slot scored at or before it is payable (payable + grace <= now)
-- ARGV[2] now (epoch seconds)   ARGV[3] lease expiry for what this call claims
-- ARGV[4] most outbox records to claim   ARGV[5] n, the number of slots
-- ARGV[6 .. 5 + n] the slot labels, in KEYS order
-- ARGV[6 + n ..] tier bonuses the caller computed from the lots it read, four per IB:
--   slot index (1..n), ib, lots (as read from the tier lots HASH), bonus cents at those lots
--
-- Per payable slot still dirty, for each IB of its totals (<ib>|c cents, <ib>|n count):
--   never emitted and non-zero   -> record [ib, slot, 0, c, n]          (ib_settlement)
--   emitted and totals moved     -> record [ib, slot, seq, dc, dn]      (adjustment seq)
-- and for each IB of its tier lots, when the lots are still those the caller read:
--   no bonus emitted and bonus non-zero -> [ib, slot, 0, bonus, 0, lots, "tier_bonus"]
--   emitted and the bonus moved         -> [ib, slot, seq, bonus - emitted, emitted, lots,
--                                           "tier_bonus"]   (tier bonus adjustment seq)
-- The emitted HASH then holds what was reported, the records go into the outbox and the slot
-- leaves the dirty set; all in this one call, so two workers flushing at once settle a slot
-- once. Lots that moved since the caller read them (a fill applied in between) keep the slot
-- dirty: the next call computes that IB's bonus again. Late credits make a slot dirty again
-- (apply.lua), and the next call emits the difference.
--
-- Then every outbox record due (lease <= now) is leased until ARGV[3] and returned: the
-- caller publishes them and removes them (ZREM) once the broker acknowledged. A worker that
-- dies holding a lease loses nothing: the records are due again when the lease ends (same
-- ids, so a consumer can dedupe). Numbers in records are strings.
local cutoff = tonumber(ARGV[1])
local n = tonumber(ARGV[5])
local function num(v)
  return tonumber(v or '0')
end
local function hash(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for j = 1, #flat, 2 do
    t[flat[j]] = flat[j + 1]
  end
  return t
end
local function cents(v)
  return string.format('%d', v)
end
local bonuses = {}
for j = 6 + n, #ARGV, 4 do
  local i = tonumber(ARGV[j])
  bonuses[i] = bonuses[i] or {}
  bonuses[i][ARGV[j + 1]] = {ARGV[j + 2], num(ARGV[j + 3])}
end
for i = 1, n do
  local slot = ARGV[5 + i]
  local totals_key = KEYS[3 + 3 * (i - 1)]
  local emitted_key = KEYS[4 + 3 * (i - 1)]
  local lots_key = KEYS[5 + 3 * (i - 1)]
  local score = redis.call('ZSCORE', KEYS[1], slot)
  if score and tonumber(score) <= cutoff then
    local totals = hash(totals_key)
    local emitted = hash(emitted_key)
    for field, value in pairs(totals) do
      if string.sub(field, -2) == '|c' then
        local ib = string.sub(field, 1, -3)
        local c, cnt = num(value), num(totals[ib .. '|n'])
        local seq, dc, dn
        if emitted[ib .. '|c'] == nil then
          seq, dc, dn = 0, c, cnt
        else
          seq = num(emitted[ib .. '|seq']) + 1
          dc, dn = c - num(emitted[ib .. '|c']), cnt - num(emitted[ib .. '|n'])
        end
        if dc ~= 0 or dn ~= 0 then
          redis.call('HSET', emitted_key, ib .. '|c', cents(c), ib .. '|n', cents(cnt),
            ib .. '|seq', seq)
          redis.call('ZADD', KEYS[2], 0,
            cjson.encode({ib, slot, cents(seq), cents(dc), cents(dn)}))
        end
      end
    end
    local settled = true
    local given = bonuses[i] or {}
    for ib, lots in pairs(hash(lots_key)) do
      local bonus = given[ib]
      if bonus == nil or bonus[1] ~= lots then
        settled = false
      else
        local before = emitted[ib .. '|tb']
        local seq
        if before == nil then
          seq = bonus[2] ~= 0 and 0 or nil
        elseif num(before) ~= bonus[2] then
          seq = num(emitted[ib .. '|tbseq']) + 1
        end
        if seq ~= nil then
          redis.call('HSET', emitted_key, ib .. '|tb', cents(bonus[2]), ib .. '|tbseq', seq)
          redis.call('ZADD', KEYS[2], 0, cjson.encode({ib, slot, cents(seq),
            cents(bonus[2] - num(before)), cents(num(before)), lots, 'tier_bonus'}))
        end
      end
    end
    if settled then
      redis.call('ZREM', KEYS[1], slot)
    end
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
for _, record in ipairs(due) do
  redis.call('ZADD', KEYS[2], 'XX', ARGV[3], record)
end
return due
