"""The polls of one room, as pure state: no clock, no I/O, no broadcasting.

Invariants kept by :class:`PollBook`:

- A user has at most one vote per poll, and ``sum(poll.votes)`` always equals the number
  of users who voted in it (``poll.total``).
- A poll only goes from open to closed, never back; ``closed_at`` is set exactly when
  ``open`` becomes False. :meth:`PollBook.close` reports the transition once, so among
  racing closers (a request and the ``duration_s`` timer) only the first announces it.
- At most ``max_polls`` polls are held. Room for a new poll is made by dropping the poll
  that closed longest ago; open polls are never dropped, since members may still vote.
- Polls are kept in creation order, which is the order clients display them in.

Request fields (question and option lengths, option count) are validated by the request
layer, which knows the field names to report; this module checks only what depends on
the room's state. The caller passes ``now_ms`` in and runs the timers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from roomserver.errors import AlreadyVoted, BadRequest, NotFound, PollClosed

#: Closed polls stay visible in join snapshots for 10 minutes, so a member who joins
#: right after the result was announced still sees it.
POLL_RECENT_MS = 600_000


@dataclass(slots=True)
class Poll:
    """One poll and its running tally; ``votes[i]`` counts the votes for ``options[i]``."""

    id: str
    question: str
    options: tuple[str, ...]
    votes: list[int]
    open: bool
    created_at: int
    closes_at: int | None
    closed_at: int | None

    @property
    def total(self) -> int:
        """How many users voted."""
        return sum(self.votes)

    def to_wire(self, my_vote: int | None = None) -> dict[str, Any]:
        """The protocol's ``POLL`` object; ``my_vote`` is per recipient, hence a parameter."""
        out: dict[str, Any] = {
            "id": self.id,
            "question": self.question,
            "options": [
                {"text": text, "votes": count}
                for text, count in zip(self.options, self.votes, strict=True)
            ],
            "total": self.total,
            "open": self.open,
        }
        if self.closes_at is not None:
            out["closes_at"] = self.closes_at
        if my_vote is not None:
            out["my_vote"] = my_vote
        return out


class PollBook:
    """All polls of one room and who voted for what (see the module docstring)."""

    def __init__(self, max_polls: int = 100) -> None:
        if max_polls < 1:
            raise ValueError(f"max_polls must be at least 1, got {max_polls}")
        self.max_polls = max_polls
        self._polls: dict[str, Poll] = {}
        self._vote_by_user: dict[str, dict[str, int]] = {}

    def __len__(self) -> int:
        return len(self._polls)

    def __contains__(self, poll_id: object) -> bool:
        return poll_id in self._polls

    def create(
        self,
        poll_id: str,
        question: str,
        options: Sequence[str],
        now_ms: int,
        duration_s: int | None,
    ) -> Poll:
        """Open a new poll; it auto-closes at ``now_ms + duration_s * 1000`` if a duration
        is given (the caller runs the timer, see :meth:`due`)."""
        if poll_id in self._polls:
            raise BadRequest(f"poll {poll_id} already exists")
        if len(self._polls) >= self.max_polls:
            self._make_room()
        poll = Poll(
            id=poll_id,
            question=question,
            options=tuple(options),
            votes=[0] * len(options),
            open=True,
            created_at=now_ms,
            closes_at=None if duration_s is None else now_ms + duration_s * 1000,
            closed_at=None,
        )
        self._polls[poll_id] = poll
        self._vote_by_user[poll_id] = {}
        return poll

    def get(self, poll_id: str) -> Poll:
        poll = self._polls.get(poll_id)
        if poll is None:
            raise NotFound(f"poll {poll_id} not found")
        return poll

    def vote(self, poll_id: str, user: str, option: int, now_ms: int | None = None) -> Poll:
        """Count ``user``'s vote. Errors are checked in the order a client can act on:
        unknown poll, closed poll, bad option, second vote. A poll past its
        ``closes_at`` (at ``now_ms``) is closed even before its closing timer ran."""
        poll = self.get(poll_id)
        expired = now_ms is not None and poll.closes_at is not None and now_ms >= poll.closes_at
        if not poll.open or expired:
            raise PollClosed(f"poll {poll_id} is closed")
        if not 0 <= option < len(poll.options):
            raise BadRequest("option out of range")
        votes = self._vote_by_user[poll_id]
        if user in votes:
            raise AlreadyVoted(f"already voted in poll {poll_id}")
        votes[user] = option
        poll.votes[option] += 1
        return poll

    def my_vote(self, poll_id: str, user: str) -> int | None:
        """The option ``user`` chose in the poll, None if it has not voted."""
        self.get(poll_id)
        return self._vote_by_user[poll_id].get(user)

    def close(self, poll_id: str, now_ms: int) -> Poll | None:
        """Close the poll; the poll if this call closed it, None if it was closed already."""
        poll = self.get(poll_id)
        if not poll.open:
            return None
        poll.open = False
        poll.closed_at = now_ms
        return poll

    def due(self, now_ms: int) -> list[str]:
        """Ids of open polls whose auto-close time has come, earliest deadline first."""
        expired = [
            poll
            for poll in self._polls.values()
            if poll.open and poll.closes_at is not None and poll.closes_at <= now_ms
        ]
        expired.sort(key=_closes_at)
        return [poll.id for poll in expired]

    def next_deadline(self) -> int | None:
        """When the next auto-close falls due, so the caller can arm a single timer."""
        deadlines = [
            poll.closes_at
            for poll in self._polls.values()
            if poll.open and poll.closes_at is not None
        ]
        return min(deadlines, default=None)

    def voters(self, poll_id: str) -> list[str]:
        """Who voted in the poll (``NotFound`` for an unknown poll)."""
        self.get(poll_id)
        return list(self._vote_by_user[poll_id])

    def all(self) -> list[Poll]:
        """Every poll held, open or closed, in creation order."""
        return list(self._polls.values())

    def visible(self, now_ms: int) -> list[Poll]:
        """Polls a joining member sees: open ones and those closed less than
        :data:`POLL_RECENT_MS` ago, in creation order."""
        return [poll for poll in self._polls.values() if _is_visible(poll, now_ms)]

    def _make_room(self) -> None:
        """Drop closed polls, longest closed first, until a new poll fits."""
        closed = sorted((poll for poll in self._polls.values() if not poll.open), key=_closed_at)
        excess = len(self._polls) - self.max_polls + 1
        if len(closed) < excess:
            raise BadRequest("too many open polls")
        for poll in closed[:excess]:
            del self._polls[poll.id]
            del self._vote_by_user[poll.id]


def _closes_at(poll: Poll) -> int:
    return poll.closes_at if poll.closes_at is not None else 0


def _closed_at(poll: Poll) -> int:
    return poll.closed_at if poll.closed_at is not None else 0


def _is_visible(poll: Poll, now_ms: int) -> bool:
    if poll.open:
        return True
    return poll.closed_at is not None and now_ms - poll.closed_at < POLL_RECENT_MS
