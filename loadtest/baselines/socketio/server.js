'use strict';
/**
 * The Node Socket.IO 4 baseline that `python -m loadtest --target socketio` measures:
 * a minimal but honest equivalent of roomserver's join and chat paths, so the two
 * servers can be compared with the same load tool in the same session.
 *
 *   node server.js [--port=0] [--redis=redis://127.0.0.1:6379/0] [--prefix=KEY]
 *   (or PORT, REDIS_URL, SIO_PREFIX; SIO_SECRET guards the HTTP API)
 *
 * Invariants:
 *
 * - Listens on 127.0.0.1 only and prints `listening on http://127.0.0.1:PORT` once it
 *   does (port 0: the OS picks), as roomserver's nodes do; loadtest/servers.py reads it.
 * - Without --redis, rooms live in this process. With it, several processes share
 *   rooms: broadcasts go through @socket.io/redis-adapter (pub/sub, node-redis 4), and
 *   a room's member count, chat seq and last 50 messages live in Redis, each join and
 *   each chat message being ONE script call (as roomserver's Redis broker does), so
 *   sequencing is shared.
 * - A socket joins its Socket.IO room BEFORE the snapshot's seq is read, so every
 *   message with a larger seq reaches it live (a message at or below it may also come
 *   live; the load tool counts that as below_base, not as a delivery).
 * - Every request with an ack gets exactly one answer: its result, or
 *   {error: code, message} (the load tool's Socket.IO dialect maps it to `t: "error"`).
 * - What it does NOT do (read comparisons with this in mind): no token signatures (a
 *   token is base64url JSON of its claims), no rate limits, no word filter, no
 *   moderation, no chat idempotency per cid, no presence events, no polls, likes or
 *   media. The HTTP API checks the operator secret when SIO_SECRET is set (setup only).
 * - Errors are logged as `<ISO time> ERROR <what>`, the form the load tool counts.
 */

const http = require('node:http');
const { Server } = require('socket.io');

const HISTORY = 50;
const MEMBER_EVENTS_BELOW = 200;
const MAX_TEXT = 2000;
const MAX_CID = 64;
const MAX_BODY = 64 * 1024;
const STAFF = new Set(['host', 'moderator']);

function logError(what) {
  console.error(`${new Date().toISOString()} ERROR ${what}`);
}

function options(argv, env) {
  const out = {
    port: Number(env.PORT || 0),
    redis: env.REDIS_URL || '',
    prefix: env.SIO_PREFIX || 'sio',
    secret: env.SIO_SECRET || '',
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => (inline !== undefined ? inline : argv[++i]);
    if (flag === '--port') out.port = Number(value());
    else if (flag === '--redis') out.redis = value();
    else if (flag === '--prefix') out.prefix = value();
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) {
    throw new Error(`bad port ${out.port}`);
  }
  return out;
}

// -- state: in this process, or in Redis ------------------------------------------

/** Rooms in this process (one server only). */
class MemoryStore {
  constructor() {
    this.rooms = new Map();
  }

  async createRoom(id, title) {
    if (this.rooms.has(id)) return false;
    this.rooms.set(id, { title, seq: 0, members: 0, history: [] });
    return true;
  }

  async status(id) {
    const room = this.rooms.get(id);
    return room ? { id, title: room.title, members: room.members, likes: 0, seq: room.seq } : null;
  }

  async join(id) {
    const room = this.rooms.get(id);
    if (!room) return null;
    room.members += 1;
    return { title: room.title, seq: room.seq, members: room.members, history: room.history.slice() };
  }

  async leave(id) {
    const room = this.rooms.get(id);
    if (!room) return 0;
    room.members -= 1;
    return room.members;
  }

  async chat(id, fields) {
    const room = this.rooms.get(id);
    room.seq += 1;
    room.history.push({ t: 'chat', seq: room.seq, ...fields });
    if (room.history.length > HISTORY) room.history.shift();
    return room.seq;
  }
}

