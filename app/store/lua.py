"""Lua scripts that change a job atomically; job-scoped ones take KEYS = JobKeys.all().

Outside the KEYS they are given, the scripts touch the keys of a job's tenant
(``tenant:{tid}:*``) and, when a transition dispatches a waiting job, that job's hash: names
they build from the deployment's prefix, as app.store.keys.KeyLayout does. Descent runs on one
Redis (not a Cluster), where this is allowed.
"""

from __future__ import annotations

from app.store.keys import FIXED_JOB_KEY_NAMES, FIXED_JOB_KEYS, STATUSES, TERMINAL_STATUSES
from app.store.queue import DELIVERY_TAG
from app.store.stats import DURATION_BUCKETS

# Helpers shared by the job-scoped scripts. KEYS as in JobKeys.all(): 1 job, 2 losses,
# 3 epochs, 4 metrics, 5 checkpoint, 6 lease, 7 the expiry index, 8 the duration counts,
# 9 the iteration count, 10 the broker queue (keys.FIXED_JOB_KEY_NAMES), then one index per
# status (generated from STATUSES, so a new status cannot shift a key); a script's own keys
# follow, from KEYS[EXTRA + 1].
_INDEX = ", ".join(
    f"{status} = KEYS[{FIXED_JOB_KEYS + 1 + i}]" for i, status in enumerate(STATUSES)
)
_TERMINAL = ", ".join(f"{status} = true" for status in sorted(TERMINAL_STATUSES))
_STATUS_NAMES = ", ".join(f"'{status}'" for status in STATUSES)

# The fair queue (DESIGN.md, max_running_jobs): a tenant's jobs hold at most its limit of
# slots; the others wait, with no message, and `fill` sends the oldest into a free slot.
# Needs PREFIX (the deployment's key prefix) and QUEUE (the broker queue's key).
_FAIR_QUEUE = f"""
local STATUS_NAMES = {{{_STATUS_NAMES}}}
local TAG = '{DELIVERY_TAG}'
""" + """
local function tenant_key(tenant, suffix) return PREFIX .. ':tenant:' .. tenant .. suffix end
local function job_key(id) return PREFIX .. ':job:' .. id end

-- The tenant's max_running_jobs: the operator's setting, else the deployment's default.
local function running_limit(tenant, default)
  return tonumber(redis.call('HGET', tenant_key(tenant, ''), 'quota.max_running_jobs') or default)
end

-- Push the job's stored message onto the broker queue with a delivery tag of its own.
local function send(id, now)
  local key = job_key(id)
  local message = redis.call('HGET', key, 'message')
  if not message then return false end
  local n = redis.call('HINCRBY', key, 'dispatches', 1)
  redis.call('LPUSH', QUEUE, (string.gsub(message, TAG, id .. '.' .. n)))
  redis.call('HSET', key, 'queued_at', now)
  return true
end

-- Send the tenant's oldest waiting jobs into its free slots.
local function fill(tenant, default, now)
  local slots, waiting = tenant_key(tenant, ':slots'), tenant_key(tenant, ':waiting')
  local limit = running_limit(tenant, default)
  while redis.call('SCARD', slots) < limit do
    local head = redis.call('ZPOPMIN', waiting)
    if #head == 0 then break end
    if redis.call('HGET', job_key(head[1]), 'status') == 'queued' then
      redis.call('SADD', slots, head[1])
      send(head[1], now)
    end
  end
  if redis.call('ZCARD', waiting) == 0 then
    redis.call('SREM', PREFIX .. ':tenants:waiting', tenant)
  end
end
"""

