"""Pass 1 on several cores: chains side by side, and a long chain in ranges cut at its
checkpoints.

Reading a record out of SQLite costs about as much as hashing it, and one Python process runs
on one core: verify can only approach hashing speed with a process per core. Each worker opens
the store itself and reads one range of one chain (`AuditStore.record_batches`): the leaf
hashes and headers of pass 1, and the Merkle subtrees over the range at the sizes the chain's
checkpoints (and anchors) signed. The main process joins the ranges in order, which is exactly
what one pass over the chain would have read, grows each signed size's tree from the subtrees
at the seams (`PrefixTrees`), and runs every check on the joined data: the checks never know
how the chain was read, so the findings are the same byte for byte.

Only a store file can be read so (a worker opens it by name); other sources, stores below
`PARALLEL_MIN` records, `jobs=1` and a daemonic process are read in this process, without
starting any.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import BaseContext

import numpy as np

from otel_ai_audit.integrity.checkpoint import Checkpoint
from otel_ai_audit.integrity.merkle import Subtree, range_subtrees
from otel_ai_audit.store.sqlite import AuditStore, StoreCorruptError
from otel_ai_audit.verify.reading import ChainData, Pass1, read_chain
from otel_ai_audit.verify.roots import PrefixTrees
from otel_ai_audit.verify.source import RecordSource

JOBS_ENV = "OTEL_AI_AUDIT_VERIFY_JOBS"
PARALLEL_MIN = 50_000
"""Records (as the newest checkpoints count them) below which a store is verified in this
process: starting workers and sending them ranges costs more than it saves there."""
SEGMENT_MIN = 10_000
"""Fewest records handed to a worker at once; a chain smaller than that is read here."""
SEGMENTS_PER_JOB = 2
"""Ranges per worker a long chain is cut into, so a worker slowed by another process on its
core hands ranges to the others instead of holding up the end."""


def resolve_jobs(jobs: int | None = None) -> int:
    """Processes to verify with: `jobs`, else $OTEL_AI_AUDIT_VERIFY_JOBS, else the CPUs this
    process may run on."""
    if jobs is None:
        text = os.environ.get(JOBS_ENV, "").strip()
        if not text:
            return _cpus()
        try:
            jobs = int(text)
        except ValueError:
            raise ValueError(f"{JOBS_ENV}={text}: not a number of processes") from None
    if jobs < 1:
        raise ValueError(f"verify jobs must be 1 or more, not {jobs}")
    return jobs


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class _Range:
    """A worker's task: the records of `chain_id` whose seq column is in [low, high)."""

    chain_id: str
    low: int | None
    high: int | None
    sizes: frozenset[int]
    """Signed sizes whose subtrees to return (those that end inside the range)."""


@dataclass
class _Read:
    """A range read by a worker; `subtrees` are None unless its records sit at the positions
    their seq column gives (none missing or out of place), the only case they can be joined."""

    data: ChainData
    start: int
    subtrees: dict[int, list[Subtree]] | None


@dataclass
class _Plan:
    chain_id: str
    ranges: list[_Range]
    """Empty: read the chain in this process."""
    records: int


def read_chains(source: RecordSource, chain_ids: list[str], jobs: int,
                signed_sizes: Callable[[str], Iterable[int]],
                progress: Callable[[int], None] | None = None,
                ) -> Iterator[tuple[str, ChainData]]:
    """Pass 1 of every chain, in order. `signed_sizes(chain_id)` are sizes besides the
    checkpoints' whose Merkle trees the checks need (those anchors witnessed)."""
    file: Callable[[], str] | None = getattr(source, "database_file", None)
    path = file() if file is not None and jobs > 1 else None
    if multiprocessing.current_process().daemon:
        path = None  # a daemonic process (a pool's worker) may not start processes
    plans = _plan(source, chain_ids, jobs, signed_sizes) if path is not None else None
    if path is None or plans is None:
        for chain_id in chain_ids:
            yield chain_id, read_chain(source, chain_id, progress)
        return
    ranges = iter([task for plan in plans for task in plan.ranges])
    pending: deque[Future[_Read]] = deque()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_context(),
                               initializer=_open_worker, initargs=(path,))
    try:
        for plan in plans:
            if not plan.ranges:
                _submit(pool, pending, ranges, jobs)
                yield plan.chain_id, read_chain(source, plan.chain_id, progress)
                continue
            reads = []
            for _ in plan.ranges:
                _submit(pool, pending, ranges, jobs)
                reads.append(pending.popleft().result())
                if progress is not None:
                    progress(reads[-1].data.size)
            yield plan.chain_id, _joined(source, plan.chain_id, reads)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _submit(pool: ProcessPoolExecutor, pending: deque[Future[_Read]], ranges: Iterator[_Range],
            jobs: int) -> None:
    """Keep a few ranges per worker queued ahead of the one being joined."""
    while len(pending) < 2 * jobs:
        task = next(ranges, None)
        if task is None:
            return
        pending.append(pool.submit(_read_range, task))


