-- The timing service's Redis Functions library: every write of the service, and the reads
-- of the times and competitor passings routes (see mod.rs and keys.rs). Loaded once
-- (FUNCTION LOAD REPLACE) when the store connects and again whenever Redis answers that a
-- function is missing (a restarted Redis without persistence), so helpers and tables below
-- are built once per load, not per call (the cost of the former EVAL script).
-- Named by its version, as are its functions (store/functions.rs: two versions of the service
-- run side by side during a deploy).
--
-- The table K (key names, ranking scores) and the race table R (checkpoints, rules) are
-- generated from store/keys.rs and the race definition and inserted after the first line.
--
-- A function runs atomically: a competitor's record, raw reads, manual times, derived times,
-- ranking entries and the audit entry of the change always agree.
--
-- Times. Raw reads (chip or bib reads at a mat) are stored once, never changed: the hash
-- K.passings (id -> JSON as received) and, per competitor, the list K.reads..bib of
-- "<checkpoint index> <ms> <id>". Manual times (v1 and legacy time routes) are the hash
-- K.manual..bib. The time of a checkpoint (the sorted set K.times..bib, the original's key) is
-- derived: the manual time if any, else from the reads by the rules (derive below).
-- Ranking scores: net = elapsed from the competitor's start (from the wave's gun time
-- without one), gun = elapsed from the wave's gun time; K.UNTIMED without, K.OUT + 1/2/3
-- for DNF/DSQ/DNS. A competitor with neither a time nor a status is in the untimed sets only.

local DAY = R.day
-- A read up to this long before its reference (the gun, the start) is "before" it; anything
-- else is after it, crossing midnight if need be (race::BEFORE_MS).
local BEFORE = R.before
local STATUS_ORDER = { DNF = 1, DSQ = 2, DNS = 3 }
local CPS = R.checkpoints
local N = #CPS
-- (Loading runs with few globals, no ipairs: plain loops at the top level.)
local POS = {}
for i = 1, N do POS[CPS[i]] = i end
-- Checkpoint index as passings' arguments give it ('1', '2', ...) -> number, without tonumber.
local CP_INDEX = {}
for i = 1, N do CP_INDEX['' .. i] = i end
-- Counts in passings_planned's arguments -> number (tonumber runs glibc's strtod twice, some
-- 1,700 instructions; a call has a few per read). Up to 255: a call of 25 reads needs no
-- more, and a larger table is paid by every call of every function: all libraries share
-- one Lua state, whose collector Redis steps every 50 calls, and it grows with the heap
-- (0 to 1,000 was a quarter of the Lua heap after loading; without it a create costs Redis
-- some 500 instructions less, medians of three paired runs of bench/write_cost.sh). A larger
-- count is read by tonumber.
local COUNT = {}
for i = 0, 255 do COUNT['' .. i] = i end
local function count(s)
  return COUNT[s] or tonumber(s)
end
-- Key names are built once per scope value, not per call: the memo functions below fill their
-- tables on first use, and the tables live as long as the library (no setmetatable in a
-- Functions library). Their keys are gender, category and country values and scope names, so
-- they stay small.
local function memo(make)
  local cache = {}
  return function(k)
    local v = cache[k]
    if v == nil then
      v = make(k)
      cache[k] = v
    end
    return v
  end
end
local LIST_ALL = K.listing .. K.all
local country_list = memo(function(co) return K.listing .. K.country .. co end)
local untimed_set = memo(function(scope) return K.untimed .. scope end)
-- Rank sets per checkpoint index (from 2) and scope name, by net and by gun time.
local NET, GUN = {}, {}
for i = 2, N do
  local net, gun = K.rank .. CPS[i] .. ':', K.gun_rank .. CPS[i] .. ':'
  NET[i] = memo(function(scope) return net .. scope end)
  GUN[i] = memo(function(scope) return gun .. scope end)
