-- POSTs the JSON bodies of BENCH_BODIES (one per line) in turn, counts GraphQL errors
-- (HTTP 200 with an "errors" list) as failures, and prints a JSON summary line.
local bodies = {}
local next_body = 1
local failures = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("index", #threads)
end

function init(args)
  local path = os.getenv("BENCH_BODIES")
  for line in io.lines(path) do
    if #line > 0 then table.insert(bodies, line) end
  end
  -- Threads start half the file apart (math.random is not seeded per thread, so they used
  -- to start at the same body and update the same CI at the same moment).
  local index = tonumber(wrk.thread:get("index")) or 1
  next_body = ((index - 1) * math.floor(#bodies / 2)) % #bodies + 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local auth = os.getenv("BENCH_AUTHORIZATION")
  if auth then wrk.headers["Authorization"] = auth end
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors":%s*%[%s*{') then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, t in ipairs(threads) do
    failed = failed + (t:get("failures") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "failures": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, failed,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
