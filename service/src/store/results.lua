-- One page of a ranking in one round trip (read-only; see ../store.rs for the key schema).
--
-- KEYS[1]: the rank set, KEYS[2]: the hash bib -> row fields JSON. ARGV: offset, limit, UNTIMED.
-- Returns {total, better, bib_1, score_1, json_1, bib_2, score_2, json_2, ...}: `total` is the
-- number of competitors in the ranking, `better` the number of scores strictly below the first
-- row's (its rank - 1), or -1 when the first row is unranked or the page empty. Four commands
-- whatever the page size: the rows' records come from one HMGET.

local key, rows = KEYS[1], KEYS[2]
local offset, limit, untimed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

local out = { redis.call('ZCARD', key), -1 }
local page = redis.call('ZRANGE', key, offset, offset + limit - 1, 'WITHSCORES')
if #page == 0 then return out end
if tonumber(page[2]) < untimed then
  out[2] = redis.call('ZCOUNT', key, '-inf', '(' .. page[2])
end
local bibs = {}
for i = 1, #page, 2 do bibs[#bibs + 1] = page[i] end
local records = redis.call('HMGET', rows, unpack(bibs))
for i = 1, #bibs do
  out[#out + 1] = bibs[i]
  out[#out + 1] = page[2 * i]
  out[#out + 1] = records[i]
end
return out
