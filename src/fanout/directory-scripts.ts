/**
 * The directory's Lua scripts. Each runs atomically in Redis, which is what makes "newest
 * wins" and "delete only if still mine" race-free between instances.
 */

/**
 * Claim: KEYS[1] device key; ARGV[1] our entry, ARGV[2] TTL in ms, ARGV[3] "1" to yield to an
 * entry with a later `sinceMs` (a claim retried after an outage must not displace a connection
 * made elsewhere meanwhile), "0" for a fresh claim (the newest connection is the one now).
 * Returns {1, previous?} when written, {0, current} when yielded.
 */
export const CLAIM_SCRIPT = `
local old = redis.call('GET', KEYS[1])
if ARGV[3] == '1' and old then
  local oldSince = tonumber(string.match(old, '^(%d+) '))
  local ourSince = tonumber(string.match(ARGV[1], '^(%d+) '))
  if oldSince and ourSince and oldSince > ourSince then return {0, old} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if old then return {1, old} end
return {1}
`;

/** Compare-and-delete: KEYS[1] device key; ARGV[1] the entry we wrote. Returns 1 if deleted. */
export const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * Refresh: KEYS device keys; ARGV[1] TTL in ms, ARGV[1+i] our entry for KEYS[i]. Per key:
 * 0 = still ours, TTL extended; 1 = missing (Redis restarted or the entry expired while we
 * could not refresh it), written again; otherwise the entry that displaced ours.
 */
export const REFRESH_SCRIPT = `
local out = {}
for i, key in ipairs(KEYS) do
  local ours = ARGV[i + 1]
  local current = redis.call('GET', key)
  if current == ours then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 0
  elseif not current then
    redis.call('SET', key, ours, 'PX', ARGV[1])
    out[i] = 1
  else
    out[i] = current
  end
end
return out
`;

/**
 * Prune the instance index: KEYS[1] the `instances` set, KEYS[1+i] the key of instance
 * ARGV[i]. Removes each instance whose key is gone (expired: it stopped heartbeating).
 */
export const PRUNE_INSTANCES_SCRIPT = `
for i, id in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then redis.call('SREM', KEYS[1], id) end
end
return 0
`;