_PRELUDE = f"""
local INDEX = {{{_INDEX}}}
local TERMINAL = {{{_TERMINAL}}}
local EXTRA = {FIXED_JOB_KEYS + len(STATUSES)}
local BUCKETS = {{{", ".join(f"{b:g}" for b in DURATION_BUCKETS)}}}
-- KEYS[1] is PREFIX .. ':job:' .. a 32-hex id (keys.is_job_id).
local PREFIX = string.sub(KEYS[1], 1, #KEYS[1] - 37)
local QUEUE = KEYS[{FIXED_JOB_KEY_NAMES.index("queue") + 1}]
""" + _FAIR_QUEUE + """
local function lease_is(token)
  return redis.call('GET', KEYS[6]) == token
end

-- Tell the API processes that the job changed (keys.KeyLayout.events): one PUBLISH,
-- however many clients follow the job.
local function announce()
  redis.call('PUBLISH', PREFIX .. ':events', redis.call('HGET', KEYS[1], 'id'))
end

local function move(from, to)
  local id = redis.call('HGET', KEYS[1], 'id')
  local seq = redis.call('HGET', KEYS[1], 'seq')
  redis.call('ZREM', INDEX[from], id)
  redis.call('ZADD', INDEX[to], seq, id)
  local tenant = redis.call('HGET', KEYS[1], 'tenant')
  if tenant then
    redis.call('ZREM', tenant_key(tenant, ':jobs:status:' .. from), id)
    redis.call('ZADD', tenant_key(tenant, ':jobs:status:' .. to), seq, id)
  end
  redis.call('HSET', KEYS[1], 'status', to)
  announce()
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

-- End the job, and in the same step give its slot to its tenant's oldest waiting job
-- (running_default: the deployment's max_running_jobs).
local function terminate(from, to, now, ttl, running_default)
  move(from, to)
  redis.call('HSET', KEYS[1], 'finished_at', now)
  redis.call('HDEL', KEYS[1], 'message')
  redis.call('DEL', KEYS[5], KEYS[6])
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
  -- The keys expire within a second after the TIME's whole seconds plus the ttl.
  local clock = redis.call('TIME')
  local id = redis.call('HGET', KEYS[1], 'id')
  local tenant = redis.call('HGET', KEYS[1], 'tenant')
  -- The expiry index names the tenant too, so the tenant's indexes are pruned with it.
  local member = id
  if tenant then member = tenant .. '/' .. id end
  redis.call('ZADD', KEYS[7], tonumber(clock[1]) + 1 + tonumber(ttl), member)
  count_end(to, tonumber(clock[1]) + tonumber(clock[2]) / 1e6)
  if tenant then
    redis.call('SREM', tenant_key(tenant, ':slots'), id)
    redis.call('ZREM', tenant_key(tenant, ':waiting'), id)
    fill(tenant, running_default, now)
  end
end
"""

# A tenant's submissions_per_minute, on Redis's clock: a refusal {-1, quota, limit, count,
# retry_after seconds} when the last minute's submissions (a sorted set by ms) are at the
# limit, else nil and the time in ms to count this one at.
_RATE = """
local function rate_refusal(submissions, per_minute)
  local clock = redis.call('TIME')
  local ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', submissions, '-inf', ms - 60000)
  local recent = redis.call('ZCARD', submissions)
  if recent >= per_minute then
    local wait = 60
    local oldest = redis.call('ZRANGE', submissions, 0, 0, 'WITHSCORES')[2]
    if oldest then wait = math.max(1, math.ceil((tonumber(oldest) + 60000 - ms) / 1000)) end
    return {-1, 'submissions_per_minute', per_minute, recent, wait}, ms
  end
  return nil, ms
end
local function count_submission(submissions, ms, member)
  redis.call('ZADD', submissions, ms, member)
  redis.call('PEXPIRE', submissions, 61000)
end
"""

