-- Re-record sessions a hub still holds (hub re-sync after a reconnect or a Redis
-- restart). No quota check: these sessions were admitted before.
-- ARGV = prefix, hub, then (user, session id, packed value) triples
-- returns how many sessions were not recorded before
local prefix, hub = ARGV[1], ARGV[2]
local hkey = prefix .. 'h:' .. hub
local added = 0
for i = 3, #ARGV, 3 do
  local user, sid, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  added = added + redis.call('HSET', prefix .. 'u:' .. user, sid, value)
  redis.call('SADD', hkey, user .. '\t' .. sid)
end
redis.call('SADD', prefix .. 'hubs', hub)
return added
