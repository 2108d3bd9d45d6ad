"""The SFU: WebRTC publish and subscribe, forwarding encoded frames."""
