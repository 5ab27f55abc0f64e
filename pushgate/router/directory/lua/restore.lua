-- Re-record sessions a hub still holds (hub re-sync after a reconnect, a Redis
-- restart or a failover), all of one bucket. No quota check: they were admitted before.
-- KEYS[1] = <base>h:<hub>
-- ARGV = base, then (user, session id, packed value) triples
-- returns how many sessions were not recorded before
local hkey, base = KEYS[1], ARGV[1]
local added = 0
for i = 2, #ARGV, 3 do
  local user, sid, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  added = added + redis.call('HSET', base .. 'u:' .. user, sid, value)
  redis.call('SADD', hkey, user .. '\t' .. sid)
end
return added
