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

// The stage: one tile per publisher of the room, kept in step with `tracks`.
export class Stage {
  constructor(box, conn, { skip = () => false } = {}) {
    this.box = box;
    this.conn = conn;
    this.skip = skip;
    this.tiles = new Map();
    this.publishers = [];
    conn.on("snapshot", (snap) => { this.resetAll(); this.update(snap.room.publishers); });
    conn.on("tracks", (e) => this.update(e.publishers));
    conn.on("status", ({ state }) => { if (state === "away") this.resetAll(); });
  }

  update(publishers) {
    this.publishers = publishers;
    for (const user of [...this.tiles.keys()]) {
      if (!publishers.includes(user)) this.drop(user);
    }
    for (const user of publishers) {
      if (!this.tiles.has(user) && !this.skip(user)) this.watch(user);
    }
    this.box.classList.toggle("live", this.tiles.size > 0);
  }

  resetAll() {
    for (const user of [...this.tiles.keys()]) this.drop(user);
  }

  drop(user) {
    const tile = this.tiles.get(user);
    if (!tile) return;
    tile.pc.close();
    tile.node.remove();
    this.tiles.delete(user);
    this.conn.request("rtc.unsubscribe", { publisher: user }).catch(() => {});
  }

  async watch(user) {
    const pc = new RTCPeerConnection({ iceServers: [] });
    const video = el("video", { autoplay: "", playsinline: "", "data-publisher": user });
    video.muted = true;
    const unmute = el("button", { type: "button", class: "unmute", text: t("stage.unmute"), onclick: () => {
      video.muted = false;
      unmute.remove();
    } });
    const node = el("div", { class: "tile" }, video, unmute);
    this.tiles.set(user, { pc, node });
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
      const answer = await this.conn.request("rtc.subscribe", { publisher: user, sdp });
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch {
      if (this.tiles.get(user)?.pc === pc) {
        node.remove();
        this.tiles.delete(user);
      }
      pc.close();
    }
  }
}
