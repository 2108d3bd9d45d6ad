"""The chat history of one room: sequencing, bounded history, idempotency and resume.

Invariants kept by :class:`ChatLog`:

- ``seq`` starts at 1 and grows by exactly 1 per accepted message; it never goes back
  and never skips, so a client can tell from the numbers alone what it missed.
- The messages held are always one contiguous run of seqs,
  ``first_held_seq .. latest_seq``, at most ``capacity`` long. Eviction only ever drops
  the oldest end of the run.
- A deleted message stays in the run as a tombstone: it is invisible to every read but
  still occupies its seq, so deleting never makes a read report a ``gap`` (a gap means
  "messages existed that this log can no longer give you", not "a moderator removed one").
- ``(user, cid)`` maps to the *first* message accepted for it for as long as the pair
  stays in a bounded LRU, even after that message was deleted or evicted: a client retry
  must get the first ``seq``/``ts`` back and must never produce a second message.
- Reads by seq cost O(limit + tombstones skipped), never O(capacity): the run lives in a
  fixed ring where message ``seq`` sits in slot ``seq % capacity``.

Time is passed in by the caller, so the log is deterministic and trivially testable.
The gap rules are small pure functions so a Redis-backed history can reuse them.
"""

from __future__ import annotations

from collections import OrderedDict

from roomserver.ids import ChatDraft, ChatMessage


