package auditprocessor

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
)

// gatewayKeys writes a signing key (PKCS#8 PEM), its public key and an HMAC key.
func gatewayKeys(t testing.TB) (private, public, hmacKey string) {
	t.Helper()
	dir := t.TempDir()
	seed := sha256.Sum256([]byte("gateway test key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pub, _ := x509.MarshalPKIXPublicKey(key.Public())
	private, public, hmacKey = filepath.Join(dir, "key.pem"), filepath.Join(dir, "key.pub.pem"),
		filepath.Join(dir, "hmac")
	for path, text := range map[string][]byte{
		private: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		public:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		hmacKey: []byte("gateway hmac key\n")} {
		if err := os.WriteFile(path, text, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return private, public, hmacKey
}

// genAISpans is a service's telemetry: one GenAI chat span, one plain HTTP span.
func genAISpans(service string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("example.com/llm-gateway")
	chat := ss.Spans().AppendEmpty()
	chat.SetName("chat gpt-4o")
	chat.SetTraceID(pcommon.TraceID{1, 2, 3})
	chat.SetSpanID(pcommon.SpanID{4, 5, 6})
	chat.SetStartTimestamp(pcommon.Timestamp(1_765_000_000_000_000_000))
	chat.SetEndTimestamp(pcommon.Timestamp(1_765_000_000_250_000_000))
	chat.Attributes().PutStr("gen_ai.operation.name", "chat")
	chat.Attributes().PutStr("gen_ai.request.model", "gpt-4o")
	chat.Attributes().PutStr("gen_ai.provider.name", "openai")
	chat.Attributes().PutInt("gen_ai.usage.input_tokens", 12)
	chat.Attributes().PutStr("gen_ai.input.messages", `[{"role":"user","parts":[{"type":"text","content":"Is my loan approved?"}]}]`)
	chat.Attributes().PutStr("gen_ai.output.messages", `[{"role":"assistant","parts":[{"type":"text","content":"No."}]}]`)
	chat.Attributes().PutStr("http.route", "/chat")
	plain := ss.Spans().AppendEmpty()
	plain.SetName("GET /health")
	plain.Attributes().PutStr("http.route", "/health")
	return td
}

// chainHarness chains with records travelling separately (the tests that read records from
// their spans), unless `configure` says otherwise.
func chainHarness(t *testing.T, configure func(*Config)) (*harness, string) {
	t.Helper()
	private, public, hmacKey := gatewayKeys(t)
	h := newHarness(t, func(cfg *Config) {
		cfg.TrustedKeys = nil
		cfg.Chain.SigningKey, cfg.Chain.HMACKeyFile, cfg.Chain.CheckpointEvery = private, hmacKey, 2
		cfg.Chain.Records = recordsSeparate
		if configure != nil {
			configure(cfg)
		}
	})
	h.audit.chainer.now = func() time.Time { return *h.clock }
	h.audit.chainer.lastSigned = *h.clock
	return h, public
}

// auditSpans are the audit items among what passed, by kind.
func auditSpans(traces []ptrace.Traces) map[string][]pcommon.Map {
	items := map[string][]pcommon.Map{}
	for _, td := range traces {
		for _, rs := range td.ResourceSpans().All() {
			if !isAudit(rs.Resource()) {
				continue
			}
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					kind := str(span.Attributes(), attrKind)
					items[kind] = append(items[kind], span.Attributes())
				}
			}
		}
	}
	return items
}

func TestSelectedSpansBecomeAChainThatVerifies(t *testing.T) {
	h, public := chainHarness(t, nil)
	if err := h.processor.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	h.send(genAISpans("loan-llm"), genAISpans("loan-llm"), genAISpans("loan-llm"))
	if err := h.processor.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The service's 6 spans pass on; with them a key, the chain_open and 3 records, the
	// checkpoints after 2 and 4 records in the batches, and the closing checkpoint sent on its
	// own at shutdown.
	if h.sink.SpanCount() != 6+1+4+3 || len(h.sink.AllTraces()) != 4 {
		t.Fatalf("%d spans in %d batches passed", h.sink.SpanCount(), len(h.sink.AllTraces()))
	}
	items := auditSpans(h.sink.AllTraces())
	if len(items["record"]) != 4 || len(items["checkpoint"]) != 3 || len(items["key"]) != 1 {
		t.Fatalf("audit items %v", items)
	}
	var open struct {
		Event map[string]any `json:"event"`
	}
	if err := json.Unmarshal([]byte(str(items["record"][0], attrRecord)), &open); err != nil {
		t.Fatal(err)
	}
	if open.Event["type"] != "chain_open" || open.Event["parent_chain_id"] != nil ||
		open.Event["service"].(map[string]any)["name"] != gatewaySystem ||
		open.Event["key_id"] != h.audit.chainer.key.id {
		t.Fatalf("chain_open %v", open.Event)
	}
	// Both checkpoints verify, with the gateway's key, and the chain is closed.
	verifier := newHarness(t, func(cfg *Config) { cfg.TrustedKeys = []string{public} })
	verifier.send(h.sink.AllTraces()...)
	verifier.wait(time.Minute)
	expect(t, verifier.findings())
	if got := verifier.counter("otelcol_audit_records_verified")[""]; got != 4 ||
		verifier.audit.verifier.chainsOpen() != 0 {
		t.Fatalf("verified %d records, want 4 in a closed chain", got)
	}

	var record struct {
		Event map[string]any `json:"event"`
	}
	if err := json.Unmarshal([]byte(str(items["record"][1], attrRecord)), &record); err != nil {
		t.Fatal(err)
	}
	event := record.Event
	model := event["model"].(map[string]any)
	if event["type"] != "inference" || model["name"] != "gpt-4o" || model["provider"] != "openai" ||
		event["operation"] != "chat" || event["latency_ms"] != 250.0 ||
		event["service"].(map[string]any)["name"] != "loan-llm" ||
		event["trace"].(map[string]any)["trace_id"] != "01020300000000000000000000000000" {
		t.Fatalf("event %v", event)
	}
	attributes := event["attributes"].(map[string]any)
	if attributes["gen_ai.usage.input_tokens"] != 12.0 || attributes["http.route"] != "/chat" ||
		attributes["gen_ai.input.messages"] != nil || len(attributes) != 5 {
		t.Fatalf("attributes %v: all but the content", attributes)
	}
	// The prompt is not in the record: only its keyed hash, which the key's holder recomputes.
	text := str(items["record"][1], attrRecord)
	if strings.Contains(text, "loan approved") || strings.Contains(text, "No.") {
		t.Fatal("the content must be hashed, not copied")
	}
	mac := hmac.New(sha256.New, []byte("gateway hmac key"))
	canonical, _ := Canonical([]byte(`{"gen_ai.input.messages":` + jsonString(genAIInput()) + `}`))
	mac.Write(canonical)
	input := event["input"].(map[string]any)
	if input["policy"] != "hash" || input["hmac_sha256"] != hex.EncodeToString(mac.Sum(nil)) {
		t.Fatalf("input %v", input)
	}
}

func genAIInput() string {
	value, _ := genAISpans("x").ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).
		Attributes().Get("gen_ai.input.messages")
	return value.Str()
}

func jsonString(text string) string {
	quoted, _ := json.Marshal(text)
	return string(quoted)
}

func TestSelectionByServiceAndScope(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     func(*Config)
		records int // with the chain_open, when the chain has records
	}{
		{"default prefixes", nil, 2},
		{"other service", func(c *Config) { c.Chain.Services = []string{"other"} }, 0},
		{"its service", func(c *Config) { c.Chain.Services = []string{"loan-llm"} }, 2},
		{"other scope", func(c *Config) { c.Chain.Scopes = []string{"other"} }, 0},
		{"any attribute", func(c *Config) { c.Chain.AttributePrefixes = nil }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := chainHarness(t, tc.cfg)
			h.send(genAISpans("loan-llm"))
			if got := len(auditSpans(h.sink.AllTraces())["record"]); got != tc.records {
				t.Fatalf("%d records, want %d", got, tc.records)
			}
		})
	}
}

