package auditprocessor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
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
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

var update = flag.Bool("update", false, "TestVectors: write tests/vectors/gateway_seals.json anew")

const gatewayVectorsPath = "../../tests/vectors/gateway_seals.json"

// gatewayVectors is tests/vectors/gateway_seals.json: what the processor exports for each
// case, and the exact record bytes it hashed for the items it sealed, for the Python side's
// rebuild to match byte for byte.
type gatewayVectors struct {
	Description string        `json:"description"`
	HMACKey     string        `json:"hmac_key"`
	Cases       []gatewayCase `json:"cases"`
}

type gatewayCase struct {
	Name    string          `json:"name"`
	Signal  string          `json:"signal"`
	Content string          `json:"content"`
	Export  json.RawMessage `json:"export"`
	Records []gatewayRecord `json:"records"`
}

type gatewayRecord struct {
	ChainID string `json:"chain_id"`
	Seq     int64  `json:"seq"`
	Record  string `json:"record"`
}

// vectorCase is one case's input: spans or log records, and its chain settings.
type vectorCase struct {
	name      string
	content   string
	selectAll bool
	traces    func() ptrace.Traces
	logs      func() plog.Logs
}

var vectorClock = time.Date(2026, 12, 7, 11, 0, 0, 123456789, time.UTC)

func vectorCases() []vectorCase {
	return []vectorCase{
		{name: "genai chat spans", content: contentHash, traces: vectorChatSpans},
		{name: "attribute values and span fields", content: contentHash, selectAll: true, traces: vectorValueSpans},
		{name: "log records", content: contentHash, logs: vectorLogs},
		{name: "content full", content: contentFull, traces: vectorChatSpans},
		{name: "content none", content: contentNone, traces: vectorChatSpans},
		{name: "log records, content full", content: contentFull, logs: vectorLogs},
	}
}

// vectorChatSpans: two GenAI chat spans of a service, and an HTTP span not selected.
func vectorChatSpans() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "loan-assistant")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("example.com/llm-gateway")
	ss.Scope().SetVersion("1.4.0")
	for i := range 2 {
		span := ss.Spans().AppendEmpty()
		span.SetName("chat loan-model")
		span.SetTraceID(pcommon.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, byte(0x36 + i)})
		span.SetSpanID(pcommon.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, byte(0xb7 + i)})
		span.SetKind(ptrace.SpanKindClient)
		span.SetStartTimestamp(pcommon.Timestamp(vectorClock.Add(-time.Second).UnixNano() + int64(i)*1e6))
		span.SetEndTimestamp(pcommon.Timestamp(vectorClock.Add(-time.Second).UnixNano() + int64(i)*1e6 + 250_123_456))
		attributes := span.Attributes()
		attributes.PutStr("gen_ai.operation.name", "chat")
		attributes.PutStr("gen_ai.provider.name", "vllm")
		attributes.PutStr("gen_ai.request.model", "loan-model")
		attributes.PutStr("gen_ai.response.model", "loan-model-2026-11")
		attributes.PutInt("gen_ai.usage.input_tokens", int64(40+i))
		attributes.PutInt("gen_ai.usage.output_tokens", 12)
		attributes.PutDouble("gen_ai.request.temperature", 0.2)
		attributes.PutStr("gen_ai.system_instructions", `[{"type":"text","content":"Answer loan questions."}]`)
		attributes.PutStr("gen_ai.input.messages", `[{"role":"user","parts":[{"type":"text","content":"Can I borrow 1000 euros?"}]}]`)
		attributes.PutStr("gen_ai.output.messages", `[{"role":"assistant","parts":[{"type":"text","content":"The request needs a review."}],"finish_reason":"stop"}]`)
		attributes.PutStr("server.address", "vllm.internal")
	}
	plain := ss.Spans().AppendEmpty()
	plain.SetName("GET /health")
	plain.SetTraceID(pcommon.TraceID{1})
	plain.SetSpanID(pcommon.SpanID{2})
	plain.Attributes().PutStr("http.route", "/health")
	return td
}

