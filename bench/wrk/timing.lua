-- wrk script for bench/service.sh: one scenario per run, chosen by the first argument
-- (`wrk ... -s bench/wrk/timing.lua -- <scenario> <competitors>`).
--   create   POST /api/v1/competitors with a fresh bib per request
--   settime  PUT  /api/v1/competitors/<random bib>/times/finish
--   gettimes GET  /api/v1/competitors/<random bib>/times
--   legacy   GET  /gettimes/<random bib>
--   results  GET  /api/v1/results?offset=<random>&limit=50
--   paced    the same, each connection waiting <third argument> ms between requests (a fixed
--            load below saturation, where a latency figure is the service's, not a queue's)
--   notmodified GET /api/v1/results?limit=50 with `If-None-Match: <third argument>` (304s)
--   passings POST /api/v1/passings, batches of 500 split1 reads of random bibs (ids unique
--            across runs too: the run's start second is in them; times of day spread over
--            three hours: a bib's first read and any earlier one are applied and re-rank it,
--            later ones are kept)
-- `done` prints one machine-readable line: RESULT requests req/s p50_ms p99_ms non2xx errors
-- applied, the last the reads answered `applied` (passings; 0 in the other scenarios).

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local scenario, competitors, counter, etag, pace, run = "results", 10000, 0, nil, 0, 0
-- (A global: `done` reads it from each thread with thread:get.)
applied = 0
local json = { ["Content-Type"] = "application/json" }

function init(args)
  scenario = args[1] or scenario
  competitors = tonumber(args[2] or competitors)
  etag = args[3]
  if scenario == "paced" then pace = tonumber(args[3]) end
  math.randomseed(os.time() * 100 + tid)
  -- (A run restarts `counter`: without this, a second run's reads would repeat the first's ids
  -- and be answered as duplicates, and its creates the first's bibs and be answered 409.)
  run = os.time()
  -- Passings count their applied reads (the share of reads that change a time is what a
  -- read costs Redis, service.sh). Only there: wrk copies every body into Lua when a
  -- `response` function exists, which would cost the other scenarios' wrk CPU.
  if scenario == "passings" then
    response = function(_, _, body)
      local at = 1
      while true do
        local found = string.find(body, '"outcome":"applied"', at, true)
        if not found then break end
        applied, at = applied + 1, found + 19
      end
    end
  end
end

local function random_bib()
  return string.format("%012d", math.random(1, competitors))
end

local function random_time()
  return string.format("%02d:%02d:%02d.%03d", math.random(10, 12), math.random(0, 59),
    math.random(0, 59), math.random(0, 999))
end

function request()
  if scenario == "create" then
    counter = counter + 1
    local body = string.format(
      '{"bib":"w%d-%d-%d","first_name":"Bench","last_name":"Runner","gender":"male","country":"FI","category":"men20"}',
      run % 100000, tid, counter)
    return wrk.format("POST", "/api/v1/competitors", json, body)
  elseif scenario == "settime" then
    return wrk.format("PUT", "/api/v1/competitors/" .. random_bib() .. "/times/finish", json,
      '{"time":"' .. random_time() .. '"}')
  elseif scenario == "gettimes" then
    return wrk.format("GET", "/api/v1/competitors/" .. random_bib() .. "/times")
  elseif scenario == "notmodified" then
    return wrk.format("GET", "/api/v1/results?limit=50", { ["If-None-Match"] = etag })
  elseif scenario == "legacy" then
    return wrk.format("GET", "/gettimes/" .. random_bib())
  elseif scenario == "passings" then
    counter = counter + 1
    local reads = {}
    for i = 1, 500 do
      reads[i] = string.format(
        '{"id":"w%d-%d-%d-%d","checkpoint":"split1","bib":"%s","time":"%s","source":"bench"}',
        run, tid, counter, i, random_bib(), random_time())
    end
    return wrk.format("POST", "/api/v1/passings", json,
      '{"passings":[' .. table.concat(reads, ",") .. ']}')
  else
    local offset = math.random(0, competitors - 50)
    return wrk.format("GET", "/api/v1/results?limit=50&offset=" .. offset)
  end
end

function delay()
  return pace
end

function done(summary, latency, requests)
  local e = summary.errors
  local total = 0
  for _, thread in ipairs(threads) do total = total + (thread:get("applied") or 0) end
  io.write(string.format("RESULT %d %.0f %.3f %.3f %d %d %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout, total))
end
