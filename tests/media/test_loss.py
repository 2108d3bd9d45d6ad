"""Media over a lossy link: the server in its own namespace, packets dropped on a veth pair.

Inside the test namespace (``unshare --net``), a second namespace holds the
node; a veth pair joins them, carrying 127.0.0.2 (peers) and 127.0.0.3
(node), so nothing here can leave the machine. Every UDP datagram arriving on
either end is dropped with probability :data:`LOSS_PERCENT` by an nftables
rule on the device's ingress hook (the kernel here has no ``sch_netem``; a
random drop at ingress is the same loss to the receiver, and unlike a drop at
output the sender gets no error). TCP (signalling) is left alone.

Frames must still arrive decodable and in order: the node asks the publisher
again for what it lost (NACK, RTX), answers the viewer's NACKs from its
history, and passes picture loss on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from media.peers import Publisher, Viewer
from tests.integration.test_multinode import create_room, join
from tests.media.test_forwarding import assert_in_order
from tests.nodes import NodeProcess, start_node

pytestmark = [pytest.mark.netns, pytest.mark.slow]

LOSS_PERCENT = 3
PEERS = "127.0.0.2"
NODE = "127.0.0.3"


def run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=10).stdout


def enter(pid: int) -> tuple[str, ...]:
    """The command prefix that runs a command in ``pid``'s network namespace."""
    return ("nsenter", f"--net=/proc/{pid}/ns/net")


def _lossy_end(prefix: tuple[str, ...], device: str, local: str, remote: str) -> None:
    """Configure one end: its 127.x address, a route to the other end, loss at ingress."""
    script = f"""
set -e
sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.{device}.route_localnet=1
sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.{device}.rp_filter=0
ip link set lo up
ip addr add {local}/32 dev {device}
ip link set {device} up
ip route del table local 127.0.0.0/8 dev lo 2>/dev/null || true
ip route add {remote}/32 dev {device} src {local}
nft add table netdev loss
nft add chain netdev loss in '{{ type filter hook ingress device {device} priority 0; }}'
nft add rule netdev loss in ip protocol udp numgen random mod 100 '<' {LOSS_PERCENT} counter drop
"""
    subprocess.run([*prefix, "sh", "-c", script], check=True, timeout=10)


def dropped(prefix: tuple[str, ...]) -> int:
    listing = run(*prefix, "nft", "list", "table", "netdev", "loss")
    found = re.search(r"counter packets (\d+)", listing)
    assert found is not None, listing
    return int(found.group(1))


@contextlib.contextmanager
def lossy_link() -> Iterator[int]:
    """A namespace for the node, behind a lossy veth; yields a process living in it."""
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("nsenter") is None:
        pytest.fail("needs root, nft and nsenter (.ci/run installs nftables)")
    holder = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    try:
        for _ in range(100):  # bounded: the child enters its namespace at once
            if os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.02)
        run("ip", "link", "add", "vpeers", "type", "veth", "peer", "name", "vnode")
        run("ip", "link", "set", "vnode", "netns", str(holder.pid))
        _lossy_end((), "vpeers", PEERS, NODE)
        _lossy_end(enter(holder.pid), "vnode", NODE, PEERS)
        yield holder.pid
    finally:
        subprocess.run(["ip", "link", "del", "vpeers"], capture_output=True, timeout=10)
        subprocess.run(["nft", "delete", "table", "netdev", "loss"], capture_output=True)
        subprocess.run(
            ["ip", "route", "add", "table", "local", "local", "127.0.0.0/8", "dev", "lo"],
            capture_output=True,
            timeout=10,
        )
        holder.kill()
        holder.wait(timeout=10)


@contextlib.asynccontextmanager
async def node_behind_loss() -> AsyncIterator[tuple[NodeProcess, int]]:
    with lossy_link() as pid:
        node = await start_node(
            "lossy",
            "--host",
            NODE,
            "--media",
            "on",
            "--rtc-ip",
            NODE,
            prefix=enter(pid),
        )
        try:
            yield node, pid
        finally:
            await node.stop()


