"""``python -m loadtest``: what a deployment holds, measured from the client side.

Layout, one idea per module:

- ``cli`` parses options; ``runner`` drives the phases across client processes
  (``procs``, ``worker``); ``servers`` starts local nodes for ``--spawn``;
- ``scenarios`` is the registry of scenarios (join, chat, votes, viewers, launch,
  soak; ``viewers`` runs aiortc peers from :mod:`media.peers`); ``mix`` is the client side of the
  room-core scenarios, on the lean connection of ``client`` (which locates received
  frames with ``frames``);
- ``stats`` (histograms, percentiles), ``ledger`` (lost/duplicated accounting),
  ``schedule`` (open-loop timing), ``recorder`` and ``aggregate`` are pure;
- ``report`` makes the table, the JSON document and the PNG plot; ``procfs`` reads
  CPU and memory from ``/proc``.

The tool is honest by construction: every error and close is counted under its code,
lost and duplicated messages are counted exactly, and the client CPU is printed next
to the server CPU so a reader can tell when the tool measured itself.
"""
