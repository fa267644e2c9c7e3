package auditprocessor

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The trail written by the Python package (tests/vectors/generate.py): a closed chain of 10
// records with checkpoints at sizes 4, 8 and a closing one at 10, signed with a test key.
const (
	trailPath    = "../../tests/vectors/otlp_trail.jsonl"
	trailKeyPath = "../../tests/vectors/otlp_trail.pub.pem"
	trailChain   = "0123456789abcdef0123456789abcdef"
)

// trailSpans is the fixture's spans, one ptrace.Traces per span so a test can drop,
// repeat, alter or reorder them as a network or an attacker would.
func trailSpans(t *testing.T) []ptrace.Traces {
	t.Helper()
	text, err := os.ReadFile(trailPath)
	if err != nil {
		t.Fatal(err)
	}
	var all []ptrace.Traces
	for _, line := range strings.Split(strings.TrimSpace(string(text)), "\n") {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, span := range ss.Spans().All() {
					one := ptrace.NewTraces()
					out := one.ResourceSpans().AppendEmpty()
					rs.Resource().CopyTo(out.Resource())
					scope := out.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(scope.Scope())
					span.CopyTo(scope.Spans().AppendEmpty())
					all = append(all, one)
				}
			}
		}
	}
	if len(all) != 14 {
		t.Fatalf("the fixture has %d spans, want 14 (key, 10 records, 3 checkpoints)", len(all))
	}
	return all
}

func attributesOf(td ptrace.Traces) pcommon.Map {
	return td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes()
}

// recordAt is the index in trailSpans of the span of record `seq`.
func recordAt(t *testing.T, spans []ptrace.Traces, seq int64) int {
	t.Helper()
	for i, td := range spans {
		attributes := attributesOf(td)
		if str(attributes, attrKind) == "record" {
			if got, _ := integer(attributes, attrChainSeq); got == seq {
				return i
			}
		}
	}
	t.Fatalf("no record %d", seq)
	return -1
}

func checkpointAt(t *testing.T, spans []ptrace.Traces, index int64) int {
	t.Helper()
	for i, td := range spans {
		attributes := attributesOf(td)
		if str(attributes, attrKind) == "checkpoint" {
			if got, _ := integer(attributes, attrCheckpointIndex); got == index {
				return i
			}
		}
	}
	t.Fatalf("no checkpoint %d", index)
	return -1
}

// harness runs the real processor (factory, processorhelper, pdata) with observable logs
// and metrics and a clock the test moves.
type harness struct {
	t         *testing.T
	processor processor.Traces
	audit     *auditProcessor
	sink      *consumertest.TracesSink
	logs      *observer.ObservedLogs
	telemetry *componenttest.Telemetry
	clock     *time.Time
}

func newHarness(t *testing.T, configure func(*Config)) *harness {
	t.Helper()
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.TrustedKeys = []string{trailKeyPath}
	if configure != nil {
		configure(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	telemetry := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = telemetry.Shutdown(context.Background()) })
	set := processortest.NewNopSettings(typeStr)
	set.TelemetrySettings = telemetry.NewTelemetrySettings()
	set.Logger = zap.New(core)
	sink := &consumertest.TracesSink{}
	audit, err := newAuditProcessor(set, cfg, "traces")
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(0, 1_765_000_000_000_000_000).Add(time.Minute)
	audit.now = func() time.Time { return clock }
	p, err := audit.traces(context.Background(), set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t, p, audit, sink, logs, telemetry, &clock}
}

func (h *harness) send(spans ...ptrace.Traces) {
	h.t.Helper()
	for _, td := range spans {
		if err := h.processor.ConsumeTraces(context.Background(), td); err != nil {
			h.t.Fatal(err)
		}
	}
}

// wait moves the clock past the gap timeout and runs the gap check the ticker runs.
func (h *harness) wait(d time.Duration) {
	h.audit.mu.Lock() // the processor's own gap clock reads the time under this lock
	*h.clock = h.clock.Add(d)
	h.audit.mu.Unlock()
	h.audit.check(context.Background(), nil)
}

// findings is "kind@seq" of each finding logged, sorted.
func (h *harness) findings() []string {
	var found []string
	for _, entry := range h.logs.FilterMessageSnippet("audit finding").All() {
		fields := entry.ContextMap()
		found = append(found, fmt.Sprintf("%s@%d", fields["kind"], fields["seq"]))
	}
	sort.Strings(found)
	return found
}

