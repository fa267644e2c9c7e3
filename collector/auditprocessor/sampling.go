package auditprocessor

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// sampler drops a share of the ordinary telemetry at the gateway. It never drops the audit
// trail (resources marked ai_audit.pipeline=audit), what the gateway chains or a gateway
// before it sealed (attribute ai_audit.seal), or what a keep condition matches; the gateway
// chain counts what it drops, by service, in its checkpoints.
type sampler struct {
	threshold  uint64 // keep a trace whose 63-bit id hash is below this
	keepErrors bool
	keep       map[string][]string
	chained    func(service, scope string, attributes pcommon.Map) bool
}

func newSampler(cfg SamplingConfig, chained func(string, string, pcommon.Map) bool) *sampler {
	if cfg.Rate >= 1 {
		return nil
	}
	return &sampler{threshold: uint64(cfg.Rate * (1 << 63)), keepErrors: cfg.KeepErrors,
		keep: cfg.KeepAttributes, chained: chained}
}

// kept decides for one ordinary item. A trace is kept or dropped whole, by the lower 8 bytes
// of its id (as OpenTelemetry's TraceIdRatioBased sampler reads them); an item without a
// trace id is drawn at random.
func (s *sampler) kept(service, scope string, attributes pcommon.Map, traceID pcommon.TraceID,
	failed bool) bool {
	if (failed && s.keepErrors) || s.chained(service, scope, attributes) {
		return true
	}
	for name, values := range s.keep {
		if value, ok := attributes.Get(name); ok && (len(values) == 0 || slices.Contains(values, value.AsString())) {
			return true
		}
	}
	draw := rand.Uint64()
	if !traceID.IsEmpty() {
		draw = binary.BigEndian.Uint64(traceID[8:])
	}
	return draw>>1 < s.threshold
}

// spans drops the sampled-out spans and returns how many, by service.name.
func (s *sampler) spans(td ptrace.Traces) map[string]int64 {
	dropped := map[string]int64{}
	for _, rs := range td.ResourceSpans().All() {
		if isAudit(rs.Resource()) {
			continue
		}
		service := str(rs.Resource().Attributes(), "service.name")
		for _, ss := range rs.ScopeSpans().All() {
			ss.Spans().RemoveIf(func(span ptrace.Span) bool {
				drop := !s.kept(service, ss.Scope().Name(), span.Attributes(), span.TraceID(),
					span.Status().Code() == ptrace.StatusCodeError)
				if drop {
					dropped[service]++
				}
				return drop
			})
		}
	}
	return dropped
}

// logs drops the sampled-out log records and returns how many, by service.name.
func (s *sampler) logs(ld plog.Logs) map[string]int64 {
	dropped := map[string]int64{}
	for _, rl := range ld.ResourceLogs().All() {
		if isAudit(rl.Resource()) {
			continue
		}
		service := str(rl.Resource().Attributes(), "service.name")
		for _, sl := range rl.ScopeLogs().All() {
			sl.LogRecords().RemoveIf(func(record plog.LogRecord) bool {
				drop := !s.kept(service, sl.Scope().Name(), record.Attributes(), record.TraceID(),
					record.SeverityNumber() >= plog.SeverityNumberError)
				if drop {
					dropped[service]++
				}
				return drop
			})
		}
	}
	return dropped
}
