-- A hub died: remove every session still recorded for it, its set and its heartbeat.
-- ARGV = prefix, hub
-- returns how many sessions were removed
local prefix, hub = ARGV[1], ARGV[2]
local hkey = prefix .. 'h:' .. hub
local removed = 0
for _, m in ipairs(redis.call('SMEMBERS', hkey)) do
  local user, sid = string.match(m, '^([^\t]*)\t(.*)$')
  local ukey = prefix .. 'u:' .. user
  local v = redis.call('HGET', ukey, sid)
  if v and string.match(v, '^([^\t]*)') == hub then
    redis.call('HDEL', ukey, sid)
    removed = removed + 1
  end
end
redis.call('DEL', hkey, prefix .. 'hb:' .. hub)
redis.call('SREM', prefix .. 'hubs', hub)
return removed