# Submit: the tenant's quotas, the new job, and its dispatch (a message now, or a place in
# the tenant's waiting line), in one step. KEYS: job keys, then EXTRA + 1 seq, + 2 jobs,
# + 3 idem, + 4 the tenant's jobs, + 5 its submissions, + 6 its slots, + 7 its waiting line,
# + 8 tenants:waiting. ARGV: 1 id, 2 fingerprint, 3 idem ttl, 4 has idem ('1'/'0'), 5 job key
# prefix, 6 tenant, 7 now, 8 max_active_jobs, 9 submissions_per_minute (-1: not a
# submission, a sweep's trial), 10 the default
# max_running_jobs, then field/value pairs of the new hash (with its message).
# Returns {1, id, fingerprint}; {0, id, fingerprint} of an earlier job with that idem key;
# or {-1, quota, limit, count, retry_after seconds} when a quota refuses it.
CREATE = _PRELUDE + _RATE + """
if ARGV[4] == '1' then
  local existing = redis.call('GET', KEYS[EXTRA + 3])
  if existing then
    local record = cjson.decode(existing)
    if redis.call('EXISTS', ARGV[5] .. record.job_id) == 1 then
      return {0, record.job_id, record.fingerprint}
    end
  end
end
local tenant = ARGV[6]
-- The upload the job trains on must still be there (KEYS[EXTRA + 9] is the job's own key
-- when it names a built-in dataset): a DELETE of it cannot slip in before the job exists.
if KEYS[EXTRA + 9] ~= KEYS[1] and redis.call('EXISTS', KEYS[EXTRA + 9]) == 0 then
  return {-3}
end
-- submissions_per_minute -1: not a submission (a sweep's trial), neither checked nor counted
local submission = tonumber(ARGV[9]) >= 0
local refused, ms = nil, 0
if submission then refused, ms = rate_refusal(KEYS[EXTRA + 5], tonumber(ARGV[9])) end
if refused then return refused end
local max_active = tonumber(ARGV[8])
local active = redis.call('ZCARD', tenant_key(tenant, ':jobs:status:queued'))
  + redis.call('ZCARD', tenant_key(tenant, ':jobs:status:running'))
if active >= max_active then
  return {-1, 'max_active_jobs', max_active, active, 5}
end
if submission then count_submission(KEYS[EXTRA + 5], ms, ARGV[1]) end
local seq = redis.call('INCR', KEYS[EXTRA + 1])
redis.call('HSET', KEYS[1], 'seq', seq, 'tenant', tenant, unpack(ARGV, 11))
redis.call('ZADD', KEYS[EXTRA + 2], seq, ARGV[1])
redis.call('ZADD', INDEX.queued, seq, ARGV[1])
redis.call('ZADD', KEYS[EXTRA + 4], seq, ARGV[1])
redis.call('ZADD', tenant_key(tenant, ':jobs:status:queued'), seq, ARGV[1])
-- Into the tenant's line, which its free slots take from, oldest first.
redis.call('ZADD', KEYS[EXTRA + 7], seq, ARGV[1])
redis.call('SADD', KEYS[EXTRA + 8], tenant)
fill(tenant, ARGV[10], ARGV[7])
if ARGV[4] == '1' then
  local record = cjson.encode({job_id = ARGV[1], fingerprint = ARGV[2]})
  redis.call('SET', KEYS[EXTRA + 3], record, 'EX', ARGV[3])
end
return {1, ARGV[1], ARGV[2]}
"""

# ARGV: now, ttl, the job's cancel channel, the default max_running_jobs, the tenant asking.
# Returns the status after the call ('ended' when this call cancelled a queued job), or nil
# for an unknown job or another tenant's. A running job's worker hears of it on the channel
# at once.
CANCEL = _PRELUDE + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[5] then return false end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  terminate(status, 'cancelled', ARGV[1], ARGV[2], ARGV[4])
  return 'ended'
end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  redis.call('PUBLISH', ARGV[3], '1')
  announce()
end
return status
"""

# A poll's snapshot of the curve, for the job's own tenant only. KEYS: job, losses, epochs.
# ARGV: tenant, byte offset. Returns {status, losses' length, losses from the offset,
# epoch rows}, or nil for an unknown job or another tenant's (nothing of it is read).
_READ_CURVE = """
local function read_curve(job, losses, epochs, tenant, offset)
  local status, owner = unpack(redis.call('HMGET', job, 'status', 'tenant'))
  if not status or owner ~= tenant then return false end
  return {status, redis.call('STRLEN', losses), redis.call('GETRANGE', losses, offset, -1),
          redis.call('HVALS', epochs)}