async def media_metrics(node: NodeProcess) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(node.url + "/metrics") as reply:
        text = await reply.text()
    found = re.findall(r"^roomserver_media_(\w+?)(?:_total)? ([\d.e+]+)$", text, re.M)
    return {name: float(value) for name, value in found}


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_frames_stay_whole_and_in_order_over_a_lossy_link(
    codec: str, peers: list[Publisher | Viewer]
) -> None:
    async with node_behind_loss() as (node, pid):
        await create_room(node, "lossy")
        host, _ = await join(node, "lossy", "h", "host")
        member, _ = await join(node, "lossy", "v")
        publisher = Publisher(codec, addresses=[PEERS])
        peers.append(publisher)
        answer = await host.request("rtc.publish", room="lossy", sdp=await publisher.offer())
        await publisher.accept(answer["sdp"])
        await member.event("tracks", where=lambda e: e["publishers"] == ["h"], timeout=10)
        viewer = Viewer(addresses=[PEERS])
        peers.append(viewer)
        sdp = await viewer.offer()
        reply = await member.request("rtc.subscribe", room="lossy", publisher="h", sdp=sdp)
        await viewer.accept(reply["sdp"])

        await viewer.wait_frames(240, timeout=30)  # 8 s of 30 fps
        # Every decoded frame shows the number the publisher drew on it: a frame
        # decoded from a damaged or missing reference would read wrong or out of
        # order. At most 10 % of the span may be missing (waiting for repairs).
        assert_in_order(viewer.got.numbers, 240)
        assert viewer.got.audio_frames > 100

        lost_to_node = dropped(enter(pid))
        lost_to_peers = dropped(())
        stats = await media_metrics(node)
        assert lost_to_node > 5 and lost_to_peers > 5, (lost_to_node, lost_to_peers)
        # The node answered the viewer's NACKs from its own history.
        assert stats["retransmitted"] > 0, stats
        assert stats["packets_out"] > 0 and stats["dropped"] == 0, stats
        await asyncio.gather(host.close(), member.close())


async def test_mid_stream_viewer_of_a_large_stream_decodes_in_order_over_a_lossy_link(
    peers: list[Publisher | Viewer],
) -> None:
    async with node_behind_loss() as (node, _):
        await create_room(node, "late")
        host, _ = await join(node, "late", "h", "host")
        member, _ = await join(node, "late", "v")
        # Large, noisy frames: a cache replay of a second or more is several hundred
        # packets, longer than a viewer's retransmission history.
        publisher = Publisher(width=640, height=360, noise=True, addresses=[PEERS])
        peers.append(publisher)
        answer = await host.request("rtc.publish", room="late", sdp=await publisher.offer())
        await publisher.accept(answer["sdp"])
        async with asyncio.timeout(10):
            while publisher.video.count < 45:  # noqa: ASYNC110 - a counter, no event to wait on
                await asyncio.sleep(0.05)
        viewer = Viewer(addresses=[PEERS], noise_rows=360 // 4)
        peers.append(viewer)
        connected: list[float] = []

        @viewer.pc.on("connectionstatechange")
        def note_connected() -> None:
            if viewer.pc.connectionState == "connected" and not connected:
                connected.append(time.monotonic())

        sdp = await viewer.offer()
        reply = await member.request("rtc.subscribe", room="late", publisher="h", sdp=sdp)
        await viewer.accept(reply["sdp"])
        # ICE and DTLS over this link take a while when a handshake packet is lost (DTLS
        # resends after 1 s, then 2 s), on either side: the bound allows one such loss.
        # Whether the viewer starts from the cache is checked without loss
        # (test_forwarding.py: test_mid_stream_viewer_of_a_large_stream_decodes_in_order).
        await viewer.wait_frames(1, timeout=10)
        assert viewer.got.first_frame_at is not None and connected
        assert viewer.got.first_frame_at - connected[0] < 2.5
        await viewer.wait_frames(120, timeout=20)
        stats = await media_metrics(node)
        assert_in_order(viewer.got.numbers, 120, stats)
        assert stats["retransmitted"] > 0, stats
        await asyncio.gather(host.close(), member.close())
