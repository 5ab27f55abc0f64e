'use strict';
// Socket.IO peer of the benchmark (bench/peers/__init__.py, docs/benchmarks.md "Peers").
// Clients: /socket.io/?EIO=4&transport=websocket&user=U, joined to room U.
// POST /pub/U {body} emits "m" to room U; POST /pub {"users": [...], "body"} to those
// rooms; POST /broadcast {body} to everyone. Replies {"sessions": n}.
const http = require('http');
const { Server } = require('socket.io');

const srv = http.createServer((req, res) => {
  const m = req.method === 'POST' && /^\/(?:pub\/([^/?]+)|pub|broadcast)$/.exec(req.url);
  if (!m) { res.writeHead(404).end(); return; }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let msg;
    try { msg = JSON.parse(Buffer.concat(chunks)); } catch { res.writeHead(400).end(); return; }
    const rooms = io.sockets.adapter.rooms;
    let n = 0;
    if (m[1] !== undefined) { n = rooms.get(m[1])?.size ?? 0; io.to(m[1]).emit('m', msg); }
    else if (req.url === '/pub') {
      for (const u of msg.users) n += rooms.get(u)?.size ?? 0;
      io.to(msg.users).emit('m', msg.body);
    } else { n = io.engine.clientsCount; io.emit('m', msg); }
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(`{"sessions":${n}}`);
  });
});
srv.keepAliveTimeout = 75000; // as pushgate and nginx: senders keep their connections
const io = new Server(srv, { transports: ['websocket'], serveClient: false, pingInterval: 20000 });
io.on('connection', (s) => s.join(String(s.handshake.query.user)));
srv.listen(Number(process.argv[2] || 0), '127.0.0.1', () =>
  console.log(`SOCKETIO_LISTENING http://127.0.0.1:${srv.address().port}`));
process.on('SIGTERM', () => process.exit(0));