end
"""
READ_CURVE = _READ_CURVE + """
return read_curve(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
"""

# What changed in a job since a follower's last look, for the API's event stream. KEYS: job,
# losses, epochs. ARGV: byte offset into the losses, the first epoch row wanted. Returns
# {status, progress, warnings, error, losses' length, losses from the offset, the epoch
# rows from that epoch on, in order}, or nil for an unknown job.
FEED_READ = """
local fields = redis.call('HMGET', KEYS[1], 'status', 'progress', 'warnings', 'error')
if not fields[1] then return false end
local rows = {}
local epoch = tonumber(ARGV[2])
while true do
  local row = redis.call('HGET', KEYS[3], tostring(epoch))
  if not row then break end
  table.insert(rows, row)
  epoch = epoch + 1
end
return {fields[1], fields[2] or '', fields[3] or '', fields[4] or '',
        redis.call('STRLEN', KEYS[2]), redis.call('GETRANGE', KEYS[2], ARGV[1], -1), rows}
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
if #ARGV[3] > 0 or ARGV[6] ~= '' or ARGV[4] ~= '' then announce() end
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
local added = add_warnings({ARGV[1]})
if added > 0 then announce() end
return added
"""

# KEYS: job keys, EXTRA + 1 weights. ARGV: status, token ('' skips fencing), now, ttl, error json,
# metrics json, warnings json, weights bytes ('' for none of the last four), the default
# max_running_jobs. Returns 1 if it transitioned.
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
terminate(status, ARGV[1], ARGV[3], ARGV[4], ARGV[9])
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
# ARGV: max attempts, now, ttl, the default max_running_jobs. Returns 'cancelled', 'failed'
# (worker_lost), 'queued' (sent a new message, keeping its slot), or nil when there is
# nothing to do.
REAP = _PRELUDE + """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return false end
if redis.call('EXISTS', KEYS[6]) == 1 then return false end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  terminate('running', 'cancelled', ARGV[2], ARGV[3], ARGV[4])
  return 'cancelled'
end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[1]) then
  local message = "the job's worker was lost; gave up after " .. attempts .. " attempts"
  redis.call('HSET', KEYS[1], 'error', cjson.encode({code = 'worker_lost', message = message}))
  terminate('running', 'failed', ARGV[2], ARGV[3], ARGV[4])
  return 'failed'
end
move('running', 'queued')
send(redis.call('HGET', KEYS[1], 'id'), ARGV[2])
return 'queued'
"""

# A dispatched job that waited long in `queued` while the broker queue is empty lost its
# message: send it again, atomically with the check (a job waiting for a slot has no
# message by design). KEYS: job keys. ARGV: now, the cutoff (ISO; queued_at before it is
# old). Returns 1 when it sent one.
RESEND = _PRELUDE + """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
local id = redis.call('HGET', KEYS[1], 'id')
local tenant = redis.call('HGET', KEYS[1], 'tenant')
if tenant and redis.call('SISMEMBER', tenant_key(tenant, ':slots'), id) == 0 then return 0 end
local since = redis.call('HGET', KEYS[1], 'queued_at') or redis.call('HGET', KEYS[1], 'created_at')
if not since or since > ARGV[2] then return 0 end
if send(id, ARGV[1]) then return 1 end
return 0
"""

# Repair a tenant's fair queue: free the slots of jobs that ended (or are gone) and send
# waiting jobs into the free slots. Run by the reaper for tenants with a backlog, and when
# the operator changes a tenant's max_running_jobs. KEYS: the broker queue.
# ARGV: the key prefix, tenant, the default max_running_jobs, now. Returns the slots held.
DISPATCH = """
local PREFIX = ARGV[1]
local QUEUE = KEYS[1]
""" + _FAIR_QUEUE + """
local slots = tenant_key(ARGV[2], ':slots')
for _, id in ipairs(redis.call('SMEMBERS', slots)) do
  local status = redis.call('HGET', job_key(id), 'status')
  if status ~= 'queued' and status ~= 'running' then redis.call('SREM', slots, id) end
end
fill(ARGV[2], ARGV[3], ARGV[4])
return redis.call('SCARD', slots)
"""

# Drop jobs whose keys have expired from every index, their tenant's too. KEYS: jobs,
# expiring, then the status indexes. ARGV: the key prefix, at most this many. Members of
# the expiry index are '{tenant}/{id}' (or an id alone). Returns the count dropped.
PRUNE = f"""
local STATUS_NAMES = {{{_STATUS_NAMES}}}
""" + """
local clock = redis.call('TIME')
local now = tonumber(clock[1])
local members = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ARGV[2])
local dropped = 0
for _, member in ipairs(members) do
  local tenant, id = string.match(member, '^(.+)/(.+)$')
  if not id then id = member end
  local left = redis.call('PTTL', ARGV[1] .. ':job:' .. id)
  if left == -2 then
    for i = 1, #KEYS do redis.call('ZREM', KEYS[i], id) end
    redis.call('ZREM', KEYS[2], member)
    if tenant then
      local base = ARGV[1] .. ':tenant:' .. tenant .. ':jobs'
      redis.call('ZREM', base, id)
      for _, status in ipairs(STATUS_NAMES) do
        redis.call('ZREM', base .. ':status:' .. status, id)
      end
    end
    dropped = dropped + 1
  elseif left >= 0 then
    redis.call('ZADD', KEYS[2], now + math.ceil(left / 1000) + 1, member)  -- not yet: later
  else
    redis.call('ZREM', KEYS[2], member)  -- kept without a TTL: not an expiring job
  end
