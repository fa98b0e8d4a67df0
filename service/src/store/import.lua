-- Bulk create for the start-list import (see store/import.rs). Creates many new competitors in
-- one call with the entries timing.lua's `put` writes for a new competitor (record, results
-- row, listing and untimed entries, audit entry, scope versions), but batched: one ZADD per set
-- and one HSET of the rows for the whole call instead of one per competitor. A bib that exists,
-- or has times or a status without a record (legacy data), or carries a wave or a chip (whose
-- indexes and checks are timing.lua's), is left alone and returned: the caller upserts it
-- through timing.lua's `put`, which knows how to move existing entries.
--
-- K (key names) is generated from store/keys.rs and prepended at load, as for timing.lua.
-- ARGV: actor, at (audit), seq (the untimed-set score to count up from, as timing.lua's, from
-- the service's clock), f, field_1 .. field_f, then per competitor: bib, order_score,
-- value_1 .. value_f. Returns the bibs left alone, each followed by 1 if its record
-- exists, else 0.

local actor, at = ARGV[1], ARGV[2]
local f = tonumber(ARGV[4])
local names = {}
for i = 1, f do names[i] = ARGV[4 + i] end
local special = {}
for j = 1, f do
  if names[j] == 'wave' or names[j] == 'chip' then special[#special + 1] = j end
end
-- The competitor fields of a results row, as in timing.lua (routes/results.rs writes the
-- row around them).
local ROW_FIELDS = { 'first_name', 'last_name', 'gender', 'category', 'country' }
local at = {}
for i, field in ipairs(ROW_FIELDS) do
  for j = 1, f do if names[j] == field then at[i] = j end end
end

local skipped, rows, sets, order_of_sets = {}, {}, {}, {}
local function add(key, score, bib)
  local set = sets[key]
  if not set then
    set = {}
    sets[key] = set
    order_of_sets[#order_of_sets + 1] = key
  end
  set[#set + 1] = score
  set[#set + 1] = bib
end

local seq = tonumber(ARGV[3])
local touched, touched_list = {}, {}
local function touch(scope)
  if not touched[scope] then
    touched[scope] = true
    touched_list[#touched_list + 1] = scope
  end
end

local p = 5 + f
while p <= #ARGV do
  local bib, order = ARGV[p], ARGV[p + 1]
  local ckey = K.competitor .. bib
  local has_special = false
  for _, j in ipairs(special) do
    if ARGV[p + 1 + j] ~= '' then has_special = true end
  end
  local exists = redis.call('EXISTS', ckey)
  if has_special or exists == 1 or redis.call('EXISTS', K.times .. bib) > 0
    or redis.call('HEXISTS', K.status, bib) == 1 then
    -- (whether the record exists: the caller counts it as updated rather than created)
    skipped[#skipped + 1] = bib
    skipped[#skipped + 1] = exists
  else
    local record = {}
    local after = {}
    for j = 1, f do
      -- (an empty wave or chip, the only fields that may be empty, is an absent one)
      if ARGV[p + 1 + j] ~= '' or (names[j] ~= 'wave' and names[j] ~= 'chip') then
        record[#record + 1] = names[j]
        record[#record + 1] = ARGV[p + 1 + j]
        after[names[j]] = ARGV[p + 1 + j]
      end
    end
    redis.call('HSET', ckey, unpack(record))
    local entry = cjson.encode({ at = at, actor = actor, action = 'competitor.created', bib = bib,
      before = cjson.null, after = after })
    redis.call('LPUSH', K.audit, entry)
    redis.call('LPUSH', K.audit_of .. bib, entry)
    local row = {}
    for i, field in ipairs(ROW_FIELDS) do
      row[field] = at[i] and ARGV[p + 1 + at[i]] or cjson.null
    end
    rows[#rows + 1] = bib
    rows[#rows + 1] = cjson.encode(row)
    local g = at[3] and ARGV[p + 1 + at[3]]
    local c = at[4] and ARGV[p + 1 + at[4]]
    local co = at[5] and ARGV[p + 1 + at[5]]
    add(K.listing .. K.all, order, bib)
    if g then add(K.listing .. K.gender .. g, order, bib) end
    if c then add(K.listing .. K.category .. c, order, bib) end
    if co then add(K.listing .. K.country .. co, order, bib) end
    seq = seq + 1
    add(K.untimed .. K.all, seq, bib)
    touch(K.all)
    if g then
      add(K.untimed .. K.gender .. g, seq, bib)
      touch(K.gender .. g)
    end
    if c then
      add(K.untimed .. K.category .. c, seq, bib)
      touch(K.category .. c)
    end
  end
  p = p + 2 + f
end

if #rows > 0 then
  redis.call('HSET', K.rows, unpack(rows))
  for _, key in ipairs(order_of_sets) do redis.call('ZADD', key, unpack(sets[key])) end
  -- Live reads: one version for every scope this call touched (as timing.lua's touch).
  local v = redis.call('INCR', K.live_seq)
  if v == 1 then
    -- A new or emptied Redis: versions restart from the clock (µs), above every version
    -- handed out before, so no old ETag or cached page can match new content.
    local now = redis.call('TIME')
    v = tonumber(now[1]) * 1000000 + tonumber(now[2])
    redis.call('SET', K.live_seq, string.format('%d', v))
  end
  v = string.format('%d', v) -- as text: Lua would print a 16-digit number as 1.7e+15
  local fields = {}
  for _, scope in ipairs(touched_list) do
    fields[#fields + 1] = scope
    fields[#fields + 1] = v
  end
  redis.call('HSET', K.live_version, unpack(fields))
  redis.call('PUBLISH', K.live_changes, v .. ' ' .. table.concat(touched_list, ' '))
end
return skipped