// vectorValueSpans: every attribute value type and the edges of their JSON form, non-ASCII
// names and values, status Error with and without error.type, a parent span id, an empty
// scope version, a span without trace id; selected with no attribute prefix (type request).
func vectorValueSpans() ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "模型-服务")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("example.com/ünïcode")
	at := vectorClock.Add(-2 * time.Second).UnixNano()

	values := ss.Spans().AppendEmpty()
	values.SetName("score résumé")
	values.SetTraceID(pcommon.TraceID{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0})
	values.SetSpanID(pcommon.SpanID{0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8})
	values.SetParentSpanID(pcommon.SpanID{0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8})
	values.SetKind(ptrace.SpanKindServer)
	values.SetStartTimestamp(pcommon.Timestamp(at))
	values.SetEndTimestamp(pcommon.Timestamp(at + 1_500_000))
	a := values.Attributes()
	a.PutStr("ml.model.name", "résumé-ranker")
	a.PutInt("ml.model.version", 7) // not a string: no model version
	a.PutStr("名前", "値 \"quoted\" \\ \n\t\u0001 😀")
	a.PutStr("\ue000private", "after U+FFFF in UTF-16 order")
	a.PutStr("\U0001F600emoji", "before U+E000 in UTF-16 order")
	a.PutStr("Zebra", "upper case sorts first")
	a.PutInt("int.safe", maxSafeInteger)
	a.PutInt("int.beyond", maxSafeInteger+1)
	a.PutInt("int.min", math.MinInt64)
	a.PutDouble("double.nan", math.NaN())
	a.PutDouble("double.inf", math.Inf(1))
	a.PutDouble("double.-inf", math.Inf(-1))
	a.PutDouble("double.whole", 40)
	a.PutDouble("double.tiny", 1e-7)
	a.PutDouble("double.huge", 1e21)
	a.PutDouble("double.negative.zero", math.Copysign(0, -1))
	a.PutBool("bool", true)
	a.PutEmptyBytes("bytes").FromRaw([]byte{0, 1, 2, 0xfe, 0xff})
	array := a.PutEmptySlice("array")
	array.AppendEmpty().SetStr("x")
	array.AppendEmpty().SetInt(maxSafeInteger + 2)
	array.AppendEmpty().SetDouble(math.NaN())
	array.AppendEmpty()
	nested := a.PutEmptyMap("map")
	nested.PutStr("é", "1")
	nested.PutStr("e", "2")
	nested.PutEmptySlice("empty")
	nested.PutEmptyMap("inner").PutBool("ok", false)
	a.PutStr("ai_audit.note", "ai_audit.* attributes are not in the record")

	failed := ss.Spans().AppendEmpty()
	failed.SetName("POST /decide")
	failed.SetTraceID(pcommon.TraceID{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0})
	failed.SetSpanID(pcommon.SpanID{0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8})
	failed.SetStartTimestamp(pcommon.Timestamp(at))
	failed.SetEndTimestamp(pcommon.Timestamp(at + 3_000_000_001))
	failed.Status().SetCode(ptrace.StatusCodeError)
	failed.Status().SetMessage("upstream timed out")
	failed.Attributes().PutStr("error.type", "timeout")
	failed.Attributes().PutStr("http.route", "/decide")

	untyped := ss.Spans().AppendEmpty()
	untyped.SetName("batch")
	untyped.SetKind(ptrace.SpanKindInternal)
	untyped.SetStartTimestamp(pcommon.Timestamp(at))
	untyped.SetEndTimestamp(pcommon.Timestamp(at))
	untyped.Status().SetCode(ptrace.StatusCodeError)
	untyped.Attributes().PutInt("error.type", 500) // not a string: error type "error"
	untyped.Attributes().PutStr("gen_ai.operation.name", "")

	ok := rs.ScopeSpans().AppendEmpty()
	ok.Scope().SetName("other.scope")
	ok.Scope().SetVersion("2")
	done := ok.Spans().AppendEmpty()
	done.SetName("ok")
	done.SetKind(ptrace.SpanKindConsumer)
	done.Status().SetCode(ptrace.StatusCodeOk)
	done.SetTraceID(pcommon.TraceID{9})
	done.SetSpanID(pcommon.SpanID{9})
	done.SetStartTimestamp(pcommon.Timestamp(at))
	done.SetEndTimestamp(pcommon.Timestamp(at + 1))
	return td
}

