"""SQLite connections and `fork()`: one registry for everything that holds a store open.

A connection open across fork() corrupts the child's writes to the same file (the child
inherits SQLite's in-memory lock state but not the parent's file locks). So every writer and
shipper registers here: before a fork each waits for its write in progress and closes its
connection (reopened lazily afterwards); in the child each resets itself.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol, runtime_checkable


@runtime_checkable
class StoreHolder(Protocol):
    """What fork safety needs of every holder; public, so a rename cannot go unnoticed."""

    store_lock: threading.Lock

    def before_fork(self) -> None:
        """Work that must be on disk before the child exists (the writer's `chain_fork`)."""
        ...

    def close_store(self) -> None: ...

    def after_fork_in_child(self) -> None: ...


_holders: weakref.WeakSet[StoreHolder] = weakref.WeakSet()
_forking: list[StoreHolder] = []
"""The holders whose store lock is held from just before a fork until it is done."""


def track(holder: StoreHolder) -> None:
    if not isinstance(holder, StoreHolder):  # a renamed member would skip the fork protocol
        raise TypeError(f"{type(holder).__name__} lacks what fork safety needs of a store holder")
    _holders.add(holder)


def _close_before_fork() -> None:
    _forking[:] = list(_holders)
    for holder in _forking:
        holder.before_fork()
    for holder in _forking:
        holder.store_lock.acquire()
        holder.close_store()


def _release_in_parent() -> None:
    for holder in _forking:
        holder.store_lock.release()
    _forking.clear()


def _reset_in_child() -> None:
    _forking.clear()
    for holder in list(_holders):
        holder.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_before_fork, after_in_parent=_release_in_parent,
                        after_in_child=_reset_in_child)
