-- Record a session and, in the same atomic step, remove the user's oldest sessions
-- that no longer fit in the quota (the same rule as quota.sessions_to_kick: oldest
-- connected_at first, ties by session id). One slot: every key has the bucket's tag.
-- KEYS[1] = <base>u:<user>, KEYS[2] = <base>h:<hub>
-- ARGV = base (<p>{b<n>}:), user, session id, packed value, hub, connected_at, limit
-- returns {kicked id 1, kicked value 1, kicked id 2, ...}
local ukey, hkey = KEYS[1], KEYS[2]
local base, user, sid, value, hub = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local limit = tonumber(ARGV[7])
local all = redis.call('HGETALL', ukey)
local others = {}
for i = 1, #all, 2 do
  local id, v = all[i], all[i + 1]
  local h, at = string.match(v, '^([^\t]*)\t([^\t]*)')
  if id == sid then
    if h ~= hub then  -- the same session id re-announced by another hub
      redis.call('SREM', base .. 'h:' .. h, user .. '\t' .. id)
    end
  else
    others[#others + 1] = {id, v, h, tonumber(at)}
  end
end
local kicked = {}
local excess = #others + 1 - limit
if excess > 0 then
  table.sort(others, function(a, b)
    if a[4] ~= b[4] then return a[4] < b[4] end
    return a[1] < b[1]
  end)
  for i = 1, excess do
    local o = others[i]
    redis.call('HDEL', ukey, o[1])
    redis.call('SREM', base .. 'h:' .. o[3], user .. '\t' .. o[1])
    kicked[#kicked + 1] = o[1]
    kicked[#kicked + 1] = o[2]
  end
end
redis.call('HSET', ukey, sid, value)
redis.call('SADD', hkey, user .. '\t' .. sid)
return kicked
