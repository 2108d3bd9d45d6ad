// The replay page: plays a recording's segments and shows the room as it was at the
// playing moment. Everything shown is rebuilt from the timeline for the current
// recording time on every time update and seek, so seeking backwards is as right as
// playing forwards. The link carries the room, the recording name and a signed
// exp/sig pair from GET /api/rooms/{id}/recordings (see docs/replay.md).
import { applyStatic, languagePicker, onLanguageChange, t } from "./i18n.js";
import { chatLine, el, pollCard, productCard } from "./ui.js";

const CHAT_SHOWN = 50;
const params = new URLSearchParams(location.search);
const room = params.get("room") || "";
const name = params.get("rec") || "";
const auth = `exp=${encodeURIComponent(params.get("exp") || "")}&sig=${encodeURIComponent(params.get("sig") || "")}`;
const base = `/recordings/${encodeURIComponent(room)}/`;
const player = document.getElementById("player");
const status = document.getElementById("status");

let events = [];
let main = [];
let current = -1;
let lastShown = null;

function fileUrl(file) {
  return `${base}${encodeURIComponent(file)}?${auth}`;
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${response.status}`);
  return response;
}

// Recording time (seconds from the recording start) of the player's position.
export function recordingTime() {
  if (current < 0) return 0;
  return main[current].offset + player.currentTime;
}

// The room at recording time `at`: chat, polls, product and likes from the timeline.
export function stateAt(at) {
  const chat = new Map();
  const polls = new Map();
  let product = null;
  let likes = 0;
  for (const e of events) {
    if (e.offset > at) break;
    if (e.t === "chat") chat.set(e.seq, e);
    else if (e.t === "chat.deleted") chat.delete(e.seq);
    else if (e.t === "poll.opened" || e.t === "poll.closed") polls.set(e.poll.id, { ...e.poll });
    else if (e.t === "poll.tally" && polls.has(e.poll)) {
      const poll = polls.get(e.poll);
      poll.options = poll.options.map((option, i) => ({ ...option, votes: e.votes[i] ?? option.votes }));
      poll.total = e.total;
    } else if (e.t === "product.pinned") product = e.product;
    else if (e.t === "likes") likes = e.total;
  }
  return { chat: [...chat.values()].slice(-CHAT_SHOWN), polls: [...polls.values()], product, likes };
}

function render() {
  const at = recordingTime();
  const state = stateAt(at);
  const key = JSON.stringify([state.chat.map((m) => m.seq), state.polls, state.product, state.likes]);
  if (key === lastShown) return;
  lastShown = key;
  document.getElementById("chat").replaceChildren(...state.chat.map((m) => chatLine(m)));
  document.getElementById("polls").replaceChildren(...state.polls.map((p) => pollCard(p, null)));
  document.getElementById("product").replaceChildren(productCard(state.product));
  document.getElementById("likes").textContent = String(state.likes);
}

function play(index, at = 0) {
  if (index < 0 || index >= main.length) return;
  if (index !== current) {
    current = index;
    player.src = fileUrl(main[index].file);
  }
  const seek = () => { player.currentTime = Math.max(0, at); render(); };
  if (player.readyState >= 1) seek();
  else player.addEventListener("loadedmetadata", seek, { once: true });
}

async function load() {
  const manifest = await (await fetchOk(`${base}${encodeURIComponent(name)}.json?${auth}`)).json();
  const text = await (await fetchOk(fileUrl(manifest.timeline))).text();
  events = text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
  events.sort((a, b) => a.offset - b.offset);
  const segments = manifest.segments.filter((s) => s.frames && (s.frames.video || s.frames.audio));
  const first = segments.length ? segments[0].publisher : null;
  // The first publisher (the host) plays in the main player; co-hosts in tiles beside it.
  main = segments.filter((s) => s.publisher === first);
  const others = segments.filter((s) => s.publisher !== first);
  document.getElementById("title").textContent = t("replay.title", { room });
  status.textContent = main.length ? t("replay.ready") : t("replay.empty");
  player.addEventListener("timeupdate", () => { render(); syncTiles(others); });
  player.addEventListener("seeked", () => { render(); syncTiles(others); });
  player.addEventListener("ended", () => play(current + 1, 0));
  play(0, 0);
}

const tiles = new Map();

function syncTiles(others) {
  const at = recordingTime();
  for (const segment of others) {
    const inside = at >= segment.offset && (!segment.end || at < segment.end);
    let video = tiles.get(segment.file);
    if (!inside) {
      if (video) video.pause();
      continue;
    }
    if (!video) {
      video = el("video", { muted: "", playsinline: "", src: fileUrl(segment.file) });
      tiles.set(segment.file, video);
      document.getElementById("tiles").append(video);
    }
    const want = at - segment.offset;
    if (Math.abs(video.currentTime - want) > 0.5) video.currentTime = want;
    if (player.paused) video.pause();
    else video.play().catch(() => {});
  }
}

applyStatic();
languagePicker(document.getElementById("lang"));
onLanguageChange(() => { lastShown = null; render(); });
load().catch(() => { status.textContent = t("replay.failed"); });
