"""Lua scripts that change a job atomically; job-scoped ones take KEYS = JobKeys.all()."""

from __future__ import annotations

from app.store.keys import FIXED_JOB_KEYS, STATUSES, TERMINAL_STATUSES
from app.store.stats import DURATION_BUCKETS

# Helpers shared by the job-scoped scripts. KEYS as in JobKeys.all(): 1 job, 2 losses,
# 3 epochs, 4 metrics, 5 checkpoint, 6 lease, 7 the expiry index, 8 the duration counts,
# 9 the iteration count (keys.FIXED_JOB_KEY_NAMES), then one index per status (generated
# from STATUSES, so a new status cannot shift a key); a script's own keys follow, from
# KEYS[EXTRA + 1].
_INDEX = ", ".join(
    f"{status} = KEYS[{FIXED_JOB_KEYS + 1 + i}]" for i, status in enumerate(STATUSES)
)
_TERMINAL = ", ".join(f"{status} = true" for status in sorted(TERMINAL_STATUSES))
_PRELUDE = f"""
local INDEX = {{{_INDEX}}}
local TERMINAL = {{{_TERMINAL}}}
local EXTRA = {FIXED_JOB_KEYS + len(STATUSES)}
local BUCKETS = {{{", ".join(f"{b:g}" for b in DURATION_BUCKETS)}}}
""" + """
local function lease_is(token)
  return redis.call('GET', KEYS[6]) == token
end

local function move(from, to)
  local id = redis.call('HGET', KEYS[1], 'id')
  local seq = redis.call('HGET', KEYS[1], 'seq')
  redis.call('ZREM', INDEX[from], id)
  redis.call('ZADD', INDEX[to], seq, id)
  redis.call('HSET', KEYS[1], 'status', to)
end

local function add_warnings(new)
  local raw = redis.call('HGET', KEYS[1], 'warnings')
  local list = {}
  if raw and raw ~= '' then list = cjson.decode(raw) end
  local seen, added = {}, 0
  for _, w in ipairs(list) do seen[w] = true end
  for _, w in ipairs(new) do
    if not seen[w] then table.insert(list, w); seen[w] = true; added = added + 1 end
  end
  if added > 0 then redis.call('HSET', KEYS[1], 'warnings', cjson.encode(list)) end
  return added
end

-- The monitoring counts of a job that ends (app.store.stats), in the same atomic step.
local function count_end(to, now)
  local progress = redis.call('HGET', KEYS[1], 'progress')
  local iterations = 0
  if progress and progress ~= '' then
    local done = cjson.decode(progress).iteration
    if type(done) == 'number' then iterations = done end
  end
  if iterations > 0 then redis.call('INCRBY', KEYS[9], iterations) end
  local started = tonumber(redis.call('HGET', KEYS[1], 'started_unix') or '')
  if not started then return end
  local seconds = math.max(now - started, 0)
  for _, bound in ipairs(BUCKETS) do
    if seconds <= bound then redis.call('HINCRBY', KEYS[8], to .. ':' .. bound, 1) end
  end
  redis.call('HINCRBY', KEYS[8], to .. ':+Inf', 1)
  redis.call('HINCRBYFLOAT', KEYS[8], to .. ':sum', seconds)
end

local function terminate(from, to, now, ttl)
  move(from, to)
  redis.call('HSET', KEYS[1], 'finished_at', now)
  redis.call('DEL', KEYS[5], KEYS[6])
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
  -- The keys expire within a second after the TIME's whole seconds plus the ttl.
  local clock = redis.call('TIME')
  local id = redis.call('HGET', KEYS[1], 'id')
  redis.call('ZADD', KEYS[7], tonumber(clock[1]) + 1 + tonumber(ttl), id)
  count_end(to, tonumber(clock[1]) + tonumber(clock[2]) / 1e6)
end
"""

