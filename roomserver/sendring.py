"""One frame sent on many sockets in one system call, through Linux io_uring.

Why: a room's fan-out writes the same frame to every member's socket. With one
``send`` each, every member costs a system call and the interpreter around it;
an io_uring submission queue takes the whole list in one ``io_uring_enter``.

Every send carries ``MSG_DONTWAIT``, so the kernel never parks one: a socket with
no room answers ``EAGAIN`` at once, and all sends complete inside the call. The
frame is copied into a staging buffer the ring owns, so nothing the caller holds
must outlive the call. :meth:`SendRing.open` answers None where io_uring is not
available (not Linux, or a kernel or sandbox that refuses it); the caller then
writes the usual way.

The ring is driven through :mod:`ctypes` (one call per batch) and :mod:`mmap`
(the queues, read and written as memoryviews): the per-socket work is slice
copies, done in C.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import struct
import sys
import weakref
from array import array

log = logging.getLogger(__name__)

_SYS_IO_URING_SETUP = 425
_SYS_IO_URING_ENTER = 426
_IORING_OP_SEND = 26
_IORING_OFF_SQ_RING = 0
_IORING_OFF_CQ_RING = 0x8000000
_IORING_OFF_SQES = 0x10000000
_IORING_FEAT_SINGLE_MMAP = 1
_MSG_DONTWAIT = 0x40
_MSG_NOSIGNAL = 0x4000
_SQE_SIZE = 64
_CQE_SIZE = 16
_PARAMS_SIZE = 120
#: int32 slots per SQE, and the slot of its ``fd``.
_SQE_INTS = _SQE_SIZE // 4
_SQE_FD_SLOT = 1
#: uint64 slots per SQE, and the slot of its ``user_data``.
_SQE_QUADS = _SQE_SIZE // 8
_SQE_DATA_SLOT = 4
#: int32 slots per CQE, and the slot of its ``res``.
_CQE_INTS = _CQE_SIZE // 4
_CQE_RES_SLOT = 2
#: Submissions per system call, at most.
DEFAULT_ENTRIES = 4096
#: Largest frame the ring stages; a larger one is written the usual way.
STAGING_BYTES = 256 * 1024
#: How often a call that came back short is repeated before the ring is given up.
_REAP_TRIES = 100


class RingBroken(RuntimeError):
    """Sends were submitted whose completions never came: the ring is unusable."""


class SendRing:
    """Sends one frame to many file descriptors per system call."""

    def __init__(self, entries: int = DEFAULT_ENTRIES) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        params = ctypes.create_string_buffer(_PARAMS_SIZE)
        fd = self._syscall(_SYS_IO_URING_SETUP, ctypes.c_uint(entries), params)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        self._fd = fd
        # The descriptor goes with the ring, closed or collected (the maps free themselves).
        self._finalizer = weakref.finalize(self, os.close, fd)
        raw = params.raw
        self._sq_entries, self._cq_entries = struct.unpack_from("2I", raw, 0)
        features = struct.unpack_from("I", raw, 20)[0]
        sq_head, sq_tail, sq_mask, _, _, _, sq_array = struct.unpack_from("7I", raw, 40)
        cq_head, cq_tail, cq_mask, _, _, cqes = struct.unpack_from("6I", raw, 80)
        sq_size = sq_array + self._sq_entries * 4
        cq_size = cqes + self._cq_entries * _CQE_SIZE
        shared = mmap.MAP_SHARED
        both = mmap.PROT_READ | mmap.PROT_WRITE
        if features & _IORING_FEAT_SINGLE_MMAP:
            sq_size = cq_size = max(sq_size, cq_size)
            self._sq_map = self._cq_map = mmap.mmap(fd, sq_size, shared, both, offset=0)
        else:
            self._sq_map = mmap.mmap(fd, sq_size, shared, both, offset=_IORING_OFF_SQ_RING)
            self._cq_map = mmap.mmap(fd, cq_size, shared, both, offset=_IORING_OFF_CQ_RING)
        self._sqe_map = mmap.mmap(
            fd, self._sq_entries * _SQE_SIZE, shared, both, offset=_IORING_OFF_SQES
        )
        sq = memoryview(self._sq_map)
        cq = memoryview(self._cq_map)
        self._sq_tail = sq[sq_tail : sq_tail + 4].cast("I")
        self._sq_head = sq[sq_head : sq_head + 4].cast("I")
        self._sq_mask = struct.unpack_from("I", self._sq_map, sq_mask)[0]
        ring_array = sq[sq_array : sq_array + self._sq_entries * 4].cast("I")
        for index in range(self._sq_entries):
            ring_array[index] = index  # slot i always names SQE i
        self._cq_head = cq[cq_head : cq_head + 4].cast("I")
        self._cq_tail = cq[cq_tail : cq_tail + 4].cast("I")
        self._cq_mask = struct.unpack_from("I", self._cq_map, cq_mask)[0]
        self._cq_res = cq[cqes : cqes + self._cq_entries * _CQE_SIZE].cast("i")
        self._cq_data = cq[cqes : cqes + self._cq_entries * _CQE_SIZE].cast("Q")
        self._views = [self._sq_tail, self._sq_head, ring_array, self._cq_head, self._cq_tail]
        self._views += [self._cq_res, self._cq_data, sq, cq]
        self._sqes = self._sqe_map
        self._staging = mmap.mmap(-1, STAGING_BYTES)
        self._staging_addr = ctypes.addressof(ctypes.c_char.from_buffer(self._staging))
        self._broken = False
        self.max_batch = min(self._sq_entries, self._cq_entries)
        self._indexes = array("Q", range(self.max_batch))

    @classmethod
    def open(cls, entries: int = DEFAULT_ENTRIES) -> SendRing | None:
        """A ring, or None where this machine or this configuration has none."""
        if not sys.platform.startswith("linux") or sys.byteorder != "little":
            return None
        try:
            return cls(entries)
        except (OSError, ValueError, AttributeError) as exc:
            log.info("io_uring not available (%s): sends go one by one", exc)
            return None

    @property
    def usable(self) -> bool:
        return not self._broken

    def send(self, fds: array[int], frame: bytes) -> list[int] | None:
        """Send ``frame`` on each of ``fds``: None when every send took it whole.

        Otherwise one result per descriptor, in order: the bytes taken (possibly
        fewer than the frame) or a negative errno.
        """
        if self._broken:
            raise RingBroken("the send ring was given up")
        size = len(frame)
        if size > STAGING_BYTES:
            raise ValueError("frame larger than the staging buffer")
        self._staging[:size] = frame
        template = bytearray(_SQE_SIZE)
        struct.pack_into(
            "BBHiQQIIQ",
            template,
            0,
            _IORING_OP_SEND,
            0,
            0,
            -1,
            0,
            self._staging_addr,
            size,
            _MSG_DONTWAIT | _MSG_NOSIGNAL,
            0,
        )
        results: list[int] | None = None
        done = 0
        total = len(fds)
        while done < total:
            count = min(self.max_batch, total - done)
            taken = self._submit(template, fds[done : done + count])
            if min(taken) < size or max(taken) > size:
                if results is None:
                    results = [size] * done
                results.extend(taken)
            elif results is not None:
                results.extend(taken)
            done += count
        return results

    def _submit(self, template: bytearray, fds: array[int]) -> list[int]:
        count = len(fds)
        block = template * count
        memoryview(block).cast("i")[_SQE_FD_SLOT::_SQE_INTS] = fds
        memoryview(block).cast("Q")[_SQE_DATA_SLOT::_SQE_QUADS] = self._indexes[:count]
        tail = self._sq_tail[0]
        start = tail & self._sq_mask
        first = min(count, self._sq_entries - start)
        self._sqes[start * _SQE_SIZE : (start + first) * _SQE_SIZE] = block[: first * _SQE_SIZE]
        if first < count:
            self._sqes[: (count - first) * _SQE_SIZE] = block[first * _SQE_SIZE :]
        self._sq_tail[0] = (tail + count) & 0xFFFFFFFF
        submitted = self._enter(count)
        if submitted != count:
            self._broken = True
            raise RingBroken(f"io_uring_enter took {submitted} of {count} sends")
        return self._reap(count)

    def _enter(self, count: int) -> int:
        while True:
            got = self._syscall(
                _SYS_IO_URING_ENTER,
                self._fd,
                ctypes.c_uint(count),
                ctypes.c_uint(0),
                ctypes.c_uint(0),
                None,
                ctypes.c_size_t(0),
            )
            if got >= 0:
                return int(got)
            code = ctypes.get_errno()
            if code != errno.EINTR:
                self._broken = True
                raise RingBroken(f"io_uring_enter: {os.strerror(code)}")

    def _reap(self, count: int) -> list[int]:
        """The results of the ``count`` sends just submitted, in submission order."""
        head = self._cq_head[0]
        for _ in range(_REAP_TRIES):
            if (self._cq_tail[0] - head) & 0xFFFFFFFF >= count:
                break
            # Completions still owed: let the kernel run pending task work.
            self._syscall(
                _SYS_IO_URING_ENTER,
                self._fd,
                ctypes.c_uint(0),
                ctypes.c_uint(0),
                ctypes.c_uint(1),
                None,
                ctypes.c_size_t(0),
            )
        else:
            self._broken = True
            raise RingBroken(f"{count} sends submitted, completions missing")
        start = head & self._cq_mask
        results = _ring_slice(self._cq_res, start, count, _CQE_RES_SLOT, _CQE_INTS)
        order = _ring_slice(self._cq_data, start, count, 0, _CQE_SIZE // 8)
        self._cq_head[0] = (head + count) & 0xFFFFFFFF
        if order != self._indexes[:count].tolist():
            # Completions came out of submission order: put each result in its place.
            placed = [0] * count
            for index, result in zip(order, results, strict=True):
                placed[index] = result
            results = placed
        return results

    def close(self) -> None:
        """Let go of the ring; sends after this raise :class:`RingBroken`."""
        if not self._finalizer.alive:
            return
        self._broken = True
        for view in self._views:
            view.release()
        for mapped in {id(m): m for m in (self._sq_map, self._cq_map, self._sqe_map)}.values():
            mapped.close()
        self._staging.close()
        self._finalizer()


def _ring_slice(view: memoryview, start: int, count: int, slot: int, stride: int) -> list[int]:
    """Field ``slot`` of ``count`` ring entries from entry ``start``, wrapping at the end."""
    entries = len(view) // stride
    if start + count <= entries:
        return view[start * stride + slot : (start + count) * stride : stride].tolist()
    head = view[start * stride + slot :: stride].tolist()
    rest = count - (entries - start)
    return head + view[slot : rest * stride : stride].tolist()
