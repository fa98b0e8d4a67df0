local e = ARGV[1]
local N, W = 4, 8
local T, MAN, CUR = {}, {}, {}
local CP_INDEX = { ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4 }
local function entry_time(e, i)
  local d1, d2, d3, d4, d5, d6, d7, d8 = string.byte(e, W * i - W + 1, W * i)
  if d1 == 45 then return nil end
  return ((((((d1 * 10 + d2) * 10 + d3) * 10 + d4) * 10 + d5) * 10 + d6) * 10 + d7) * 10 + d8 - 533333328
end
local function entry_manual(e, i) return string.byte(e, W * N + i) == 49 end
local a = { 'id', '2', '36000000', 'bib', '', 'raw' }
local ks = { 1 }
local MODE = ARGV[2]
for r = 1, 100000 do
  if MODE == 'full' or MODE == 'clear' then
    local t, manual, cur = T, MAN, CUR
    for i = 1, N do t[i], manual[i], cur[i] = nil, nil, nil end
    if MODE == 'full' then
      t[1] = entry_time(e, 1)
      for _, k in ipairs(ks) do
        local i = CP_INDEX[a[6 * k - 4]]
        if manual[i] == nil then
          t[i] = entry_time(e, i)
          manual[i] = entry_manual(e, i)
        end
      end
      for i = 1, N do cur[i] = t[i] end
    end
  end
end
return 1
