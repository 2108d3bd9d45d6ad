import { applyStatic, languagePicker, onLanguageChange, t } from "./i18n.js";
import { RoomConnection, explain, linkParams } from "./room.js";
import { Stage, fillDevicePickers, openCamera, publish } from "./media.js";
import { el, productCard } from "./ui.js";
import { bindBattle } from "./pk.js";
import { ChatList, Draws, Polls, bindAnnouncement, bindCounters, bindRecording, bindStatus } from "./common.js";

applyStatic();
languagePicker(document.getElementById("lang"));

const { room, token } = linkParams();
const conn = new RoomConnection(room, token);
const notice = document.getElementById("notice");
const say = (text) => { notice.textContent = text; };

const act = (type, fields) => conn.request(type, fields).catch((err) => say(explain(err)));
const moderation = (m) => m.role === "member" ? [
  el("button", { type: "button", title: t("action.delete"), "aria-label": t("action.delete"), text: "🗑", onclick: () => act("mod.delete", { seq: m.seq }) }),
  el("button", { type: "button", title: t("action.mute"), "aria-label": t("action.mute"), text: "🔇", onclick: () => act("mod.mute", { user: m.user, seconds: 600 }) }),
  el("button", { type: "button", title: t("action.kick"), "aria-label": t("action.kick"), text: "⏏", onclick: () => act("mod.kick", { user: m.user }) }),
  el("button", { type: "button", title: t("action.ban"), "aria-label": t("action.ban"), text: "⛔", onclick: () => act("mod.ban", { user: m.user }) }),
] : [];
new ChatList(document.getElementById("chat"), conn, notice, moderation);
const polls = new Polls(document.getElementById("polls"), conn, notice, false, (poll) =>
  poll.open ? [el("button", { type: "button", text: t("poll.close"), onclick: () => act("poll.close", { poll: poll.id }) })] : []);
new Draws(document.getElementById("draws"), conn);

// Camera preview, going live, and the co-hosts' tiles.
const stage = new Stage(document.getElementById("tiles"), conn, { skip: (user) => user === conn.me });
const battle = bindBattle(conn, stage, document.getElementById("pk-bar"));
const cameraSelect = document.getElementById("camera");
const micSelect = document.getElementById("microphone");
const goLive = document.getElementById("go-live");
const endStream = document.getElementById("end-stream");
let preview = null;  // { stream, node }
let live = null;  // the publishing peer connection
let wantLive = false;

async function startPreview() {
  if (preview) {
    preview.stream.getTracks().forEach((track) => track.stop());
    preview.node.remove();
    preview = null;
  }
  let stream;
  try { stream = await openCamera(cameraSelect.value, micSelect.value); } catch { say(t("media.noCamera")); return; }
  const video = el("video", { autoplay: "", playsinline: "", id: "preview" });
  video.muted = true;
  video.srcObject = stream;
  const node = el("div", { class: "tile own" }, video, el("span", { class: "label", text: t("media.you") }));
  document.getElementById("tiles").prepend(node);
  preview = { stream, node };
}

async function startLive() {
  if (!preview) await startPreview();
  if (!preview) return;
  goLive.disabled = true;
  try {
    live = await publish(conn, preview.stream);
    wantLive = true;
    goLive.hidden = true;
    endStream.hidden = false;
  } catch (err) {
    say(err.code ? explain(err) : t("media.failed"));
  } finally {
    goLive.disabled = false;
  }
}

function stopLive(tellServer) {
  wantLive = false;
  if (live) live.close();
  live = null;
  if (tellServer) conn.request("rtc.unpublish").catch(() => {});
  goLive.hidden = false;
  endStream.hidden = true;
}

goLive.addEventListener("click", startLive);
endStream.addEventListener("click", () => stopLive(true));
for (const select of [cameraSelect, micSelect]) {
  select.addEventListener("change", async () => {
    const wasLive = wantLive;
    if (wasLive) stopLive(true);
    await startPreview();
    if (wasLive) await startLive();
  });
}
// After a reconnect the server has dropped our stream: publish again.
conn.on("status", ({ state }) => { if (state === "away" && live) { live.close(); live = null; } });
conn.on("snapshot", () => { if (wantLive && !live) startLive(); });
startPreview().then(() => fillDevicePickers(cameraSelect, micSelect)).catch(() => {});

bindStatus(conn, document.getElementById("status"), notice);
bindCounters(conn, document.getElementById("members"), document.getElementById("likes"));
bindAnnouncement(conn, document.getElementById("announcement"));
bindRecording(conn, document.getElementById("rec-badge"));

// Recording: a toggle for now, and the room setting to record every time it goes live.
const recordButton = document.getElementById("record");
const recordWhenLive = document.getElementById("record-when-live");
let recording = false;
function showRecording() {
  recordButton.dataset.i18n = recording ? "rec.stop" : "rec.start";
  recordButton.textContent = t(recordButton.dataset.i18n);
  recordButton.setAttribute("aria-pressed", String(recording));
}
conn.on("snapshot", (snap) => {
  recording = snap.room.recording;
  recordWhenLive.checked = Boolean(snap.room.record_when_live);
  showRecording();
});
conn.on("rec.started", () => { recording = true; showRecording(); });
conn.on("rec.stopped", () => { recording = false; showRecording(); });
conn.on("rec.auto", (e) => { recordWhenLive.checked = e.on; });
recordButton.addEventListener("click", () => act(recording ? "rec.stop" : "rec.start"));
recordWhenLive.addEventListener("change", () => {
  const on = recordWhenLive.checked;
  conn.request("rec.auto", { on }).catch((err) => { recordWhenLive.checked = !on; say(explain(err)); });
});