// vectorLogs: a log record with a body and severity ERROR, one with a map body, one with
// content attributes and no body, one with only an observed time.
func vectorLogs() plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "triton")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("triton.inference")
	at := vectorClock.Add(-3 * time.Second).UnixNano()

	failed := sl.LogRecords().AppendEmpty()
	failed.SetTimestamp(pcommon.Timestamp(at))
	failed.SetObservedTimestamp(pcommon.Timestamp(at + 5))
	failed.SetSeverityNumber(plog.SeverityNumberError)
	failed.SetSeverityText("ERROR")
	failed.SetEventName("inference.failed")
	failed.SetTraceID(pcommon.TraceID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0, 0, 0, 0, 0, 0, 1})
	failed.SetSpanID(pcommon.SpanID{0x55, 0x66, 0x77, 0x88, 0, 0, 0, 1})
	failed.Attributes().PutStr("ml.model.name", "fraud")
	failed.Attributes().PutStr("ml.model.version", "12")
	failed.Attributes().PutStr("error.type", "OutOfMemory")
	failed.Body().SetStr("score failed: CUDA out of memory (Größe 2 GiB)")

	scored := sl.LogRecords().AppendEmpty()
	scored.SetTimestamp(pcommon.Timestamp(at + 1000))
	scored.SetSeverityNumber(plog.SeverityNumberInfo)
	scored.SetSeverityText("INFO")
	scored.Attributes().PutStr("ml.model.name", "fraud")
	scored.Attributes().PutStr("ml.operation", "score")
	body := scored.Body().SetEmptyMap()
	body.PutDouble("score", 0.93)
	body.PutInt("transaction", maxSafeInteger+10)
	body.PutEmptySlice("reasons").AppendEmpty().SetStr("velocity")

	prompt := sl.LogRecords().AppendEmpty()
	prompt.SetTimestamp(pcommon.Timestamp(at + 2000))
	prompt.SetSeverityNumber(plog.SeverityNumberInfo)
	prompt.Attributes().PutStr("gen_ai.operation.name", "chat")
	prompt.Attributes().PutStr("gen_ai.system", "openai")
	prompt.Attributes().PutStr("gen_ai.prompt", "Is this transaction fraud?")
	prompt.Attributes().PutStr("gen_ai.completion", "No.")

	observed := sl.LogRecords().AppendEmpty()
	observed.SetObservedTimestamp(pcommon.Timestamp(at + 3000))
	observed.Attributes().PutStr("gen_ai.request.model", "small")
	observed.Body().SetEmptyBytes().FromRaw([]byte("raw\x00body"))
	return ld
}

// runVectorCase runs the case's telemetry through a chaining processor with a fixed chain id,
// clock, process and keys, and returns everything that passed, merged, as OTLP/JSON.
func runVectorCase(t *testing.T, c vectorCase, chainID, records string) []byte {
	t.Helper()
	private, _, hmacKey := gatewayKeys(t)
	cfg := createDefaultConfig()
	cfg.Chain.SigningKey, cfg.Chain.HMACKeyFile, cfg.Chain.Content = private, hmacKey, c.content
	cfg.Chain.CheckpointEvery, cfg.Chain.Records = 2, records
	if c.selectAll {
		cfg.Chain.AttributePrefixes = nil
	}
	set := processortest.NewNopSettings(typeStr)
	signal := "traces"
	if c.logs != nil {
		signal = "logs"
	}
	audit, err := newAuditProcessor(set, cfg, signal)
	if err != nil {
		t.Fatal(err)
	}
	audit.now = func() time.Time { return vectorClock }
	audit.chainer.now = audit.now
	audit.chainer.lastSigned = vectorClock
	audit.chainer.sealer.chainID = chainID
	audit.chainer.process = map[string]any{"pid": 4242, "host": "gateway-1"}
	ctx := context.Background()
	var (
		p      processor.Traces
		pl     processor.Logs
		traces = &consumertest.TracesSink{}
		logs   = &consumertest.LogsSink{}
	)
	if c.logs != nil {
		pl, err = audit.logs(ctx, set, cfg, logs)
	} else {
		p, err = audit.traces(ctx, set, cfg, traces)
	}
	if err != nil {
		t.Fatal(err)
	}
	host := componenttest.NewNopHost()
	if c.logs != nil {
		err = errors.Join(pl.Start(ctx, host), pl.ConsumeLogs(ctx, c.logs()), pl.Shutdown(ctx))
	} else {
		err = errors.Join(p.Start(ctx, host), p.ConsumeTraces(ctx, c.traces()), p.Shutdown(ctx))
	}
	if err != nil {
		t.Fatal(err)
	}
	if c.logs != nil {
		merged := plog.NewLogs()
		for _, ld := range logs.AllLogs() {
			ld.ResourceLogs().MoveAndAppendTo(merged.ResourceLogs())
		}
		data, err := (&plog.JSONMarshaler{}).MarshalLogs(merged)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	merged := ptrace.NewTraces()
	for _, td := range traces.AllTraces() {
		td.ResourceSpans().MoveAndAppendTo(merged.ResourceSpans())
	}
	data, err := (&ptrace.JSONMarshaler{}).MarshalTraces(merged)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// exportItems calls visit for each span or log record of an OTLP/JSON export, with its
// resource's service name and its scope.
func exportItems(t *testing.T, signal string, data []byte, visit func(audit bool, item telemetryItem)) {
	t.Helper()
	if signal == "logs" {
		ld, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, rl := range ld.ResourceLogs().All() {
			for _, sl := range rl.ScopeLogs().All() {
				for _, record := range sl.LogRecords().All() {
					visit(isAudit(rl.Resource()), logItem(str(rl.Resource().Attributes(), "service.name"), sl.Scope(), record))
				}
			}
		}
		return
	}
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				visit(isAudit(rs.Resource()), spanItem(str(rs.Resource().Attributes(), "service.name"), ss.Scope(), span))
			}
		}
	}
}

