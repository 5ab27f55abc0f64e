-- After a hub re-sync: sessions re-recorded without a quota check (restore.lua) may
-- push a user over the quota (a session admitted while the directory had lost them).
-- Remove the oldest that no longer fit (the same rule as add.lua: oldest connected_at
-- first, ties by session id), all users of one bucket.
-- KEYS[1] = <base>u:<one of the users> (routes the call to the bucket's slot)
-- ARGV = base, limit, user 1, user 2, ...
-- returns {user, kicked id, kicked value, newest id of the user, ...}
local base, limit = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  local user = ARGV[i]
  local ukey = base .. 'u:' .. user
  if redis.call('HLEN', ukey) > limit then
    local all = redis.call('HGETALL', ukey)
    local s = {}
    for j = 1, #all, 2 do
      local id, v = all[j], all[j + 1]
      local h, at = string.match(v, '^([^\t]*)\t([^\t]*)')
      s[#s + 1] = {id, v, h, tonumber(at)}
    end
    table.sort(s, function(a, b)
      if a[4] ~= b[4] then return a[4] < b[4] end
      return a[1] < b[1]
    end)
    local newest = s[#s][1]
    for j = 1, #s - limit do
      local o = s[j]
      redis.call('HDEL', ukey, o[1])
      redis.call('SREM', base .. 'h:' .. o[3], user .. '\t' .. o[1])
      out[#out + 1] = user
      out[#out + 1] = o[1]
      out[#out + 1] = o[2]
      out[#out + 1] = newest
    end
  end
end
return out
