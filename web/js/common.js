// Chat list with per-message status, live polls, counters and connection status,
// shared by the host and viewer pages.
import { formatList, formatNumber, formatTime, onLanguageChange, t } from "./i18n.js";
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
    list.addEventListener("send", (e) => this.send(e.detail));
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
      line = el("li", { class: "chat-line pending" }, el("span", { class: "who", text: t("chat.you") }), el("span", { class: "text", text }));
      const state = el("span", { class: "state", text: t("chat.sending") });
      line.append(state);
      this.pendingByCid.set(cid, line);
      this.list.append(line);
      this.list.scrollTop = this.list.scrollHeight;
    }
    const state = line.querySelector(".state");
    state.textContent = t("chat.sending");
    try {
      const ok = await this.conn.request("chat.send", { text, cid });
      if (this.bySeq.has(ok.seq)) {
        line.remove();
        this.pendingByCid.delete(cid);
      } else {
        state.textContent = t("chat.sent");
      }
      this.notice.textContent = "";
    } catch (err) {
      state.textContent = t("chat.failed");
      const retry = el("button", { type: "button", text: t("chat.retry"), onclick: () => { retry.remove(); this.send(text, cid); } });
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
    onLanguageChange(() => this.render());
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
  let state = "connecting";
  let lastNotice = null;
  const show = () => {
    badge.className = `status ${state}`;
    badge.textContent = t(`status.${state === "live" ? "live" : state}`);
    if (lastNotice) notice.textContent = lastNotice();
  };
  const say = (render) => { lastNotice = render; notice.textContent = render(); };
  onLanguageChange(show);
  conn.on("status", ({ state: next, error, gap }) => {
    state = next;
    show();
    if (error) say(() => explain(error));
    else if (gap) say(() => t("notice.gap"));
  });
  conn.on("snapshot", (snap) => { conn.me = snap.me.user; });
  conn.on("muted", (e) => say(() => t("error.muted", { time: formatTime(e.until) })));
  conn.on("kicked", (e) => {
    state = "left";
    show();
    say(() => t(e.reason === "ban" ? "error.banned" : e.reason === "room_ended" ? "notice.ended" : "notice.removed"));
  });
  conn.on("room.ended", () => say(() => t("notice.ended")));
}

export function bindCounters(conn, members, likes) {
  conn.on("snapshot", (snap) => {
    members.textContent = formatNumber(snap.room.members);
    likes.textContent = formatNumber(snap.room.likes);
  });
  conn.on("presence", (e) => { members.textContent = formatNumber(e.members); });
  conn.on("likes", (e) => { likes.textContent = formatNumber(e.total); });
}

// The recording badge: shown while the room is being recorded (snapshot, then events).
export function bindRecording(conn, badge) {
  const show = (on) => { badge.hidden = !on; };
  conn.on("snapshot", (snap) => show(snap.room.recording));
  conn.on("rec.started", () => show(true));
  conn.on("rec.stopped", () => show(false));
}

export function bindAnnouncement(conn, box) {
  const show = (message) => { box.textContent = message ? `📢 ${message.text}` : ""; };
  conn.on("snapshot", (snap) => show(snap.room.announcement));
  conn.on("announcement", (e) => show(e.message));
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
    onLanguageChange(() => this.render());
  }

  render() {
    const cards = [];
    for (const draw of this.running.values()) {
      const rule = t(`draw.rule.${draw.eligibility}`, { keyword: draw.keyword || "" });
      const count = this.counts.get(draw.id) ?? 0;
      cards.push(el("div", { class: "draw", "data-draw": draw.id },
        el("div", { class: "title", text: t("draw.title", { prize: draw.prize, count: draw.winners_count }) }),
        el("div", { class: "rule", text: rule }),
        el("div", { class: "meta", "data-count": String(count), text: t("draw.status", { count, time: formatTime(draw.closes_at) }) }),
        el("div", { class: "commitment", text: t("draw.commitment", { value: draw.commitment.slice(0, 16) }) })));
    }
    if (this.last) {
      const winners = this.last.winners.length ? t("draw.winnersList", { list: formatList(this.last.winners) }) : t("draw.nobody");
      cards.push(el("div", { class: "draw result", "data-draw": this.last.id },
        el("div", { class: "title", text: t("draw.resultTitle", { prize: this.last.prize }) }),
        el("div", { class: "winners", "data-winners": this.last.winners.join(","), text: winners }),
        el("div", { class: "meta", text: t("draw.resultMeta", { count: this.last.entries, seed: this.last.seed.slice(0, 16) }) })));
    }
    this.box.replaceChildren(...cards);
  }
}