end
return dropped
"""

# Tenants and keys (app.store.tenants). A key's record: key_id, tenant, digest, prefix,
# created_at. KEY_ARGS: key_id, digest, display prefix, now.
_KEY_RECORD = """
local function add_key(tenant, key_id, digest, shown, now, record, ids, tenant_keys)
  redis.call('HSET', record, 'key_id', key_id, 'tenant', tenant, 'digest', digest,
             'prefix', shown, 'created_at', now)
  redis.call('HSET', ids, key_id, digest)
  redis.call('SADD', tenant_keys, key_id)
end
"""

# KEYS: names, tenant, tenants, key ids, key record, the tenant's keys.
# ARGV: name, tenant id, KEY_ARGS, then quota field/value pairs. 1 if made, 0 if the name
# is taken.
CREATE_TENANT = _KEY_RECORD + """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'id', ARGV[2], 'name', ARGV[1], 'created_at', ARGV[6], unpack(ARGV, 7))
redis.call('ZADD', KEYS[3], redis.call('HLEN', KEYS[1]), ARGV[2])
add_key(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], KEYS[5], KEYS[4], KEYS[6])
return 1
"""

# KEYS: tenant, key ids, key record, the tenant's keys. ARGV: tenant id, KEY_ARGS.
# 1 if made, 0 for an unknown tenant.
ADD_KEY = _KEY_RECORD + """
if redis.call('HEXISTS', KEYS[1], 'id') == 0 then return 0 end
add_key(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], KEYS[3], KEYS[2], KEYS[4])
return 1
"""

# KEYS: key ids. ARGV: key_id, the key prefix. 1 if revoked, 0 for an unknown key id.
REVOKE_KEY = """
local digest = redis.call('HGET', KEYS[1], ARGV[1])
if not digest then return 0 end
local record = ARGV[2] .. ':apikey:' .. digest
local tenant = redis.call('HGET', record, 'tenant')
redis.call('DEL', record)
redis.call('HDEL', KEYS[1], ARGV[1])
if tenant then redis.call('SREM', ARGV[2] .. ':tenant:' .. tenant .. ':keys', ARGV[1]) end
return 1
"""

# KEYS: the tenant. ARGV: field/value pairs; an empty value deletes the field. 1 if set,
# 0 for an unknown tenant (nothing is written).
SET_QUOTAS = """
if redis.call('HEXISTS', KEYS[1], 'id') == 0 then return 0 end
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[1], ARGV[i])
  else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""

# KEYS: the key's record. ARGV: the key prefix. {record fields, tenant fields} (empty when
# the key is unknown): one round trip per request.
_AUTHENTICATE = """
local function authenticate(key, prefix)
  local record = redis.call('HGETALL', key)
  if #record == 0 then return {}, {}, nil end
  local tenant = redis.call('HGET', key, 'tenant')
  local fields = redis.call('HGETALL', prefix .. ':tenant:' .. tenant)
  if redis.call('HEXISTS', prefix .. ':tenant:' .. tenant, 'id') == 0 then return {}, {}, nil end
  return record, fields, tenant
end
"""
AUTHENTICATE = _AUTHENTICATE + """
local record, fields = authenticate(KEYS[1], ARGV[1])
return {record, fields}
"""

# A curve poll in one round trip: the key's check, then (for a known key) READ_CURVE as its
# tenant. KEYS: the key's record, then the job's hash, losses and epochs. ARGV: the prefix,
# the byte offset. Returns {key record, tenant, curve or false} (the record and tenant empty
# for an unknown or revoked key: then nothing of the job is read).
AUTHENTICATED_CURVE = _AUTHENTICATE + _READ_CURVE + """
local record, fields, tenant = authenticate(KEYS[1], ARGV[1])
if not tenant then return {{}, {}, false} end
return {record, fields, read_curve(KEYS[2], KEYS[3], KEYS[4], tenant, ARGV[2])}
"""