end
-- The ranking scopes of gender g and category c ('' when absent; never a valid value): the
-- scope names in a list, with `untimed`, their untimed sets, and `tail`, the names joined
-- for the change message. Shared between calls: callers never change them.
local scopes_of = memo(function(g)
  return memo(function(c)
    local s = { K.all }
    if g ~= '' then s[#s + 1] = K.gender .. g end
    if c ~= '' then s[#s + 1] = K.category .. c end
    s.untimed = {}
    for k = 1, #s do s.untimed[k] = untimed_set(s[k]) end
    s.tail = ' ' .. table.concat(s, ' ')
    return s
  end)
end)

local function scopes(g, c)
  return scopes_of(g or '')(c or '')
end

-- One counter (K.live_seq) numbers every change: the versions behind ETags and long polls,
-- and the order in which untimed entries are listed (their score), so a write takes one
-- number, not a version and a clock reading. It never goes back, and it is never below the
-- clock in µs when a library load (a Redis start, or a service that loaded a new version)
-- makes its first write: no ETag handed out before an emptied Redis can match new content, and
-- untimed entries scored by the clock (before the counter scored them) stay before new ones.
local function clock_us()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000000 + tonumber(now[2])
end

local seq_checked = false
local function next_seq(n)
  if not seq_checked then
    seq_checked = true
    local clock = clock_us()
    if (tonumber(redis.call('GET', K.live_seq)) or 0) < clock then
      redis.call('SET', K.live_seq, string.format('%d', clock))
    end
  end
  local v
  if n == 1 then v = redis.call('INCR', K.live_seq) else v = redis.call('INCRBY', K.live_seq, n) end
  if v == n then
    -- Emptied (FLUSHALL) since the check: restart from the clock as above.
    v = clock_us() + n
    redis.call('SET', K.live_seq, string.format('%d', v))
  end
  return v
end

-- This call's number, as text (Lua would print a 16-digit number as 1.7e+15), taken on first
-- use; `entry` below clears it before every function call.
local seq_now
local function seq()
  if not seq_now then seq_now = string.format('%d', next_seq(1)) end
  return seq_now
end

-- Live reads (crate::live): each change bumps the version of every ranking scope it touches
-- (scope names as in the rank keys: 'all', 'gender:<g>', 'category:<c>') and announces it on a
-- channel, so ETags change and long polls on any service process wake. Every write calls it
-- once; `rows`: the change wrote results rows (K.rows), whose own version (field
-- K.rows_version, not a scope) lets a service keep rows it read (store/results.rs).
-- touch_one: the scopes of one competitor (from `scopes`, the usual write), without a table
-- built per call; touch: a list of such lists (a list, not varargs: a wave or an import
-- touches thousands, beyond unpack's limit).
local function touch_one(s, rows)
  if #s == 0 then return end
  local v = seq()
  if rows then
    if #s == 3 then
      redis.call('HSET', K.live_version, s[1], v, s[2], v, s[3], v, K.rows_version, v)
    elseif #s == 2 then
      redis.call('HSET', K.live_version, s[1], v, s[2], v, K.rows_version, v)
    else
      redis.call('HSET', K.live_version, s[1], v, K.rows_version, v)
    end
  elseif #s == 3 then
    redis.call('HSET', K.live_version, s[1], v, s[2], v, s[3], v)
  elseif #s == 2 then
    redis.call('HSET', K.live_version, s[1], v, s[2], v)
  else
    redis.call('HSET', K.live_version, s[1], v)
  end
  redis.call('PUBLISH', K.live_changes, v .. s.tail)
end

-- Bumps the versions of scope names `names` (no repeats) and announces them.
local function touch_names(names, rows)
  if #names == 0 then return end
  local v = seq()
  local fields = {}
  for k = 1, #names do fields[2 * k - 1], fields[2 * k] = names[k], v end
  if rows then
    fields[#fields + 1] = K.rows_version
    fields[#fields + 1] = v
  end
  redis.call('HSET', K.live_version, unpack(fields))
  redis.call('PUBLISH', K.live_changes, v .. ' ' .. table.concat(names, ' '))
end

local function touch(lists, rows)
  if #lists == 1 then return touch_one(lists[1], rows) end
  local seen, names = {}, {}
  for _, list in ipairs(lists) do
    for _, scope in ipairs(list) do
      if not seen[scope] then
        seen[scope] = true
        names[#names + 1] = scope
      end
    end
  end
  touch_names(names, rows)
end

local function elapsed(from, to)
  local d = to - from
  if d < 0 then d = d % DAY end
  return d
end

-- `to` relative to `from`: negative when up to BEFORE earlier, else elapsed.
local function offset(from, to)
  local d = (to - from) % DAY
  if d > DAY - BEFORE then return d - DAY end
  return d
end

local function fmt(ms)
  if not ms then return cjson.null end
  local s = math.floor(ms / 1000)
  return string.format('%02d:%02d:%02d.%03d', math.floor(s / 3600), math.floor(s / 60) % 60,
    s % 60, ms % 1000)
end

local function audit(at, actor, action, bib, before, after)
  local entry = cjson.encode({ at = at, actor = actor, action = action, bib = bib or cjson.null,
    before = before == nil and cjson.null or before, after = after == nil and cjson.null or after })
  redis.call('LPUSH', K.audit, entry)
  if bib then redis.call('LPUSH', K.audit_of .. bib, entry) end
end

local function nilfalse(v) if v then return v end return nil end

-- The list of `key` in `groups`, made on first use, a new key going at the end of `order`
-- (a Lua table keeps no order of its own).
local function group_of(groups, order, key)
  local g = groups[key]
  if not g then
    g = {}
    groups[key] = g
    order[#order + 1] = key
  end
  return g
end

-- A hash as a table (field -> value); nil when there is no such key.
local function hash_of(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local t = {}
  for j = 1, #flat, 2 do t[flat[j]] = flat[j + 1] end
  return t
end

-- The times index (hash INDEX): bib -> what a chip read at a split needs of its competitor,
-- in one string, so that a passings call reads it for all its competitors with one HMGET
-- instead of their times, manual times, record and status one command each (every
-- redis.call costs Redis 7.0 some 5,000 to 15,000 instructions). An entry is the derived
-- times in checkpoint order (8 digits each, NO_TIME when absent), one manual flag per
-- checkpoint ('1': a manual time overrides the reads), and the status (STATUS_CODE, '-'
-- without), then perhaps some of the record (see record_part). Only passings and manual
-- times (`times`) write entries, from all the times, manual flags and the status, and an
-- import the empty entry of each new competitor; every other write that changes a
-- competitor's times, manual times, status, gender, category or wave deletes theirs
-- (forget), so an entry, when there is one, is exact, and a competitor without one (new,
-- changed since, or written before the index existed) is read the long way once. The
-- checkpoints are in the key's name (keys::times_index): an entry never outlives a change
-- of the race's checkpoints.
local INDEX = R.times_index
local W = 8
local NO_TIME = '--------'
local STATUS_CODE = { DNF = 'F', DSQ = 'Q', DNS = 'S' }
local CODE_STATUS = { F = 'DNF', Q = 'DSQ', S = 'DNS' }

-- A time as an entry holds it.
local function time_field(ms)
  return ms and string.format('%08d', ms) or NO_TIME
end

-- After the times, flags and status (FIXED bytes), an entry may hold what `complete` needs
-- of the record, so that a read changing a time need not read the record (an HMGET of it
-- cost Redis some 16,000 instructions per such read, callgrind): SEP, gender, SEP, category,
-- SEP, wave ('' when absent). Written when the competitor was completed from their record
-- (or from an entry) and no value holds SEP; put drops the entry when any of the three
-- changes (unindex), so what it holds is the record's.
local FIXED = W * N + N + 1
local SEP = '\31'

local function record_part(c)
  if not c.s then return '' end
  local g, cat, wave = c.g or '', c.cat or '', c.wave or ''
  if string.find(g .. cat .. wave, SEP, 1, true) then return '' end
  return SEP .. g .. SEP .. cat .. SEP .. wave
end

local function present(v)
  if v == '' then return nil end
  return v
end

local function entry_record(e)
  if #e == FIXED then return false end
  local a = FIXED + 2
  local b = string.find(e, SEP, a, true)
  local c = b and string.find(e, SEP, b + 1, true)
  if not c then return false end
  return true, present(string.sub(e, a, b - 1)), present(string.sub(e, b + 1, c - 1)),
    present(string.sub(e, c + 1))
end

-- The entry of competitor c with times t and manual times `manual`.
local function entry_of(t, manual, c)
  local parts = {}
  for i = 1, N do
    parts[i] = time_field(t[i])
    parts[N + i] = manual[i] and '1' or '0'
  end
  parts[2 * N + 1] = STATUS_CODE[c.status or ''] or '-'
  parts[2 * N + 2] = record_part(c)
  return table.concat(parts)
end

-- (From the digits' bytes: no string made, no tonumber, which runs strtod twice.)
local function entry_time(e, i)
  local d1, d2, d3, d4, d5, d6, d7, d8 = string.byte(e, W * i - W + 1, W * i)
  if d1 == 45 then return nil end
  return ((((((d1 * 10 + d2) * 10 + d3) * 10 + d4) * 10 + d5) * 10 + d6) * 10 + d7) * 10 + d8
    - 533333328 -- 48 (the byte of 0) times 11,111,111
end

local function entry_manual(e, i)
  return string.byte(e, W * N + i) == 49
end

local function entry_status(e)
  return CODE_STATUS[string.sub(e, FIXED, FIXED)]
end

-- The entry with the time at checkpoint i replaced.
local function entry_with(e, i, ms)
  return string.sub(e, 1, W * i - W) .. time_field(ms) .. string.sub(e, W * i + 1)
end

-- Drops competitor c's entry, once a call: `c.indexed` says their entry is taken care of in
-- this call (dropped already, or written by passings itself).
local function forget(c)
  if c.indexed then return end
  c.indexed = true
  redis.call('HDEL', INDEX, c.bib)
end

-- Gives competitor c (a table with their bib, and status if known) the record fields the
-- derivation needs (nil when absent), their scopes and their wave's gun time.
local function fill(c, g, cat, co, wave, chip)
  c.g, c.cat, c.co, c.wave, c.chip = g, cat, co, wave, chip
  c.s = scopes(g, cat)
  if wave then c.gun = tonumber(redis.call('HGET', K.waves, wave)) end
  return c
end

-- Completes a competitor known by bib and status (passings) with their record, scopes and
-- gun time: the derivation needs it when they have no start time (the gun is the
-- reference) or when their times change (the rankings of their scopes). From their times
-- index entry when it holds what that needs (the country and chip are not: passings needs
-- neither), else from the record.
local function complete(c)
  if c.s then return c end
  if c.entry then
    local known, g, cat, wave = entry_record(c.entry)
    if known then return fill(c, g, cat, nil, wave, nil) end
  end
  local v = redis.call('HMGET', K.competitor .. c.bib, 'gender', 'category', 'country', 'wave', 'chip')
  return fill(c, nilfalse(v[1]), nilfalse(v[2]), nilfalse(v[3]), nilfalse(v[4]), nilfalse(v[5]))
end

-- The competitor as the derivation needs it; nil when there is no such competitor.
local function load(bib)
  local c = complete({ bib = bib })
  if not c.g and not c.cat and redis.call('EXISTS', K.competitor .. bib) == 0 then return nil end
  c.status = nilfalse(redis.call('HGET', K.status, bib))
  return c
end

-- The competitor from their record as read (field -> value) and their status.
local function of_record(bib, record, status)
  return fill({ bib = bib, status = status }, record.gender, record.category, record.country,
    record.wave, record.chip)
end

local function unrank(c)
  for _, scope in ipairs(c.s) do
    for i = 2, N do
      redis.call('ZREM', NET[i](scope), c.bib)
      redis.call('ZREM', GUN[i](scope), c.bib)
    end
  end
end

-- Untimed entries are scored by the call's number (seq): appended in the order of the writes.
local function untimed_add(c)
  local v, u = seq(), c.s.untimed
  for k = 1, #u do redis.call('ZADD', u[k], v, c.bib) end
end

local function untimed_rem(c)
  local u = c.s.untimed
  for k = 1, #u do redis.call('ZREM', u[k], c.bib) end
end

-- Takes competitor c out of the rankings, the untimed sets and the listings, and out of
-- their wave's members and the chip index unless `keep` (the record replacing theirs, if
-- any) has the same wave or chip.
local function unindex(c, keep)
  keep = keep or {}
  -- (Their times index entry may hold their gender, category and wave: see record_part.)
  forget(c)
  unrank(c)
  untimed_rem(c)
  redis.call('ZREM', LIST_ALL, c.bib)
  if c.co then redis.call('ZREM', country_list(c.co), c.bib) end
  if c.wave and c.wave ~= keep.wave then redis.call('SREM', K.wave_members .. c.wave, c.bib) end
  if c.chip and c.chip ~= keep.chip then redis.call('HDEL', K.chips, c.chip) end
end

-- A read as its competitor's list K.reads..bib holds it (read back by reads_of).
local function read_entry(i, ms, id)
  return i .. ' ' .. ms .. ' ' .. id
end

-- The competitor's reads per checkpoint index: { { ms =, id = }, ... } in order received.
local function reads_of(bib)
  local r = {}
  for i = 1, N do r[i] = {} end
  for _, e in ipairs(redis.call('LRANGE', K.reads .. bib, 0, -1)) do
    local i, ms, id = string.match(e, '^(%d+) (%d+) (.*)$')
    i = tonumber(i)
    if r[i] then table.insert(r[i], { ms = tonumber(ms), id = id }) end
  end
  return r
end

-- Times by checkpoint position from a flat reply of checkpoint names and ms.
local function by_position(flat)
  local t = {}
  for j = 1, #flat, 2 do
    local i = POS[flat[j]]
    if i then t[i] = tonumber(flat[j + 1]) end
  end
  return t
end

local function manual_of(bib)
  return by_position(redis.call('HGETALL', K.manual .. bib))
end

local function current_of(bib)
  return by_position(redis.call('ZRANGE', K.times .. bib, 0, -1, 'WITHSCORES'))
end

-- The times by the rules: at the start the last read from the gun to the end of the start
-- window (any start read without a gun time); at every other checkpoint the first read at
-- least its minimum time after the start (the gun without a start). A manual time wins.
-- Returns the times and the id of the read each comes from.
local function derive(c, reads, manual)
  local t, from = {}, {}
  if manual[1] then
    t[1] = manual[1]
  else
    local best, bestd
    for _, rd in ipairs(reads[1]) do
      local d = rd.ms
      local ok = true
      if c.gun then
        d = offset(c.gun, rd.ms)
        ok = d >= 0 and d <= R.start_window
      end
      if ok and (not bestd or d > bestd) then best, bestd = rd, d end
    end
    if best then t[1], from[1] = best.ms, best.id end
  end
  local ref = t[1] or c.gun
  for i = 2, N do
    if manual[i] then
      t[i] = manual[i]
    else
      local best, bestd
      for _, rd in ipairs(reads[i]) do
        local d = rd.ms
        local ok = true
        if ref then
          d = offset(ref, rd.ms)
          ok = d >= R.min_time[i]
        end
        if ok and (not bestd or d < bestd) then best, bestd = rd, d end
      end
      if best then t[i], from[i] = best.ms, best.id end
    end
  end
  return t, from
end

-- Reads have no effect while the competitor is out of the race (DNS, DSQ): their times stay
-- as they were, and a new read is kept for this reason.
local function out_of_race(c)
  return c.status == 'DNS' or c.status == 'DSQ'
end

local function no_effect(c)
  return 'the competitor has status ' .. c.status .. '; the read has no effect'
end

-- What a new read did, given the times derived with it.
local function outcome(c, i, rd, t, from, manual)
  if out_of_race(c) then return 'kept', no_effect(c) end
  if i == 1 then
    if c.gun then
      local d = offset(c.gun, rd.ms)
      if d < 0 then return 'ignored', 'before the gun time of wave ' .. c.wave end
      if d > R.start_window then return 'ignored', 'after the start window of wave ' .. c.wave end
    end
    if manual[1] then return 'kept', 'a manual start time overrides the reads' end
    if from[1] == rd.id then return 'applied', '' end
    return 'kept', 'a later start read counts'
  end
  local ref = t[1] or c.gun
  if ref and offset(ref, rd.ms) < R.min_time[i] then
    return 'ignored', 'earlier than the minimum time after the start at ' .. CPS[i]
  end
  if manual[i] then return 'kept', 'a manual time overrides the reads' end
  if from[i] == rd.id then return 'applied', '' end
  return 'kept', 'an earlier read counts'
end

-- The net ranking score of time of day ms: elapsed from the start read, else from the wave's
-- gun time; nil without either. Shared by the writes (rank) and the times route's read
-- (competitor_times), which ranks by it.
local function net_score(start, gun, ms)
  local ref = start or gun
  if ref then return elapsed(ref, ms) end
end

-- Writes the ranking scores of checkpoints `only` (all when nil) from times t. Without a
-- wave gun time the gun scores stay K.UNTIMED, written only when all are (`only` nil).
local function rank(c, t, only)
  local order = c.status and (K.OUT + (STATUS_ORDER[c.status] or 9))
  for i = 2, N do
    if not only or only[i] then
      local net, gun = order, order
      if not order then
        net = t[i] and net_score(t[1], c.gun, t[i]) or K.UNTIMED
        gun = (t[i] and c.gun) and elapsed(c.gun, t[i]) or K.UNTIMED
      end
      local gun_too = not only or c.gun
      -- As integer text: Redis would print a Lua number with the slower %.17g.
      net, gun = string.format('%d', net), string.format('%d', gun)
      for _, scope in ipairs(c.s) do
        redis.call('ZADD', NET[i](scope), net, c.bib)
        if gun_too then redis.call('ZADD', GUN[i](scope), gun, c.bib) end
      end
    end
  end
  if only then return end
  -- The start's lag behind the gun: a results row's other time is its ranked time +/- it.
  if c.gun then
    redis.call('HSET', K.lags, c.bib, string.format('%d', t[1] and elapsed(c.gun, t[1]) or 0))
  else
    redis.call('HDEL', K.lags, c.bib)
  end
end

-- Stores times t (from derive) in place of cur and re-ranks what changed: everything on a
-- change of the start, of the status or of the untimed state; `force` re-ranks all.
local function store_times(c, t, cur, force, was_status)
  local only, any_time = {}, false
  local add, rem = {}, {}
  for i = 1, N do
    if t[i] ~= cur[i] then
      only[i] = true
      if t[i] then
        add[#add + 1] = string.format('%d', t[i]); add[#add + 1] = CPS[i]
      else
        rem[#rem + 1] = CPS[i]
      end
    end
    if t[i] then any_time = true end
  end
  if #add > 0 then redis.call('ZADD', K.times .. c.bib, unpack(add)) end
  if #rem > 0 then redis.call('ZREM', K.times .. c.bib, unpack(rem)) end
  if #add > 0 or #rem > 0 then forget(c) end
  local was_timed = next(cur) ~= nil
  local was_untimed = not was_timed and not was_status
  local untimed = not any_time and not c.status
  if untimed then
    if not was_untimed then
      unrank(c)
      redis.call('HDEL', K.lags, c.bib)
      untimed_add(c)
    end
  elseif was_untimed then
    untimed_rem(c)
    rank(c, t, nil)
  elseif force or only[1] or was_status ~= c.status then
    rank(c, t, nil)
  elseif next(only) then
    rank(c, t, only)
  end
  return only
end

-- Re-derives a loaded competitor's times from reads and manual times and stores them.
-- Returns what store_times returns, and the times.
local function rederive(c, force, was_status)
  local cur = current_of(c.bib)
  local t = cur
  if not out_of_race(c) then t = derive(c, reads_of(c.bib), manual_of(c.bib)) end
  return store_times(c, t, cur, force, was_status), t
end

local function times_json(t)
  local o = {}
  for i = 1, N do if t[i] then o[CPS[i]] = fmt(t[i]) end end
  return o
end

---------------------------------------------------------------------------------------------
-- put: args bib, order, mode, row JSON, created entry JSON, the actor and time of the change,
-- then field, value, ... The results row and the audit entry of a create (both JSON) come
-- encoded from the service for every mode but patch (empty then): Redis neither encodes them
-- nor builds the entry. The fields leave out `bib`, the first argument: the record's bib is
-- written from it (an argument costs a call some 870 instructions).
-- mode: replace | upsert | patch. Returns ok | created | missing | no_wave:<name> |
-- chip_taken:<bib>.
-- create (a new competitor only, the hot path: see create_new below): args bib, order, row
-- JSON, entry JSON, then field, value, ...; the entry carries the actor and time. Returns
-- created | exists | no_wave:<name> | chip_taken:<bib>.
-- Writes the record's fields from put's arguments (from a[first]); its bib is the first
-- argument.
local function write_record(ckey, bib, a, first)
  redis.call('HSET', ckey, 'bib', bib, unpack(a, first))
end

local function row_of(new)
  return cjson.encode({ first_name = new.first_name or cjson.null,
    last_name = new.last_name or cjson.null, gender = new.gender or cjson.null,
    category = new.category or cjson.null, country = new.country or cjson.null })
end

-- A new competitor: the record, its results row, the listing entries, an untimed entry per
-- scope (appended: scored by the call's number), the audit entry, the versions. The hot path
-- of a start list typed in (and of the benchmark): no table built, key names from the memos,
-- and no command beyond those writes, since each redis.call costs some 3,000 instructions of
-- glue besides its command (callgrind, bench/NOTES.md). The results row and the audit entry
-- come encoded from the service: both modes that create (create, put's upsert) send them.
local function create(a, bib, order, ckey, first, row_json, entry)
  local g, cat, co, wave, chip
  for j = first, #a, 2 do
    local f = a[j]
    if f == 'gender' then g = a[j + 1]
    elseif f == 'category' then cat = a[j + 1]
    elseif f == 'country' then co = a[j + 1]
    elseif f == 'wave' then wave = a[j + 1]
    elseif f == 'chip' then chip = a[j + 1]
    end
  end
  -- Checks before any change: the wave exists, the chip is nobody else's.
  if wave and redis.call('HEXISTS', K.waves, wave) == 0 then return 'no_wave:' .. wave end
  if chip then
    local holder = redis.call('HGET', K.chips, chip)
    if holder and holder ~= bib then return 'chip_taken:' .. holder end
  end
  write_record(ckey, bib, a, first)
  redis.call('HSET', K.rows, bib, row_json)
  redis.call('ZADD', LIST_ALL, order, bib)
  local v = seq()
  -- A country's listing is appended to (the listing sorts it by bib when read).
  if co then redis.call('ZADD', country_list(co), v, bib) end
  if wave then redis.call('SADD', K.wave_members .. wave, bib) end
  if chip then redis.call('HSET', K.chips, chip, bib) end
  local s = scopes(g, cat)
  local u = s.untimed
  for k = 1, #u do redis.call('ZADD', u[k], v, bib) end
  redis.call('LPUSH', K.audit, entry)
  redis.call('LPUSH', K.audit_of .. bib, entry)
  touch_one(s, true)
  return 'created'
end

-- A new competitor, by its own function rather than a mode of put: a start list typed in
-- sends one argument fewer per create.
local function create_new(_, a)
  local bib = a[1]
  local ckey = K.competitor .. bib
  if redis.call('EXISTS', ckey) == 1 then return 'exists' end
  return create(a, bib, a[2], ckey, 5, a[3], a[4])
end

local function put(_, a)
  local bib, order, mode, actor, at = a[1], a[2], a[3], a[6], a[7]
  local first = 8
  local ckey = K.competitor .. bib
  local exists = redis.call('EXISTS', ckey) == 1
  if (mode == 'replace' or mode == 'patch') and not exists then return 'missing' end
  if not exists then return create(a, bib, order, ckey, first, a[4], a[5]) end

  local old = hash_of(ckey)
  local new = {}
  if mode == 'patch' then for k, v in pairs(old) do new[k] = v end end
  for j = first, #a, 2 do new[a[j]] = a[j + 1] end
  new.bib = bib
  if new.wave and new.wave ~= old.wave and redis.call('HEXISTS', K.waves, new.wave) == 0 then
    return 'no_wave:' .. new.wave
  end
  if new.chip and new.chip ~= old.chip then
    local holder = redis.call('HGET', K.chips, new.chip)
    if holder and holder ~= bib then return 'chip_taken:' .. holder end
  end
  local row_json = a[4]
  if row_json == '' then row_json = row_of(new) end

  if old.gender == new.gender and old.category == new.category and old.wave == new.wave
    and redis.call('ZSCORE', LIST_ALL, bib) then
    -- Same scopes and wave, and indexed already: the rankings, untimed entries and times
    -- stay as they are (nothing they derive from changed); the record, its row, the country
    -- listing and the chip index change. (A record written before the indexes existed, not
    -- in the listing, takes the full path below, which builds them.)
    if old.country ~= new.country then
      if old.country then redis.call('ZREM', country_list(old.country), bib) end
      if new.country then redis.call('ZADD', country_list(new.country), seq(), bib) end
    end
    if old.chip and old.chip ~= new.chip then redis.call('HDEL', K.chips, old.chip) end
    if new.chip and new.chip ~= old.chip then redis.call('HSET', K.chips, new.chip, bib) end
    if mode ~= 'patch' then redis.call('DEL', ckey) end
    write_record(ckey, bib, a, first)
    redis.call('HSET', K.rows, bib, row_json)
    audit(at, actor, 'competitor.updated', bib, old, new)
    touch_one(scopes(new.gender, new.category), true)
    return 'ok'
  end

  -- Scopes or the wave change: every entry out and in again, times re-derived (the gun time
  -- bounds the start window). The status is unchanged by a put. The competitor before and
  -- after comes from `old` and `new`, the record as read and as written (not read again).
  local status = nilfalse(redis.call('HGET', K.status, bib))
  local was = of_record(bib, old, status)
  unindex(was, new)
  if mode ~= 'patch' then redis.call('DEL', ckey) end
  write_record(ckey, bib, a, first)
  redis.call('HSET', K.rows, bib, row_json)
  redis.call('ZADD', LIST_ALL, order, bib)
  if new.country then redis.call('ZADD', country_list(new.country), seq(), bib) end
  if new.wave and new.wave ~= old.wave then redis.call('SADD', K.wave_members .. new.wave, bib) end
  if new.chip and new.chip ~= old.chip then redis.call('HSET', K.chips, new.chip, bib) end
  local c = of_record(bib, new, status)
  c.indexed = true -- (unindex dropped their entry)
  local _, t = rederive(c, true, status)
  if not next(t) and not status then untimed_add(c) end
  audit(at, actor, 'competitor.updated', bib, old, new)
  touch({ was.s, c.s }, true)
  return 'ok'
end

-- delete: args bib, actor, at.
local function delete(_, a)
  local bib, actor, at = a[1], a[2], a[3]
  local old = hash_of(K.competitor .. bib)
  if not old then return 'missing' end
  local c = of_record(bib, old)
  unindex(c)
  -- Raw reads stay in K.passings (never changed); the competitor's index of them goes.
  redis.call('DEL', K.competitor .. bib, K.times .. bib, K.manual .. bib, K.reads .. bib)
  redis.call('HDEL', K.status, bib)
  redis.call('HDEL', K.rows, bib)
  redis.call('HDEL', K.lags, bib)
  audit(at, actor, 'competitor.deleted', bib, old, nil)
  touch({ c.s }, true)
  return 'ok'
end

-- A change to one existing competitor, audited: args bib, actor, at, then the change's own;
-- 'missing' without the competitor. `change(c, a)` makes it and returns the audit entry's
-- action, before and after.
local function competitor_change(change)
  return function(_, a)
    local bib, actor, at = a[1], a[2], a[3]
    local c = load(bib)
    if not c then return 'missing' end
    local action, before, after = change(c, a)
    audit(at, actor, action, bib, before, after)
    touch({ c.s })
    return 'ok'
  end
end

-- times (manual): args bib, actor, at, checkpoint, ms_or_empty, ... (empty clears).
local times = competitor_change(function(c, a)
  local bib = c.bib
  local cur = current_of(bib)
  local before, after = {}, {}
  local set, clear = {}, {}
  for j = 4, #a, 2 do
    local cp, ms = a[j], a[j + 1]
    before[cp] = fmt(cur[POS[cp]])
    if ms == '' then
      clear[#clear + 1] = cp
    else
      set[#set + 1] = cp; set[#set + 1] = ms
    end
  end
  if #set > 0 then redis.call('HSET', K.manual .. bib, unpack(set)) end
  if #clear > 0 then redis.call('HDEL', K.manual .. bib, unpack(clear)) end
  local manual = manual_of(bib)
  local t = derive(c, reads_of(bib), manual)
  -- The entry is written from what was just derived and stored, not dropped: all of it is
  -- known here, for the cost of the HDEL, and the competitor's next chip read is not read
  -- the long way (a start list whose start times were typed in, say).
  c.indexed = true
  store_times(c, t, cur, false, c.status)
  redis.call('HSET', INDEX, bib, entry_of(t, manual, c))
  for j = 4, #a, 2 do after[a[j]] = fmt(t[POS[a[j]]]) end
  if #set == 0 then return 'time.cleared', before, after end
  return 'time.set', before, after
end)

-- status: args bib, actor, at, status_or_empty.
local status = competitor_change(function(c, a)
  local bib = c.bib
  local was = c.status
  local new = a[4] ~= '' and a[4] or nil
  if new then redis.call('HSET', K.status, bib, new) else redis.call('HDEL', K.status, bib) end
  c.status = new
  forget(c)
  -- Back in the race (or DNF), what the reads give counts again.
  rederive(c, true, was)
  return 'status.set', { status = was or cjson.null }, { status = new or cjson.null }
end)

-- wave_set: args name, ms, actor, at. Re-derives and re-ranks every competitor of the
-- wave at once (the gun time bounds their start window and is their gun time's origin).
local function wave_set(_, a)
  local name, ms, actor, at = a[1], a[2], a[3], a[4]
  local old = redis.call('HGET', K.waves, name)
  redis.call('HSET', K.waves, name, ms)
  local touched = {}
  if old ~= ms then
    for _, bib in ipairs(redis.call('SMEMBERS', K.wave_members .. name)) do
      local c = load(bib)
      if c then
        rederive(c, true, c.status)
        touched[#touched + 1] = c.s
      end
    end
  end
  audit(at, actor, 'wave.set', nil, old and { wave = name, start = fmt(tonumber(old)) } or nil,
    { wave = name, start = fmt(tonumber(ms)) })
  touch(touched)
  if old then return 'ok' end
  return 'created'
end

-- wave_delete: args name, actor, at. Refused while a competitor is in the wave.
local function wave_delete(_, a)
  local name, actor, at = a[1], a[2], a[3]
  local old = redis.call('HGET', K.waves, name)
  if not old then return 'missing' end
  local n = redis.call('SCARD', K.wave_members .. name)
  if n > 0 then return 'in_use:' .. n end
  redis.call('HDEL', K.waves, name)
  audit(at, actor, 'wave.deleted', nil, { wave = name, start = fmt(tonumber(old)) }, nil)
  return 'ok'
end

-- Applies new reads (already stored raw) to one competitor; returns outcome, reason per read,
-- and whether the competitor's times changed. Every read of the competitor is derived again.
local function apply_reads(c, new)
  local entries = {}
  for k, rd in ipairs(new) do entries[k] = rd.entry end
  redis.call('RPUSH', K.reads .. c.bib, unpack(entries))
  local out = {}
  if out_of_race(c) then
    -- Nothing to derive: the reads are kept without effect.
    for k = 1, #new do out[k] = { 'kept', no_effect(c) } end
    return out, false
  end
  local manual = manual_of(c.bib)
  local cur = current_of(c.bib)
  local t, from = derive(c, reads_of(c.bib), manual)
  local changed = next(store_times(c, t, cur, false, c.status)) ~= nil
  for k, rd in ipairs(new) do out[k] = { outcome(c, rd.i, rd, t, from, manual) } end
  return out, changed
end

-- Scratch tables of apply_later_reads, emptied for each competitor rather than made: the
-- reads' ms by argument index; the competitor's times, manual flags, and times before; the
-- read outcome() is asked about. T, MAN and CUR are filled once here so that their slots
-- 1..N stay in the tables' array parts: Lua 5.1 makes a key for `t[i] = nil` when there is
-- none, rehashing the table when its hash part is full (emptying the three took some 500 ns
-- a competitor that way, 290 ns so, in an EVAL loop).
local MS, T, MAN, CUR, RD = {}, {}, {}, {}, {}
for i = 1, N do T[i], MAN[i], CUR[i] = false, false, false end
local NONE = {} -- (never written)

-- apply_reads for new reads none of which is at the start (a chip-read batch at a split or
-- the finish): reads ks (indexes into the passings arguments a) of a competitor `c` known by
-- bib, status and, if they have one, index entry (the rest is read when needed, see
-- complete). Writes each read's outcome and reason into `flat`, and the competitor's new
-- index entry, if it changes, into `index` (field, value: one HSET for the call); returns
-- whether the competitor's times changed.
--
-- The stored times are what derive gives from the reads (every write stores them so), and
-- such a read can change only its own checkpoint, where it counts if it is valid and earlier
-- than the time there (the first valid read counts). So only the start and the reads'
-- checkpoints are needed, from the entry, not the competitor's earlier reads nor (unless a
-- time changes or there is no start) the record: a read the derivation keeps costs its
-- share of the call's commands and the append to the competitor's reads. Same times and
-- outcomes as apply_reads. No table per read: each costs Redis's Lua an allocation and its
-- collection.
local function apply_later_reads(c, ks, a, flat, index)
  if #ks == 1 then
    local j = 6 * ks[1] - 3
    redis.call('RPUSH', K.reads .. c.bib, read_entry(a[j + 1], a[j + 2], a[j]))
  else
    local entries = {}
    for x, k in ipairs(ks) do
      local j = 6 * k - 3
      entries[x] = read_entry(a[j + 1], a[j + 2], a[j])
    end
    redis.call('RPUSH', K.reads .. c.bib, unpack(entries))
  end
  if out_of_race(c) then
    local why = no_effect(c)
    for _, k in ipairs(ks) do flat[2 * k - 1], flat[2 * k] = 'kept', why end
    return false
  end
  -- The times at the start (the reference) and at the reads' checkpoints, and which are
  -- manual, from the entry; without one, all of them the long way (the entry is written).
  local e = c.entry
  local t, manual, cur = T, MAN, CUR
  for i = 1, N do t[i], manual[i], cur[i] = nil, nil, nil end
  if e then
    t[1] = entry_time(e, 1)
    for _, k in ipairs(ks) do
      local i = CP_INDEX[a[6 * k - 2]]
      if manual[i] == nil then
        t[i] = entry_time(e, i)
        manual[i] = entry_manual(e, i)
      end
    end
  else
    local all, by_hand = current_of(c.bib), manual_of(c.bib)
    for i = 1, N do t[i], manual[i] = all[i], by_hand[i] end
  end
  for i = 1, N do cur[i] = t[i] end
  if not t[1] then complete(c) end
  local ref = t[1] or c.gun
  local from
  for _, k in ipairs(ks) do
    local j = 6 * k - 3
    local i, ms = CP_INDEX[a[j + 1]], tonumber(a[j + 2])
    MS[k] = ms
    if not manual[i] then
      local d = ref and offset(ref, ms) or ms
      if not ref or d >= R.min_time[i] then
        local now = t[i] and (ref and offset(ref, t[i]) or t[i])
        if not now or d < now then
          t[i] = ms
          from = from or {}
          from[i] = a[j]
        end
      end
    end
  end
  local changed = false
  if from then
    complete(c)
    if e and not next(cur) then
      -- No time at the start or at these checkpoints: perhaps none at all (the competitor
      -- leaves the untimed entries), which store_times tells from all the times.
      for i = 2, N do
        if manual[i] == nil then
          cur[i] = entry_time(e, i)
          t[i] = cur[i]
        end
      end
    end
    c.indexed = true -- (its entry is written below, not dropped)
    local only = store_times(c, t, cur, false, c.status)
    changed = next(only) ~= nil
    if e and changed then
      for i in pairs(only) do e = entry_with(e, i, t[i]) end
      -- (An entry written without the record gets it: the call has just read it.)
      if #e == FIXED then e = e .. record_part(c) end
      index[#index + 1] = c.bib
      index[#index + 1] = e
    end
  end
  if not e then
    index[#index + 1] = c.bib
    index[#index + 1] = entry_of(t, manual, c)
  end
  from = from or NONE
  local rd = RD
  for _, k in ipairs(ks) do
    local j = 6 * k - 3
    rd.id, rd.ms = a[j], MS[k]
    flat[2 * k - 1], flat[2 * k] = outcome(c, CP_INDEX[a[j + 1]], rd, t, from, manual)
  end
  return changed
end

-- passings: args actor, at, then per read: id, checkpoint index, ms, bib, chip, raw JSON
-- (bib or chip empty). Reads of one competitor are applied together; answers outcome, reason
-- per read, in order. Work per call rather than per read where Redis allows: which ids are
-- new, the raw reads, the chips, which competitors exist, their statuses and whether any has
-- a manual time are one command each; per competitor the reads are appended and the times
-- read (see apply_later_reads; a start read derives everything, as any other write).
local DUPLICATE = 'a read with this id was received before'
local function passings(_, a)
  local n = (#a - 2) / 6
  local flat = {}
  local ids = {}
  for k = 1, n do ids[k] = a[6 * k - 3] end
  local known = redis.call('HMGET', K.passings, unpack(ids))
  -- New reads (an id repeated in the call is a duplicate too), stored raw.
  local fresh, raw, chips, seen = {}, {}, {}, {}
  for k = 1, n do
    local j = 6 * k - 3
    local id = a[j]
    if known[k] or seen[id] then
      flat[2 * k - 1], flat[2 * k] = 'duplicate', DUPLICATE
    else
      seen[id] = true
      fresh[#fresh + 1] = k
      raw[#raw + 1] = id
      raw[#raw + 1] = a[j + 5]
      if a[j + 3] == '' then chips[#chips + 1] = a[j + 4] end
    end
  end
  if #fresh == 0 then return flat end
  redis.call('HSET', K.passings, unpack(raw))
  local holder = {}
  if #chips > 0 then
    local found = redis.call('HMGET', K.chips, unpack(chips))
    for m = 1, #chips do
      if found[m] then holder[chips[m]] = found[m] end
    end
  end
  -- By competitor (the list of their reads' indexes), in order of first appearance.
  local groups, bibs = {}, {}
  for _, k in ipairs(fresh) do
    local j = 6 * k - 3
    local bib = a[j + 3]
    if bib == '' then bib = holder[a[j + 4]] end
    if bib then
      local g = group_of(groups, bibs, bib)
      g[#g + 1] = k
    end
  end
  -- The competitors: their index entries, one HMGET (see INDEX); those without one are
  -- looked up the long way, whether they exist (one EXISTS counts them all, else each is
  -- looked up) and their status, a command each.
  local competitors = {}
  if #bibs > 0 then
    local found = redis.call('HMGET', INDEX, unpack(bibs))
    local rest, records = {}, {}
    for m, bib in ipairs(bibs) do
      local e = found[m]
      if e then
        competitors[bib] = { bib = bib, status = entry_status(e), entry = e }
      else
        rest[#rest + 1] = bib
        records[#records + 1] = K.competitor .. bib
      end
    end
    if #rest > 0 then
      local all = redis.call('EXISTS', unpack(records)) == #rest
      local statuses = redis.call('HMGET', K.status, unpack(rest))
      for m, bib in ipairs(rest) do
        if all or redis.call('EXISTS', records[m]) == 1 then
          competitors[bib] = { bib = bib, status = nilfalse(statuses[m]) }
        end
      end
    end
  end
  -- Unmatched reads (no competitor with the bib, or a chip nobody has): kept for assignment,
  -- in the order received (numbers from the counter, one each).
  local unmatched = {}
  for _, k in ipairs(fresh) do
    local j = 6 * k - 3
    local bib = a[j + 3]
    if bib == '' then bib = holder[a[j + 4]] end
    if not (bib and competitors[bib]) then
      unmatched[#unmatched + 1] = k
      if bib then
        flat[2 * k - 1], flat[2 * k] =
          'unmatched', 'no competitor with bib ' .. bib .. '; stored for assignment'
      else
        flat[2 * k - 1], flat[2 * k] =
          'unmatched', 'no competitor has chip ' .. a[j + 4] .. '; stored for assignment'
      end
    end
  end
  if #unmatched > 0 then
    local top = next_seq(#unmatched)
    seq_now = string.format('%d', top)
    local entries = {}
    for m, k in ipairs(unmatched) do
      entries[2 * m - 1] = string.format('%d', top - #unmatched + m)
      entries[2 * m] = a[6 * k - 3]
    end
    redis.call('ZADD', K.unmatched, unpack(entries))
  end
  local touched, index = {}, {}
  for _, bib in ipairs(bibs) do
    local c = competitors[bib]
    if c then
      local ks = groups[bib]
      local start = false
      for _, k in ipairs(ks) do
        if a[6 * k - 2] == '1' then start = true end
      end
      local changed
      if start then
        -- A start read: everything derived again, as for any other write.
        local reads = {}
        for x, k in ipairs(ks) do
          local j = 6 * k - 3
          reads[x] = { i = tonumber(a[j + 1]), ms = tonumber(a[j + 2]), id = a[j],
            entry = read_entry(a[j + 1], a[j + 2], a[j]) }
        end
        local out
        out, changed = apply_reads(complete(c), reads)
        for x, k in ipairs(ks) do flat[2 * k - 1], flat[2 * k] = out[x][1], out[x][2] end
      else
        changed = apply_later_reads(c, ks, a, flat, index)
      end
      if changed then touched[#touched + 1] = c.s end
    end
  end
  if #index > 0 then redis.call('HSET', INDEX, unpack(index)) end
  if #touched > 0 then touch(touched) end
  return flat
end

-- Whether the n fields of hash `key` named at a[p], a[p + 2], ... still hold the value that
-- follows each name (passings_planned).
local function still(key, a, p, n)
  if n == 0 then return true end
  local names = {}
  for m = 1, n do names[m] = a[p + 2 * m - 2] end
  local now = redis.call('HMGET', key, unpack(names))
  for m = 1, n do
    if now[m] ~= a[p + 2 * m - 1] then return false end
  end
  return true
end

-- passings_planned: a chip-read call whose rules the service applied itself
-- (store/passings.rs): reads at a split or the finish of competitors with an index entry,
-- as apply_later_reads would apply them, from what the service had of them: which ids are
-- new, the chips' holders, the competitors' entries and their waves' gun times (remembered
-- from earlier calls, or read). Checks that all of these are so and, if they are, makes the
-- writes the service worked out: the raw
-- reads, each competitor's appended reads, the changed times and rank entries, the new
-- entries, and the change announced (the service sends the keys and scores; Lua decides
-- nothing, which is what made chip reads cost Redis several times a SET). Answers 'ok';
-- 'changed' having written nothing when an id, gun time or chip holder was not as sent;
-- and when only some competitors' entries were not, writes the others (a batch is atomic
-- per competitor) and answers those competitors' bibs and entries as they are, bib, entry,
-- bib, entry ... (nil for none), for the service to decide their reads again: with
-- several calls in flight, one often changes a competitor another was planned from, and
-- sending the whole call again cost Redis the call twice.
-- Args: counts of new reads, waves, chips, competitors, rank sets and scopes; then
-- per new read its id and raw JSON, grouped by competitor in competitor order; per wave its
-- name and gun time as read; per chip its chip and holder; per competitor the bib, the entry
-- as read, its shape 2k + c, k entries of its reads list (its k reads), and when c is 1 (its
-- entry changes) the new entry, a count q and q time, checkpoint pairs of its changed times
-- (one count for two: most competitors of a call have one read and an unchanged entry, and
-- an argument costs a call some 870 instructions); per rank set its key, a count m and m
-- score, bib pairs; then the scope names to touch.

-- The score, bib pairs of one rank set's writes in a, from p, m of them, without those of
-- competitors in `stale` (bib -> true).
local function fresh_pairs(a, p, m, stale)
  local out = {}
  for q = p, p + 2 * m - 2, 2 do
    if not stale[a[q + 1]] then
      out[#out + 1] = a[q]
      out[#out + 1] = a[q + 1]
    end
  end
  return out
end

local function passings_planned(_, a)
  local nr, nw, nh, nc, nz, ns =
    count(a[1]), count(a[2]), count(a[3]), count(a[4]), count(a[5]), count(a[6])
  local raw_at = 7
  local p = raw_at + 2 * nr
  local ids = {}
  for k = 1, nr do ids[k] = a[raw_at + 2 * k - 2] end
  local known = redis.call('HMGET', K.passings, unpack(ids))
  for k = 1, nr do
    if known[k] then return 'changed' end
  end
  if not still(K.waves, a, p, nw) or not still(K.chips, a, p + 2 * nw, nh) then
    return 'changed'
  end
  p = p + 2 * (nw + nh)
  -- Per competitor: bib, where its arguments start, its count of reads, and where its new
  -- entry and changed times start (nil without).
  local bibs, at, listed, times_at = {}, {}, {}, {}
  for m = 1, nc do
    local shape = count(a[p + 2])
    local changed = shape % 2
    bibs[m], at[m], listed[m] = a[p], p, (shape - changed) / 2
    p = p + 3 + listed[m]
    if changed == 1 then
      times_at[m] = p
      p = p + 2 + 2 * count(a[p + 1])
    end
  end
  local entries = redis.call('HMGET', INDEX, unpack(bibs))
  -- Competitors whose entry is not as sent: bib -> true, and their bibs and entries.
  local stale, answer
  for m = 1, nc do
    if entries[m] ~= a[at[m] + 1] then
      if not stale then stale, answer = {}, {} end
      stale[bibs[m]] = true
      answer[#answer + 1] = bibs[m]
      answer[#answer + 1] = entries[m]
    end
  end
  if answer and #answer == 2 * nc then return answer end
  if not stale then
    redis.call('HSET', K.passings, unpack(a, raw_at, raw_at + 2 * nr - 1))
  else
    -- (The raw reads are in competitor order, listed[m] of competitor m.)
    local raw, r = {}, raw_at
    for m = 1, nc do
      if not stale[bibs[m]] then
        for q = r, r + 2 * listed[m] - 1 do raw[#raw + 1] = a[q] end
      end
      r = r + 2 * listed[m]
    end
    redis.call('HSET', K.passings, unpack(raw))
  end
  local index = {}
  for m = 1, nc do
    local j, bib = at[m], bibs[m]
    if not (stale and stale[bib]) then
      redis.call('RPUSH', K.reads .. bib, unpack(a, j + 3, j + 2 + listed[m]))
      local t = times_at[m]
      if t then
        redis.call('ZADD', K.times .. bib, unpack(a, t + 2, t + 1 + 2 * count(a[t + 1])))
        index[#index + 1] = bib
        index[#index + 1] = a[t]
      end
    end
  end
  if #index > 0 then redis.call('HSET', INDEX, unpack(index)) end
  for _ = 1, nz do
    local m = count(a[p + 1])
    if not stale then
      redis.call('ZADD', a[p], unpack(a, p + 2, p + 1 + 2 * m))
    else
      local pairs = fresh_pairs(a, p + 2, m, stale)
      if #pairs > 0 then redis.call('ZADD', a[p], unpack(pairs)) end
    end
    p = p + 2 + 2 * m
  end
  local names = {}
  for k = 1, ns do names[k] = a[p + k - 1] end
  touch_names(names)
  return answer or 'ok'
end

-- assign: args id, bib, actor, at, checkpoint index, ms. An unmatched read is given to a
-- competitor and applied (audited). Returns outcome, reason | missing | no_read | matched.
local function assign(_, a)
  local id, bib, actor, at = a[1], a[2], a[3], a[4]
  local i, ms = tonumber(a[5]), tonumber(a[6])
  if redis.call('HEXISTS', K.passings, id) == 0 then return { 'no_read' } end
  if not redis.call('ZSCORE', K.unmatched, id) then return { 'matched' } end
  local c = load(bib)
  if not c then return { 'missing' } end
  local before = times_json(current_of(bib))
  redis.call('ZREM', K.unmatched, id)
  local out = apply_reads(c, { { i = i, ms = ms, id = id, entry = read_entry(a[5], a[6], id) } })
  touch({ c.s })
  audit(at, actor, 'passing.assigned', bib, before,
    { passing = id, checkpoint = CPS[i], time = fmt(ms), outcome = out[1][1],
      times = times_json(current_of(bib)) })
  return { out[1][1], out[1][2] }
end

-- import: args actor, at, f, field_1 .. field_f, then per competitor: bib, order,
-- value_1 .. value_f. The start-list import's bulk create (store/import.rs): what `put` writes
-- for a new competitor (record, results row, listing and untimed entries, audit entry, scope
-- versions), batched: one ZADD per set and one HSET of the rows for the whole call. A bib that
-- exists, has times or a status without a record (legacy data), or carries a wave or a chip
-- (whose indexes and checks are `put`'s) is left alone and returned: the caller upserts it
-- through `put`, which moves existing entries.
local function import(_, a)
  local actor, at, f = a[1], a[2], tonumber(a[3])
  local names, optional = {}, {}
  for j = 1, f do
    local name = a[3 + j]
    names[j] = name
    if name == 'wave' or name == 'chip' then optional[#optional + 1] = j end
  end
  local skipped, rows, sets, set_order, touched, seen = {}, {}, {}, {}, {}, {}
  -- The new competitors' times index entries (see INDEX), written with one HSET: a start
  -- list's first chip reads need not read its competitors the long way.
  local index = {}
  local function add(key, score, bib)
    local set = group_of(sets, set_order, key)
    set[#set + 1] = score
    set[#set + 1] = bib
  end
  -- Untimed entries are appended in file order: the call takes a block of numbers, one per
  -- competitor of the call, on its first new competitor (see next_seq; the version of the
  -- change is the block's last).
  local count = (#a - 3 - f) / (2 + f)
  local base
  local k = 0
  local p = 4 + f
  while p <= #a do
    k = k + 1
    local bib, order = a[p], a[p + 1]
    local ckey = K.competitor .. bib
    local special = false
    for _, j in ipairs(optional) do if a[p + 1 + j] ~= '' then special = true end end
    if special or redis.call('EXISTS', ckey, K.times .. bib) > 0
      or redis.call('HEXISTS', K.status, bib) == 1 then
      skipped[#skipped + 1] = bib
    else
      local record, after = {}, {}
      for j = 1, f do
        -- (an empty wave or chip, the only fields that may be empty, is an absent one)
        local v = a[p + 1 + j]
        if v ~= '' or (names[j] ~= 'wave' and names[j] ~= 'chip') then
          record[#record + 1] = names[j]
          record[#record + 1] = v
          after[names[j]] = v
        end
      end
      redis.call('HSET', ckey, unpack(record))
      audit(at, actor, 'competitor.created', bib, nil, after)
      rows[#rows + 1] = bib
      rows[#rows + 1] = row_of(after)
      -- (No times, manual times or status yet: `skipped` has those.)
      local c = fill({ bib = bib }, after.gender, after.category, after.country, after.wave,
        after.chip)
      index[#index + 1] = bib
      index[#index + 1] = entry_of(NONE, NONE, c)
      if not base then
        local top = next_seq(count)
        seq_now = string.format('%d', top)
        base = top - count
      end
      local score = string.format('%d', base + k)
      add(LIST_ALL, order, bib)
      if after.country then add(country_list(after.country), score, bib) end
      local s = c.s
      for i = 1, #s do add(s.untimed[i], score, bib) end
      if not seen[s] then
        seen[s] = true
        touched[#touched + 1] = s
      end
    end
    p = p + 2 + f
  end
  if #rows > 0 then
    redis.call('HSET', K.rows, unpack(rows))
    redis.call('HSET', INDEX, unpack(index))
    for _, key in ipairs(set_order) do redis.call('ZADD', key, unpack(sets[key])) end
    touch(touched, true)
  end
  return skipped
end

-- The times route's read (`GET /api/v1/competitors/{bib}/times`), in one atomic step and one
-- round trip: a competitor's times, what they are measured from and their rank in the whole
-- field at each checkpoint but the start, with the version of scope `all` (the ETag), so the
-- ranks are those of the times and the version that of both. Returns {version, false} when
-- the competitor does not exist, else {version, {wave, gun, status, times (flat checkpoint, ms
-- pairs), the checkpoints with a manual time, ranks (one per checkpoint, false where there is
-- none: always at the start)}}. The times come from times_read below. Only a checkpoint with
-- a time, of a competitor without a status, is ranked (as `rank` ranks), and its rank costs
-- one ZCOUNT: the competitor's score there is their net_score, which `rank` wrote; equal
-- times share a rank.
local RANK_ALL = {}
for i = 2, N do RANK_ALL[i] = NET[i](K.all) end

-- times_read (below) from the competitor's times index entry e.
local function times_of_entry(bib, e)
  local known, _, _, wave = entry_record(e)
  if not known then wave = redis.call('HGET', K.competitor .. bib, 'wave') end
  local times, manual = {}, {}
  for i = 1, N do
    local ms = entry_time(e, i)
    if ms then
      times[#times + 1] = CPS[i]
      times[#times + 1] = string.format('%d', ms)
    end
    if entry_manual(e, i) then manual[#manual + 1] = CPS[i] end
  end
  return true, wave or false, entry_status(e) or false, times, manual
end

-- A competitor's times as the read routes give them: found (false: no such competitor), then
-- wave, status, times (flat checkpoint, ms pairs) and the checkpoints with a manual time; from
-- their times index entry when there is one (one HGET for four reads; it is exact, see
-- INDEX), else from their keys.
local function times_read(bib)
  local e = redis.call('HGET', INDEX, bib)
  if e then return times_of_entry(bib, e) end
  local ckey = K.competitor .. bib
  -- Every record holds its bib; EXISTS only for one that would not.
  local record = redis.call('HMGET', ckey, 'bib', 'wave')
  if not record[1] and redis.call('EXISTS', ckey) == 0 then return false end
  return true, record[2], redis.call('HGET', K.status, bib),
    redis.call('ZRANGE', K.times .. bib, 0, -1, 'WITHSCORES'), redis.call('HKEYS', K.manual .. bib)
end

local function competitor_times(_, a)
  local bib = a[1]
  local version = redis.call('HGET', K.live_version, K.all) or '0'
  local found, wave, status, times, manual = times_read(bib)
  if not found then return { version, false } end
  local gun = false
  if wave then gun = redis.call('HGET', K.waves, wave) end
  local t = by_position(times)
  local ranks = {}
  for i = 1, N do
    ranks[i] = false
    local score = i > 1 and t[i] and not status and net_score(t[1], gun and tonumber(gun), t[i])
    if score then
      ranks[i] = redis.call('ZCOUNT', RANK_ALL[i], '-inf', string.format('(%d', score)) + 1
    end
  end
  return { version, { wave, gun, status, times, manual, ranks } }
end

-- The competitor passings route's read (`GET /api/v1/competitors/{bib}/passings`), in one
-- atomic step, so the reads and the times they are shown to count for agree: false when the
-- competitor does not exist, else {the competitor's raw reads (JSON as received, in order
-- received), times (flat checkpoint, ms pairs), the checkpoints with a manual time}.
-- (HMGET in slices: unpack takes a few thousand values at most, and nothing bounds how many
-- reads one bib is sent.)
local SLICE = 1000
local function competitor_passings(_, a)
  local bib = a[1]
  local found, _, _, times, manual = times_read(bib)
  if not found then return false end
  local listed = redis.call('LRANGE', K.reads .. bib, 0, -1)
  local raw = {}
  for first = 1, #listed, SLICE do
    local ids = {}
    for k = first, math.min(first + SLICE - 1, #listed) do
      -- (Entries are "<checkpoint index> <ms> <id>", see read_entry.)
      ids[#ids + 1] = string.match(listed[k], '^%d+ %d+ (.*)$')
    end
    local got = redis.call('HMGET', K.passings, unpack(ids))
    for k = 1, #ids do
      if got[k] then raw[#raw + 1] = got[k] end
    end
  end
  return { raw, times, manual }
end

-- Every function starts without a number (seq): each call takes its own.
local function entry(f)
  return function(keys, args)
    seq_now = nil
    return f(keys, args)
  end
end

-- Every function's name ends in the library's version (VERSION, '_<version>', generated:
-- store/functions.rs), so two versions of the service on one Redis call their own.
local function register(name, f)
  redis.register_function(name .. VERSION, entry(f))
end
local function register_read(name, f)
  redis.register_function { function_name = name .. VERSION, callback = f, flags = { 'no-writes' } }
end

register('timing_create', create_new)
register('timing_put', put)
register('timing_delete', delete)
register('timing_times', times)
register('timing_status', status)
register('timing_wave_set', wave_set)
register('timing_wave_delete', wave_delete)
register('timing_passings', passings)
register('timing_passings_planned', passings_planned)
register('timing_assign', assign)
register('timing_import', import)
register_read('timing_competitor_times', competitor_times)
register_read('timing_competitor_passings', competitor_passings)
