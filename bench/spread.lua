-- wrk script for bench/capture.sh: POST BODY_FILE round-robin to /b/mem-1 .. /b/mem-$BINS,
-- PER_BIN times each, then stop (wrk's -d is only the upper bound).
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
local body = f:read("*a"); f:close()
local bins = tonumber(os.getenv("BINS") or "100")
local total = bins * tonumber(os.getenv("PER_BIN") or "1000")
local sent, done_n = 0, 0
request = function()
  sent = sent + 1
  local path = "/b/mem-" .. ((sent - 1) % bins + 1)
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
end
response = function()
  done_n = done_n + 1
  if done_n == total then
    local m = os.getenv("DONE_FILE")
    if m then local f = io.open(m, "w"); if f then f:write("done\n"); f:close() end end
    wrk.thread:stop()
  end
end
