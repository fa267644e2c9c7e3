package auditprocessor

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
)

// The OTLP layout of the trail (otel_ai_audit/backends/otlp/layout.py).
const (
	attrPipeline            = "ai_audit.pipeline"
	pipelineValue           = "audit"
	attrKind                = "ai_audit.kind"
	attrRecord              = "ai_audit.record"
	attrRecordBase64        = "ai_audit.record.base64"
	attrChainID             = "ai_audit.chain.id"
	attrChainSeq            = "ai_audit.chain.seq"
	attrCheckpointIndex     = "ai_audit.checkpoint.index"
	attrCheckpointSize      = "ai_audit.checkpoint.size"
	attrCheckpointKeyID     = "ai_audit.checkpoint.key_id"
	attrCheckpointPayload   = "ai_audit.checkpoint.payload"
	attrCheckpointSignature = "ai_audit.checkpoint.signature"
	attrKeyPEM              = "ai_audit.key.pem"
	// attrVerdict is added by the processor (config `verdict`), not by the Python side.
	attrVerdict = "ai_audit.verdict"
)

// auditProcessor verifies the audit trail the spans and log records carry (records of their
// own, and records attached to telemetry as seals, rebuilt from the item and its seal) and
// passes them on unchanged; what it finds goes to its metrics and log, never into the data.
// Optionally it adds a verdict attribute, chains selected telemetry (chainer) and samples the
// rest (sampler).
type auditProcessor struct {
	id      component.ID
	signal  string
	storage *component.ID
	verdict bool
	chainer *gatewayChain
	// stored is the gateway chain id saved in storage (see noteWritten), under mu.
	stored  string
	sampler *sampler
	// emit sends audit items made outside a batch (timed and closing checkpoints) on.
	emit     func(context.Context, []auditItem) error
	store    *stateStore
	logger   *zap.Logger
	mu       sync.Mutex
	verifier *verifier
	// rebuilder writes the records of sealed telemetry again, to verify them.
	rebuilder  *eventWriter
	gapTimeout time.Duration
	now        func() time.Time
	stop       chan struct{}
	done       sync.WaitGroup

	recordsVerified metric.Int64Counter
	findings        metric.Int64Counter
	chainsOpen      metric.Int64Gauge
	lag             metric.Float64Gauge
}

func newAuditProcessor(set processor.Settings, cfg *Config, signal string) (*auditProcessor, error) {
	trusted, err := cfg.loadTrustedKeys()
	if err != nil {
		return nil, err
	}
	meter := set.MeterProvider.Meter("github.com/otel-ai-audit/otel-ai-audit/collector/auditprocessor")
	p := &auditProcessor{id: set.ID, signal: signal, storage: cfg.Storage, verdict: cfg.Verdict,
		store: &stateStore{}, rebuilder: &eventWriter{},
		logger: set.Logger, gapTimeout: cfg.GapTimeout, now: time.Now,
		verifier: newVerifier(trusted, cfg.AllowSelfAsserted, cfg.Window, cfg.GapTimeout)}
	if cfg.Chain.SigningKey != "" {
		if p.chainer, err = newGatewayChain(cfg.Chain, cfg.Sampling.Rate < 1,
			set.ID.String()+"/"+signal, set.Logger); err != nil {
			return nil, err
		}
		p.sampler = newSampler(cfg.Sampling, func(service, scope string, attributes pcommon.Map) bool {
			_, sealed := attributes.Get(attrSeal)
			return sealed || p.chainer.selector.selects(service, scope, attributes)
		})
	}
	if p.recordsVerified, err = meter.Int64Counter("otelcol_audit_records_verified",
		metric.WithDescription("Audit records whose hash link and position were checked."),
		metric.WithUnit("{record}")); err != nil {
		return nil, err
	}
	if p.findings, err = meter.Int64Counter("otelcol_audit_findings",
		metric.WithDescription("Findings of the in-flight verification, by kind (the kinds of otel-ai-audit verify)."),
		metric.WithUnit("{finding}")); err != nil {
		return nil, err
	}
	if p.chainsOpen, err = meter.Int64Gauge("otelcol_audit_chains_open",
		metric.WithDescription("Chains seen without their closing checkpoint."),
		metric.WithUnit("{chain}")); err != nil {
		return nil, err
	}
	if p.lag, err = meter.Float64Gauge("otelcol_audit_lag_seconds",
		metric.WithDescription("Time from a record's sequencing by its writer to its verification here (the latest record)."),
		metric.WithUnit("s")); err != nil {
		return nil, err
	}
	return p, nil
}