func (h *harness) counter(name string) map[string]int64 {
	h.t.Helper()
	got, err := h.telemetry.GetMetric(name)
	if err != nil {
		return map[string]int64{}
	}
	values := map[string]int64{}
	for _, point := range got.Data.(metricdata.Sum[int64]).DataPoints {
		kind, _ := point.Attributes.Value("kind")
		values[kind.AsString()] += point.Value
	}
	return values
}

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("findings %v, want %v", got, want)
	}
}

func TestIntactTrailHasNoFindingAndPassesUnchanged(t *testing.T) {
	h := newHarness(t, nil)
	spans := trailSpans(t)
	h.send(spans...)
	h.wait(time.Minute)
	expect(t, h.findings())
	if got := h.counter("otelcol_audit_records_verified")[""]; got != 10 {
		t.Fatalf("records verified %d, want 10", got)
	}
	if h.sink.SpanCount() != 14 {
		t.Fatalf("%d spans passed, want 14", h.sink.SpanCount())
	}
	for i, td := range h.sink.AllTraces() {
		if got, want := str(attributesOf(td), attrRecord), str(attributesOf(trailSpans(t)[i]), attrRecord); got != want {
			t.Fatalf("span %d changed", i)
		}
	}
	open, err := h.telemetry.GetMetric("otelcol_audit_chains_open")
	if err != nil || open.Data.(metricdata.Gauge[int64]).DataPoints[0].Value != 0 {
		t.Fatalf("chains open: %v %v", open, err)
	}
}

func TestRecordsOvertakingEachOtherAreNoFinding(t *testing.T) {
	h := newHarness(t, nil)
	spans := trailSpans(t)
	three, four := recordAt(t, spans, 3), recordAt(t, spans, 5)
	spans[three], spans[four] = spans[four], spans[three]
	h.send(spans...)
	h.wait(time.Minute)
	expect(t, h.findings())
}

func TestAlteredRecordIsRecordModified(t *testing.T) {
	h := newHarness(t, nil)
	spans := trailSpans(t)
	attributes := attributesOf(spans[recordAt(t, spans, 5)])
	record := str(attributes, attrRecord)
	attributes.PutStr(attrRecord, strings.Replace(record, `"score":0.255`, `"score":0.99`, 1))
	if str(attributes, attrRecord) == record {
		t.Fatal("the edit did not apply")
	}
	h.send(spans...)
	expect(t, h.findings(), "record_modified@5")
	if got := h.counter("otelcol_audit_findings"); got["record_modified"] != 1 {
		t.Fatalf("findings metric %v", got)
	}
	if h.sink.SpanCount() != 14 {
		t.Fatal("a record with a finding must still pass")
	}
}

func TestDroppedRecordIsAGapAfterTheTimeout(t *testing.T) {
	h := newHarness(t, nil)
	spans := trailSpans(t)
	dropped := recordAt(t, spans, 6)
	h.send(append(spans[:dropped:dropped], spans[dropped+1:]...)...)
	expect(t, h.findings())
	h.wait(time.Second)
	expect(t, h.findings())
	h.wait(5 * time.Second)
	expect(t, h.findings(), "gap@6")
	if got := h.counter("otelcol_audit_records_verified")[""]; got != 9 {
		t.Fatalf("records verified %d, want 9", got)
	}
	if h.sink.SpanCount() != 13 {
		t.Fatalf("%d spans passed, want 13", h.sink.SpanCount())
	}
}

func TestRepeatedRecordIsADuplicateAndOtherBytesAnInsertion(t *testing.T) {
	h := newHarness(t, nil)
	spans := trailSpans(t)
	h.send(spans...)
	h.send(spans[recordAt(t, spans, 3)])
	forged := ptrace.NewTraces()
	spans[recordAt(t, spans, 4)].CopyTo(forged)
	attributes := attributesOf(forged)
	attributes.PutStr(attrRecord, strings.Replace(str(attributes, attrRecord), `"age":24`, `"age":99`, 1))
	h.send(forged)
	expect(t, h.findings(), "duplicate@3", "inserted@4")
	if h.sink.SpanCount() != 16 {
		t.Fatal("duplicates must pass on: the processor never drops a record")
	}
}

