-- Every write of the timing service (see ../store.rs for the key schema). A script runs
-- atomically in Redis, so a competitor's record, times, status and ranking entries always
-- change together: a results page never sees a time without its ranking score.
--
-- ARGV: op, bib, n, checkpoint_1 .. checkpoint_n, then the op's arguments:
--   put    mode ('create' | 'replace' | 'upsert' | 'patch'), order_score, field, value, ...
--   times  checkpoint, ms_or_empty, ...   (an empty value clears the checkpoint)
--   status DNS | DNF | DSQ | ''           (empty clears the status)
--   delete (none)
-- Returns 'ok', 'missing' (no such competitor) or 'exists' (create on a taken bib).
--
-- Keys are built here from the bib rather than passed in KEYS: the service uses a standalone
-- Redis, not a cluster.

local op, bib, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local cps = {}
for i = 1, n do cps[i] = ARGV[3 + i] end
local a = 4 + n -- index of the op's first argument

local ckey = 'competitor:' .. bib
local tkey = 'race:' .. bib
local STATUS = 'competitor_status'
local ROWS = 'competitor_rows'   -- bib -> JSON of the results-row fields, read by Store::results
-- The competitor fields of a results row (routes/results.rs writes the row around them).
local ROW_FIELDS = { 'first_name', 'last_name', 'gender', 'category', 'country' }
local DAY = 86400000
local UNTIMED = 1000000000000      -- score of a competitor without a time at the checkpoint
local OUT = 2000000000000          -- base score of a competitor with a status
local STATUS_ORDER = { DNF = 1, DSQ = 2, DNS = 3 }

-- The sorted sets a competitor of gender g, category c and country co belongs to:
-- rank sets per checkpoint after the start ({checkpoint index, key}) and listing sets.
local function sets(g, c, co)
  local rank = {}
  for i = 2, n do
    local p = 'rank:' .. cps[i] .. ':'
    rank[#rank + 1] = { i, p .. 'all' }
    if g then rank[#rank + 1] = { i, p .. 'gender:' .. g } end
    if c then rank[#rank + 1] = { i, p .. 'category:' .. c } end
  end
  local list = { 'competitors:all' }
  if g then list[#list + 1] = 'competitors:gender:' .. g end
  if c then list[#list + 1] = 'competitors:category:' .. c end
  if co then list[#list + 1] = 'competitors:country:' .. co end
  return rank, list
end

local function unindex(g, c, co)
  local rank, list = sets(g, c, co)
  for _, e in ipairs(rank) do redis.call('ZREM', e[2], bib) end
  for _, k in ipairs(list) do redis.call('ZREM', k, bib) end
end

-- Writes the competitor's score in the rank sets: elapsed ms from their own start when
-- both times are known, UNTIMED otherwise, OUT + order when they have a status. `only`, when
-- given, limits the work to those checkpoint indexes (a time changed there, not the start).
-- The listing sets are written only when `order` is given (the record changed).
local function index(g, c, co, order, only)
  local rank, list = sets(g, c, co)
  local status = redis.call('HGET', STATUS, bib)
  local start = redis.call('ZSCORE', tkey, cps[1])
  local scores = {}
  for i = 2, n do
    if only and not only[i] then
      -- unchanged
    elseif status then
      scores[i] = OUT + (STATUS_ORDER[status] or 9)
    else
      local t = redis.call('ZSCORE', tkey, cps[i])
      if start and t then
        local d = tonumber(t) - tonumber(start)
        if d < 0 then d = d % DAY end -- crossed midnight
        scores[i] = d
      else
        scores[i] = UNTIMED
      end
    end
  end
  for _, e in ipairs(rank) do
    if scores[e[1]] then redis.call('ZADD', e[2], scores[e[1]], bib) end
  end
  if order then
    for _, k in ipairs(list) do redis.call('ZADD', k, order, bib) end
  end
end

local function current()
  local v = redis.call('HMGET', ckey, 'gender', 'category', 'country')
  return v[1], v[2], v[3]
end

local exists = redis.call('EXISTS', ckey) == 1

if op == 'put' then
  local mode, order = ARGV[a], ARGV[a + 1]
  if mode == 'create' and exists then return 'exists' end
  if (mode == 'replace' or mode == 'patch') and not exists then return 'missing' end
  if exists then unindex(current()) end
  if mode ~= 'patch' then redis.call('DEL', ckey) end
  if #ARGV >= a + 3 then redis.call('HSET', ckey, unpack(ARGV, a + 2)) end
  local values, row = redis.call('HMGET', ckey, unpack(ROW_FIELDS)), {}
  for i, f in ipairs(ROW_FIELDS) do row[f] = values[i] or cjson.null end
  redis.call('HSET', ROWS, bib, cjson.encode(row))
  local g, c, co = current()
  index(g, c, co, order)
  return 'ok'
end

if not exists then return 'missing' end
local g, c, co = current()
local only = nil
if op == 'delete' then
  unindex(g, c, co)
  redis.call('DEL', ckey, tkey)
  redis.call('HDEL', STATUS, bib)
  redis.call('HDEL', ROWS, bib)
  return 'ok'
elseif op == 'times' then
  local position = {}
  for i = 1, n do position[cps[i]] = i end
  only = {}
  for i = a, #ARGV, 2 do
    local p = position[ARGV[i]]
    if p == 1 then only = nil elseif only and p then only[p] = true end
    if ARGV[i + 1] == '' then
      redis.call('ZREM', tkey, ARGV[i])
    else
      redis.call('ZADD', tkey, ARGV[i + 1], ARGV[i])
    end
  end
elseif op == 'status' then
  if ARGV[a] == '' then
    redis.call('HDEL', STATUS, bib)
  else
    redis.call('HSET', STATUS, bib, ARGV[a])
  end
else
  return redis.error_reply('unknown op ' .. op)
end
index(g, c, co, nil, only)
return 'ok'
