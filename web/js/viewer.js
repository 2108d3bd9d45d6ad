import { applyStatic, languagePicker, t } from "./i18n.js";
import { RoomConnection, explain, linkParams } from "./room.js";
import { Stage, openCamera, publish } from "./media.js";
import { el, productCard } from "./ui.js";
import { bindBattle } from "./pk.js";
import { ChatList, Draws, Polls, bindAnnouncement, bindCounters, bindRecording, bindStatus } from "./common.js";

applyStatic();
languagePicker(document.getElementById("lang"));

const { room, token } = linkParams();
const conn = new RoomConnection(room, token);
const notice = document.getElementById("notice");
const say = (text) => { notice.textContent = text; };
new ChatList(document.getElementById("chat"), conn, notice);
const polls = new Polls(document.getElementById("polls"), conn, notice, true);
new Draws(document.getElementById("draws"), conn);
const chat = document.getElementById("chat");

const stage = new Stage(document.getElementById("tiles"), conn, { skip: (user) => user === conn.me });
bindBattle(conn, stage, document.getElementById("pk-bar"));
let own = null;  // this viewer's stream while it is a co-host: { pc, stream, node }

async function goOnStage() {
  let stream;
  try { stream = await openCamera(); } catch { say(t("media.noCamera")); return; }
  const video = el("video", { autoplay: "", playsinline: "", "data-publisher": conn.me });
  video.muted = true;
  video.srcObject = stream;
  const node = el("div", { class: "tile own" }, video, el("span", { class: "label", text: t("media.you") }));
  document.getElementById("tiles").prepend(node);
  try {
    own = { pc: await publish(conn, stream), stream, node };
    document.getElementById("stage-controls").hidden = false;
  } catch (err) {
    stream.getTracks().forEach((track) => track.stop());
    node.remove();
    say(explain(err));
  }
}

function leaveStage() {
  if (!own) return;
  own.pc.close();
  own.stream.getTracks().forEach((track) => track.stop());
  own.node.remove();
  own = null;
  document.getElementById("stage-controls").hidden = true;
}

conn.on("cohost.left", (e) => { if (e.user === conn.me) leaveStage(); });
conn.on("status", ({ state }) => { if (state === "away") leaveStage(); });
document.getElementById("leave-stage").addEventListener("click", () => {
  conn.request("cohost.end", { user: conn.me }).catch((err) => say(explain(err)));
  leaveStage();
});
bindStatus(conn, document.getElementById("status"), notice);
bindCounters(conn, document.getElementById("members"), document.getElementById("likes"));
bindAnnouncement(conn, document.getElementById("announcement"));
bindRecording(conn, document.getElementById("rec-badge"));

conn.on("snapshot", (snap) => {
  document.getElementById("title").textContent = snap.room.title;
  document.getElementById("welcome").textContent = snap.room.welcome || "";
  document.getElementById("product").replaceChildren(productCard(snap.room.pinned));
  polls.reset(snap.polls);
});
conn.on("product.pinned", (e) => document.getElementById("product").replaceChildren(productCard(e.product)));
conn.on("cohost.invited", async () => {
  if (confirm(t("notice.invited"))) {
    try {
      await conn.request("cohost.accept");
      say(t("notice.onStage"));
      await goOnStage();
    } catch (err) { say(explain(err)); }
  } else {
    conn.request("cohost.decline").catch(() => {});
  }
});


document.getElementById("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("chat-input");
  chat.dispatchEvent(new CustomEvent("send", { detail: input.value }));
  input.value = "";
});
document.getElementById("like").addEventListener("click", () => {
  conn.request("like").catch((err) => say(explain(err)));
});
document.getElementById("hand").addEventListener("click", async () => {
  try { await conn.request("cohost.request"); say(t("notice.handRaised")); }
  catch (err) { say(explain(err)); }
});

if (!room || !token) say(t("notice.noToken"));
else conn.connect();
// For tests and debugging from the console.
window.roomConnection = conn;