// start loads the chains' state from the storage extension, if one is configured, and runs
// the clock that turns records still missing after gap_timeout into gaps, also when no
// further data arrives.
func (p *auditProcessor) start(ctx context.Context, host component.Host) error {
	store, err := openStateStore(ctx, host, p.storage, p.id, p.signal)
	if err != nil {
		return err
	}
	p.mu.Lock()
	err = store.load(ctx, p.verifier, p.now())
	p.store = store
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if p.chainer != nil {
		if p.chainer.parent, err = store.gatewayChain(ctx); err != nil {
			return err
		}
	}
	p.stop = make(chan struct{})
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		tick := p.gapTimeout / 4
		if p.chainer != nil {
			tick = min(tick, p.chainer.interval/4)
		}
		ticker := time.NewTicker(max(tick, 10*time.Millisecond))
		defer ticker.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-ticker.C:
				p.check(context.Background(), nil)
				if p.chainer != nil {
					p.send(context.Background(), p.chainer.due(false))
				}
			}
		}
	}()
	return nil
}

func (p *auditProcessor) shutdown(ctx context.Context) error {
	if p.stop != nil {
		close(p.stop)
		p.done.Wait()
		p.stop = nil
	}
	if p.chainer != nil {
		// The next components still run: pipelines shut down from receivers to exporters.
		p.send(ctx, p.chainer.due(true))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.store.save(ctx, p.verifier), p.store.close(ctx))
}

func (p *auditProcessor) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	p.check(ctx, func(audit func(pcommon.Map), sealed func(*telemetryItem)) {
		for _, rs := range td.ResourceSpans().All() {
			isAuditResource := isAudit(rs.Resource())
			service := str(rs.Resource().Attributes(), "service.name")
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					if isAuditResource {
						audit(span.Attributes())
					} else if _, ok := span.Attributes().Get(attrSeal); ok {
						item := spanItem(service, ss.Scope(), span)
						sealed(&item)
					}
				}
			}
		}
	})
	if p.chainer != nil {
		td = p.chainer.addSpans(td, p.chainer.chainSpans(td))
		p.noteWritten(ctx)
	}
	if p.sampler != nil {
		p.chainer.countSampled(p.sampler.spans(td))
	}
	return td, nil
}

func (p *auditProcessor) processLogs(ctx context.Context, ld plog.Logs) (plog.Logs, error) {
	p.check(ctx, func(audit func(pcommon.Map), sealed func(*telemetryItem)) {
		for _, rl := range ld.ResourceLogs().All() {
			isAuditResource := isAudit(rl.Resource())
			service := str(rl.Resource().Attributes(), "service.name")
			for _, sl := range rl.ScopeLogs().All() {
				for _, record := range sl.LogRecords().All() {
					if isAuditResource {
						audit(record.Attributes())
					} else if _, ok := record.Attributes().Get(attrSeal); ok {
						item := logItem(service, sl.Scope(), record)
						sealed(&item)
					}
				}
			}
		}
	})
	if p.chainer != nil {
		ld = p.chainer.addLogs(ld, p.chainer.chainLogs(ld))
		p.noteWritten(ctx)
	}
	if p.sampler != nil {
		p.chainer.countSampled(p.sampler.logs(ld))
	}
	return ld, nil
}

// noteWritten stores the gateway chain's id once it has records, before they move on: after a
// restart, even after SIGKILL, the next chain names it as its parent.
func (p *auditProcessor) noteWritten(ctx context.Context) {
	id, written := p.chainer.written()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !written || id == p.stored {
		return
	}
	if err := p.store.setGatewayChain(ctx, id); err != nil {
		p.logger.Error("cannot save the gateway chain's id: the next start's chain will not "+
			"name it as its parent", zap.Error(err))
		return
	}
	p.stored = id
}

// send passes audit items made outside a batch on; a failure is logged (the next checkpoint
// or the closing one still covers the records).
func (p *auditProcessor) send(ctx context.Context, items []auditItem) {
	if len(items) == 0 || p.emit == nil {
		return
	}
	if err := p.emit(ctx, items); err != nil {
		p.logger.Error("cannot send an audit checkpoint on", zap.Error(err))
	}
}

func isAudit(resource pcommon.Resource) bool {
	return str(resource.Attributes(), attrPipeline) == pipelineValue
}