# A new sweep, counted as one of its tenant's submissions. KEYS: 1 the sweep's hash, 2 the
# tenant's sweeps, 3 sweeps:active, 4 the tenant's submissions, 5 jobs:seq. ARGV: 1 the
# sweep's id, 2 submissions_per_minute, then the hash's field/value pairs. Returns {1} or
# the refusal of rate_refusal.
CREATE_SWEEP = _RATE + """
local refused, ms = rate_refusal(KEYS[4], tonumber(ARGV[2]))
if refused then return refused end
count_submission(KEYS[4], ms, 'sweep:' .. ARGV[1])
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return {1}
"""

# A gradient check (it computes in an API process), counted as one of its tenant's
# submissions. KEYS: 1 the tenant's submissions. ARGV: 1 submissions_per_minute, 2 its
# member. Returns {1} or the refusal of rate_refusal.
COUNT_SUBMISSION = _RATE + """
local refused, ms = rate_refusal(KEYS[1], tonumber(ARGV[1]))
if refused then return refused end
count_submission(KEYS[1], ms, ARGV[2])
return {1}
"""

# Uploaded datasets (app.store.uploads). KEYS: the dataset's record, the tenant's names
# (name -> id), the tenant's upload bytes, the blob's hash, the blob's references.
_DROP_UNUSED_BLOB = """
local function drop_unused_blob()
  if redis.call('SCARD', KEYS[5]) > 0 then return end
  local chunks = tonumber(redis.call('HGET', KEYS[4], 'chunks') or '0')
  for index = 0, chunks - 1 do redis.call('DEL', KEYS[4] .. ':' .. index) end
  redis.call('DEL', KEYS[4])
end
"""

# ARGV: id, name, bytes, the tenant's max_dataset_bytes, then the record's field/value
# pairs. Returns {1}, {-1, the id holding the name}, {-2, the bytes used} (the blob is
# dropped if nothing else holds it), or {-3}: the blob is gone (write it again).
CREATE_DATASET = _DROP_UNUSED_BLOB + """
local taken = redis.call('HGET', KEYS[2], ARGV[2])
if taken then drop_unused_blob() return {-1, taken} end
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
if used + tonumber(ARGV[3]) > tonumber(ARGV[4]) then drop_unused_blob() return {-2, used} end
if redis.call('EXISTS', KEYS[4]) == 0 then return {-3} end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('INCRBY', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[1])
return {1}
"""

# KEYS as CREATE_DATASET's, then the tenant's queued and running indexes and the active
# sweeps. ARGV: id, tenant, the key prefix. Returns {1}, {0} (no such record), or {-1, 'job'
# or 'sweep', its id, its status} while a queued or running job, or an unfinished sweep of
# the tenant, trains on it.
DELETE_DATASET = _DROP_UNUSED_BLOB + """
local function names_it(spec)
  if not spec then return false end
  local ok, decoded = pcall(cjson.decode, spec)
  if not ok or type(decoded) ~= 'table' then return false end
  local base = decoded.base
  return decoded.dataset == ARGV[1] or (type(base) == 'table' and base.dataset == ARGV[1])
end
local name = redis.call('HGET', KEYS[1], 'name')
if not name or redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[2] then return {0} end
for _, index in ipairs({KEYS[6], KEYS[7]}) do
  for _, job_id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local status, spec = unpack(redis.call('HMGET', ARGV[3] .. ':job:' .. job_id, 'status', 'spec'))
    if names_it(spec) then return {-1, 'job', job_id, status} end
  end
end
for _, sweep_id in ipairs(redis.call('SMEMBERS', KEYS[8])) do
  local owner, status, spec = unpack(redis.call('HMGET', ARGV[3] .. ':sweep:' .. sweep_id,
                                                'tenant', 'status', 'spec'))
  if owner == ARGV[2] and names_it(spec) then return {-1, 'sweep', sweep_id, status} end
end
redis.call('DECRBY', KEYS[3], redis.call('HGET', KEYS[1], 'bytes'))
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], name)
redis.call('SREM', KEYS[5], ARGV[1])
drop_unused_blob()
return {1}
"""
