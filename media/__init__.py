"""The SFU: WebRTC publish and subscribe, forwarding encoded frames.

* :mod:`media.sfu`: the node's ``MediaBackend``; peer connections and their lifetimes.
* :mod:`media.forward`: fan-out of encoded frames, keyframe cache, bounded viewer queues.
* :mod:`media.offers`: offer checks and codec choice, before any peer connection exists.
* :mod:`media.ice`: which addresses and STUN/TURN servers ICE uses.
* :mod:`media.hooks`: every reach into aiortc/aioice internals, and their guards.
* :mod:`media.peers`, :mod:`media.bench`: synthetic peers, and the benchmark against
  aiortc's ``MediaRelay``.
"""
