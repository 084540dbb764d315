-- Sends the requests of BENCH_REQUESTS in turn (one per line: kind, token index, JSON body,
-- tab-separated), at about BENCH_RATE requests per second over all connections, and prints a
-- JSON summary line with per-kind counts of answers and of failures (HTTP status other than
-- 200, or a GraphQL "errors" list).
local lines = {}
local tokens = {}
local next_line = 1
local pause_ms = 0
local threads = {}
local counter = 1
-- Per thread, read by done() through thread:get (so globals). Each request names its kind
-- in X-Request-ID, which the API echoes, so an answer is counted under its request's kind.
sent = {}
ok = {}
failed = {}
statuses = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local function split(line)
  local kind, tok, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
  return kind, tonumber(tok), body
end

function init(args)
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    if #line > 0 then table.insert(lines, line) end
  end
  local i = 1
  while os.getenv("BENCH_TOKEN_" .. i) do
    tokens[i] = os.getenv("BENCH_TOKEN_" .. i)
    i = i + 1
  end
  -- Threads start at different places, so no two send the same write.
  local threads_n = tonumber(os.getenv("BENCH_THREADS") or "1")
  next_line = math.floor((id - 1) * #lines / threads_n) + 1
  local rate = tonumber(os.getenv("BENCH_RATE") or "0")
  local conns = tonumber(os.getenv("BENCH_CONNECTIONS") or "1")
  if rate > 0 then pause_ms = conns * 1000 / rate end
  wrk.method = "POST"
  wrk.path = "/graphql"
end

local seq = 0

function request()
  local kind, tok, body = split(lines[next_line])
  next_line = next_line % #lines + 1
  seq = seq + 1
  sent[kind] = (sent[kind] or 0) + 1
  return wrk.format("POST", "/graphql",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[tok],
     ["X-Request-ID"] = kind .. "." .. id .. "." .. seq}, body)
end

function delay()
  return pause_ms
end

function response(status, headers, body)
  local rid = headers["x-request-id"] or headers["X-Request-ID"] or "?"
  local kind = rid:match("^([^.]+)%.") or "?"
  if status ~= 200 or string.find(body, '"errors":%s*%[%s*{')
      or string.find(body, '"rejected":%s*%[%s*{') then
    failed[kind] = (failed[kind] or 0) + 1
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
    if (failed[kind] or 0) <= 3 then
      io.stderr:write("FAILED " .. kind .. " " .. status .. " " .. body:sub(1, 300) .. "\n")
    end
  else
    ok[kind] = (ok[kind] or 0) + 1
  end
end

local function encode(t)
  local parts = {}
  for k, v in pairs(t) do table.insert(parts, string.format('"%s": %d', k, v)) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function merge(into, from)
  for k, v in pairs(from or {}) do into[k] = (into[k] or 0) + v end
end

function done(summary, latency, requests)
  local all_ok, all_failed, all_status = {}, {}, {}
  for _, t in ipairs(threads) do
    merge(all_ok, t:get("ok"))
    merge(all_failed, t:get("failed"))
    merge(all_status, t:get("statuses"))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "socket_errors": %d, "ok": %s, ' ..
    '"failed": %s, "failed_status": %s, "p50_us": %d, "p90_us": %d, "p95_us": %d, ' ..
    '"p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    encode(all_ok), encode(all_failed), encode(all_status),
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max))
end