// verifyExport runs an export through a verifying processor (the gateway's key trusted) and
// returns its findings and how many records it verified.
func verifyExport(t *testing.T, signal string, data []byte) ([]string, int64, int64) {
	t.Helper()
	_, public, _ := gatewayKeys(t)
	cfg := createDefaultConfig()
	cfg.TrustedKeys = []string{public}
	core, observed := observer.New(zapcore.InfoLevel)
	set := processortest.NewNopSettings(typeStr)
	set.Logger = zap.New(core)
	p, err := newAuditProcessor(set, cfg, signal)
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time { return vectorClock }
	if signal == "logs" {
		ld, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs(data)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.processLogs(context.Background(), ld)
		if err != nil {
			t.Fatal(err)
		}
	} else {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err = p.processTraces(context.Background(), td); err != nil {
			t.Fatal(err)
		}
	}
	p.now = func() time.Time { return vectorClock.Add(time.Hour) }
	p.check(context.Background(), nil)
	var found []string
	for _, entry := range observed.FilterMessageSnippet("audit finding").All() {
		found = append(found, entry.Message)
	}
	return found, p.verifier.verified, p.verifier.chainsOpen()
}

// TestVectors writes (-update) or checks tests/vectors/gateway_seals.json. Each case runs
// twice on the same chain id and clock: with records separate, whose record spans give the
// exact bytes hashed, and attached, whose export the file holds. The attached export must
// rebuild those bytes and verify, with no finding, in a processor that trusts the key.
func TestVectors(t *testing.T) {
	_, _, hmacPath := gatewayKeys(t)
	hmacKey, err := os.ReadFile(hmacPath)
	if err != nil {
		t.Fatal(err)
	}
	vectors := gatewayVectors{
		Description: "Telemetry sealed at the gateway by the Collector's audit processor " +
			"(chain.records: attached), written by collector/auditprocessor TestVectors " +
			"(go test -run Vectors -update). export: what the processor passed on, as the file " +
			"exporter writes it (OTLP/JSON). records: the canonical bytes of the record each " +
			"sealed item stands for, which a verifier rebuilds from the item and its ai_audit.seal.",
		HMACKey: strings.TrimSpace(string(hmacKey))}
	for i, c := range vectorCases() {
		chainID := strings.Repeat("0f1e2d3c4b5a6978", 2)[:31] + string("0123456789abcdef"[i])
		signal := "traces"
		if c.logs != nil {
			signal = "logs"
		}
		var records []gatewayRecord
		exportItems(t, signal, runVectorCase(t, c, chainID, recordsSeparate), func(audit bool, item telemetryItem) {
			seq, _ := integer(item.attributes, attrChainSeq)
			if audit && str(item.attributes, attrKind) == "record" && seq > 0 {
				records = append(records, gatewayRecord{chainID, seq, str(item.attributes, attrRecord)})
			}
		})
		export := runVectorCase(t, c, chainID, recordsAttached)
		rebuilt := 0
		exportItems(t, signal, export, func(audit bool, item telemetryItem) {
			raw, sealed := sealOf(item.attributes)
			if audit || !sealed {
				return
			}
			id, seq, data, err := (&eventWriter{}).rebuild(&item, raw)
			if err != nil || rebuilt >= len(records) || id != chainID || seq != records[rebuilt].Seq ||
				string(data) != records[rebuilt].Record {
				t.Fatalf("%s: sealed item %d rebuilds (%v) %s:%d\n%s", c.name, rebuilt, err, id, seq, data)
			}
			rebuilt++
		})
		if rebuilt != len(records) || rebuilt == 0 {
			t.Fatalf("%s: %d sealed items, %d records", c.name, rebuilt, len(records))
		}
		found, verified, open := verifyExport(t, signal, export)
		if len(found) != 0 || verified != int64(rebuilt+1) || open != 0 {
			t.Fatalf("%s: findings %v, %d records verified (want %d, with the chain_open), %d chains open",
				c.name, found, verified, rebuilt+1, open)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, export); err != nil {
			t.Fatal(err)
		}
		vectors.Cases = append(vectors.Cases, gatewayCase{Name: c.name, Signal: signal,
			Content: c.content, Export: compact.Bytes(), Records: records})
	}
	text, err := json.MarshalIndent(vectors, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	text = append(text, '\n')
	if *update {
		if err := os.WriteFile(gatewayVectorsPath, text, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	stored, err := os.ReadFile(gatewayVectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, text) {
		t.Fatalf("%s differs from what the processor writes now (go test -run Vectors -update "+
			"writes it anew, if the change is meant)", gatewayVectorsPath)
	}
}