func TestContentPolicies(t *testing.T) {
	for policy, want := range map[string]string{"full": "loan approved", "none": `"input":{"policy":"none"}`} {
		h, _ := chainHarness(t, func(c *Config) { c.Chain.Content = policy })
		h.send(genAISpans("loan-llm"))
		if text := str(auditSpans(h.sink.AllTraces())["record"][1], attrRecord); !strings.Contains(text, want) {
			t.Fatalf("%s: %s", policy, text)
		}
	}
}

func TestTimedCheckpointAndConfig(t *testing.T) {
	h, _ := chainHarness(t, func(c *Config) { c.Chain.CheckpointEvery = 100 })
	h.send(genAISpans("loan-llm"))
	if items := h.audit.chainer.due(false); len(items) != 0 {
		t.Fatal("a checkpoint before checkpoint_interval passed")
	}
	*h.clock = h.clock.Add(6 * time.Second)
	if items := h.audit.chainer.due(false); len(items) != 1 || items[0].kind != "checkpoint" {
		t.Fatalf("no timed checkpoint: %v", items)
	}
	if items := h.audit.chainer.due(false); len(items) != 0 {
		t.Fatal("a checkpoint with no record waiting")
	}

	cfg := createDefaultConfig()
	cfg.Chain.SigningKey = filepath.Join(t.TempDir(), "missing.pem")
	if err := cfg.Validate(); err == nil {
		t.Fatal("a missing signing key must fail validation")
	}
	private, _, _ := gatewayKeys(t)
	cfg.Chain.SigningKey = private
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "hmac_key_file") {
		t.Fatalf("content: hash without an HMAC key: %v", err)
	}
}

