// Chat list with per-message status, live polls, counters and connection status,
// shared by the host and viewer pages.
import { explain } from "./room.js";
import { chatLine, el, pollCard } from "./ui.js";

export class ChatList {
  constructor(list, conn, notice, actionsFor = () => []) {
    this.list = list;
    this.conn = conn;
    this.notice = notice;
    this.actionsFor = actionsFor;
    this.bySeq = new Map();
    this.pendingByCid = new Map();
    this.counter = 0;
    conn.on("chat", (m) => this.add(m));
    conn.on("chat.deleted", (e) => {
      const line = this.bySeq.get(e.seq);
      if (line) line.remove();
      this.bySeq.delete(e.seq);
    });
  }

  add(m) {
    const pending = this.pendingByCid.get(m.cid);
    if (pending && m.user === this.conn.me) {
      pending.remove();
      this.pendingByCid.delete(m.cid);
    }
    if (this.bySeq.has(m.seq)) return;
    const line = chatLine(m, this.actionsFor(m));
    this.bySeq.set(m.seq, line);
    const before = [...this.bySeq.keys()].filter((s) => s > m.seq).sort((a, b) => a - b)[0];
    const anchor = before === undefined ? null : this.bySeq.get(before);
    const atBottom = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 8;
    this.list.insertBefore(line, anchor);
    if (atBottom) this.list.scrollTop = this.list.scrollHeight;
  }

  async send(text, cid) {
    text = text.trim();
    if (!text) return;
    cid = cid || `${Date.now().toString(36)}-${(this.counter++).toString(36)}`;
    let line = this.pendingByCid.get(cid);
    if (!line) {
      line = el("li", { class: "chat-line pending" }, el("span", { class: "who", text: "You" }), el("span", { class: "text", text }));
      const state = el("span", { class: "state", text: "sending…" });
      line.append(state);
      this.pendingByCid.set(cid, line);
      this.list.append(line);
      this.list.scrollTop = this.list.scrollHeight;
    }
    const state = line.querySelector(".state");
    state.textContent = "sending…";
    try {
      const ok = await this.conn.request("chat.send", { text, cid });
      if (this.bySeq.has(ok.seq)) {
        line.remove();
        this.pendingByCid.delete(cid);
      } else {
        state.textContent = "sent";
      }
      this.notice.textContent = "";
    } catch (err) {
      state.textContent = "failed";
      const retry = el("button", { type: "button", text: "Retry", onclick: () => { retry.remove(); this.send(text, cid); } });
      line.append(retry);
      this.notice.textContent = explain(err);
    }
  }
}

export class Polls {
  constructor(box, conn, notice, canVote, extra = () => []) {
    this.box = box;
    this.conn = conn;
    this.notice = notice;
    this.canVote = canVote;
    this.extra = extra;
    this.polls = new Map();
    conn.on("poll.opened", (e) => this.put(e.poll));
    conn.on("poll.closed", (e) => this.put({ ...e.poll, my_vote: this.polls.get(e.poll.id)?.my_vote }));
    conn.on("poll.tally", (e) => {
      const poll = this.polls.get(e.poll);
      if (!poll) return;
      poll.options = poll.options.map((o, i) => ({ ...o, votes: e.votes[i] }));
      poll.total = e.total;
      this.render();
    });
  }

  reset(list) {
    this.polls.clear();
    for (const poll of list) this.polls.set(poll.id, poll);
    this.render();
  }

  put(poll) {
    this.polls.set(poll.id, { ...this.polls.get(poll.id), ...poll });
    this.render();
  }

  async vote(poll, index) {
    try {
      await this.conn.request("poll.vote", { poll: poll.id, option: index });
      poll.my_vote = index;
      this.render();
    } catch (err) {
      if (err.code === "already_voted") { poll.my_vote = poll.my_vote ?? index; this.render(); }
      this.notice.textContent = explain(err);
    }
  }

  render() {
    const cards = [...this.polls.values()].reverse().map((poll) => {
      const card = pollCard(poll, this.canVote ? (p, i) => this.vote(p, i) : null);
      for (const node of this.extra(poll)) card.append(node);
      return card;
    });
    this.box.replaceChildren(...cards);
  }
}

export function bindStatus(conn, badge, notice) {
  conn.on("status", ({ state, error, gap }) => {
    badge.className = `status ${state}`;
    badge.textContent = state === "live" ? "connected" : state === "away" ? "reconnecting…" : "error";
    if (error) notice.textContent = explain(error);
    else if (gap) notice.textContent = "Some older messages are no longer available.";
  });
  conn.on("snapshot", (snap) => { conn.me = snap.me.user; });
  conn.on("muted", (e) => { notice.textContent = `You are muted until ${new Date(e.until).toLocaleTimeString()}.`; });
  conn.on("kicked", (e) => {
    badge.className = "status";
    badge.textContent = "left";
    notice.textContent = e.reason === "ban" ? "You were banned from this room." : e.reason === "room_ended" ? "The live session has ended." : "You were removed from the room.";
  });
  conn.on("room.ended", () => { notice.textContent = "The live session has ended."; });
}

export function bindCounters(conn, members, likes) {
  conn.on("snapshot", (snap) => {
    members.textContent = String(snap.room.members);
    likes.textContent = String(snap.room.likes);
  });
  conn.on("presence", (e) => { members.textContent = String(e.members); });
  conn.on("likes", (e) => { likes.textContent = String(e.total); });
}

// Running lucky draws and the last result, with the commitment so anyone can check.
export class Draws {
  constructor(box, conn) {
    this.box = box;
    this.running = new Map();
    this.counts = new Map();
    this.last = null;
    conn.on("snapshot", (snap) => {
      this.running = new Map((snap.room.draws || []).map((d) => [d.id, d]));
      this.last = snap.room.last_draw || null;
      this.render();
    });
    conn.on("draw.started", (e) => { this.running.set(e.draw.id, e.draw); this.render(); });
    conn.on("draw.entries", (e) => { this.counts.set(e.draw, e.count); this.render(); });
    conn.on("draw.result", (e) => { this.running.delete(e.draw.id); this.last = e.draw; this.render(); });
  }

  render() {
    const cards = [];
    for (const draw of this.running.values()) {
      const rule = draw.eligibility === "keyword" ? `Type “${draw.keyword}” in the chat to enter` :
        draw.eligibility === "voted" ? "Everyone who votes in the poll enters" : "Everyone here enters";
      cards.push(el("div", { class: "draw", "data-draw": draw.id },
        el("div", { class: "title", text: `🎁 ${draw.prize} × ${draw.winners_count}` }),
        el("div", { class: "rule", text: rule }),
        el("div", { class: "meta", text: `Entries: ${this.counts.get(draw.id) ?? 0} · ends ${new Date(draw.closes_at).toLocaleTimeString()}` }),
        el("div", { class: "commitment", text: `Commitment: ${draw.commitment.slice(0, 16)}…` })));
    }
    if (this.last) {
      cards.push(el("div", { class: "draw result", "data-draw": this.last.id },
        el("div", { class: "title", text: `🎉 ${this.last.prize}` }),
        el("div", { class: "winners", text: `Winners: ${this.last.winners.join(", ") || "nobody entered"}` }),
        el("div", { class: "meta", text: `${this.last.entries} entries · seed ${this.last.seed.slice(0, 16)}…` })));
    }
    this.box.replaceChildren(...cards);
  }
}
