import { RoomConnection, explain, linkParams } from "./room.js";
import { productCard } from "./ui.js";
import { ChatList, Draws, Polls, bindCounters, bindStatus } from "./common.js";

const { room, token } = linkParams();
const conn = new RoomConnection(room, token);
const notice = document.getElementById("notice");
const chat = new ChatList(document.getElementById("chat"), conn, notice);
const polls = new Polls(document.getElementById("polls"), conn, notice, true);
new Draws(document.getElementById("draws"), conn);

bindStatus(conn, document.getElementById("status"), notice);
bindCounters(conn, document.getElementById("members"), document.getElementById("likes"));

conn.on("snapshot", (snap) => {
  document.getElementById("title").textContent = snap.room.title;
  document.getElementById("welcome").textContent = snap.room.welcome || "";
  document.getElementById("product").replaceChildren(productCard(snap.room.pinned));
  polls.reset(snap.polls);
});
conn.on("product.pinned", (e) => document.getElementById("product").replaceChildren(productCard(e.product)));
conn.on("cohost.invited", async () => {
  if (confirm("The host invites you on stage. Join?")) {
    try { await conn.request("cohost.accept"); notice.textContent = "You are on stage."; }
    catch (err) { notice.textContent = explain(err); }
  } else {
    conn.request("cohost.decline").catch(() => {});
  }
});

document.getElementById("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("chat-input");
  chat.send(input.value);
  input.value = "";
});
document.getElementById("like").addEventListener("click", () => {
  conn.request("like").catch((err) => { notice.textContent = explain(err); });
});
document.getElementById("hand").addEventListener("click", async () => {
  try { await conn.request("cohost.request"); notice.textContent = "Hand raised."; }
  catch (err) { notice.textContent = explain(err); }
});

if (!room || !token) {
  notice.textContent = "This link has no room token.";
} else {
  conn.connect();
}
// For tests and debugging from the console.
window.roomConnection = conn;