func TestSelectedLogRecordsAreChainedToo(t *testing.T) {
	private, _, hmacKey := gatewayKeys(t)
	cfg := createDefaultConfig()
	cfg.Chain.SigningKey, cfg.Chain.HMACKeyFile, cfg.Chain.Records = private, hmacKey, recordsSeparate
	sink := &consumertest.LogsSink{}
	set := processortest.NewNopSettings(typeStr)
	p, err := NewFactory().CreateLogs(context.Background(), set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "triton")
	record := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	record.SetTimestamp(pcommon.Timestamp(1_765_000_000_000_000_000))
	record.Attributes().PutStr("ml.model.name", "fraud")
	record.Body().SetStr("score=0.93")
	if err := p.ConsumeLogs(context.Background(), ld); err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	var text string
	for _, logs := range sink.AllLogs() {
		for _, rl := range logs.ResourceLogs().All() {
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					kinds[str(lr.Attributes(), attrKind)]++
					if str(lr.Attributes(), attrKind) == "record" {
						text = str(lr.Attributes(), attrRecord)
					}
				}
			}
		}
	}
	if kinds["record"] != 2 || kinds["checkpoint"] != 1 || kinds["key"] != 1 ||
		!strings.Contains(text, `"body":{"hmac_sha256":`) || strings.Contains(text, "0.93") {
		t.Fatalf("items %v, record %s", kinds, text)
	}
}

func TestAChainWithoutRecordsIsNotWritten(t *testing.T) {
	h, _ := chainHarness(t, nil)
	if err := h.processor.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	h.send(trailSpans(t)...) // the Python trail passes; nothing to chain
	if err := h.processor.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.sink.SpanCount() != 14 || len(h.sink.AllTraces()) != 14 {
		t.Fatalf("%d spans in %d batches: the gateway chain wrote something", h.sink.SpanCount(),
			len(h.sink.AllTraces()))
	}
}

