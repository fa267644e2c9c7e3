package auditprocessor

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
)

// auditScope is the instrumentation scope of the audit items the gateway writes.
const auditScope = "otel_ai_audit.collector.auditprocessor"

// auditItem is one record, checkpoint or key as a span or log record carries it
// (otel_ai_audit/backends/otlp/layout.py), before it is written into traces or logs.
type auditItem struct {
	kind       string
	documentID string
	timeNs     int64
	attributes map[string]any
}

// gatewayChain turns the telemetry the selector picks into audit records of one chain per
// processor instance (one per pipeline), with signed checkpoints every `every` records or
// `interval`, and a closing checkpoint at shutdown. Each start of the Collector opens a new
// chain, as each Python process does: its first record is a `chain_open` that names the chain
// of the previous start (`parent`, kept in `storage`), so a whole chain removed from the
// archive is a finding of `verify` (missing_chain), and one left open by a crash is too
// (chain_not_closed).
type gatewayChain struct {
	mu         sync.Mutex
	selector   selector
	key        *signingKey
	sealer     sealer
	parent     string
	every      int64
	interval   time.Duration
	policyHash string
	gateway    string
	// system names the chain's writer in its chain_open, as a Python process's service name
	// does (`otel-ai-audit evidence --system` selects chains by it).
	system string
	// process is the chain_open's `process`: this process's pid and host.
	process     map[string]any
	lastSigned  time.Time
	keyAnnounce bool
	// sampledOut counts, by service, what the sampler dropped (cumulative, in every
	// checkpoint's counters when sampling is on); counted marks counts not yet signed.
	sampling   bool
	sampledOut map[string]int64
	counted    bool
	now        func() time.Time
	logger     *zap.Logger
	// attached: records travel as seals on their items (chain.records), written by writer;
	// items, record and sealBytes are reused from one batch or item to the next.
	attached  bool
	writer    *eventWriter
	items     []telemetryItem
	seal      seal
	record    []byte
	sealBytes []byte
}

func newGatewayChain(cfg ChainConfig, sampling bool, gateway string, logger *zap.Logger) (*gatewayChain, error) {
	key, err := loadSigningKey(cfg.SigningKey)
	if err != nil {
		return nil, err
	}
	s := selector{services: cfg.Services, scopes: cfg.Scopes, prefixes: cfg.AttributePrefixes,
		content: cfg.Content}
	if cfg.HMACKeyFile != "" {
		text, err := os.ReadFile(cfg.HMACKeyFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read the HMAC key %s: %w", cfg.HMACKeyFile, err)
		}
		s.hmacKey = []byte(strings.TrimSpace(string(text)))
	}
	c := &gatewayChain{selector: s, key: key, sealer: sealer{chainID: newChainID()},
		attached: cfg.Records == recordsAttached, writer: newEventWriter(cfg.Content, s.hmacKey),
		every: cfg.CheckpointEvery, interval: cfg.CheckpointInterval, policyHash: s.policyHash(),
		gateway: gateway, system: systemName(cfg.Services), sampling: sampling, sampledOut: map[string]int64{}, now: time.Now,
		logger: logger}
	host, _ := os.Hostname()
	c.process = map[string]any{"pid": os.Getpid(), "host": host}
	c.lastSigned = c.now()
	return c, nil
}

// gatewaySystem is the service name a gateway chain's chain_open gives, unless the chain
// selects a single service, whose name it then gives.
const gatewaySystem = "otel-ai-audit-gateway"

func systemName(services []string) string {
	if len(services) == 1 {
		return services[0]
	}
	return gatewaySystem
}

// chainSpans seals the selected spans of a batch, in order, and returns the audit items to
// send: the signing key first (once per chain), the chain_open, each record when records
// travel separately (attached, each span gets its seal attribute instead), a checkpoint
// when `every` is reached.
func (c *gatewayChain) chainSpans(td ptrace.Traces) []auditItem {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items = c.selectedSpans(td, c.items[:0])
	return c.chainLocked()
}

