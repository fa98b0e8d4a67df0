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

-- Writes the competitor's score in every rank set: elapsed ms from their own start when
-- both times are known, UNTIMED otherwise, OUT + order when they have a status. The
-- listing sets are written only when `order` is given (the record changed).
local function index(g, c, co, order)
  local rank, list = sets(g, c, co)
  local status = redis.call('HGET', STATUS, bib)
  local start = redis.call('ZSCORE', tkey, cps[1])
  local scores = {}
  for i = 2, n do
    if status then
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
  for _, e in ipairs(rank) do redis.call('ZADD', e[2], scores[e[1]], bib) end
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
  for i = a + 2, #ARGV, 2 do redis.call('HSET', ckey, ARGV[i], ARGV[i + 1]) end
  local g, c, co = current()
  index(g, c, co, order)
  return 'ok'
end

if not exists then return 'missing' end
local g, c, co = current()
if op == 'delete' then
  unindex(g, c, co)
  redis.call('DEL', ckey, tkey)
  redis.call('HDEL', STATUS, bib)
  return 'ok'
elseif op == 'times' then
  for i = a, #ARGV, 2 do
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
index(g, c, co, nil)
return 'ok'