def _plan(source: RecordSource, chain_ids: list[str], jobs: int,
          signed_sizes: Callable[[str], Iterable[int]]) -> list[_Plan] | None:
    """Each chain's ranges, cut at signed sizes; None when the store is too small to gain."""
    plans = []
    for chain_id in chain_ids:
        try:
            checkpoints = source.checkpoints(chain_id)
        except StoreCorruptError:
            plans.append(_Plan(chain_id, [], 0))  # the checks meet the damage again
            continue
        sizes = set(signed_sizes(chain_id))
        for signed in checkpoints:
            try:
                sizes.add(Checkpoint.from_payload(signed.payload).size)
            except ValueError:
                continue
        records = max((signed.size for signed in checkpoints), default=0)
        plans.append(_Plan(chain_id, _cut(chain_id, sizes, records, jobs), records))
    if sum(plan.records for plan in plans) < PARALLEL_MIN:
        return None
    return plans


def _cut(chain_id: str, sizes: set[int], records: int, jobs: int) -> list[_Range]:
    """Ranges of about records / (jobs * SEGMENTS_PER_JOB), each ending at a signed size."""
    if records < SEGMENT_MIN:
        return []
    length = max(SEGMENT_MIN, math.ceil(records / (jobs * SEGMENTS_PER_JOB)))
    cuts: list[int] = []
    for size in sorted(size for size in sizes if 0 < size < records):
        if size - (cuts[-1] if cuts else 0) >= length and records - size >= length // 2:
            cuts.append(size)
    wanted = frozenset(sizes | {size - 1 for size in sizes if size > 1})
    bounds: list[int | None] = [None, *cuts, None]
    return [_Range(chain_id, low, high, frozenset(
        size for size in wanted if (low or 0) < size and (high is None or size <= high)))
        for low, high in zip(bounds, bounds[1:], strict=False)]


def _joined(source: RecordSource, chain_id: str, reads: list[_Read]) -> ChainData:
    """The ranges as one pass; the Merkle trees at the signed sizes grown while the ranges
    join up."""
    if any(read.data.corrupt for read in reads):
        # Where one pass stops on damage depends on where its batches fell: read it so.
        return read_chain(source, chain_id)
    data = ChainData.joined([read.data for read in reads])
    trees = PrefixTrees()
    for read in reads:
        if read.subtrees is None or read.start != trees.tree.size:
            break
        if read.data.size:
            trees.extend(read.subtrees, read.start + read.data.size)
    data.prefix = trees.at
    return data


def _context() -> BaseContext:
    """fork where it is safe (Linux, and no other thread that could hold a lock the child
    needs): a worker then starts in milliseconds. Otherwise forkserver, or spawn, which start
    a fresh interpreter."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


_store: AuditStore | None = None
"""The worker's own connection to the store."""


def _open_worker(path: str) -> None:
    global _store
    # What a forked worker inherited stays out of its garbage collections: a collection that
    # walked it would copy every page it touched (copy-on-write), for nothing.
    gc.freeze()
    _store = AuditStore(path, create=False, readonly=True)


def _read_range(task: _Range) -> _Read:
    """Pass 1 over one range, and the Merkle subtrees from its start to each signed size in
    it and to its end."""
    assert _store is not None, "the worker's store is opened by its initializer"
    data = Pass1(task.chain_id).read(_store.record_batches(task.chain_id, task.low, task.high))
    start = task.low or 0
    end = start + data.size
    if data.corrupt or not np.array_equal(data.columns, np.arange(start, end)):
        return _Read(data, start, None)
    if not data.size:
        return _Read(data, start, {})
    sizes = [size for size in task.sizes if size < end]
    return _Read(data, start, range_subtrees(data.leaves.tobytes(), start, [*sizes, end]))
