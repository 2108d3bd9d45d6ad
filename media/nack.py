"""Which lost packets to ask for again, and when. Pure: no sockets, no aiortc objects.

aiortc's receiver asks for a lost packet (NACK) when it sees the gap, and again
only when some other gap appears. Over a link that loses a few packets in a
hundred, the request or the retransmission is itself lost now and then, and a
packet asked for once or twice is then lost for good: its frame cannot be
decoded, nor anything after it until the next keyframe. Browsers ask again
every round trip; so does :class:`NackSchedule`.

Invariants:

* A packet is asked for the moment its gap is seen, then again every retry
  interval until it comes, at most :data:`MAX_TRIES` times, and only while it
  is within :data:`WINDOW` packets of the newest (a sender holds no more).
* The retry interval is 1.5 times the smoothed repair time (from asking once
  to the packet's arrival), never under :data:`RETRY_MIN_S`;
  :data:`RETRY_INITIAL_S` until a repair has been timed. The floor leaves a
  busy receiver time to read what is already queued for it: asking again for
  a packet that is on its way only makes a duplicate, which some receivers
  (aiortc's jitter buffer, when it comes 100 packets late) take for a restart.
* A jump of more than :data:`WINDOW` packets (a restarted stream) is not a
  loss: what was missing is forgotten.
* The work per arriving packet is constant while nothing is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.rtp import SEQ_MOD

WINDOW = 512
MAX_TRIES = 10
RETRY_MIN_S = 0.02
RETRY_INITIAL_S = 0.05


@dataclass(slots=True)
class _Lost:
    asked_at: float = 0.0
    tries: int = 0


class NackSchedule:
    """One incoming stream's missing packets, and when to ask for each again."""

    def __init__(self) -> None:
        self.newest: int | None = None
        self.repair_s: float | None = None
        self.asked = 0
        self.recovered = 0
        self.given_up = 0
        self._missing: dict[int, _Lost] = {}

    @property
    def missing(self) -> list[int]:
        return sorted(self._missing)

    @property
    def retry_s(self) -> float:
        if self.repair_s is None:
            return RETRY_INITIAL_S
        return max(RETRY_MIN_S, 1.5 * self.repair_s)

    def add(self, seq: int, now: float) -> list[int]:
        """Packet ``seq`` arrived at ``now``: the sequence numbers to ask for now, if any."""
        newest = self.newest
        if newest is None:
            self.newest = seq
            return []
        ahead = (seq - newest) % SEQ_MOD
        if 0 < ahead < SEQ_MOD // 2:
            if ahead > WINDOW:
                self._missing.clear()
            else:
                for n in range(1, ahead):
                    self._missing[(newest + n) % SEQ_MOD] = _Lost()
            self.newest = seq
        elif ahead:
            lost = self._missing.pop(seq, None)
            if lost is not None and lost.tries:
                self.recovered += 1
                if lost.tries == 1:  # the one request answered: a clean sample
                    sample = now - lost.asked_at
                    prior = self.repair_s
                    self.repair_s = sample if prior is None else prior + (sample - prior) / 8
        if not self._missing:
            return []
        return self._due(now)

    def _due(self, now: float) -> list[int]:
        assert self.newest is not None
        retry = self.retry_s
        due = []
        for seq, lost in list(self._missing.items()):
            if (self.newest - seq) % SEQ_MOD > WINDOW or lost.tries >= MAX_TRIES:
                del self._missing[seq]
                self.given_up += 1
            elif not lost.tries or now - lost.asked_at >= retry:
                lost.tries += 1
                lost.asked_at = now
                due.append(seq)
        self.asked += len(due)
        return due
