"""OpenTelemetry metrics of the audit pipeline: queued, persisted, sampled out, lost, shipped.

The writer's numbers are observable counters whose callbacks read `AuditWriter.stats()` when a
reader collects: the hot path pays nothing for them. Shippers count with the synchronous
counters (`shipped`, `retried`, `failed`, one `add` per bulk request):

    from otel_ai_audit.pipeline.metrics import pipeline_metrics
    pipeline_metrics().shipped("elasticsearch", len(batch))

Instruments of meter `otel_ai_audit` (documented in docs/semantic-conventions.md):

=================================  =====================  ===========  =======================
name                               kind                   unit         attributes
=================================  =====================  ===========  =======================
ai_audit.pipeline.queued           observable counter     {entry}
ai_audit.pipeline.spilled          observable counter     {entry}
ai_audit.pipeline.persisted        observable counter     {record}
ai_audit.pipeline.sampled_out      observable counter     {decision}   model name, risk level
ai_audit.pipeline.failed           observable counter     {event}
ai_audit.sink.shipped              counter                {record}     sink name
ai_audit.sink.retried              counter                {record}     sink name
ai_audit.sink.failed               counter                {record}     sink name
ai_audit.anchor.published          observable counter     {anchor}
ai_audit.anchor.failures           observable counter     {run}
ai_audit.anchor.pending            observable gauge       {anchor}
ai_audit.anchor.age                observable gauge       s
=================================  =====================  ===========  =======================

`ai_audit.anchor.age` is the time since the newest anchor was published (since start, before
the first): an alert on it says anchoring stalled while decisions are still being made.

The instruments go to the global MeterProvider unless one is given; without an SDK provider the
API's no-op one makes all of this free.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from otel_ai_audit import semconv
from otel_ai_audit.anchor.thread import AnchoringThread
from otel_ai_audit.pipeline.writer import AuditWriter, WriterStats
from otel_ai_audit.version import __version__

Instruments = TypeVar("Instruments")

METER_NAME = "otel_ai_audit"
SINK_NAME = "ai_audit.sink.name"
"""Attribute naming the sink of a shipping count (`elasticsearch`, `splunk`, `otlp`)."""

_WRITER_COUNTERS: tuple[tuple[str, str, str, Callable[[WriterStats], int]], ...] = (
    ("ai_audit.pipeline.queued", "{entry}",
     "entries accepted by the audit writer (an event, or a model call however many rows it has)",
     lambda stats: stats.queued),
    ("ai_audit.pipeline.spilled", "{entry}",
     "entries that went through the spill file because the queue was full",
     lambda stats: stats.spilled),
    ("ai_audit.pipeline.persisted", "{record}", "records written to the audit chain",
     lambda stats: stats.persisted),
    ("ai_audit.pipeline.failed", "{event}",
     "events lost before sealing (each logged, and counted in the signed checkpoints)",
     lambda stats: stats.failed),
)


_ANCHOR_COUNTERS: tuple[tuple[str, str, str, Callable[[AnchoringThread], float]], ...] = (
    ("ai_audit.anchor.published", "{anchor}", "anchors published to WORM storage",
     lambda thread: thread.published),
    ("ai_audit.anchor.failures", "{run}", "anchoring runs that failed (retried on the next run)",
     lambda thread: thread.failures),
)
_ANCHOR_GAUGES: tuple[tuple[str, str, str, Callable[[AnchoringThread], float]], ...] = (
    ("ai_audit.anchor.pending", "{anchor}", "anchors built but not yet published",
     lambda thread: thread.last.pending if thread.last else 0),
    ("ai_audit.anchor.age", "s", "seconds since the newest anchor was published",
     lambda thread: thread.age()),
)


class PipelineMetrics:
    """The pipeline's instruments on one MeterProvider, observing the writers given to
    `observe` for as long as they live."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = metrics.get_meter(METER_NAME, __version__, meter_provider=meter_provider)
        self._writers: weakref.WeakSet[AuditWriter] = weakref.WeakSet()
        for name, unit, description, read in _WRITER_COUNTERS:
            meter.create_observable_counter(name, [self._total(read)], unit, description)
        meter.create_observable_counter(
            "ai_audit.pipeline.sampled_out", [self._sampled_out], "{decision}",
            "inference decisions held instead of chained by risk-based sampling (also in the "
            "signed checkpoints)")
        self._shipped = meter.create_counter(
            "ai_audit.sink.shipped", "{record}", "records a sink acknowledged")
        self._retried = meter.create_counter(
            "ai_audit.sink.retried", "{record}", "records sent again after a failed attempt")
        self._failed = meter.create_counter(
            "ai_audit.sink.failed", "{record}", "records a sink rejected or gave up on")
        self._anchoring: weakref.WeakSet[AnchoringThread] = weakref.WeakSet()
        for name, unit, description, read_anchoring in _ANCHOR_COUNTERS:
            meter.create_observable_counter(name, [self._anchor_total(read_anchoring)], unit,
                                            description)
        for name, unit, description, read_anchoring in _ANCHOR_GAUGES:
            meter.create_observable_gauge(name, [self._anchor_total(read_anchoring)], unit,
                                          description)

    def observe(self, writer: AuditWriter) -> None:
        self._writers.add(writer)

    def observe_anchoring(self, thread: AnchoringThread) -> None:
        self._anchoring.add(thread)

    def _anchor_total(self, read: Callable[[AnchoringThread], float],
                      ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            threads = list(self._anchoring)
            return [Observation(max(read(thread) for thread in threads))] if threads else []

        return callback

    def shipped(self, sink: str, records: int) -> None:
        self._shipped.add(records, {SINK_NAME: sink})

    def retried(self, sink: str, records: int) -> None:
        self._retried.add(records, {SINK_NAME: sink})

    def failed(self, sink: str, records: int) -> None:
        self._failed.add(records, {SINK_NAME: sink})

    def _stats(self) -> list[WriterStats]:
        return [writer.stats() for writer in list(self._writers)]

    def _total(self, read: Callable[[WriterStats], int],
               ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(sum(read(stats) for stats in self._stats()))]

        return callback

    def _sampled_out(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[str, int] = {}
        for stats in self._stats():
            for key, count in stats.sampled_out.items():
                totals[key] = totals.get(key, 0) + count
        observations = []
        for key, count in totals.items():
            model, _, risk = key.rpartition("|")
            observations.append(Observation(count, {semconv.MODEL_NAME: model,
                                                    semconv.RISK_LEVEL: risk}))
        return observations


class PerMeterProvider(Generic[Instruments]):
    """One set of instruments per meter provider (None: the global provider, also one set
    later). An instrument cannot be created again with new callbacks, so every runtime of the
    process shares them."""

    def __init__(self, factory: Callable[[MeterProvider | None], Instruments]) -> None:
        self._factory = factory
        self._global: Instruments | None = None
        self._per_provider: weakref.WeakKeyDictionary[Any, Instruments] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def get(self, meter_provider: MeterProvider | None = None) -> Instruments:
        with self._lock:
            if meter_provider is None:
                if self._global is None:
                    self._global = self._factory(None)
                return self._global
            found = self._per_provider.get(meter_provider)
            if found is None:
                found = self._per_provider[meter_provider] = self._factory(meter_provider)
            return found


_pipeline = PerMeterProvider(PipelineMetrics)


def pipeline_metrics(meter_provider: MeterProvider | None = None) -> PipelineMetrics:
    """The pipeline's instruments on `meter_provider` (default: the global provider)."""
    return _pipeline.get(meter_provider)