func TestSelfAssertedAndUntrustedKeys(t *testing.T) {
	h := newHarness(t, func(cfg *Config) { cfg.TrustedKeys = nil })
	h.send(trailSpans(t)...)
	expect(t, h.findings(), "self_asserted_key@3", "self_asserted_key@7", "self_asserted_key@9")

	h = newHarness(t, func(cfg *Config) { cfg.TrustedKeys = nil; cfg.AllowSelfAsserted = true })
	h.send(trailSpans(t)...)
	expect(t, h.findings())

	other, _, _ := ed25519.GenerateKey(nil)
	der, _ := x509.MarshalPKIXPublicKey(other)
	path := filepath.Join(t.TempDir(), "other.pub.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	h = newHarness(t, func(cfg *Config) { cfg.TrustedKeys = []string{path} })
	h.send(trailSpans(t)...)
	expect(t, h.findings(), "untrusted_key@3", "untrusted_key@7", "untrusted_key@9")

	h = newHarness(t, func(cfg *Config) { cfg.TrustedKeys = nil })
	h.send(trailSpans(t)[1:]...) // without the key span
	expect(t, h.findings(), "unknown_key@3", "unknown_key@7", "unknown_key@9")
}

func TestLogsPipelineVerifiesTheSameItems(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	cfg.TrustedKeys = []string{trailKeyPath}
	core, logs := observer.New(zapcore.InfoLevel)
	set := processortest.NewNopSettings(typeStr)
	set.Logger = zap.New(core)
	sink := &consumertest.LogsSink{}
	p, err := NewFactory().CreateLogs(context.Background(), set, cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr(attrPipeline, pipelineValue)
	records := rl.ScopeLogs().AppendEmpty().LogRecords()
	spans := trailSpans(t)
	for _, td := range spans {
		attributesOf(td).CopyTo(records.AppendEmpty().Attributes())
	}
	altered := records.At(recordAt(t, spans, 1)).Attributes()
	altered.PutStr(attrRecord, strings.Replace(str(altered, attrRecord), `"age":21`, `"age":22`, 1))
	if err := p.ConsumeLogs(context.Background(), ld); err != nil {
		t.Fatal(err)
	}
	found := logs.FilterMessageSnippet("audit finding").All()
	if len(found) != 1 || found[0].ContextMap()["kind"] != "record_modified" || found[0].ContextMap()["seq"] != int64(1) {
		t.Fatalf("findings %v", found)
	}
	if sink.LogRecordCount() != 14 {
		t.Fatal("every log record passes on")
	}
}

func TestFindingLineMatchesVerify(t *testing.T) {
	f := Finding{trailChain, 6, kindGap, "record(s) 6 are missing"}
	if f.String() != "chain "+trailChain+" seq 6: gap: record(s) 6 are missing" {
		t.Fatal(f.String())
	}
}

// attacksPath holds tamperings of the trail with the findings `otel-ai-audit verify` reports
// on each (tests/vectors/generate.py): the processor must report the same lines in flight.
const attacksPath = "../../tests/vectors/otlp_attacks.json"

func TestFindingsAreTheLinesVerifyReports(t *testing.T) {
	text, err := os.ReadFile(attacksPath)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Attacks []struct {
			Name  string `json:"name"`
			Edits []struct {
				Op, Kind, Old, New string
				N                  int64
			} `json:"edits"`
			Findings []string `json:"findings"`
		} `json:"attacks"`
	}
	if err := json.Unmarshal(text, &file); err != nil || len(file.Attacks) == 0 {
		t.Fatalf("no attacks: %v", err)
	}
	for _, attack := range file.Attacks {
		t.Run(attack.Name, func(t *testing.T) {
			h := newHarness(t, nil)
			spans := trailSpans(t)
			var sent []ptrace.Traces
			for _, td := range spans {
				attributes := attributesOf(td)
				place, _ := integer(attributes, attrChainSeq)
				if str(attributes, attrKind) == "checkpoint" {
					place, _ = integer(attributes, attrCheckpointIndex)
				}
				dropped := false
				for _, edit := range attack.Edits {
					if edit.Kind != str(attributes, attrKind) || edit.N != place {
						continue
					}
					switch edit.Op {
					case "drop":
						dropped = true
					case "replace":
						attributes.PutStr(attrRecord, strings.Replace(str(attributes, attrRecord), edit.Old, edit.New, 1))
					case "flip_signature":
						signature, _ := base64.StdEncoding.DecodeString(str(attributes, attrCheckpointSignature))
						signature[0] ^= 1
						attributes.PutStr(attrCheckpointSignature, base64.StdEncoding.EncodeToString(signature))
					default:
						t.Fatalf("unknown edit %q", edit.Op)
					}
				}
				if !dropped {
					sent = append(sent, td)
				}
			}
			h.send(sent...)
			h.wait(time.Minute)
			var lines []string
			for _, entry := range h.logs.FilterMessageSnippet("audit finding").All() {
				lines = append(lines, strings.TrimPrefix(entry.Message, "audit finding: "))
			}
			if strings.Join(lines, "\n") != strings.Join(attack.Findings, "\n") {
				t.Fatalf("in flight:\n%s\nverify:\n%s", strings.Join(lines, "\n"), strings.Join(attack.Findings, "\n"))
			}
		})
	}
}

func TestJoiningAChainMidStreamIsNoFinding(t *testing.T) {
	h := newHarness(t, nil)
	spans := trailSpans(t)
	// Started after record 5 and checkpoint 0 passed: checkpoint 1 arrives before the
	// first record this processor sees.
	h.send(spans[0], spans[checkpointAt(t, spans, 1)])
	for seq := int64(6); seq < 10; seq++ {
		h.send(spans[recordAt(t, spans, seq)])
	}
	h.send(spans[checkpointAt(t, spans, 2)])
	h.wait(time.Minute)
	expect(t, h.findings())
}

func TestOnlyAuditResourcesAreRead(t *testing.T) {
	h := newHarness(t, nil)
	spans := trailSpans(t)
	altered := attributesOf(spans[recordAt(t, spans, 5)])
	altered.PutStr(attrRecord, strings.Replace(str(altered, attrRecord), `"score":0.255`, `"score":0.99`, 1))
	for _, td := range spans {
		td.ResourceSpans().At(0).Resource().Attributes().PutStr(attrPipeline, "other")
	}
	h.send(spans...)
	expect(t, h.findings())
	if h.sink.SpanCount() != 14 {
		t.Fatal("other telemetry passes on")
	}
}

func TestVerdictAttributeSaysWhatWasKnownAsTheItemPassed(t *testing.T) {
	h := newHarness(t, func(cfg *Config) { cfg.Verdict = true })
	spans := trailSpans(t)
	seven, eight := recordAt(t, spans, 7), recordAt(t, spans, 8)
	spans[seven], spans[eight] = spans[eight], spans[seven]
	signature := attributesOf(spans[checkpointAt(t, spans, 1)])
	broken, _ := base64.StdEncoding.DecodeString(str(signature, attrCheckpointSignature))
	broken[0] ^= 1
	signature.PutStr(attrCheckpointSignature, base64.StdEncoding.EncodeToString(broken))
	h.send(spans...)
	again := ptrace.NewTraces()
	trailSpans(t)[recordAt(t, spans, 3)].CopyTo(again)
	h.send(again)
	got := map[string]string{}
	for _, td := range h.sink.AllTraces() {
		attributes := attributesOf(td)
		where := str(attributes, attrKind)
		if where == "record" {
			seq, _ := integer(attributes, attrChainSeq)
			where = fmt.Sprintf("record %d", seq)
			if _, seen := got[where]; seen {
				where += " again"
			}
		} else if where == "checkpoint" {
			index, _ := integer(attributes, attrCheckpointIndex)
			where = fmt.Sprintf("checkpoint %d", index)
		}
		got[where] = str(attributes, attrVerdict)
	}
	want := map[string]string{"key": "", "record 3 again": "duplicate", "record 8": "pending",
		"checkpoint 1": "bad_signature"}
	for seq := range 10 {
		if _, ok := want[fmt.Sprintf("record %d", seq)]; !ok {
			want[fmt.Sprintf("record %d", seq)] = "ok"
		}
	}
	want["checkpoint 0"], want["checkpoint 2"] = "ok", "ok"
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("verdicts %v, want %v", got, want)
	}
}

func TestNoVerdictAttributeUnlessConfigured(t *testing.T) {
	h := newHarness(t, nil)
	h.send(trailSpans(t)...)
	for _, td := range h.sink.AllTraces() {
		if _, ok := attributesOf(td).Get(attrVerdict); ok {
			t.Fatal("the verdict attribute was added without `verdict: true`")
		}
	}
}
