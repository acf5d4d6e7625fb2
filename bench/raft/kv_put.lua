-- wrk script for bench/raft: KV PUT of a 100-byte value under a distinct key per request.
--
--   [WRK_SPREAD=h:p,h:p,...] wrk -t1 -c16 -d10s -s kv_put.lua http://127.0.0.1:PORT -- MODE PREFIX
--
-- MODE   lictor: PUT /v1/kv/<key>, body = the value
--        etcd:   POST /v3/kv/put, body = {"key": b64(key), "value": b64(value)} (gRPC gateway)
-- PREFIX key prefix; keys are PREFIX/<thread>/<n>, n = 1, 2, 3, ... per thread, so after a run
--        the orchestrator knows exactly which keys were written (and can read them back).
-- WRK_SPREAD (environment) optional host:port list: thread i sends to address (i-1) mod #list + 1
--        ("spread" mode; use -t = number of addresses); without it every thread uses the URL's host.
--
-- done() prints one line "WRKJSON {...}": requests, duration, socket errors, non-2xx/3xx count
-- (errors.status), exact latency percentiles in microseconds, and per-thread request counters
-- (thread id -> last n issued) for the read-back check. No response() hook on purpose (it would
-- make wrk hand every response to Lua and slow the load generator).

local threads = {}
local nthreads = 0
local addrs = nil

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
  local spread = os.getenv("WRK_SPREAD")
  if spread and spread ~= "" then
    if addrs == nil then
      addrs = {}
      for a in string.gmatch(spread, "[^,]+") do
        local host, port = string.match(a, "^([^:]+):(%d+)$")
        table.insert(addrs, wrk.lookup(host, port)[1])
      end
    end
    thread.addr = addrs[((nthreads - 1) % #addrs) + 1]
  end
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end

local mode, prefix, value, value_b64
counter = 0          -- globals: done() reads them with thread:get()
key_head = ""
local key_head_b64
local headers_etcd = { ["Content-Type"] = "application/json" }

function init(args)
  mode = args[1] or "lictor"
  prefix = args[2] or "bench"
  value = string.rep("v", 100)
  value_b64 = b64(value)
  -- Keys are KEYHEAD .. n with KEYHEAD = PREFIX/<tid>/ padded so its length is a multiple of 3:
  -- then b64(KEYHEAD .. n) = b64(KEYHEAD) .. b64(n), and only the counter is encoded per request.
  key_head = prefix .. "/" .. tostring(tid) .. "/"
  while #key_head % 3 ~= 0 do key_head = key_head .. "_" end
  key_head_b64 = b64(key_head)
end

function request()
  counter = counter + 1
  if mode == "etcd" then
    local body = '{"key":"' .. key_head_b64 .. b64(tostring(counter)) .. '","value":"' .. value_b64 .. '"}'
    return wrk.format("POST", "/v3/kv/put", headers_etcd, body)
  else
    return wrk.format("PUT", "/v1/kv/" .. key_head .. counter, nil, value)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local issued = {}
  for i, t in ipairs(threads) do
    table.insert(issued, string.format('"%s":{"head":"%s","n":%d}', tostring(t:get("tid")),
      t:get("key_head"), t:get("counter")))
  end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d},"threads":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), table.concat(issued, ",")))
end
