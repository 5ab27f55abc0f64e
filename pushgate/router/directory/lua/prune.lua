-- Drop a hub's sessions that it no longer holds (found missing from its re-sync), but
-- only those recorded for this hub and connected before the re-sync snapshot. One bucket.
-- KEYS[1] = <base>h:<hub>
-- ARGV = base, hub, before (unix seconds), then (user, session id) pairs
-- returns how many were removed
local hkey = KEYS[1]
local base, hub, before = ARGV[1], ARGV[2], tonumber(ARGV[3])
local removed = 0
for i = 4, #ARGV, 2 do
  local user, sid = ARGV[i], ARGV[i + 1]
  local ukey = base .. 'u:' .. user
  local v = redis.call('HGET', ukey, sid)
  if v then
    local h, at = string.match(v, '^([^\t]*)\t([^\t]*)')
    if h == hub and tonumber(at) < before then
      redis.call('HDEL', ukey, sid)
      redis.call('SREM', hkey, user .. '\t' .. sid)
      removed = removed + 1
    elseif h ~= hub then
      redis.call('SREM', hkey, user .. '\t' .. sid)
    end
  else
    redis.call('SREM', hkey, user .. '\t' .. sid)
  end
end
return removed
