-- The write script before issue 11 (service/src/store/mutate.lua at commit 52b7245), with
-- the key table the store generated for it, kept for bench/service.sh to measure its Redis
-- time per create beside the Redis Functions library that replaced it. Not used by the service.
local K = {
  competitor = 'competitor:',
  times = 'race:',
  status = 'competitor_status',
  rows = 'competitor_rows',
  rank = 'rank:',
  untimed = 'untimed:',
  untimed_seq = 'untimed_seq',
  listing = 'competitors:',
  all = 'all',
  gender = 'gender:',
  category = 'category:',
  country = 'country:',
  UNTIMED = 1000000000000,
  OUT = 2000000000000,
}
-- Every write of the timing service (see ../store.rs for the key schema). A script runs
-- atomically in Redis, so a competitor's record, times, status and ranking entries always
-- change together: a results page never sees a time without its ranking score.
--
-- ARGV: op, bib, order_score, n, checkpoint_1 .. checkpoint_n, then the op's arguments:
--   put    mode ('create' | 'replace' | 'upsert' | 'patch'), field, value, ...
--   times  checkpoint, ms_or_empty, ...   (an empty value clears the checkpoint)
--   status DNS | DNF | DSQ | ''           (empty clears the status)
--   delete (none)
-- Returns 'ok', 'missing' (no such competitor) or 'exists' (create on a taken bib).
--
-- Key names and the ranking scores K.UNTIMED and K.OUT come from the table K, generated from
-- store/keys.rs and prepended to this file when the store loads it; keys are built from them
-- and the bib here rather than passed in KEYS (the service uses a standalone Redis, not a
-- cluster).
--
-- Ranking entries: a competitor with neither a time nor a status (every competitor just
-- created) is in the `untimed:<scope>` sets only, scored by entry order; one with a time or a
-- status is in the `rank:<checkpoint>:<scope>` sets of every checkpoint after the start and in
-- no untimed set. A create therefore writes 3 ranking entries instead of 3 per checkpoint; the
-- first time or status moves the competitor into the rank sets, clearing them all moves them
-- back. Store::results reads a ranking as rank set (timed, then untimed) ++ untimed set ++
-- rank set (out of the race).

local op, bib, order, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local cps = {}
for i = 1, n do cps[i] = ARGV[4 + i] end
local a = 5 + n -- index of the op's first argument

local ckey = K.competitor .. bib
local tkey = K.times .. bib
local STATUS = K.status
local ROWS = K.rows   -- bib -> JSON of the results-row fields, read by Store::results
-- The competitor fields of a results row (routes/results.rs writes the row around them);
-- `put` reads gender, category and country at positions 3, 4, 5.
local ROW_FIELDS = { 'first_name', 'last_name', 'gender', 'category', 'country' }
local DAY = 86400000
local STATUS_ORDER = { DNF = 1, DSQ = 2, DNS = 3 }