# KEYS: job keys, then EXTRA + 1 seq, + 2 jobs, + 3 idem. ARGV: id, fingerprint, idem ttl,
# has idem ('1'/'0'), job key prefix, then field/value pairs of the new hash.
# The lookup of an idempotent job is the one key built here; fine outside Cluster.
CREATE = _PRELUDE + """
if ARGV[4] == '1' then
  local existing = redis.call('GET', KEYS[EXTRA + 3])
  if existing then
    local record = cjson.decode(existing)
    if redis.call('EXISTS', ARGV[5] .. record.job_id) == 1 then
      return {0, record.job_id, record.fingerprint}
    end
  end
end
local seq = redis.call('INCR', KEYS[EXTRA + 1])
redis.call('HSET', KEYS[1], 'seq', seq, unpack(ARGV, 6))
redis.call('ZADD', KEYS[EXTRA + 2], seq, ARGV[1])
redis.call('ZADD', INDEX.queued, seq, ARGV[1])
if ARGV[4] == '1' then
  local record = cjson.encode({job_id = ARGV[1], fingerprint = ARGV[2]})
  redis.call('SET', KEYS[EXTRA + 3], record, 'EX', ARGV[3])
end
return {1, ARGV[1], ARGV[2]}
"""

# ARGV: now, ttl, the job's cancel channel. Returns the status after the call ('ended' when
# this call cancelled a queued job), or nil for an unknown job. A running job's worker
# hears of it on the channel at once.
CANCEL = _PRELUDE + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  terminate(status, 'cancelled', ARGV[1], ARGV[2])
  return 'ended'
end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  redis.call('PUBLISH', ARGV[3], '1')
end
return status
"""

# ARGV: token, now. Returns the attempt number, -1 when the lease is not ours,
# nil for an unknown or terminal job.
START_ATTEMPT = _PRELUDE + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or TERMINAL[status] then return false end
if not lease_is(ARGV[1]) then return -1 end
if status ~= 'running' then move(status, 'running') end
if (redis.call('HGET', KEYS[1], 'started_at') or '') == '' then
  local clock = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'started_at', ARGV[2],
             'started_unix', tonumber(clock[1]) + tonumber(clock[2]) / 1e6)
end
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
"""

# ARGV: token, byte offset, float32 bytes, progress json ('' keeps it), now,
# epoch number ('' for none), epoch row json. Returns cancel_requested, -1 if fenced off.
RECORD = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 or not lease_is(ARGV[1]) then return -1 end
if #ARGV[3] > 0 then redis.call('SETRANGE', KEYS[2], ARGV[2], ARGV[3]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[3], ARGV[6], ARGV[7]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[4]) end
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[5])
return tonumber(redis.call('HGET', KEYS[1], 'cancel_requested') or '0')
"""

# ARGV: token, checkpoint bytes. Returns 1, or -1 if fenced off.
SAVE_CHECKPOINT = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 or not lease_is(ARGV[1]) then return -1 end
redis.call('SET', KEYS[5], ARGV[2])
return 1
"""

# ARGV: token ('' skips fencing), bytes to keep, epochs to keep. Returns 1, or -1.
TRUNCATE = _PRELUDE + """
if ARGV[1] ~= '' and not lease_is(ARGV[1]) then return -1 end
local keep = tonumber(ARGV[2])
if keep == 0 then
  redis.call('DEL', KEYS[2])
elseif redis.call('STRLEN', KEYS[2]) > keep then
  local head = redis.call('GETRANGE', KEYS[2], 0, keep - 1)
  redis.call('SET', KEYS[2], head, 'KEEPTTL')
end
local last = tonumber(ARGV[3])
for _, epoch in ipairs(redis.call('HKEYS', KEYS[3])) do
  if tonumber(epoch) > last then redis.call('HDEL', KEYS[3], epoch) end
end
return 1
"""

