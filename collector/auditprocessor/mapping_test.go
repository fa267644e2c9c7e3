package auditprocessor

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// referenceEvent is the mapping of the spec (common to the Go and Python sides) written the
// plain way, as Go maps that appendCanonical writes: the oracle the direct eventWriter is
// held to. The content hashes are computed here, from the key, not taken from the seal.
func referenceEvent(t *testing.T, item *telemetryItem, s *seal, hmacKey []byte) map[string]any {
	t.Helper()
	input := []string{"gen_ai.input.messages", "gen_ai.system_instructions", "gen_ai.prompt", "gen_ai.tool.call.arguments"}
	output := []string{"gen_ai.output.messages", "gen_ai.completion", "gen_ai.tool.call.result"}
	eventType := "request"
	attributes := map[string]any{}
	contents := [contentKinds]map[string]any{{}, {}, {}}
	for name, value := range item.attributes.All() {
		if strings.HasPrefix(name, "gen_ai.") || strings.HasPrefix(name, "ml.") {
			eventType = "inference"
		}
		switch {
		case contains(input, name):
			contents[contentInput][name] = jsonValue(value)
		case contains(output, name):
			contents[contentOutput][name] = jsonValue(value)
		case !strings.HasPrefix(name, "ai_audit."):
			attributes[name] = jsonValue(value)
		}
	}
	if item.hasBody {
		contents[contentBody]["body"] = jsonValue(item.body)
	}
	id := make([]byte, 16)
	ms := s.loggedNs / 1e6
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	id[6], id[7], id[8] = 0x70|s.chainID[0]&0x0f, s.chainID[1], 0x80|s.chainID[2]&0x3f
	copy(id[9:12], s.chainID[3:6])
	id[12], id[13], id[14], id[15] = byte(s.seq>>24), byte(s.seq>>16), byte(s.seq>>8), byte(s.seq)
	event := map[string]any{"id": hex.EncodeToString(id), "type": eventType, "time": time.Unix(0, item.endNs).UTC().Format("2006-01-02T15:04:05.000000000Z")}
	if len(attributes) > 0 {
		event["attributes"] = attributes
	}
	for kind, key := range []string{"input", "output", "body"} {
		if len(contents[kind]) == 0 {
			continue
		}
		switch s.policy {
		case policyNone:
			event[key] = map[string]any{"policy": "none"}
		case policyFull:
			event[key] = map[string]any{"policy": "full", "value": contents[kind]}
		default:
			canonical, err := appendCanonical(nil, contents[kind])
			if err != nil {
				t.Fatal(err)
			}
			mac := hmac.New(sha256.New, hmacKey)
			mac.Write(canonical)
			event[key] = map[string]any{"policy": "hash", "hmac_sha256": hex.EncodeToString(mac.Sum(nil))}
		}
	}
	firstString := func(names ...string) string {
		for _, name := range names {
			if v, ok := item.attributes.Get(name); ok && v.Type() == pcommon.ValueTypeStr && v.Str() != "" {
				return v.Str()
			}
		}
		return ""
	}
	model := map[string]any{}
	for key, value := range map[string]string{
		"name":     firstString("gen_ai.response.model", "gen_ai.request.model", "ml.model.name", "ai_audit.model.name"),
		"version":  firstString("ml.model.version", "ai_audit.model.version"),
		"provider": firstString("gen_ai.provider.name", "gen_ai.system")} {
		if value != "" {
			model[key] = value
		}
	}
	if len(model) > 0 {
		event["model"] = model
	}
	operation := firstString("gen_ai.operation.name", "ml.operation", "ai_audit.operation")
	if operation == "" && item.signal == "span" {
		operation = item.name
	}
	if operation != "" {
		event["operation"] = operation
	}
	if item.failed {
		errorType := firstString("error.type")
		if errorType == "" {
			errorType = "error"
		}
		event["error"] = map[string]any{"type": errorType}
	}
	if item.service != "" {
		event["service"] = map[string]any{"name": item.service}
	}
	if !item.traceID.IsEmpty() {
		event["trace"] = map[string]any{"trace_id": hex.EncodeToString(item.traceID[:]),
			"span_id": hex.EncodeToString(item.spanID[:])}
	}
	scope := map[string]any{"name": item.scope.Name(), "version": item.scope.Version()}
	if item.signal == "span" {
		event["latency_ms"] = float64(item.endNs-item.startNs) / 1e6
		source := map[string]any{"signal": "span", "name": item.name, "kind": item.kind.String(),
			"status": item.status.String(), "scope": scope}
		if item.statusMessage != "" {
			source["status_message"] = item.statusMessage
		}
		if !item.parentSpanID.IsEmpty() {
			source["parent_span_id"] = hex.EncodeToString(item.parentSpanID[:])
		}
		event["source"] = source
	} else {
		source := map[string]any{"signal": "log", "severity": item.severity, "scope": scope}
		if item.eventName != "" {
			source["event_name"] = item.eventName
		}
		event["source"] = source
	}
	return event
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// generator makes random spans and log records with what a mapping can trip on: non-ASCII
// and invalid UTF-8 names and values (also beyond U+FFFF, where UTF-16 order differs from
// byte order), escapes, integers around ±2**53, non-finite and extreme doubles, bytes,
// nested arrays and maps, content and ai_audit.* attributes, empty fields.
type generator struct{ r *rand.Rand }

var (
	generatedNames = []string{"gen_ai.request.model", "gen_ai.response.model", "gen_ai.provider.name",
		"gen_ai.system", "gen_ai.operation.name", "ml.model.name", "ml.model.version", "ml.operation",
		"ai_audit.model.name", "ai_audit.operation", "ai_audit.seal.note", "error.type",
		"gen_ai.input.messages", "gen_ai.prompt", "gen_ai.system_instructions", "gen_ai.tool.call.arguments",
		"gen_ai.output.messages", "gen_ai.completion", "gen_ai.tool.call.result", "http.route",
		"server.address", "a", "A", "b", "aa", "é", "e\u0301", "\u00ff", "\ue000x", "\U0001F600", "\U0001F600a",
		"z\uffff", "tab\tname", "quote\"name", "back\\slash", "nul\x00", "bad\xff", "日本語.属性", ""}
	generatedStrings = []string{"", "chat", "loan-model", "é", "日本語", "\U0001F600", "\x00\x1f\x7f",
		"line\nbreak", "\"quoted\"", "back\\slash", "bad\xffutf8", "\u2028\u2029", "</script>", "0"}
	generatedDoubles = []float64{0, math.Copysign(0, -1), 1, -1.5, 0.1, 1e21, 1e-7, 5e-324,
		math.MaxFloat64, 123456789.125, math.NaN(), math.Inf(1), math.Inf(-1), 40}
	generatedInts = []int64{0, 1, -1, 40, maxSafeInteger, maxSafeInteger + 1, -maxSafeInteger,
		-maxSafeInteger - 1, math.MaxInt64, math.MinInt64}
)

func (g generator) pick(values []string) string { return values[g.r.IntN(len(values))] }

func (g generator) value(v pcommon.Value, depth int) {
	kinds := 6
	if depth < 2 {
		kinds = 8
	}
	switch g.r.IntN(kinds) {
	case 0:
		v.SetStr(g.pick(generatedStrings))
	case 1:
		v.SetBool(g.r.IntN(2) == 0)
	case 2:
		v.SetInt(generatedInts[g.r.IntN(len(generatedInts))])
	case 3:
		v.SetDouble(generatedDoubles[g.r.IntN(len(generatedDoubles))])
	case 4:
		raw := make([]byte, g.r.IntN(5))
		for i := range raw {
			raw[i] = byte(g.r.IntN(256))
		}
		v.SetEmptyBytes().FromRaw(raw)
	case 5:
		// an empty value: JSON null
	case 6:
		s := v.SetEmptySlice()
		for range g.r.IntN(3) {
			g.value(s.AppendEmpty(), depth+1)
		}
	case 7:
		m := v.SetEmptyMap()
		for range g.r.IntN(3) {
			g.value(m.PutEmpty(g.pick(generatedNames)), depth+1)
		}
	}
}

func (g generator) attributes(m pcommon.Map) {
	for range g.r.IntN(12) {
		g.value(m.PutEmpty(g.pick(generatedNames)), 0)
	}
}

func (g generator) scope(scope pcommon.InstrumentationScope) {
	scope.SetName(g.pick(generatedStrings))
	scope.SetVersion(g.pick(generatedStrings))
}

func (g generator) id(b []byte) {
	if g.r.IntN(4) > 0 {
		for i := range b {
			b[i] = byte(g.r.IntN(256))
		}
	}
}

// item makes one span or log record, and the telemetryItem of it.
func (g generator) item() telemetryItem {
	service := g.pick(generatedStrings)
	start := g.r.Int64N(2e18)
	if g.r.IntN(10) == 0 { // before 1970, or 2**63 ns and more read as int64
		start = -g.r.Int64N(9e18)
	}
	if g.r.IntN(2) == 0 {
		span := ptrace.NewSpan()
		span.SetName(g.pick(generatedStrings))
		span.SetKind(ptrace.SpanKind(g.r.IntN(6)))
		span.Status().SetCode(ptrace.StatusCode(g.r.IntN(3)))
		span.Status().SetMessage(g.pick(generatedStrings))
		var trace pcommon.TraceID
		var id, parent pcommon.SpanID
		g.id(trace[:])
		g.id(id[:])
		g.id(parent[:])
		span.SetTraceID(trace)
		span.SetSpanID(id)
		span.SetParentSpanID(parent)
		span.SetStartTimestamp(pcommon.Timestamp(start))
		span.SetEndTimestamp(pcommon.Timestamp(start + g.r.Int64N(5e9)))
		g.attributes(span.Attributes())
		scope := pcommon.NewInstrumentationScope()
		g.scope(scope)
		return spanItem(service, scope, span)
	}
	record := plog.NewLogRecord()
	if g.r.IntN(3) > 0 {
		record.SetTimestamp(pcommon.Timestamp(start))
	}
	record.SetObservedTimestamp(pcommon.Timestamp(start + 1))
	record.SetSeverityNumber(plog.SeverityNumber(g.r.IntN(25)))
	record.SetSeverityText(g.pick(generatedStrings))
	record.SetEventName(g.pick(generatedStrings))
	var trace pcommon.TraceID
	g.id(trace[:])
	record.SetTraceID(trace)
	if g.r.IntN(3) > 0 {
		g.value(record.Body(), 0)
	}
	g.attributes(record.Attributes())
	scope := pcommon.NewInstrumentationScope()
	g.scope(scope)
	return logItem(service, scope, record)
}

// TestDirectEventIsTheReferenceEvent: on many generated items, under each content policy,
// the event the eventWriter writes from pdata is byte for byte the canonical form of the
// reference mapping, and the seal it captures rebuilds the same record.
func TestDirectEventIsTheReferenceEvent(t *testing.T) {
	g := generator{rand.New(rand.NewPCG(16, 2026))}
	hmacKey := []byte("gateway hmac key")
	for _, content := range []string{contentHash, contentFull, contentNone} {
		writer := newEventWriter(content, hmacKey)
		for i := range 3000 {
			item := g.item()
			s := seal{seq: g.r.Int64N(maxSafeInteger), loggedNs: g.r.Int64N(math.MaxInt64)}
			g.id(s.chainID[:])
			g.id(s.prev[:])
			direct, eventType, err := writer.sealEvent(nil, &item, &s)
			if err != nil {
				t.Fatal(err)
			}
			reference := referenceEvent(t, &item, &s, hmacKey)
			want, err := appendCanonical(nil, reference)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(direct, want) || eventType != reference["type"] {
				t.Fatalf("%s item %d:\ndirect    %s\nreference %s", content, i, direct, want)
			}
			canonical, err := Canonical(direct)
			if err != nil || !bytes.Equal(canonical, direct) {
				t.Fatalf("%s item %d is not canonical JSON (%v): %s", content, i, err, direct)
			}
			record := appendRecordHeader(nil, hex.EncodeToString(s.chainID[:]), s.loggedNs, &s.prev, s.seq)
			record = append(append(record, direct...), '}')
			_, _, rebuilt, err := (&eventWriter{}).rebuild(&item, s.appendTo(nil))
			if err != nil || !bytes.Equal(rebuilt, record) {
				t.Fatalf("%s item %d: the seal rebuilds (%v)\n%s\nnot\n%s", content, i, err, rebuilt, record)
			}
		}
	}
}

func TestSealsThatAreNotSeals(t *testing.T) {
	s := seal{seq: 300, loggedNs: 1_765_000_000_000_000_000, policy: policyHash, flags: 0b101}
	good := s.appendTo(nil)
	if back, err := parseSeal(good); err != nil || back != s {
		t.Fatalf("%v: %+v", err, back)
	}
	for name, data := range map[string][]byte{
		"empty":          nil,
		"version 2":      append([]byte{2}, good[1:]...),
		"cut":            good[:len(good)-1],
		"trailing":       append(bytes.Clone(good), 0),
		"unknown policy": append(bytes.Clone(good[:len(good)-66]), 'x', 0),
		"unknown flags":  append(bytes.Clone(good[:len(good)-66]), 'n', 8),
	} {
		if _, err := parseSeal(data); err == nil {
			t.Errorf("%s: read as a seal", name)
		}
	}
}

func TestNamedAttributesFitTheScan(t *testing.T) {
	var w eventWriter
	if listSlots[lists] > len(w.named) || listSlots[lists] > 32 || len(slotOf) != listSlots[lists] {
		t.Fatalf("%d named attributes (%d distinct) for %d slots", listSlots[lists], len(slotOf), len(w.named))
	}
}