// chainLogs seals the selected log records of a batch, as chainSpans does spans.
func (c *gatewayChain) chainLogs(ld plog.Logs) []auditItem {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items = c.selectedLogs(ld, c.items[:0])
	return c.chainLocked()
}

func (c *gatewayChain) chainLocked() []auditItem {
	defer clear(c.items) // the batch's memory is not held until the next one
	var out []auditItem
	now := c.now()
	if len(c.items) > 0 && c.sealer.tree.Size == 0 && !c.sealer.closed {
		record, err := c.sealer.seal(c.openEvent(now), "chain_open", now.UnixNano())
		if err != nil {
			c.logger.Error("cannot open the gateway chain", zap.Error(err))
			return nil
		}
		out = append(out, recordAudit(record))
	}
	for i := range c.items {
		if c.sealer.closed {
			break
		}
		eventType, err := c.sealItem(&c.items[i], now.UnixNano())
		if err != nil {
			c.logger.Error("cannot seal an audit record", zap.Error(err))
			continue
		}
		if !c.attached {
			// recordAudit copies the bytes (the attribute's string): c.record is reused.
			out = append(out, recordAudit(sealedRecord{c.sealer.chainID, c.sealer.tree.Size - 1,
				eventType, c.sealer.lastLogged, c.record}))
		}
		if c.sealer.pendingSinceCheckpoint() >= c.every {
			out = append(out, c.checkpointLocked(now, false)...)
		}
	}
	return c.withKey(out)
}

// sealItem places the item's record at the end of the chain, its bytes in c.record, and,
// when records are attached, puts the seal on the item.
func (c *gatewayChain) sealItem(item *telemetryItem, loggedNs int64) (string, error) {
	s := &c.seal
	s.seq, s.loggedNs = c.sealer.next(loggedNs)
	s.prev = c.sealer.head
	if s.chainID == ([16]byte{}) { // the chain's id never changes: decoded for its first record
		_, _ = hex.Decode(s.chainID[:], []byte(c.sealer.chainID))
	}
	record := appendRecordHeader(c.record[:0], c.sealer.chainID, s.loggedNs, &s.prev, s.seq)
	record, eventType, err := c.writer.sealEvent(record, item, s)
	if err != nil {
		return "", err
	}
	c.record = append(record, '}')
	c.sealer.commit(c.record, s.loggedNs)
	if c.attached {
		c.sealBytes = s.appendTo(c.sealBytes[:0])
		item.attributes.PutEmptyBytes(attrSeal).FromRaw(c.sealBytes)
	}
	return eventType, nil
}

// openEvent is the chain's first record, as the Python writer's `chain_open` (writer.py
// _chain_open_event): who writes the chain, the chain before it, the key and the policy. Its
// id is derived as the telemetry records' ids are.
func (c *gatewayChain) openEvent(now time.Time) map[string]any {
	var parent any
	if c.parent != "" {
		parent = c.parent
	}
	open := seal{loggedNs: now.UnixNano()}
	_, _ = hex.Decode(open.chainID[:], []byte(c.sealer.chainID))
	return map[string]any{"id": string(open.appendEventID(nil)), "type": "chain_open",
		"time": rfc3339(now.UnixNano()), "process": c.process,
		"service": map[string]any{"name": c.system}, "gateway": c.gateway,
		"parent_chain_id": parent, "key_id": c.key.id, "policy_hash": c.policyHash}
}

// written is the chain's id once it has records: what the next start's chain names as its
// parent.
func (c *gatewayChain) written() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sealer.chainID, c.sealer.tree.Size > 0
}

