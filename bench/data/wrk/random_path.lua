-- Random GETs over the many-files tree (bench/harness/files.py, make_many_files): file i of
-- COUNT is /many/NN/IIII.bin with NN = floor(i / PER_DIR). Every request picks i uniformly at
-- random, so a server's open-file cache sees COUNT distinct paths in random order.
--
-- wrk -t1 -c16 -d5s -s random_path.lua http://127.0.0.1:PORT/ -- COUNT PER_DIR
--
-- wrk runs one Lua state per thread; setup() numbers the threads so that each seeds its own
-- random sequence. wrk's Lua is LuaJIT (Lua 5.1): no integer division operator.

local threads = 0
local count, per_dir = 3000, 100

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  count = tonumber(args[1]) or count
  per_dir = tonumber(args[2]) or per_dir
  math.randomseed(os.time() * 1000 + (id or 0))
end

function request()
  local i = math.random(0, count - 1)
  return wrk.format("GET", string.format("/many/%02d/%04d.bin", math.floor(i / per_dir), i))
end
