import { formatTime, has, t } from "./i18n.js";

// A room connection: one WebSocket, requests matched to answers by id, events to
// listeners, and automatic reconnect that resumes chat with `since` so nothing is
// shown twice or lost. Text from the network is only ever inserted as text by the
// pages; this module never touches the DOM.

export class RoomConnection extends EventTarget {
  constructor(room, token, { url } = {}) {
    super();
    this.room = room;
    this.token = token;
    this.url = url || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    this.nextId = 1;
    this.pending = new Map();
    this.lastSeq = null;
    this.seen = new Set();
    this.closedByUs = false;
    this.attempt = 0;
    this.ws = null;
  }

  connect() {
    this.closedByUs = false;
    const ws = new WebSocket(this.url, ["room.v1.json"]);
    this.ws = ws;
    ws.onopen = () => this.#joined();
    ws.onmessage = (msg) => {
      for (const line of String(msg.data).split("\n")) {
        if (line) this.#route(JSON.parse(line));
      }
    };
    ws.onclose = () => {
      for (const { reject } of this.pending.values()) reject(new RoomError("disconnected", "connection lost"));
      this.pending.clear();
      this.#emit("status", { state: "away" });
      if (!this.closedByUs) this.#retry();
    };
  }

  close() {
    this.closedByUs = true;
    if (this.ws) this.ws.close();
  }

  request(t, fields = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new RoomError("disconnected", "not connected"));
        return;
      }
      this.pending.set(id, { resolve, reject });
      const body = t === "ping" ? { t, id } : { t, id, room: this.room, ...fields };
      this.ws.send(JSON.stringify(body));
    });
  }

  on(type, handler) {
    this.addEventListener(type, (e) => handler(e.detail));
  }

  async #joined() {
    try {
      const fields = { token: this.token };
      if (this.lastSeq !== null) fields.since = this.lastSeq;
      const snap = await this.request("join", fields);
      this.attempt = 0;
      for (const m of snap.history) this.#chat(m);
      if (this.lastSeq === null || snap.seq > this.lastSeq) this.lastSeq = snap.seq;
      this.me = snap.me.user;
      this.#emit("snapshot", snap);
      this.#emit("status", { state: "live", gap: snap.gap });
    } catch (err) {
      this.#emit("status", { state: "error", error: err });
      if (err.code === "unauthorized" || err.code === "banned" || err.code === "not_found") {
        this.closedByUs = true;
        this.ws.close();
      }
    }
  }

  #retry() {
    this.attempt += 1;
    const delay = Math.min(5000, 250 * 2 ** Math.min(this.attempt, 5)) * (0.5 + Math.random());
    setTimeout(() => this.connect(), delay);
  }

  #route(msg) {
    if ((msg.t === "ok" || msg.t === "error") && this.pending.has(msg.id)) {
      const { resolve, reject } = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.t === "ok") resolve(msg);
      else reject(new RoomError(msg.code, msg.message, msg));
      return;
    }
    if (msg.t === "chat") {
      this.#chat(msg);
      return;
    }
    if (msg.t === "kicked" || msg.t === "room.ended") this.closedByUs = true;
    this.#emit(msg.t, msg);
  }

  #chat(m) {
    if (this.seen.has(m.seq)) return;
    this.seen.add(m.seq);
    if (this.lastSeq === null || m.seq > this.lastSeq) this.lastSeq = m.seq;
    this.#emit("chat", m);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

export class RoomError extends Error {
  constructor(code, message, reply = {}) {
    super(message);
    this.code = code;
    this.reply = reply;
  }
}

// The token and room come in the link's fragment (#room=...&token=...), which the
// browser never sends to the server, so they do not reach access logs.
export function linkParams() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { room: params.get("room"), token: params.get("token") };
}

export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch {
    return {};
  }
}

export function explain(err) {
  const reply = err.reply || {};
  if (err.code === "muted") return t("error.muted", { time: formatTime(reply.until || Date.now()) });
  if (err.code === "rate_limited") {
    return t("error.rate_limited", { count: Math.max(1, Math.ceil((reply.retry_after_ms || 1000) / 1000)) });
  }
  return has(`error.${err.code}`) ? t(`error.${err.code}`) : t("error.internal");
}