def resume_window(
    since: int, first_held_seq: int, latest_seq: int, limit: int
) -> tuple[int, int, bool]:
    """The seq range a resuming client gets, and whether it must page for more.

    Returns ``(from_seq, to_seq, gap)`` with both ends inclusive; the range is empty when
    ``from_seq > to_seq``. The range starts at the oldest message the client lacks that is
    still held and is at most ``limit`` seqs long (oldest first, so the client can page
    forward with ``after`` from where it stops). Tombstones inside the range are the
    reader's business: they are skipped, which may return fewer than ``limit`` messages.

    ``gap`` is True when the client cannot be brought up to date from this answer alone:
    some seq it lacks was already dropped (``since + 1 < first_held_seq``), or more than
    ``limit`` seqs are missing. A client *ahead* of the room (``since > latest_seq``)
    holds a view of another incarnation of the room, so it gets an empty range and a gap.

    It depends on nothing but its arguments so that every history backend applies the
    same rule.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if since >= latest_seq:
        return latest_seq + 1, latest_seq, since > latest_seq
    from_seq = max(since + 1, first_held_seq)
    to_seq = min(latest_seq, from_seq + limit - 1)
    gap = since + 1 < first_held_seq or latest_seq - since > limit
    return from_seq, to_seq, gap


def before_gap(returned: int, limit: int, first_held_seq: int) -> bool:
    """Gap rule for paging backwards with ``before``.

    A page that came back short hit the oldest held message. That is the true start of
    the room only when seq 1 is still held (``first_held_seq == 1``); otherwise older
    messages existed and were dropped, and the client must be told its scroll-back ends
    at a hole rather than at the beginning of the conversation.
    """
    return returned < limit and first_held_seq > 1


def after_gap(after_seq: int, first_held_seq: int) -> bool:
    """Gap rule for paging forwards with ``after``.

    Messages right after ``after_seq`` were dropped when the oldest held message comes
    later than ``after_seq + 1``; the page then does not continue the client's view
    seamlessly. A short page is *not* a gap here: it simply reached the newest message.
    """
    return after_seq + 1 < first_held_seq


class ChatLog:
    """Sequenced, bounded, idempotent chat history of one room (see the module docstring)."""

    def __init__(
        self, room: str, capacity: int = 1000, idempotency_capacity: int | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if idempotency_capacity is None:
            idempotency_capacity = 4 * capacity
        if idempotency_capacity < 0:
            raise ValueError(f"idempotency_capacity must be >= 0, got {idempotency_capacity}")
        self.room = room
        self.capacity = capacity
        self.idempotency_capacity = idempotency_capacity
        # Slot seq % capacity holds message seq while it is held; None marks a tombstone.
        self._ring: list[ChatMessage | None] = [None] * capacity
        self._latest_seq = 0
        self._first_held_seq = 1
        self._first_by_client_id: OrderedDict[tuple[str, str], ChatMessage] = OrderedDict()

    @property
    def latest_seq(self) -> int:
        """The seq of the newest message ever accepted; 0 while the room has none."""
        return self._latest_seq

    @property
    def first_held_seq(self) -> int:
        """The seq of the oldest message still held (tombstones count as held).

        ``latest_seq + 1`` when nothing is held, so ``first_held_seq .. latest_seq`` is
        always the held run, possibly empty.
        """
        return self._first_held_seq

    def __len__(self) -> int:
        """How many seqs are held, tombstones included."""
        return self._latest_seq - self._first_held_seq + 1

    def append(self, draft: ChatDraft, ts: int) -> tuple[ChatMessage, bool]:
        """Sequence ``draft`` at ``ts``; ``(message, True)`` when it is new.

        A draft whose ``(user, cid)`` is remembered is a retry: it gets ``(first message,
        False)`` and nothing changes, so the caller must not broadcast it again.
        """
        client_id = (draft.user, draft.cid)
        first = self._first_by_client_id.get(client_id)
        if first is not None:
            # A retried cid is likely to be retried again: keep it remembered longest.
            self._first_by_client_id.move_to_end(client_id)
            return first, False
        message = ChatMessage(
            room=self.room,
            seq=self._latest_seq + 1,
            ts=ts,
            user=draft.user,
            name=draft.name,
            role=draft.role,
            text=draft.text,
            cid=draft.cid,
        )
        self._hold(message)
        self._remember(message)
        return message, True

    def restore(self, message: ChatMessage) -> None:
        """Append a message sequenced elsewhere (mirroring a shared history).

        It must continue the run exactly (``seq == latest_seq + 1``): a mirror that skips
        or repeats seqs would break every gap computation. Its ``(user, cid)`` is
        remembered unless an earlier message already holds that pair.
        """
        if message.seq != self._latest_seq + 1:
            raise ValueError(
                f"restore needs seq {self._latest_seq + 1}, got {message.seq} in room {self.room!r}"
            )
        self._hold(message)
        self._remember(message)

    def skip_to(self, latest_seq: int) -> None:
        """Declare that seqs up to ``latest_seq`` exist but are not held here.

        A mirror of a shared history starts from that history's oldest message, not from
        seq 1: ``skip_to(first_seq - 1)`` followed by ``restore`` of each message. Since
        the held run must end at ``latest_seq``, everything held before is dropped; reads
        then report the skipped seqs as a gap. Remembered ``(user, cid)`` pairs are kept.
        """
        if latest_seq < self._latest_seq:
            raise ValueError(
                f"cannot skip back from seq {self._latest_seq} to {latest_seq} "
                f"in room {self.room!r}"
            )
        for seq in range(self._first_held_seq, self._latest_seq + 1):
            self._ring[seq % self.capacity] = None
        self._latest_seq = latest_seq
        self._first_held_seq = latest_seq + 1

    def delete(self, seq: int) -> bool:
        """Turn a held message into a tombstone; False if not held or already deleted."""
        if not self._holds(seq):
            return False
        slot = seq % self.capacity
        if self._ring[slot] is None:
            return False
        self._ring[slot] = None
        return True

    def get(self, seq: int) -> ChatMessage | None:
        """The message ``seq`` if it is held and not deleted."""
        if not self._holds(seq):
            return None
        return self._ring[seq % self.capacity]

    def latest(self, limit: int) -> list[ChatMessage]:
        """The last ``limit`` visible messages, ascending seq (the join snapshot's history)."""
        return self._collect_backwards(self._latest_seq, limit)

    def since(self, since: int, limit: int = 500) -> tuple[list[ChatMessage], bool]:
        """Resume after ``since``: the visible messages of :func:`resume_window`, and its gap."""
        from_seq, to_seq, gap = resume_window(since, self._first_held_seq, self._latest_seq, limit)
        return self._collect_forwards(from_seq, to_seq, limit), gap

    def before(self, seq: int, limit: int) -> tuple[list[ChatMessage], bool]:
        """The ``limit`` visible messages immediately before ``seq``, ascending; gap per
        :func:`before_gap`."""
        messages = self._collect_backwards(min(seq - 1, self._latest_seq), limit)
        return messages, before_gap(len(messages), limit, self._first_held_seq)

    def after(self, seq: int, limit: int) -> tuple[list[ChatMessage], bool]:
        """The ``limit`` visible messages immediately after ``seq``, ascending; gap per
        :func:`after_gap`."""
        from_seq = max(seq + 1, self._first_held_seq)
        messages = self._collect_forwards(from_seq, self._latest_seq, limit)
        return messages, after_gap(seq, self._first_held_seq)

    def _holds(self, seq: int) -> bool:
        return self._first_held_seq <= seq <= self._latest_seq

    def _hold(self, message: ChatMessage) -> None:
        """Put ``message`` at the new end of the run, evicting the oldest seq when full."""
        self._ring[message.seq % self.capacity] = message
        self._latest_seq = message.seq
        # The slot just written belonged to seq - capacity, which is thereby evicted.
        self._first_held_seq = max(self._first_held_seq, message.seq - self.capacity + 1)

    def _remember(self, message: ChatMessage) -> None:
        client_id = (message.user, message.cid)
        if client_id in self._first_by_client_id:
            return
        self._first_by_client_id[client_id] = message
        while len(self._first_by_client_id) > self.idempotency_capacity:
            self._first_by_client_id.popitem(last=False)

    def _collect_forwards(self, from_seq: int, to_seq: int, limit: int) -> list[ChatMessage]:
        """Up to ``limit`` visible messages in ``from_seq .. to_seq``, ascending."""
        out: list[ChatMessage] = []
        seq = max(from_seq, self._first_held_seq)
        last = min(to_seq, self._latest_seq)
        while seq <= last and len(out) < limit:
            message = self._ring[seq % self.capacity]
            if message is not None:
                out.append(message)
            seq += 1
        return out

    def _collect_backwards(self, newest_seq: int, limit: int) -> list[ChatMessage]:
        """Up to ``limit`` visible messages at or before ``newest_seq``, ascending."""
        out: list[ChatMessage] = []
        seq = min(newest_seq, self._latest_seq)
        while seq >= self._first_held_seq and len(out) < limit:
            message = self._ring[seq % self.capacity]
            if message is not None:
                out.append(message)
            seq -= 1
        out.reverse()
        return out
