-- One page of a ranking, read in one atomic step (crate::store::results): no write can land
-- between its reads, so the total, the rows, their ranks and their fields are one snapshot.
--
-- KEYS[1] rank set of the scope at the checkpoint (net or gun), KEYS[2] the scope's untimed
-- set, KEYS[3] the results-row hash, KEYS[4] the start-lag hash. ARGV: offset, limit, OUT,
-- UNTIMED (the score bounds).
-- Returns {total, better, page, rows, lags}: `better` = members of the rank set scoring below
-- the page's first row (its rank - 1, when it is timed), `page` = flat bib, score pairs in
-- ranking order (untimed rows get the UNTIMED score), `rows` and `lags` = their row JSON and
-- start lag (nil if none).
--
-- The ranking is the rank set below OUT (timed rows, then rows with some time but none at
-- this checkpoint), then the untimed set, then the rank set from OUT on (DNF, DSQ, DNS).
local key, untimed, rows_key, lags_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local offset, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local out_score, untimed_score = ARGV[3], ARGV[4]

local ranked = redis.call('ZCARD', key)
local in_race = redis.call('ZCOUNT', key, '-inf', '(' .. out_score)
local untimed_count = redis.call('ZCARD', untimed)
local total = ranked + untimed_count
local stop = math.min(offset + limit, total)

local page = {}
local function append(list)
  for _, v in ipairs(list) do page[#page + 1] = v end
end
-- The rank set's rows below OUT: positions 0 .. in_race.
local timed_stop = math.min(stop, in_race)
if offset < timed_stop then
  append(redis.call('ZRANGE', key, offset, timed_stop - 1, 'WITHSCORES'))
end
-- The untimed set: positions in_race .. in_race + untimed_count.
local u_from = math.max(offset, in_race) - in_race
local u_to = math.min(stop, in_race + untimed_count) - in_race
if u_from < u_to then
  for _, bib in ipairs(redis.call('ZRANGE', untimed, u_from, u_to - 1)) do
    page[#page + 1] = bib
    page[#page + 1] = untimed_score
  end
end
-- The rank set from OUT on: positions in_race + untimed_count .. total.
local o_from = math.max(offset, in_race + untimed_count) - untimed_count
local o_to = stop - untimed_count
if o_from < o_to then
  append(redis.call('ZRANGE', key, o_from, o_to - 1, 'WITHSCORES'))
end

if #page == 0 then
  return {total, 0, {}, {}, {}}
end
local better = 0
if tonumber(page[2]) < tonumber(untimed_score) then
  better = redis.call('ZCOUNT', key, '-inf', '(' .. page[2])
end
local bibs = {}
for i = 1, #page, 2 do bibs[#bibs + 1] = page[i] end
return {total, better, page, redis.call('HMGET', rows_key, unpack(bibs)),
  redis.call('HMGET', lags_key, unpack(bibs))}
