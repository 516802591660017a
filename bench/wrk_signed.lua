-- wrk script: POST pre-signed webhook deliveries, one file line each, split across threads.
-- line format: event_id \t timestamp \t signature \t body
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  requests, idx = {}, 0
  local n = 0
  for line in io.lines(path) do
    if n % nthreads == id then
      local eid, ts, sig, body = line:match("([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)")
      requests[#requests + 1] = wrk.format("POST", "/webhooks/auto", {
        ["Content-Type"] = "application/json",
        ["X-Auto-Event-Id"] = eid,
        ["X-Auto-Signature-Timestamp"] = ts,
        ["X-Auto-Signature"] = sig,
      }, body)
    end
    n = n + 1
  end
end

function request()
  idx = idx + 1
  if idx > #requests then
    idx = 1
    wrapped = true
  end
  return requests[idx]
end