// TestEachStartOpensAChainNamingThePrevious: a restart on the same storage opens a new chain
// whose chain_open names the last chain that got records, also when the previous process was
// killed (the id is saved before the chain's first records move on); a start that chained
// nothing is not named.
func TestEachStartOpensAChainNamingThePrevious(t *testing.T) {
	directory := t.TempDir()
	start := func(traffic bool, clean bool) (chainID string, parent any) {
		id, ext := fileStorage(t, directory)
		h, _ := chainHarness(t, func(cfg *Config) { cfg.Storage = &id })
		if err := h.processor.Start(context.Background(), extensionHost{id: ext}); err != nil {
			t.Fatal(err)
		}
		if traffic {
			h.send(genAISpans("loan-llm"))
		}
		if clean {
			if err := h.processor.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		} else { // as SIGKILL leaves it: no shutdown, no closing checkpoint, the file let go
			close(h.audit.stop)
			h.audit.done.Wait()
			if err := h.audit.store.close(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if err := ext.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		records := auditSpans(h.sink.AllTraces())["record"]
		if !traffic {
			if len(records) != 0 {
				t.Fatal("a start without traffic wrote a chain")
			}
			return "", nil
		}
		var open struct {
			Chain map[string]any `json:"chain"`
			Event map[string]any `json:"event"`
		}
		if err := json.Unmarshal([]byte(str(records[0], attrRecord)), &open); err != nil {
			t.Fatal(err)
		}
		return open.Chain["id"].(string), open.Event["parent_chain_id"]
	}
	first, parent := start(true, true)
	if parent != nil {
		t.Fatalf("the first chain names a parent: %v", parent)
	}
	second, parent := start(true, false)
	if parent != first {
		t.Fatalf("after a clean stop the new chain names %v, want %s", parent, first)
	}
	start(false, true)
	if _, parent = start(true, true); parent != second {
		t.Fatalf("after a killed start and an idle one the chain names %v, want %s", parent, second)
	}
}

// sealedSpans are the spans that carry a seal among what passed.
func sealedSpans(traces []ptrace.Traces) []ptrace.Span {
	var spans []ptrace.Span
	for _, td := range traces {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					if _, ok := sealOf(span.Attributes()); ok {
						spans = append(spans, span)
					}
				}
			}
		}
	}
	return spans
}

// attachedTrail chains three batches with records attached and returns what passed, and the
// gateway's public key.
func attachedTrail(t *testing.T) ([]ptrace.Traces, string) {
	t.Helper()
	h, public := chainHarness(t, func(cfg *Config) { cfg.Chain.Records = recordsAttached })
	if err := h.processor.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	h.send(genAISpans("loan-llm"), genAISpans("loan-llm"), genAISpans("loan-llm"))
	if err := h.processor.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h.sink.AllTraces(), public
}

func TestAttachedRecordsAreSealsThatVerifyDownstream(t *testing.T) {
	traces, public := attachedTrail(t)
	items := auditSpans(traces)
	if len(items["record"]) != 1 || len(items["checkpoint"]) != 3 || len(items["key"]) != 1 {
		t.Fatalf("audit items %v: only the chain_open travels as a record", items)
	}
	sealed := sealedSpans(traces)
	if len(sealed) != 3 {
		t.Fatalf("%d sealed spans, want the 3 chat spans", len(sealed))
	}
	for i, span := range sealed {
		raw, _ := sealOf(span.Attributes())
		s, err := parseSeal(raw)
		if err != nil || s.seq != int64(i+1) || s.policy != policyHash || s.flags != 0b011 {
			t.Fatalf("seal %d: %+v, %v", i, s, err)
		}
	}
	verifier := newHarness(t, func(cfg *Config) { cfg.TrustedKeys, cfg.Verdict = []string{public}, true })
	verifier.send(traces...)
	verifier.wait(time.Minute)
	expect(t, verifier.findings())
	if got := verifier.counter("otelcol_audit_records_verified")[""]; got != 4 ||
		verifier.audit.verifier.chainsOpen() != 0 {
		t.Fatalf("verified %d records, want 4 in a closed chain", got)
	}
	if verdict := str(sealed[0].Attributes(), attrVerdict); verdict == "" {
		t.Fatal("no verdict on a sealed span")
	}
}

