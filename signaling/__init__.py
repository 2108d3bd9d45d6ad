"""The WebSocket room protocol: typed messages, codecs, per-connection sessions."""
