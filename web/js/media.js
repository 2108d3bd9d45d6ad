// WebRTC for the pages: publish a camera, subscribe to every publisher of the room.
// The server answers whole offers (no trickle ICE), so an offer is sent once
// candidate gathering is complete. Videos start muted so that autoplay is
// allowed; a tap unmutes them.
import { t } from "./i18n.js";
import { el } from "./ui.js";

const GATHER_TIMEOUT_MS = 3000;

async function completeOffer(pc) {
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", done);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, GATHER_TIMEOUT_MS);
    });
  }
  return pc.localDescription.sdp;
}

// Publishes a local stream with rtc.publish; returns the peer connection.
export async function publish(conn, stream) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  const sdp = await completeOffer(pc);
  try {
    const answer = await conn.request("rtc.publish", { sdp });
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  } catch (err) {
    pc.close();
    throw err;
  }
  return pc;
}

export async function openCamera(videoDevice, audioDevice) {
  return navigator.mediaDevices.getUserMedia({
    video: videoDevice ? { deviceId: { exact: videoDevice } } : { width: 640, height: 360 },
    audio: audioDevice ? { deviceId: { exact: audioDevice } } : true,
  });
}

export async function fillDevicePickers(videoSelect, audioSelect) {
  const devices = await navigator.mediaDevices.enumerateDevices();
  for (const [select, kind] of [[videoSelect, "videoinput"], [audioSelect, "audioinput"]]) {
    select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) =>
      el("option", { value: d.deviceId, text: d.label || `${kind} ${i + 1}` })));
  }
}

// The stage: one tile per publisher of the room, kept in step with `tracks`, plus
// during a PK battle the other room's host (subscribed with `from_room`).
export class Stage {
  constructor(box, conn, { skip = () => false } = {}) {
    this.box = box;
    this.conn = conn;
    this.skip = skip;
    this.tiles = new Map();  // key (user, or "room/user" for the guest) -> { pc, node, user, fromRoom }
    this.publishers = [];
    this.guest = null;  // { room, user, label }
    conn.on("snapshot", (snap) => {
      this.resetAll();
      this.update(snap.room.publishers);
      this.setGuest(this.guest);
    });
    conn.on("tracks", (e) => this.update(e.publishers));
    conn.on("status", ({ state }) => { if (state === "away") this.resetAll(); });
  }

  update(publishers) {
    this.publishers = publishers;
    for (const [key, tile] of [...this.tiles]) {
      if (!tile.fromRoom && !publishers.includes(tile.user)) this.drop(key);
    }
    for (const user of publishers) {
      if (!this.tiles.has(user) && !this.skip(user)) this.watch(user);
    }
    this.box.classList.toggle("live", this.tiles.size > 0);
  }

  // The other room's host during a PK battle; null when the battle is over.
  setGuest(guest) {
    const key = (g) => `${g.room}/${g.user}`;
    if (this.guest && (!guest || key(guest) !== key(this.guest))) this.drop(key(this.guest));
    this.guest = guest;
    if (guest && !this.tiles.has(key(guest))) this.watch(guest.user, guest.room, guest.label);
    this.box.classList.toggle("pk", Boolean(guest));
    this.box.classList.toggle("live", this.tiles.size > 0);
  }

  resetAll() {
    for (const key of [...this.tiles.keys()]) this.drop(key);
  }

  drop(key) {
    const tile = this.tiles.get(key);
    if (!tile) return;
    tile.pc.close();
    tile.node.remove();
    this.tiles.delete(key);
    const fields = { publisher: tile.user };
    if (tile.fromRoom) fields.from_room = tile.fromRoom;
    this.conn.request("rtc.unsubscribe", fields).catch(() => {});
  }

  async watch(user, fromRoom = null, label = "") {
    const key = fromRoom ? `${fromRoom}/${user}` : user;
    const pc = new RTCPeerConnection({ iceServers: [] });
    const video = el("video", { autoplay: "", playsinline: "", "data-publisher": user });
    if (fromRoom) video.dataset.room = fromRoom;
    video.muted = true;
    const unmute = el("button", { type: "button", class: "unmute", text: t("stage.unmute"), onclick: () => {
      video.muted = false;
      unmute.remove();
    } });
    const node = el("div", { class: fromRoom ? "tile guest" : "tile" }, video, unmute);
    if (label) node.append(el("span", { class: "label", text: label }));
    this.tiles.set(key, { pc, node, user, fromRoom });
    this.box.append(node);
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.ontrack = (event) => {
      stream.addTrack(event.track);
      video.srcObject = stream;
      video.play().catch(() => {});
    };
    try {
      const sdp = await completeOffer(pc);
      const fields = { publisher: user, sdp };
      if (fromRoom) fields.from_room = fromRoom;
      const answer = await this.conn.request("rtc.subscribe", fields);
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch {
      if (this.tiles.get(key)?.pc === pc) {
        node.remove();
        this.tiles.delete(key);
      }
      pc.close();
    }
  }
}
