-- One page of a ranking in one round trip (read-only; see ../store.rs for the key schema).
--
-- KEYS[1]: the rank set. ARGV: offset, limit, UNTIMED score, competitor field names...
-- Returns {total, better, bib_1, score_1, field values of bib_1..., bib_2, score_2, ...}:
-- `total` is the number of competitors in the ranking, `better` the number of scores strictly
-- below the first row's (its rank - 1), or -1 when the first row is unranked or the page empty.

local key = KEYS[1]
local offset, limit, untimed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end

local out = { redis.call('ZCARD', key), -1 }
local page = redis.call('ZRANGE', key, offset, offset + limit - 1, 'WITHSCORES')
if #page > 0 and tonumber(page[2]) < untimed then
  out[2] = redis.call('ZCOUNT', key, '-inf', '(' .. page[2])
end
for i = 1, #page, 2 do
  out[#out + 1] = page[i]
  out[#out + 1] = page[i + 1]
  local values = redis.call('HMGET', 'competitor:' .. page[i], unpack(fields))
  for j = 1, #fields do out[#out + 1] = values[j] end
end
return out
