-- One decision on a credential's rate-limit window, taken inside Redis/Valkey in one atomic step.
--
-- The same rules as the pure Python steps (window.py and bounds.py: loading and clamps; admit.py: may
-- this request go now?; settle.py: what did the answer say?; burst.py; buckets.py), written once more
-- for the store to run; tests/scheduler/test_window_script.py holds the two to the same answers on
-- generated documents. Keep them in step: a change to one is a change to both.
--
-- KEYS[1]: the window document. ARGV[1]: the step (decide, settle, renew, forget, seed); ARGV[2]: now,
-- Unix seconds; ARGV[3]: the step's arguments (JSON); ARGV[4]: the document's TTL in ms; ARGV[5]: the
-- channel told (with the window's in-flight count, budget left and burst) when an answer is settled, a
-- ticket taken back or a limit seeded. Returns {"r": result, "d": window, "w": 0|1}.

local MAX_WINDOW_S = 86400.0
local MAX_COUNT = 1000000
local MAX_FLIGHT_S = 600.0
local TICKET_GRACE_S = 2.0
local MAX_TICKET_S = MAX_WINDOW_S + TICKET_GRACE_S
local RECENT_KEPT = 64
local REPORTS_KEPT = 16
local MAX_VIRTUAL = 1e12
local MAX_TAG_LEAD = 1e6
local ACTIVE_S = 0.25
local MIN_WEIGHT, MAX_WEIGHT = 0.001, 1000.0
local PROBE_ANSWERS = 3
local BURST_S = 1.0
local MARGIN_S = 0.05
local MAX_BURST_WINDOW_S = 90.0
local LEARNT_FOR_S = 600.0
local PAGE_BURSTS = {[60] = 10, [30] = 5, [10] = 2, [300] = 30, [120] = 20}

local null = cjson.null
local ARRAY = {}  -- metatable marking a table encoded as a JSON array (an empty one too)

local function arr(t) return setmetatable(t, ARRAY) end
local function absent(v) return v == nil or v == null end
local function malformed() error('malformed', 0) end

-- --- reading (bounds.py) -------------------------------------------------------------------------

local function number(v)
  if type(v) ~= 'number' or v ~= v or v == math.huge or v == -math.huge then malformed() end
  return v
end

local function count(v)
  v = number(v)
  if v ~= math.floor(v) then malformed() end
  return v
end

local function text(v)
  if type(v) ~= 'string' then malformed() end
  return v
end

local function mapping(v)
  if absent(v) then return {} end
  if type(v) ~= 'table' then malformed() end
  local k = next(v)
  if k ~= nil and type(k) ~= 'string' then malformed() end
  return v
end

local function sequence(v)
  if absent(v) then return {} end
  if type(v) ~= 'table' then malformed() end
  local k = next(v)
  if k ~= nil and type(k) ~= 'number' then malformed() end
  return v
end

local function clamp_count(v) return math.min(math.max(0, v), MAX_COUNT) end

local function opt(d, name, f)
  local v = d[name]
  if absent(v) then return nil end
  return f(v)
end

local function report_of(bucket, v)
  -- [remaining, reset_at, limit, answers_at]; an object naming them (as kept before) is read too.
  local r
  if type(v) == 'table' and type(next(v)) == 'string' then
    r = {v.remaining, v.reset_at, v.limit, v.answers_at}
  else
    r = sequence(v)
    if #r < 4 then malformed() end
  end
  local limit = nil
  if not absent(r[3]) then limit = count(r[3]) end
  return {bucket = bucket, remaining = clamp_count(count(r[1])), reset_at = number(r[2]), limit = limit,
          answers_at = clamp_count(count(r[4]))}
end

local function recent_of(v)
  -- Each bucket's send times under its name; a list of [time, bucket] pairs (as kept before) is read too.
  local found = {}
  if type(v) == 'table' and type(next(v)) == 'string' then
    for b, times in pairs(v) do
      text(b)
      for _, t in ipairs(sequence(times)) do found[#found + 1] = {number(t), b} end
    end
  else
    for _, x in ipairs(sequence(v)) do
      local p = sequence(x)
      if #p < 2 then malformed() end
      found[#found + 1] = {number(p[1]), text(p[2])}
    end
  end
  return found
end

local function read(d)
  local w = {
    limit = opt(d, 'limit', count), remaining = opt(d, 'remaining', count), reset_at = opt(d, 'reset_at', number),
    blocked_until = opt(d, 'blocked_until', number) or 0, window_s = opt(d, 'window_s', number),
    answered = opt(d, 'answered', count) or 0, sent = opt(d, 'sent', count) or 0,
    last_send = opt(d, 'last_send', number) or -math.huge,
    burst = opt(d, 'burst', count), burst_until = opt(d, 'burst_until', number) or 0,
    safe = opt(d, 'safe', count) or 0, answers = opt(d, 'answers', count) or 0,
    windows = opt(d, 'windows', count) or 0,
    virtual = opt(d, 'virtual', number) or 0, active = {},
    flights = {}, waiting = {}, recent = {}, reports = {}, separate = {}, sent_by = {},
  }
  for k, v in pairs(mapping(d.flights)) do w.flights[k] = number(v) end
  for k, v in pairs(mapping(d.waiting)) do
    local p = sequence(v)
    if #p < 4 then malformed() end
    w.waiting[k] = {number(p[1]), number(p[2]), number(p[3]), text(p[4])}
  end
  for k, v in pairs(mapping(d.active)) do
    local p = sequence(v)
    if #p < 3 then malformed() end
    w.active[k] = {number(p[1]), number(p[2]), number(p[3])}
  end
  w.recent = recent_of(d.recent)
  for k, v in pairs(mapping(d.reports)) do w.reports[k] = report_of(k, v) end
  for k, v in pairs(mapping(d.separate)) do w.separate[k] = number(v) end
  for k, v in pairs(mapping(d.sent_by)) do w.sent_by[k] = count(v) end
  return w
end

local function fresh()
  return {blocked_until = 0, answered = 0, sent = 0, last_send = -math.huge, burst_until = 0, safe = 0, answers = 0,
          windows = 0, virtual = 0, active = {}, flights = {}, waiting = {}, recent = {}, reports = {}, separate = {},
          sent_by = {}}
end

local function sorted_reports(reports, keep)
  local entries = {}
  for k, r in pairs(reports) do entries[#entries + 1] = {k, r} end
  table.sort(entries, function(a, b)
    if a[2].answers_at ~= b[2].answers_at then return a[2].answers_at < b[2].answers_at end
    return a[1] < b[1]
  end)
  local kept = {}
  for i = math.max(1, #entries - keep + 1), #entries do kept[entries[i][1]] = entries[i][2] end
  return kept
end

local function bound(w, now)
  local flights, waiting = {}, {}
  for k, exp in pairs(w.flights) do if exp > now then flights[k] = math.min(exp, now + MAX_FLIGHT_S) end end
  w.virtual = math.min(math.max(0, w.virtual), MAX_VIRTUAL)
  for k, p in pairs(w.waiting) do
    if p[2] > now then
      waiting[k] = {p[1], math.min(p[2], now + MAX_TICKET_S), math.min(p[3], w.virtual + MAX_TAG_LEAD), p[4]}
    end
  end
  w.flights, w.waiting = flights, waiting
  local active = {}
  for k, p in pairs(w.active) do
    if p[3] > now then
      active[k] = {p[1], math.min(math.max(p[2], MIN_WEIGHT), MAX_WEIGHT), math.min(p[3], now + ACTIVE_S)}
    end
  end
  w.active = active
  if w.limit ~= nil and not (0 < w.limit and w.limit <= MAX_COUNT) then w.limit = nil end
  if w.remaining ~= nil then w.remaining = math.min(clamp_count(w.remaining), w.limit or MAX_COUNT) end
  if w.reset_at ~= nil and w.reset_at > now + MAX_WINDOW_S then w.reset_at, w.remaining = nil, nil end
  if w.window_s ~= nil and not (0 < w.window_s and w.window_s <= MAX_WINDOW_S) then w.window_s = nil end
  if w.blocked_until > now + MAX_WINDOW_S then w.blocked_until = 0 end
  if w.burst ~= nil and not (0 < w.burst and w.burst <= MAX_COUNT) then w.burst = nil end
  w.burst_until = math.min(w.burst_until, now + LEARNT_FOR_S)
  w.answered, w.sent = clamp_count(w.answered), clamp_count(w.sent)
  w.safe, w.answers = clamp_count(w.safe), clamp_count(w.answers)
  w.windows = math.min(math.max(0, w.windows), 2)
  w.last_send = math.min(w.last_send, now)
  if w.reset_at == nil and w.remaining ~= nil and next(w.flights) == nil
      and w.last_send + (w.window_s or MAX_WINDOW_S) <= now then
    w.remaining = w.limit
  end
  local sorted = {}
  for i, p in ipairs(w.recent) do sorted[i] = {math.min(p[1], now), p[2]} end
  table.sort(sorted, function(x, y)
    if x[1] ~= y[1] then return x[1] < y[1] end
    return x[2] < y[2]
  end)
  local recent = {}
  for i = math.max(1, #sorted - RECENT_KEPT + 1), #sorted do recent[#recent + 1] = sorted[i] end
  w.recent = recent
  for k, v in pairs(w.sent_by) do w.sent_by[k] = clamp_count(v) end
  w.reports = sorted_reports(w.reports, REPORTS_KEPT)
  if w.burst ~= nil and w.burst_until <= now then w.burst, w.safe = nil, 0 end  -- burst.forget_old_burst
end

local function load(d, now)
  if d == nil then return fresh() end
  local ok, w = pcall(read, d)
  if not ok then return fresh() end
  bound(w, now)
  return w
end

-- --- writing ---------------------------------------------------------------------------------------

local function nn(v) if v == nil then return null end return v end

local function dump(w)
  local flights, waiting, recent, reports, separate, sent_by = {}, {}, {}, {}, {}, {}
  for k, v in pairs(w.flights) do flights[k] = v end
  for k, p in pairs(w.waiting) do waiting[k] = arr({p[1], p[2], p[3], p[4]}) end
  local active = {}
  for k, p in pairs(w.active) do active[k] = arr({p[1], p[2], p[3]}) end
  for _, p in ipairs(w.recent) do
    if recent[p[2]] == nil then recent[p[2]] = arr({}) end
    local times = recent[p[2]]
    times[#times + 1] = p[1]
  end
  for k, r in pairs(w.reports) do reports[k] = arr({r.remaining, r.reset_at, nn(r.limit), r.answers_at}) end
  for k, v in pairs(w.separate) do separate[k] = v end
  for k, v in pairs(w.sent_by) do sent_by[k] = v end
  local last_send = null
  if w.last_send ~= -math.huge then last_send = w.last_send end
  return {limit = nn(w.limit), remaining = nn(w.remaining), reset_at = nn(w.reset_at), blocked_until = w.blocked_until,
          window_s = nn(w.window_s), answered = w.answered, sent = w.sent, last_send = last_send, flights = flights,
          waiting = waiting, burst = nn(w.burst), burst_until = w.burst_until, safe = w.safe, recent = recent,
          answers = w.answers, reports = reports, separate = separate, sent_by = sent_by, windows = w.windows,
          virtual = w.virtual, active = active}
end

local function num(x)
  -- The shortest form that reads back as the same double (as Python writes floats).
  if x == math.floor(x) and math.abs(x) < 2 ^ 53 then return string.format('%d', x) end
  for p = 14, 16 do
    local s = string.format('%.' .. p .. 'g', x)
    if tonumber(s) == x then return s end
  end
  return string.format('%.17g', x)
end

local function enc(v)
  local t = type(v)
  if v == null then return 'null' end
  if t == 'boolean' then return v and 'true' or 'false' end
  if t == 'number' then return num(v) end
  if t == 'string' then return cjson.encode(v) end
  local parts = {}
  if getmetatable(v) == ARRAY then
    for i = 1, #v do parts[i] = enc(v[i]) end
    return '[' .. table.concat(parts, ',') .. ']'
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do parts[i] = cjson.encode(k) .. ':' .. enc(v[k]) end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function same(a, b)
  -- Python's == on decoded JSON (numbers by value).
  if type(a) ~= type(b) then return false end
  if type(a) ~= 'table' then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function changed(d, w) return not same(d, dump(w)) end

-- --- burst.py --------------------------------------------------------------------------------------

local function counts(t, now) return t > now - BURST_S - MARGIN_S end
local function may_burst(w) return w.window_s ~= nil and w.window_s <= MAX_BURST_WINDOW_S end

local function page_burst(w)
  if w.limit ~= nil and may_burst(w) then return PAGE_BURSTS[w.limit] end
  return nil
end

local function ramping(w, ramp) return ramp and w.burst == nil and page_burst(w) == nil and may_burst(w) end

local function length_known(w) return w.windows >= 2 and w.window_s ~= nil end

local function shared(w, bucket)
  if next(w.separate) ~= nil then return true end
  for b in pairs(w.sent_by) do if b ~= bucket then return true end end
  for b in pairs(w.reports) do if b ~= bucket then return true end end
  return false
end

local function average(w)
  if w.limit == nil or w.window_s == nil or w.window_s == 0 or not length_known(w) then return 1 end
  return math.max(1, math.floor(w.limit * BURST_S / w.window_s))
end

local function allowed(w, ramp)
  if w.burst ~= nil then return w.burst end
  local from_page = page_burst(w)
  if from_page ~= nil then return from_page end
  if ramping(w, ramp) then return math.max(w.safe + 1, average(w)) end
  return nil
end

local function counted(w, now, inherited, excluding)
  local recent = {}
  for _, p in ipairs(w.recent) do
    if counts(p[1], now) and excluding[p[2]] == nil then recent[#recent + 1] = p[1] end
  end
  for _, t in ipairs(inherited) do if counts(t, now) then recent[#recent + 1] = t end end
  return recent
end

local function probes(w, now, inherited, excluding)
  return #counted(w, now, inherited, excluding) + 1 > math.max(w.safe, average(w))
end

local function burst_wait(w, now, ramp, inherited, excluding)
  local cap = allowed(w, ramp)
  if cap == nil then return 0.0 end
  local recent = counted(w, now, inherited, excluding)
  if #recent < cap then return 0.0 end
  table.sort(recent)
  return math.max(0.0, recent[#recent - cap + 1] + BURST_S + MARGIN_S - now)
end

local function note_send(w, now, bucket, inherited, excluding)
  local recent = {}
  for _, p in ipairs(w.recent) do if counts(p[1], now) then recent[#recent + 1] = p end end
  recent[#recent + 1] = {now, bucket}
  local kept = {}
  for i = math.max(1, #recent - RECENT_KEPT + 1), #recent do kept[#kept + 1] = recent[i] end
  w.recent = kept
  -- burst.note_send: the sends burst_wait counts in the period, and those of them in this whole second.
  local second, in_period, in_second = math.floor(now), 0, 0
  local function add(t)
    in_period = in_period + 1
    if math.floor(t) == second then in_second = in_second + 1 end
  end
  for _, p in ipairs(kept) do if counts(p[1], now) and excluding[p[2]] == nil then add(p[1]) end end
  for _, t in ipairs(inherited) do if counts(t, now) then add(t) end end
  return in_period, in_second
end

local function note_burst_refusal(w, in_period, now)
  local known = w.burst
  if known == nil then known = page_burst(w) end
  local ceiling = in_period - 1
  if known ~= nil then ceiling = math.min(known, in_period - 1) end
  w.burst = math.max(1, average(w), ceiling)
  w.burst_until = now + LEARNT_FOR_S
end

-- --- admit.py --------------------------------------------------------------------------------------

local function in_flight(w)
  local n = 0
  for _ in pairs(w.flights) do n = n + 1 end
  return n
end

local function WAIT(s, why, advisory) return {k = 'wait', s = s, why = why, advisory = advisory} end
local function AWAIT(why) return {k = 'await', why = why} end

local function held(w, now, learning)
  local blocked = w.blocked_until > now
  local spent = w.remaining ~= nil and w.remaining <= 0 and (w.reset_at == nil or now < w.reset_at)
  if (blocked or spent or learning) and in_flight(w) > 0 then
    return AWAIT('waiting for answers to requests already sent')
  end
  if blocked then return WAIT(w.blocked_until - now, 'rate limited by the upstream', false) end
  if spent and w.reset_at ~= nil then return WAIT(w.reset_at - now, 'rate limit budget spent', false) end
  return nil
end

local function turn_if_over(w, now)
  if w.reset_at ~= nil and now >= w.reset_at then
    w.sent = in_flight(w)
    w.sent_by = {}
    if w.limit == nil then w.remaining = nil else w.remaining = math.max(0, w.limit - w.sent) end
    w.reset_at = nil
  end
end

local function tag_of(w, a)
  -- admit.tag_of: its ticket's start tag, given once; else max(V, its principal's last tag) + 1/weight.
  local mine = w.waiting[a.id]
  if mine ~= nil then return mine[3] end
  local last = nil
  for _, p in pairs(w.waiting) do
    if p[4] == a.principal and (last == nil or p[3] > last) then last = p[3] end
  end
  if last == nil then last = w.virtual end
  return math.max(w.virtual, last) + 1.0 / a.weight
end

local function ahead(p, tag, a)
  -- A waiting ticket `p` goes before the call `a` of start tag `tag`: a smaller tag, or an equal one that came first.
  return p[3] < tag or (p[3] == tag and p[1] < a.arrived_at)
end

local function waiting_besides(w, a, older)
  local n = 0
  local tag = nil
  if older then tag = tag_of(w, a) end
  for k, p in pairs(w.waiting) do
    if k ~= a.id and (not older or ahead(p, tag, a)) then n = n + 1 end
  end
  return n
end

local function yields(w, now, a)
  -- admit.yields: a waiting call of another principal ahead of this one is due to look now.
  local tag = tag_of(w, a)
  for k, p in pairs(w.waiting) do
    if k ~= a.id and p[4] ~= a.principal and p[2] - TICKET_GRACE_S <= now and ahead(p, tag, a) then
      return true
    end
  end
  return false
end

local function behind_active(w, now, a)
  -- admit.behind_active: another principal that sent a moment ago would go first with its next call.
  local tag = tag_of(w, a)
  for k, p in pairs(w.active) do
    if k ~= a.principal and p[3] > now and math.max(w.virtual, p[1]) + 1.0 / p[2] < tag then return true end
  end
  return false
end

local function pace(w, now, a, others)
  if w.limit == nil or w.remaining == nil or w.reset_at == nil then return 0.0 end
  local demand = a.queued_here + 1 + others
  if w.remaining > a.pace_below * w.limit or demand <= w.remaining then return 0.0 end
  local length = w.window_s
  if length == nil or length == 0 then length = w.reset_at - now end
  local margin = 0.1 * length
  local interval = math.max(0.0, w.reset_at - now - margin) / (w.remaining + 1)
  return math.max(0.0, w.last_send + interval - now)
end

local function queued_or_paced(w, now, a)
  if w.remaining ~= nil and waiting_besides(w, a, true) >= w.remaining then
    return AWAIT('waiting for calls that came first')
  end
  if yields(w, now, a) or behind_active(w, now, a) then return WAIT(0.05, 'letting the call whose turn it is go first', false) end
  if allowed(w, a.own_window or shared(w, a.bucket)) ~= nil then return nil end
  if not a.paced then
    local seconds = pace(w, now, a, waiting_besides(w, a, false))
    if seconds > 0 then return WAIT(seconds, 'pacing the last requests of the window', true) end
  end
  return nil
end

local function burst_held(w, now, a)
  local ramp = a.own_window or shared(w, a.bucket)
  local seconds = burst_wait(w, now, ramp, a.inherited, w.separate)
  local alone = a.own_window or next(w.separate) ~= nil
  if ramping(w, ramp) and in_flight(w) > 0
      and (seconds > 0 or (alone and probes(w, now, a.inherited, w.separate))) then
    return AWAIT("finding the upstream's burst rate")
  end
  if seconds <= 0 then return nil end
  return WAIT(seconds, "pacing at the upstream's burst rate", false)
end

local function keep_ticket(d, w, now, a, decision)
  local wake = now
  if decision.k == 'wait' and decision.why ~= 'letting the call whose turn it is go first' then wake = now + decision.s end
  local ticket = w.waiting[a.id]
  if ticket ~= nil and ticket[2] >= wake + TICKET_GRACE_S / 2 and d ~= nil and not changed(d, w) then
    return decision, false
  end
  w.waiting[a.id] = {a.arrived_at, wake + TICKET_GRACE_S, tag_of(w, a), a.principal}
  return decision, true
end

local function reserve(w, now, a)
  local tag = tag_of(w, a)
  w.virtual = math.max(w.virtual, tag)
  w.active[a.principal] = {tag, a.weight, now + ACTIVE_S}
  w.waiting[a.id] = nil
  if w.remaining ~= nil then w.remaining = w.remaining - 1 end
  w.sent = w.sent + 1
  w.sent_by[a.bucket] = (w.sent_by[a.bucket] or 0) + 1
  w.flights[a.id] = now + a.flight_ttl_s
  w.last_send = now
  return note_send(w, now, a.bucket, a.inherited, w.separate)
end

local function decide(d, w, now, a)
  if not a.own_window and w.separate[a.bucket] ~= nil then return {k = 'moved'}, false, false end
  local learning = a.probe_first and w.limit == nil and w.answered < PROBE_ANSWERS
  local decision = held(w, now, learning)
  if decision == nil then
    turn_if_over(w, now)
    decision = queued_or_paced(w, now, a) or burst_held(w, now, a)
  end
  if decision ~= nil then
    local wrote = select(2, keep_ticket(d, w, now, a, decision))
    return decision, wrote, false
  end
  local tracked = w.limit ~= nil or w.remaining ~= nil or learning or next(w.waiting) ~= nil or in_flight(w) > 0
  if not tracked then
    return {k = 'send', tracked = false, in_period = 0, in_second = 0}, d ~= nil and changed(d, w), false
  end
  -- A send reserved wakes nobody: it lowers both the budget left and the calls ahead of the younger ones.
  local in_period, in_second = reserve(w, now, a)
  return {k = 'send', tracked = true, in_period = in_period, in_second = in_second}, true, false
end

-- --- settle.py and buckets.py ----------------------------------------------------------------------

local function own_or_reported(w, reported, assumed)
  local own = assumed
  if own == nil and w.limit ~= nil then own = math.max(0, w.limit - w.sent) end
  local floor = math.max(0, reported - in_flight(w))
  if own == nil then return floor end
  if reported >= own then
    if assumed == nil then return math.max(own, floor) end
    return own
  end
  return math.min(own, floor)
end

local function learn_report(w, now, remaining, reset)
  if not (w.reset_at == nil or reset > w.reset_at + 0.5) then
    w.remaining = own_or_reported(w, remaining, w.remaining)
    return
  end
  w.window_s = math.max(w.window_s or 0.0, math.min(MAX_WINDOW_S, math.max(1.0, reset - now)))
  w.windows = math.min(2, w.windows + 1)
  if w.reset_at ~= nil then
    w.sent = in_flight(w) + 1
    w.sent_by = {}
  end
  w.reset_at = reset
  w.remaining = own_or_reported(w, remaining, nil)
end

local function shows_own_budget(reports, bucket, remaining, reset_at, limit, answers_at_send)
  for _, other in pairs(reports) do
    if other.bucket ~= bucket then
      if limit ~= nil and other.limit ~= nil and limit ~= other.limit then return true end
      if other.answers_at <= answers_at_send and math.abs(reset_at - other.reset_at) <= 0.5
          and remaining >= other.remaining then
        return true
      end
    end
  end
  return false
end

local function give_back_split(w, bucket)
  local moved = w.sent_by[bucket] or 0
  w.sent_by[bucket] = nil
  w.sent = math.max(0, w.sent - moved)
  if w.remaining ~= nil then
    if w.limit == nil then w.remaining = w.remaining + moved
    else w.remaining = w.remaining + math.min(moved, math.max(0, w.limit - w.remaining)) end
  end
end

local function learn_budget_owner(w, now, a, report)
  if absent(a.bucket) then return end
  if shows_own_budget(w.reports, a.bucket, report.remaining, report.reset_at, report.limit, a.answers_at_send) then
    w.separate[a.bucket] = now
    give_back_split(w, a.bucket)
  end
  w.answers = w.answers + 1
  report.answers_at = w.answers
  local merged = {}
  for k, r in pairs(w.reports) do merged[k] = r end
  merged[report.bucket] = report
  w.reports = sorted_reports(merged, REPORTS_KEPT)
end

local function settle(w, now, a)
  if not a.informative then return false end
  w.flights[a.reservation] = nil
  if not a.answered then
    if not a.sent and a.tracked then
      w.sent = math.max(0, w.sent - 1)
      if w.remaining ~= nil then w.remaining = w.remaining + 1 end
    end
    return true
  end
  w.answered = w.answered + 1
  local limit, remaining, reset = opt(a, 'limit', number), opt(a, 'remaining', number), opt(a, 'reset_at', number)
  if limit ~= nil then w.limit = limit end
  if remaining ~= nil and reset ~= nil and reset > now then
    if a.status == 429 and a.tracked then  -- settle.give_back_refused
      w.sent = math.max(0, w.sent - 1)
      if w.remaining ~= nil then
        w.remaining = w.remaining + 1
        if w.limit ~= nil then w.remaining = math.min(w.remaining, w.limit) end
      end
    end
    learn_report(w, now, remaining, reset)
    local bucket = a.bucket
    if absent(bucket) then bucket = '' end
    learn_budget_owner(w, now, a, {bucket = bucket, remaining = remaining, reset_at = reset, limit = limit,
                                   answers_at = 0})
  end
  if a.status == 429 then
    if remaining ~= nil and remaining > 0 and a.in_period > 0 and may_burst(w) then
      local n = a.in_second
      if absent(n) or n == 0 then n = a.in_period end
      note_burst_refusal(w, n, now)
    end
  elseif a.in_period > 0 then
    local n = a.in_second
    if absent(n) or n == 0 then n = a.in_period end
    w.safe = math.max(w.safe, n)
  end
  if not absent(a.throttled_for) then w.blocked_until = math.max(w.blocked_until, now + a.throttled_for) end
  return true
end

-- --- the step ------------------------------------------------------------------------------------

local raw = redis.call('GET', KEYS[1])
local d = nil
if raw then
  local ok, wrapped = pcall(cjson.decode, raw)
  if ok and type(wrapped) == 'table' and wrapped.v == 1 and type(wrapped.d) == 'table' then d = wrapped.d end
end
local step, now, a = ARGV[1], tonumber(ARGV[2]), cjson.decode(ARGV[3])
local w = load(d, now)
local result, wrote, wakes = null, false, false
if step == 'decide' then
  if absent(a.inherited) then a.inherited = {} end
  result, wrote, wakes = decide(d, w, now, a)
elseif step == 'settle' then
  wrote = settle(w, now, a)
  wakes = wrote
elseif step == 'renew' then
  for _, id in ipairs(a.reservations) do
    if w.flights[id] ~= nil then w.flights[id], wrote = a['until'], true end
  end
elseif step == 'forget' then
  wrote = w.waiting[a.ticket] ~= nil
  w.waiting[a.ticket] = nil
  wakes = wrote
elseif step == 'seed' then
  wrote = w.limit == nil and a.limit > 0
  if wrote then w.limit = a.limit end
  wakes = wrote
else
  return redis.error_reply('unknown step')
end
local doc = enc(dump(w))
if wrote then
  redis.call('SET', KEYS[1], '{"v":1,"d":' .. doc .. '}', 'PX', ARGV[4])
  if wakes then
    -- What a waiting call needs to judge whether this change may let it go (admit.py's holds).
    redis.call('PUBLISH', ARGV[5], enc({in_flight = in_flight(w), remaining = nn(w.remaining), safe = w.safe,
                                        burst = nn(w.burst), forgot = step == 'forget'}))
  end
end
local written = 0
if wrote then written = 1 end
return '{"r":' .. enc(result) .. ',"d":' .. doc .. ',"w":' .. written .. '}'