# ARGV: warning. Returns the number added (0 for a duplicate), -1 for an unknown job.
ADD_WARNING = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return add_warnings({ARGV[1]})
"""

# KEYS: job keys, EXTRA + 1 weights. ARGV: status, token ('' skips fencing), now, ttl, error json,
# metrics json, warnings json, weights bytes ('' for none of the last four). Returns 1 if
# it transitioned.
FINISH = _PRELUDE + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or TERMINAL[status] then return 0 end
if ARGV[2] ~= '' then
  local holder = redis.call('GET', KEYS[6])
  if holder and holder ~= ARGV[2] then return 0 end
end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('SET', KEYS[4], ARGV[6]) end
if ARGV[7] ~= '' then add_warnings(cjson.decode(ARGV[7])) end
if ARGV[8] ~= '' then redis.call('SET', KEYS[EXTRA + 1], ARGV[8], 'EX', ARGV[4]) end
terminate(status, ARGV[1], ARGV[3], ARGV[4])
return 1
"""

# KEYS: lease, job. ARGV: token, ttl ms. 1 if the lease is (now) ours.
ACQUIRE_LEASE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# Take back the lease after a Redis outage let it lapse, unless another worker took it;
# a job the reaper meanwhile put back in the queue is running again (no new attempt).
# KEYS: job keys. ARGV: token, ttl ms. 1 if the lease is (now) ours, 0 if another worker
# holds it, -1 if the job has ended (or is gone).
RECLAIM = _PRELUDE + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or TERMINAL[status] then return -1 end
local holder = redis.call('GET', KEYS[6])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[2])
if status == 'queued' then move('queued', 'running') end
return 1
"""

# KEYS: lease, job. ARGV: token, ttl ms, now. 0 if the lease is not ours, else 1, or 2
# when the job has been asked to stop (the fallback to its cancel channel).
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then return 1 end
redis.call('HSET', KEYS[2], 'heartbeat_at', ARGV[3])
if redis.call('HGET', KEYS[2], 'cancel_requested') == '1' then return 2 end
return 1
"""

# KEYS: lease. ARGV: token. 1 if released.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

# The reaper's one transition of a running job whose lease lapsed (its worker is gone),
# re-checked here so that a worker that takes the lease meanwhile is never reaped.
# ARGV: max attempts, now, ttl. Returns 'cancelled', 'failed' (worker_lost), 'queued'
# (send it a new message), or nil when there is nothing to do.
REAP = _PRELUDE + """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return false end
if redis.call('EXISTS', KEYS[6]) == 1 then return false end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  terminate('running', 'cancelled', ARGV[2], ARGV[3])
  return 'cancelled'
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[1]) then
  local message = "the job's worker was lost; gave up after " .. attempts .. " attempts"
  redis.call('HSET', KEYS[1], 'error', cjson.encode({code = 'worker_lost', message = message}))
  terminate('running', 'failed', ARGV[2], ARGV[3])
  return 'failed'
end
move('running', 'queued')
redis.call('HSET', KEYS[1], 'queued_at', ARGV[2])
return 'queued'
"""

# A queued job that waited long with no message: note the re-send, atomically with the
# check. KEYS: job keys. ARGV: now, the cutoff (ISO; queued_at before it is old).
# Returns 1 when the caller should send a message.
RESEND = _PRELUDE + """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
local since = redis.call('HGET', KEYS[1], 'queued_at') or redis.call('HGET', KEYS[1], 'created_at')
if not since or since > ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'queued_at', ARGV[1])
return 1
"""

# Drop jobs whose keys have expired from every index. KEYS: jobs, expiring, then the
# status indexes. ARGV: job key prefix, at most this many. Returns the count dropped.
PRUNE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[2])
local dropped = 0
for _, id in ipairs(ids) do
  local left = redis.call('PTTL', ARGV[1] .. id)
  if left == -2 then
    for i = 1, #KEYS do redis.call('ZREM', KEYS[i], id) end
    dropped = dropped + 1
  elseif left >= 0 then
    redis.call('ZADD', KEYS[2], now + math.ceil(left / 1000) + 1, id)  -- not yet: later
  else
    redis.call('ZREM', KEYS[2], id)  -- kept without a TTL: not an expiring job
  end
end
return dropped
"""
