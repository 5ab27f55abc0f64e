-- Compare-and-delete: remove a session only while it is still recorded for this hub
-- (a stale hub never removes a session that a newer announcement moved elsewhere).
-- KEYS[1] = <base>u:<user>, KEYS[2] = <base>h:<hub> (same bucket, same slot)
-- ARGV = user, session id, hub
-- returns 1 when removed, 0 otherwise
local ukey, hkey = KEYS[1], KEYS[2]
local user, sid, hub = ARGV[1], ARGV[2], ARGV[3]
redis.call('SREM', hkey, user .. '\t' .. sid)
local v = redis.call('HGET', ukey, sid)
if not v then return 0 end
local h = string.match(v, '^([^\t]*)')
if h ~= hub then return 0 end
redis.call('HDEL', ukey, sid)
return 1