// check verifies the audit items and the sealed telemetry `walk` visits (nil: only the gap
// clock), then reports. The items this processor seals itself are not among them: they are
// sealed after the check, as a separate record is appended after it.
func (p *auditProcessor) check(ctx context.Context, walk func(audit func(pcommon.Map), sealed func(*telemetryItem))) {
	p.mu.Lock()
	now := p.now()
	before := p.verifier.verified
	found := p.verifier.expire(now)
	if walk != nil {
		walk(func(attributes pcommon.Map) { found = append(found, p.item(attributes, now)...) },
			func(item *telemetryItem) { found = append(found, p.sealed(item, now)...) })
	}
	verified := p.verifier.verified - before
	open := p.verifier.chainsOpen()
	lag := p.verifier.lag
	// Saved before the data moves on: after a crash the state is never behind what passed.
	saveErr := p.store.save(ctx, p.verifier)
	p.mu.Unlock()

	if saveErr != nil {
		p.logger.Error("cannot save the audit chains' state", zap.Error(saveErr))
	}
	for _, f := range found {
		p.findings.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", f.Kind)))
		p.logger.Warn("audit finding: "+f.String(), zap.String("chain_id", f.ChainID),
			zap.Int64("seq", f.Seq), zap.String("kind", f.Kind))
	}
	if verified > 0 {
		p.recordsVerified.Add(ctx, verified)
		p.lag.Record(ctx, lag.Seconds())
	}
	p.chainsOpen.Record(ctx, open)
}

// item verifies one span's or log record's audit item, by its `ai_audit.kind`.
func (p *auditProcessor) item(attributes pcommon.Map, now time.Time) []Finding {
	switch str(attributes, attrKind) {
	case "record":
		var data []byte
		if text, ok := attributes.Get(attrRecord); ok {
			data = []byte(text.Str())
		} else {
			data, _ = base64.StdEncoding.DecodeString(str(attributes, attrRecordBase64))
		}
		seq, hasSeq := integer(attributes, attrChainSeq)
		item := newRecordItem(str(attributes, attrChainID), seq, hasSeq, data)
		found := p.verifier.record(item, now)
		if p.verdict {
			attributes.PutStr(attrVerdict, p.verifier.recordVerdict(item, found))
		}
		return found
	case "checkpoint":
		item := checkpointItem{chainID: str(attributes, attrChainID),
			keyID: str(attributes, attrCheckpointKeyID)}
		item.index, _ = integer(attributes, attrCheckpointIndex)
		item.size, _ = integer(attributes, attrCheckpointSize)
		item.payload, _ = base64.StdEncoding.DecodeString(str(attributes, attrCheckpointPayload))
		item.signature, _ = base64.StdEncoding.DecodeString(str(attributes, attrCheckpointSignature))
		found := p.verifier.checkpoint(item)
		if p.verdict {
			attributes.PutStr(attrVerdict, verdictOf(found, func(Finding) bool { return true }))
		}
		return found
	case "key":
		p.verifier.key(str(attributes, attrKeyPEM))
	}
	return nil
}

// sealed verifies the record an attached seal stands for, rebuilt from the item and its seal
// (a seal that cannot be read is a malformed record, as unreadable record bytes are).
func (p *auditProcessor) sealed(item *telemetryItem, now time.Time) []Finding {
	raw, _ := sealOf(item.attributes)
	chainID, seq, data, err := p.rebuilder.rebuild(item, raw)
	if err != nil {
		return []Finding{{"", noSeq, kindMalformedRecord, "the span or log record's " + attrSeal +
			" is not a seal: " + err.Error()}}
	}
	record := newRecordItem(chainID, seq, true, data)
	found := p.verifier.record(record, now)
	if p.verdict {
		item.attributes.PutStr(attrVerdict, p.verifier.recordVerdict(record, found))
	}
	return found
}

func str(attributes pcommon.Map, name string) string {
	value, ok := attributes.Get(name)
	if !ok {
		return ""
	}
	return value.AsString()
}

// integer reads an int attribute (or its decimal string, as some exporters rewrite it).
func integer(attributes pcommon.Map, name string) (int64, bool) {
	value, ok := attributes.Get(name)
	if !ok {
		return 0, false
	}
	switch value.Type() {
	case pcommon.ValueTypeInt:
		return value.Int(), true
	case pcommon.ValueTypeDouble:
		return int64(value.Double()), true
	}
	return 0, false
}