-- The ranking scopes of a competitor of gender g and category c (key suffixes).
local function scopes(g, c)
  local s = { K.all }
  if g then s[#s + 1] = K.gender .. g end
  if c then s[#s + 1] = K.category .. c end
  return s
end

-- Removes the competitor from the rank sets of every checkpoint of their scopes.
local function unrank(s)
  for _, scope in ipairs(s) do
    for i = 2, n do redis.call('ZREM', K.rank .. cps[i] .. ':' .. scope, bib) end
  end
end

-- Adds the competitor to the untimed sets, scored by a sequence number: entries go to the
-- end of the sets, much cheaper for Redis than at a random place (bib order), so the untimed
-- rows of a ranking are in the order competitors entered them.
local function untimed_add(s)
  local seq = redis.call('INCR', K.untimed_seq)
  for _, scope in ipairs(s) do redis.call('ZADD', K.untimed .. scope, seq, bib) end
end

local function untimed_rem(s)
  for _, scope in ipairs(s) do redis.call('ZREM', K.untimed .. scope, bib) end
end

-- Writes the competitor's scores in the rank sets of scopes s: elapsed ms from their own
-- start when both times are known, K.UNTIMED otherwise, K.OUT + order when they have a status.
-- `only`, when given, limits the work to those checkpoint indexes (a time changed there, not
-- the start).
local function rank(s, status, only)
  local start = not status and redis.call('ZSCORE', tkey, cps[1])
  for i = 2, n do
    local score
    if only and not only[i] then
      -- unchanged
    elseif status then
      score = K.OUT + (STATUS_ORDER[status] or 9)
    else
      local t = start and redis.call('ZSCORE', tkey, cps[i])
      if t then
        local d = tonumber(t) - tonumber(start)
        if d < 0 then d = d % DAY end -- crossed midnight
        score = d
      else
        score = K.UNTIMED
      end
    end
    if score then
      for _, scope in ipairs(s) do
        redis.call('ZADD', K.rank .. cps[i] .. ':' .. scope, score, bib)
      end
    end
  end
end

-- The listing sets of a competitor of gender g, category c and country co.
local function listings(g, c, co)
  local list = { K.listing .. K.all }
  if g then list[#list + 1] = K.listing .. K.gender .. g end
  if c then list[#list + 1] = K.listing .. K.category .. c end
  if co then list[#list + 1] = K.listing .. K.country .. co end
  return list
end

local function current()
  local v = redis.call('HMGET', ckey, 'gender', 'category', 'country')
  return v[1], v[2], v[3]
end

local exists = redis.call('EXISTS', ckey) == 1

if op == 'put' then
  local mode = ARGV[a]
  if mode == 'create' and exists then return 'exists' end
  if (mode == 'replace' or mode == 'patch') and not exists then return 'missing' end
  local status = redis.call('HGET', STATUS, bib)
  local timed = redis.call('EXISTS', tkey) == 1
  if exists then
    -- Every ranking and listing entry of the old record (untimed and rank sets both, so
    -- entries written by an earlier version of this script go too).
    local g, c, co = current()
    local s = scopes(g, c)
    unrank(s)
    untimed_rem(s)
    for _, k in ipairs(listings(g, c, co)) do redis.call('ZREM', k, bib) end
    if mode ~= 'patch' then redis.call('DEL', ckey) end
  end
  if #ARGV >= a + 2 then redis.call('HSET', ckey, unpack(ARGV, a + 1)) end
  local values = {}
  if mode == 'patch' then
    values = redis.call('HMGET', ckey, unpack(ROW_FIELDS))
  else
    -- The record is exactly the given fields: no need to read it back.
    local given = {}
    for i = a + 1, #ARGV, 2 do given[ARGV[i]] = ARGV[i + 1] end
    for i, f in ipairs(ROW_FIELDS) do values[i] = given[f] end
  end
  local row = {}
  for i, f in ipairs(ROW_FIELDS) do row[f] = values[i] or cjson.null end
  redis.call('HSET', ROWS, bib, cjson.encode(row))
  local g, c, co = values[3], values[4], values[5] -- gender, category, country
  for _, k in ipairs(listings(g, c, co)) do redis.call('ZADD', k, order, bib) end
  local s = scopes(g, c)
  if status or timed then rank(s, status) else untimed_add(s) end
  return 'ok'
end

if not exists then return 'missing' end
local g, c, co = current()
local s = scopes(g, c)
if op == 'delete' then
  unrank(s)
  untimed_rem(s)
  for _, k in ipairs(listings(g, c, co)) do redis.call('ZREM', k, bib) end
  redis.call('DEL', ckey, tkey)
  redis.call('HDEL', STATUS, bib)
  redis.call('HDEL', ROWS, bib)
  return 'ok'
end

local status = redis.call('HGET', STATUS, bib)
local timed = redis.call('EXISTS', tkey) == 1
local was_untimed = not status and not timed
local only = nil
if op == 'times' then
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
  timed = redis.call('EXISTS', tkey) == 1
elseif op == 'status' then
  if ARGV[a] == '' then
    redis.call('HDEL', STATUS, bib)
    status = nil
  else
    redis.call('HSET', STATUS, bib, ARGV[a])
    status = ARGV[a]
  end
else
  return redis.error_reply('unknown op ' .. op)
end

if not status and not timed then
  -- Neither a time nor a status (any more): out of the rank sets, into the untimed sets.
  if not was_untimed then
    unrank(s)
    untimed_add(s)
  end
elseif was_untimed then
  -- The first time or status: every checkpoint gets its score.
  untimed_rem(s)
  rank(s, status)
else
  rank(s, status, only)
end
return 'ok'
