"""Browser media tests: Chromium and the SFU, only inside a private network namespace.

Chromium and aiortc gather ICE candidates on every interface and may send
checks from them, so these tests run only with ``ROOMSERVER_NETNS=1``, set by
``test_in_netns.py`` inside ``unshare --net`` where only ``lo`` exists.
"""

from __future__ import annotations

import os

import pytest

IN_NETNS = os.environ.get("ROOMSERVER_NETNS") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "netns: opens WebRTC peers; runs only in a namespace")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_NETNS:
        return
    skip = pytest.mark.skip(reason="WebRTC: runs inside unshare --net (test_in_netns.py)")
    for item in items:
        if item.get_closest_marker("netns") is not None:
            item.add_marker(skip)