// TestContentRemovedFromSpansWithNoOtherGenAIAttributeKeepsTheirType: spans whose only gen_ai.*
// attributes are their content are sealed as inference; with that content removed downstream
// the seal's flags keep the type, and the records still verify.
func TestContentRemovedFromSpansWithNoOtherGenAIAttributeKeepsTheirType(t *testing.T) {
	h, public := chainHarness(t, func(cfg *Config) { cfg.Chain.Records = recordsAttached })
	if err := h.processor.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	traces := genAISpans("loan-llm")
	chat := traces.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	chat.Attributes().RemoveIf(func(name string, _ pcommon.Value) bool {
		return strings.HasPrefix(name, "gen_ai.") && !slices.Contains(namedLists[listInput], name) &&
			!slices.Contains(namedLists[listOutput], name)
	})
	h.send(traces)
	if err := h.processor.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	passed := h.sink.AllTraces()
	sealed := sealedSpans(passed)
	if len(sealed) == 0 {
		t.Fatal("nothing sealed")
	}
	for _, span := range sealed {
		span.Attributes().RemoveIf(func(name string, _ pcommon.Value) bool {
			return strings.HasPrefix(name, "gen_ai.")
		})
	}
	verifier := newHarness(t, func(cfg *Config) { cfg.TrustedKeys = []string{public} })
	verifier.send(passed...)
	verifier.wait(time.Minute)
	expect(t, verifier.findings())
}

func TestAlteredSealedTelemetryIsFound(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alter func(spans []ptrace.Span)
		want  []string
	}{
		{"content removed downstream (hash policy)", func(spans []ptrace.Span) {
			for _, span := range spans {
				span.Attributes().Remove("gen_ai.input.messages")
				span.Attributes().Remove("gen_ai.output.messages")
			}
		}, nil},
		{"attribute changed", func(spans []ptrace.Span) {
			spans[1].Attributes().PutInt("gen_ai.usage.input_tokens", 13)
		}, []string{"record_modified@2"}},
		{"attribute added", func(spans []ptrace.Span) {
			spans[2].Attributes().PutStr("gen_ai.response.id", "forged")
		}, []string{"record_modified@3"}},
		{"span renamed", func(spans []ptrace.Span) {
			spans[0].SetName("chat other-model")
		}, []string{"record_modified@1"}},
		{"seal cut", func(spans []ptrace.Span) {
			raw, _ := sealOf(spans[1].Attributes())
			spans[1].Attributes().PutEmptyBytes(attrSeal).FromRaw(raw[:40])
		}, []string{"malformed_record@-1", "gap@2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			traces, public := attachedTrail(t)
			tc.alter(sealedSpans(traces))
			verifier := newHarness(t, func(cfg *Config) { cfg.TrustedKeys = []string{public} })
			verifier.send(traces...)
			verifier.wait(time.Minute)
			expect(t, verifier.findings(), tc.want...)
		})
	}
}

// TestSealedTelemetryIsVerifiedNotChainedAgain: a second chaining gateway verifies the seals
// of the first, keeps them as they are, and chains nothing (its chain is never written).
func TestSealedTelemetryIsVerifiedNotChainedAgain(t *testing.T) {
	traces, _ := attachedTrail(t)
	before := map[int][]byte{}
	for i, span := range sealedSpans(traces) {
		raw, _ := sealOf(span.Attributes())
		before[i] = bytes.Clone(raw)
	}
	second, _ := chainHarness(t, func(cfg *Config) {
		cfg.Chain.Records, cfg.AllowSelfAsserted = recordsAttached, true
		cfg.Sampling.Rate = 0
	})
	second.send(traces...)
	second.wait(time.Minute)
	expect(t, second.findings())
	if got := second.counter("otelcol_audit_records_verified")[""]; got != 4 {
		t.Fatalf("verified %d records, want 4", got)
	}
	after := sealedSpans(second.sink.AllTraces())
	if len(after) != 3 {
		t.Fatalf("%d sealed spans passed the second gateway (its sampler keeps them all)", len(after))
	}
	for i, span := range after {
		if raw, _ := sealOf(span.Attributes()); !bytes.Equal(raw, before[i]) {
			t.Fatalf("seal %d changed", i)
		}
	}
	if _, written := second.audit.chainer.written(); written {
		t.Fatal("the second gateway chained sealed telemetry again")
	}
}