// PK battles: invite another room's host, answer invitations, end the battle.
const pkInvites = document.getElementById("pk-invites");
const pkEnd = document.getElementById("pk-end");
const showPk = () => { pkEnd.hidden = !battle.battle; };
conn.on("snapshot", showPk);
conn.on("pk.started", () => { pkInvites.replaceChildren(); showPk(); });
conn.on("pk.ended", showPk);
conn.on("pk.declined", () => say(t("pk.declined")));
function showInvite(invite) {
  if (pkInvites.querySelector(`li[data-pk="${CSS.escape(invite.id)}"]`)) return;
  const answer = (type) => async () => {
    item.remove();
    await act(type, { pk: invite.id });
  };
  const item = el("li", { "data-pk": invite.id },
    el("span", { text: t("pk.invited", { title: invite.from_title }) }),
    el("button", { type: "button", class: "accept", text: t("pk.accept"), onclick: answer("pk.accept") }),
    el("button", { type: "button", class: "decline", text: t("pk.decline"), onclick: answer("pk.decline") }));
  pkInvites.append(item);
  setTimeout(() => item.remove(), Math.max(0, invite.expires_at - Date.now()));
}
conn.on("pk.invited", ({ invite }) => showInvite(invite));
// A host who reloads or reconnects still sees an invitation it has not answered.
conn.on("snapshot", (snap) => {
  pkInvites.replaceChildren();
  if (snap.room.pk_invite) showInvite(snap.room.pk_invite);
});
document.getElementById("pk-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const toRoom = document.getElementById("pk-room").value.trim();
  const duration = Number(document.getElementById("pk-duration").value);
  try {
    await conn.request("pk.invite", { to_room: toRoom, duration_s: duration });
    say(t("pk.sent", { room: toRoom }));
  } catch (err) { say(explain(err)); }
});
pkEnd.addEventListener("click", () => act("pk.end"));

const hands = new Map();
const cohosts = new Set();
function renderStage() {
  document.getElementById("hands").replaceChildren(...[...hands].map(([user, name]) =>
    el("li", {}, el("span", { text: name }), el("button", { type: "button", text: t("action.invite"), onclick: () => act("cohost.invite", { user }) }))));
  document.getElementById("cohosts").replaceChildren(...[...cohosts].map((user) =>
    el("li", {}, el("span", { text: user }), el("button", { type: "button", text: t("action.end"), onclick: () => act("cohost.end", { user }) }))));
}
onLanguageChange(renderStage);

conn.on("snapshot", (snap) => {
  document.getElementById("title").textContent = snap.room.title;
  document.getElementById("product").replaceChildren(productCard(snap.room.pinned));
  polls.reset(snap.polls);
  cohosts.clear();
  for (const user of snap.room.cohosts) cohosts.add(user);
  renderStage();
});
conn.on("product.pinned", (e) => document.getElementById("product").replaceChildren(productCard(e.product)));
conn.on("cohost.requested", (e) => { hands.set(e.user, e.name); renderStage(); });
conn.on("cohost.joined", (e) => { hands.delete(e.user); cohosts.add(e.user); renderStage(); });
conn.on("cohost.left", (e) => { cohosts.delete(e.user); renderStage(); });
conn.on("cohost.declined", (e) => { hands.delete(e.user); say(t("notice.declined")); renderStage(); });

document.getElementById("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("chat-input");
  document.getElementById("chat").dispatchEvent(new CustomEvent("send", { detail: input.value }));
  input.value = "";
});
document.getElementById("poll-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = document.getElementById("poll-question").value.trim();
  const options = document.getElementById("poll-options").value.split(/[,，]/).map((s) => s.trim()).filter(Boolean);
  const duration = Number(document.getElementById("poll-duration").value);
  const fields = { question, options };
  if (duration > 0) fields.duration_s = duration;
  try {
    await conn.request("poll.create", fields);
    event.target.reset();
  } catch (err) { say(explain(err)); }
});
document.getElementById("draw-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const kind = document.getElementById("draw-kind").value;
  const fields = {
    prize: document.getElementById("draw-prize").value.trim(),
    winners: Number(document.getElementById("draw-winners").value),
    eligibility: kind,
    duration_s: Number(document.getElementById("draw-duration").value),
  };
  if (kind === "keyword") fields.keyword = document.getElementById("draw-keyword").value.trim();
  if (kind === "voted") {
    const latest = [...polls.polls.keys()].pop();
    if (!latest) { say(t("notice.pollFirst")); return; }
    fields.poll = latest;
  }
  try { await conn.request("draw.start", fields); } catch (err) { say(explain(err)); }
});
document.getElementById("product-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const product = { id: `p-${Date.now().toString(36)}`, title: document.getElementById("p-title").value.trim() };
  for (const [field, id] of [["price", "p-price"], ["currency", "p-currency"], ["image", "p-image"], ["url", "p-url"]]) {
    const value = document.getElementById(id).value.trim();
    if (value) product[field] = field === "currency" ? value.toUpperCase() : value;
  }
  await act("product.pin", { product });
});
document.getElementById("unpin").addEventListener("click", () => act("product.unpin"));
document.getElementById("end-room").addEventListener("click", () => {
  if (confirm(t("notice.confirmEnd"))) act("room.end");
});

if (!room || !token) say(t("notice.noToken"));
else conn.connect();
window.roomConnection = conn;
