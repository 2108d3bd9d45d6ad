"""Brokers: where a room's shared state lives and how its events reach every node."""

from roomserver.broker.base import Broker, EventSink
from roomserver.broker.memory import MemoryBroker

__all__ = ["Broker", "EventSink", "MemoryBroker"]