// KEYS[1] the room's hash (title, seq, members), KEYS[2] its history (newest first).
const JOIN_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local members = redis.call('HINCRBY', KEYS[1], 'members', 1)
local room = redis.call('HMGET', KEYS[1], 'title', 'seq')
local newest = redis.call('LRANGE', KEYS[2], 0, ${HISTORY - 1})
local oldest = {}
for i = #newest, 1, -1 do oldest[#oldest + 1] = newest[i] end
return {room[1], tonumber(room[2] or '0'), members, '[' .. table.concat(oldest, ',') .. ']'}
`;
// ARGV[1]: the message's JSON without its opening brace; the seq is put in front.
const CHAT_SCRIPT = `
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('LPUSH', KEYS[2], '{"t":"chat","seq":' .. seq .. ',' .. ARGV[1])
redis.call('LTRIM', KEYS[2], 0, ${HISTORY - 1})
return seq
`;

/** Rooms in Redis, shared by every process given the same URL and prefix. */
class RedisStore {
  constructor(client, prefix) {
    this.client = client;
    this.prefix = prefix;
    this.shas = {};
  }

  async load() {
    this.shas.join = await this.client.scriptLoad(JOIN_SCRIPT);
    this.shas.chat = await this.client.scriptLoad(CHAT_SCRIPT);
  }

  keys(id) {
    return [`${this.prefix}:room:${id}`, `${this.prefix}:history:${id}`];
  }

  async script(name, source, keys, args) {
    try {
      return await this.client.evalSha(this.shas[name], { keys, arguments: args });
    } catch (err) {
      if (!String(err && err.message).startsWith('NOSCRIPT')) throw err;
      return this.client.eval(source, { keys, arguments: args });
    }
  }

  async createRoom(id, title) {
    const [room] = this.keys(id);
    return Boolean(await this.client.hSetNX(room, 'title', title));
  }

  async status(id) {
    const [room] = this.keys(id);
    const got = await this.client.hGetAll(room);
    if (got.title === undefined) return null;
    return {
      id,
      title: got.title,
      members: Number(got.members || 0),
      likes: 0,
      seq: Number(got.seq || 0),
    };
  }

  async join(id) {
    const got = await this.script('join', JOIN_SCRIPT, this.keys(id), []);
    if (!got) return null;
    const [title, seq, members, history] = got;
    return { title, seq: Number(seq), members: Number(members), history: JSON.parse(history) };
  }

  async leave(id) {
    const [room] = this.keys(id);
    return Number(await this.client.hIncrBy(room, 'members', -1));
  }

  async chat(id, fields) {
    const rest = JSON.stringify(fields).slice(1);
    return Number(await this.script('chat', CHAT_SCRIPT, this.keys(id), [rest]));
  }
}

// -- HTTP API (what the load tool's setup calls) ------------------------------------

function send(res, status, body) {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data),
  });
  res.end(data);
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        req.destroy();
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

function isName(value, max) {
  return typeof value === 'string' && value.length >= 1 && value.length <= max;
}

/** A token is its claims as base64url JSON: no signature (authentication is not compared). */
function makeToken(claims) {
  return Buffer.from(JSON.stringify(claims)).toString('base64url');
}

function readToken(token) {
  if (typeof token !== 'string') return null;
  try {
    const claims = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (!isName(claims.room, 128) || !isName(claims.user, 128)) return null;
    return {
      room: claims.room,
      user: claims.user,
      name: typeof claims.name === 'string' ? claims.name : claims.user,
      role: typeof claims.role === 'string' ? claims.role : 'member',
    };
  } catch {
    return null;
  }
}

function api(store, secret) {
  return async (req, res) => {
    const path = (req.url || '/').split('?')[0];
    try {
      if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
      if (secret && req.headers.authorization !== `Bearer ${secret}`) {
        return send(res, 401, { error: 'unauthorized' });
      }
      if (req.method === 'POST' && path === '/api/rooms') {
        const body = await readJson(req);
        if (!isName(body.id, 128)) return send(res, 400, { error: 'bad_request', message: 'id' });
        const title = typeof body.title === 'string' ? body.title : body.id;
        if (!(await store.createRoom(body.id, title))) return send(res, 409, { error: 'exists' });
        return send(res, 201, { id: body.id, title });
      }
      if (req.method === 'GET' && path.startsWith('/api/rooms/')) {
        const status = await store.status(decodeURIComponent(path.slice('/api/rooms/'.length)));
        return status ? send(res, 200, status) : send(res, 404, { error: 'not_found' });
      }
      if (req.method === 'POST' && path === '/api/tokens') {
        const body = await readJson(req);
        if (!isName(body.room, 128) || !isName(body.user, 128)) {
          return send(res, 400, { error: 'bad_request', message: 'room and user' });
        }
        const claims = { room: body.room, user: body.user, name: body.name, role: body.role };
        return send(res, 200, { token: makeToken(claims) });
      }
      return send(res, 404, { error: 'not_found' });
    } catch (err) {
      logError(`${req.method} ${path}: ${err && err.stack ? err.stack : err}`);
      if (!res.headersSent) send(res, 500, { error: 'internal' });
    }
  };
}

// -- Socket.IO: join and chat ---------------------------------------------------------

function fail(ack, code, message) {
  ack({ error: code, message });
}

function attach(io, store) {
  io.on('connection', (socket) => {
    socket.on('join', async (data, ack) => {
      if (typeof ack !== 'function') return;
      try {
        const room = data && data.room;
        const who = readToken(data && data.token);
        if (!who || who.room !== room) {
          return fail(ack, 'unauthorized', 'token missing, malformed or for another room');
        }
        if (socket.data.room) return fail(ack, 'bad_request', 'already joined a room');
        socket.join(room); // first: every later broadcast reaches this socket
        const view = await store.join(room);
        if (!view) {
          socket.leave(room);
          return fail(ack, 'not_found', 'no such room');
        }
        socket.data.room = room;
        socket.data.who = who;
        const me = { user: who.user, name: who.name, role: who.role };
        ack({
          me,
          room: { id: room, title: view.title, members: view.members, likes: 0 },
          polls: [],
          history: view.history,
          seq: view.seq,
          gap: false,
        });
        if (view.members < MEMBER_EVENTS_BELOW || STAFF.has(who.role)) {
          socket.to(room).emit('member.joined', { t: 'member.joined', room, ...me });
        }
      } catch (err) {
        logError(`join: ${err && err.stack ? err.stack : err}`);
        fail(ack, 'unavailable', 'the server could not answer');
      }
    });

    socket.on('chat.send', async (data, ack) => {
      if (typeof ack !== 'function') return;
      try {
        const room = socket.data.room;
        const who = socket.data.who;
        if (!room || !data || data.room !== room) return fail(ack, 'not_joined', 'join first');
        const text = typeof data.text === 'string' ? data.text.trim() : '';
        if (!text || text.length > MAX_TEXT) return fail(ack, 'bad_request', 'text');
        if (!isName(data.cid, MAX_CID)) return fail(ack, 'bad_request', 'cid');
        const ts = Date.now();
        const fields = { room, ts, user: who.user, name: who.name, role: who.role, text, cid: data.cid };
        const seq = await store.chat(room, fields);
        ack({ seq, ts });
        io.to(room).emit('chat', { t: 'chat', room, seq, ts, user: who.user, name: who.name, role: who.role, text, cid: data.cid });
      } catch (err) {
        logError(`chat.send: ${err && err.stack ? err.stack : err}`);
        fail(ack, 'unavailable', 'the server could not answer');
      }
    });

    socket.on('disconnect', async () => {
      const room = socket.data.room;
      const who = socket.data.who;
      if (!room) return;
      try {
        const members = await store.leave(room);
        if (members < MEMBER_EVENTS_BELOW || STAFF.has(who.role)) {
          io.to(room).emit('member.left', { t: 'member.left', room, user: who.user, name: who.name, role: who.role });
        }
      } catch (err) {
        logError(`leave: ${err && err.stack ? err.stack : err}`);
      }
    });
  });
}

async function main() {
  const opts = options(process.argv.slice(2), process.env);
  let store = new MemoryStore();
  let adapter = null;
  if (opts.redis) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const pub = createClient({ url: opts.redis });
    const sub = pub.duplicate();
    for (const client of [pub, sub]) client.on('error', (err) => logError(`redis: ${err}`));
    await Promise.all([pub.connect(), sub.connect()]);
    const redisStore = new RedisStore(pub, opts.prefix);
    await redisStore.load();
    store = redisStore;
    adapter = createAdapter(pub, sub, { key: `${opts.prefix}:socket.io` });
  }
  const server = http.createServer(api(store, opts.secret));
  const io = new Server(server, { transports: ['websocket'], serveClient: false });
  if (adapter) io.adapter(adapter);
  attach(io, store);
  // roomserver listens with a backlog of 4096 (roomserver/app.py); Node's default is
  // 511, which a burst of joins overflows (SYN retransmits of 1 s): same backlog here.
  server.listen({ port: opts.port, host: '127.0.0.1', backlog: 4096 }, () => {
    console.log(`listening on http://127.0.0.1:${server.address().port}`);
  });
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err) => {
  logError(`start: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