// due signs a checkpoint if records wait and `interval` passed since the last one;
// `closing` signs the closing checkpoint.
func (c *gatewayChain) due(closing bool) []auditItem {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	// A chain that never got a record is not written at all, not even closed.
	if c.sealer.closed || c.sealer.tree.Size == 0 {
		if closing && c.counted {
			c.logger.Warn("sampled-out telemetry not counted in a signed checkpoint: the gateway "+
				"chain got no record", zap.Any("sampled_out", c.sampledOut))
		}
		return nil
	}
	if !closing && ((c.sealer.pendingSinceCheckpoint() == 0 && !c.counted) ||
		now.Sub(c.lastSigned) < c.interval) {
		return nil
	}
	return c.withKey(c.checkpointLocked(now, closing))
}

func (c *gatewayChain) checkpointLocked(now time.Time, closing bool) []auditItem {
	var counters map[string]any
	if c.sampling {
		counters = map[string]any{"sampled_out": maps.Clone(c.sampledOut)}
	}
	signed, err := c.sealer.checkpoint(c.key, now.UnixNano(), closing, counters, c.policyHash)
	if err != nil {
		c.logger.Error("cannot sign an audit checkpoint", zap.Error(err))
		return nil
	}
	c.lastSigned, c.counted = now, false
	return []auditItem{{kind: "checkpoint", documentID: fmt.Sprintf("%s:checkpoint:%d", signed.chainID, signed.index),
		timeNs: signed.issuedNs, attributes: map[string]any{
			attrChainID: signed.chainID, attrCheckpointIndex: signed.index,
			attrCheckpointSize: signed.size, attrCheckpointKeyID: signed.keyID,
			attrCheckpointPayload:   base64.StdEncoding.EncodeToString(signed.payload),
			attrCheckpointSignature: base64.StdEncoding.EncodeToString(signed.signature)}}}
}

// withKey puts the public key before the chain's first items: self-asserted, like the Python
// sink's key spans; a verifier trusts it only through --public-key.
func (c *gatewayChain) withKey(items []auditItem) []auditItem {
	if c.keyAnnounce || len(items) == 0 {
		return items
	}
	c.keyAnnounce = true
	key := auditItem{kind: "key", documentID: "key:" + c.key.id, timeNs: items[0].timeNs,
		attributes: map[string]any{"ai_audit.key.id": c.key.id, attrKeyPEM: c.key.pem}}
	return append([]auditItem{key}, items...)
}

// countSampled adds what the sampler dropped to the counts the next checkpoint signs.
func (c *gatewayChain) countSampled(dropped map[string]int64) {
	if len(dropped) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for service, count := range dropped {
		c.sampledOut[service] += count
	}
	c.counted = true
}

func recordAudit(record sealedRecord) auditItem {
	return auditItem{kind: "record", documentID: record.chainID + ":" + strconv.FormatInt(record.seq, 10),
		timeNs: record.loggedNs, attributes: map[string]any{
			attrChainID: record.chainID, attrChainSeq: record.seq,
			"ai_audit.event.type": record.eventType, attrRecord: string(record.data)}}
}

// putAttributes writes an item's attributes as the Python sink does (layout.py), with the
// document id Elasticsearch deduplicates on.
func (item auditItem) putAttributes(attributes pcommon.Map) {
	attributes.PutStr(attrKind, item.kind)
	for _, name := range slices.Sorted(maps.Keys(item.attributes)) { // the same bytes each run
		switch v := item.attributes[name].(type) {
		case string:
			attributes.PutStr(name, v)
		case int64:
			attributes.PutInt(name, v)
		}
	}
	attributes.PutStr("elasticsearch.document_id", item.documentID)
}

func (c *gatewayChain) putResource(resource pcommon.Resource) {
	resource.Attributes().PutStr("service.name", "otel-ai-audit")
	resource.Attributes().PutStr(attrPipeline, pipelineValue)
	resource.Attributes().PutStr("ai_audit.gateway", c.gateway)
}

