-- A hub died: remove every session still recorded for it in one bucket, and the
-- bucket's set of the hub (run for each non-empty bucket).
-- KEYS[1] = <base>h:<hub>
-- ARGV = base, hub
-- returns how many sessions were removed
local hkey = KEYS[1]
local base, hub = ARGV[1], ARGV[2]
local removed = 0
for _, m in ipairs(redis.call('SMEMBERS', hkey)) do
  local user, sid = string.match(m, '^([^\t]*)\t(.*)$')
  local ukey = base .. 'u:' .. user
  local v = redis.call('HGET', ukey, sid)
  if v and string.match(v, '^([^\t]*)') == hub then
    redis.call('HDEL', ukey, sid)
    removed = removed + 1
  end
end
redis.call('DEL', hkey)
return removed
