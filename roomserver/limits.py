"""Rate limits and the word filter, as pure state: the caller passes the time in.

Invariants:

- A :class:`TokenBucket` never holds more than ``burst`` tokens nor fewer than 0, and a
  refused ``take`` removes nothing, so a client that retries after the returned delay
  succeeds (unless someone else drained the same bucket in between).
- :class:`KeyedBuckets` and :class:`StrikeCounter` hold bounded memory whatever the number
  of distinct keys an attacker invents: buckets are evicted once ``max_keys`` is exceeded,
  full ones first (a full bucket is indistinguishable from a fresh one, so dropping it
  forgives nothing), and a strike key disappears once its strikes leave the window.
- :class:`WordFilter` compares text and words in one canonical form (NFKC, casefolded),
  so full-width letters or case changes do not slip past it.

Times are seconds from a monotonic clock (``time.monotonic()`` at the call site).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Iterable

#: Float refill arithmetic may leave 0.9999999 where 1 token is due; that counts as 1.
_TOKEN_EPSILON = 1e-9


class TokenBucket:
    """``rate`` tokens per second refill a bucket of at most ``burst`` tokens; starts full."""

    __slots__ = ("burst", "rate", "tokens", "updated_at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate < 0:
            raise ValueError(f"rate must be >= 0, got {rate}")
        if burst <= 0:
            raise ValueError(f"burst must be > 0, got {burst}")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated_at = now

    def take(self, now: float, n: float = 1.0) -> float:
        """Take ``n`` tokens: 0.0 when they were there (and are now gone); otherwise nothing
        is taken and the result is the seconds until ``n`` tokens will be there.

        That is ``math.inf`` when they never will be (``n > burst``, or ``rate == 0`` and
        the bucket is short): the caller should refuse outright rather than ask to retry.
        """
        if n < 0:
            raise ValueError(f"cannot take a negative number of tokens: {n}")
        self._refill(now)
        if self.tokens + _TOKEN_EPSILON >= n:
            self.tokens = max(0.0, self.tokens - n)
            return 0.0
        if n > self.burst or self.rate == 0:
            return math.inf
        return (n - self.tokens) / self.rate

    def full_at(self) -> float:
        """The time at which the bucket will be full again if nobody takes from it."""
        missing = self.burst - self.tokens
        if missing <= _TOKEN_EPSILON:
            return self.updated_at
        if self.rate == 0:
            return math.inf
        return self.updated_at + missing / self.rate

    def is_full(self, now: float) -> bool:
        return now >= self.full_at()

    def _refill(self, now: float) -> None:
        # A clock that went backwards refills nothing rather than draining the bucket.
        if now > self.updated_at:
            self.tokens = min(self.burst, self.tokens + (now - self.updated_at) * self.rate)
            self.updated_at = now


class KeyedBuckets:
    """One :class:`TokenBucket` per key (user, client address) in bounded memory.

    Buckets are kept in least-recently-used order. Once more than ``max_keys`` are held,
    full buckets go first, oldest first; only when no full bucket is left are non-full
    ones dropped, oldest first, which lets those keys start over with a full bucket.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        TokenBucket(rate, burst, 0.0)  # validates rate and burst once, up front
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def take(self, key: str, now: float, n: float = 1.0) -> float:
        """Same contract as :meth:`TokenBucket.take`, for ``key``'s bucket."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._evict(now, keep=key)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, n)

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)

    def _evict(self, now: float, keep: str) -> None:
        """Bring the count back to ``max_keys``: full buckets first, then the oldest.

        Every bucket untouched for ``burst / rate`` seconds is certainly full, and those
        sit at the old end of the LRU order, so they go in amortised O(1). Only when that
        is not enough is every bucket checked, and every full one found goes (that is
        lossless). If non-full buckets must still go, the oldest go until the count is
        90% of ``max_keys``, so that the next full scan is far away.
        """
        refill_s = self.burst / self.rate if self.rate > 0 else math.inf
        while len(self._buckets) > self.max_keys:
            oldest_key, oldest = next(iter(self._buckets.items()))
            if oldest_key == keep or now - oldest.updated_at < refill_s:
                break
            del self._buckets[oldest_key]
        if len(self._buckets) <= self.max_keys:
            return
        full = [key for key, b in self._buckets.items() if key != keep and b.is_full(now)]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) <= self.max_keys:
            return
        low_water = max(1, self.max_keys - self.max_keys // 10)
        for key in list(self._buckets):
            if len(self._buckets) <= low_water:
                break
            if key != keep:
                del self._buckets[key]


class StrikeCounter:
    """Counts limit violations per key: ``limit`` strikes within ``window_s`` seconds
    trip it (the room mutes the member automatically)."""

    def __init__(self, limit: int = 5, window_s: float = 60.0) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.limit = limit
        self.window_s = window_s
        # Keys ordered by their latest strike, so expired keys sit at the front.
        self._strikes: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._strikes)

    def __contains__(self, key: object) -> bool:
        return key in self._strikes

    def strike(self, key: str, now: float) -> bool:
        """Record a strike; True exactly when it is the ``limit``-th within the window.

        The key's strikes are then cleared, so the next trip needs ``limit`` fresh ones.
        """
        self._drop_expired_keys(now)
        horizon = now - self.window_s
        strikes = self._strikes.pop(key, None)
        if strikes is None:
            strikes = deque()
        while strikes and strikes[0] <= horizon:
            strikes.popleft()
        strikes.append(now)
        if len(strikes) >= self.limit:
            return True
        self._strikes[key] = strikes
        return False

    def forget(self, key: str) -> None:
        self._strikes.pop(key, None)

    def _drop_expired_keys(self, now: float) -> None:
        """Drop keys whose latest strike left the window: amortised O(1) per strike."""
        horizon = now - self.window_s
        while self._strikes:
            oldest_key, strikes = next(iter(self._strikes.items()))
            if strikes[-1] > horizon:
                return
            del self._strikes[oldest_key]


#: Scripts written without spaces between words (and Hangul, whose particles attach to
#: the word): a blocked word there can only be found as a substring.
_UNSPACED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x1950, 0x1AAF),  # Tai Le, New Tai Lue, Khmer symbols, Buginese, Tai Tham
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3000, 0x9FFF),  # CJK symbols, kana, Bopomofo, Hangul compat jamo, CJK ideographs
    (0xA000, 0xA4CF),  # Yi
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAA60, 0xAA7F),  # Myanmar extended A
    (0xAC00, 0xD7FF),  # Hangul syllables, Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x323AF),  # CJK extensions B and beyond
)

_UNSPACED_CLASS = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _UNSPACED_RANGES)
#: A word character of a space-separated script; a ban on "ass" must not fire in "class"
#: but must fire in "这个ass" where the Han characters are not part of the word.
_SPACED_WORD_CHAR = f"[^\\W{_UNSPACED_CLASS}]"


def canonical_text(text: str) -> str:
    """The form in which text and words are compared: NFKC, casefolded, NFKC again
    (casefolding can produce sequences that NFKC composes differently)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _is_unspaced(char: str) -> bool:
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _UNSPACED_RANGES)


def _word_pattern(word: str) -> str:
    # Runs of whitespace inside a phrase match any run of whitespace in the text.
    body = r"\s+".join(re.escape(part) for part in word.split())
    if any(_is_unspaced(char) for char in word):
        return body
    return f"(?<!{_SPACED_WORD_CHAR}){body}(?!{_SPACED_WORD_CHAR})"


class WordFilter:
    """A room's list of refused words, compiled into one regular expression."""

    def __init__(self, words: Iterable[str]) -> None:
        canonical = {canonical_text(word).strip() for word in words}
        self.words: tuple[str, ...] = tuple(
            sorted((word for word in canonical if word), key=lambda w: (-len(w), w))
        )
        self._pattern: re.Pattern[str] | None = (
            re.compile("|".join(_word_pattern(word) for word in self.words)) if self.words else None
        )

    def blocks(self, text: str) -> bool:
        """True when ``text`` contains one of the words (see :func:`_word_pattern`)."""
        if self._pattern is None:
            return False
        return self._pattern.search(canonical_text(text)) is not None