// addSpans adds the chain's audit items to a batch: after its telemetry when records travel
// separately, before it when they are attached, so that a verifier downstream meets a
// chain's key and chain_open before the first sealed item (one that meets a chain first past
// its start joins it there, and cannot check what came before).
func (c *gatewayChain) addSpans(td ptrace.Traces, items []auditItem) ptrace.Traces {
	if !c.attached || len(items) == 0 {
		c.appendSpans(td, items)
		return td
	}
	out := ptrace.NewTraces()
	c.appendSpans(out, items)
	td.ResourceSpans().MoveAndAppendTo(out.ResourceSpans())
	return out
}

// addLogs adds the chain's audit items to a batch, as addSpans does.
func (c *gatewayChain) addLogs(ld plog.Logs, items []auditItem) plog.Logs {
	if !c.attached || len(items) == 0 {
		c.appendLogs(ld, items)
		return ld
	}
	out := plog.NewLogs()
	c.appendLogs(out, items)
	ld.ResourceLogs().MoveAndAppendTo(out.ResourceLogs())
	return out
}

// appendSpans adds the items as spans of their own audit resource (trace id: the chain id;
// span id: from the document id, so a repeat is the same span).
func (c *gatewayChain) appendSpans(td ptrace.Traces, items []auditItem) {
	if len(items) == 0 {
		return
	}
	rs := td.ResourceSpans().AppendEmpty()
	c.putResource(rs.Resource())
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName(auditScope)
	var traceID pcommon.TraceID
	_, _ = hex.Decode(traceID[:], []byte(c.sealer.chainID))
	for _, item := range items {
		span := ss.Spans().AppendEmpty()
		span.SetName("ai_audit." + item.kind)
		span.SetTraceID(traceID)
		digest := sha256.Sum256([]byte(item.documentID))
		span.SetSpanID(pcommon.SpanID(digest[:8]))
		span.SetKind(ptrace.SpanKindInternal)
		span.SetStartTimestamp(pcommon.Timestamp(item.timeNs))
		span.SetEndTimestamp(pcommon.Timestamp(item.timeNs))
		item.putAttributes(span.Attributes())
	}
}

// appendLogs adds the items as log records of their own audit resource.
func (c *gatewayChain) appendLogs(ld plog.Logs, items []auditItem) {
	if len(items) == 0 {
		return
	}
	rl := ld.ResourceLogs().AppendEmpty()
	c.putResource(rl.Resource())
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(auditScope)
	for _, item := range items {
		record := sl.LogRecords().AppendEmpty()
		record.SetTimestamp(pcommon.Timestamp(item.timeNs))
		record.SetObservedTimestamp(pcommon.Timestamp(item.timeNs))
		item.putAttributes(record.Attributes())
	}
}

// selectedSpans appends the spans to chain to items: selected, and not audit items
// themselves.
func (c *gatewayChain) selectedSpans(td ptrace.Traces, items []telemetryItem) []telemetryItem {
	for _, rs := range td.ResourceSpans().All() {
		if isAudit(rs.Resource()) {
			continue
		}
		service := str(rs.Resource().Attributes(), "service.name")
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				if c.selector.selects(service, ss.Scope().Name(), span.Attributes()) {
					items = append(items, spanItem(service, ss.Scope(), span))
				}
			}
		}
	}
	return items
}

// selectedLogs appends the log records to chain to items.
func (c *gatewayChain) selectedLogs(ld plog.Logs, items []telemetryItem) []telemetryItem {
	for _, rl := range ld.ResourceLogs().All() {
		if isAudit(rl.Resource()) {
			continue
		}
		service := str(rl.Resource().Attributes(), "service.name")
		for _, sl := range rl.ScopeLogs().All() {
			for _, record := range sl.LogRecords().All() {
				if c.selector.selects(service, sl.Scope().Name(), record.Attributes()) {
					items = append(items, logItem(service, sl.Scope(), record))
				}
			}
		}
	}
	return items
}
