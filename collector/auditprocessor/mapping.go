package auditprocessor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"math"
	"slices"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The mapping of an OTLP span or log record to an audit event, documented in
// docs/semantic-conventions.md ("Telemetry chained at the gateway").

// inputContent and outputContent are the GenAI semantic conventions' content attributes:
// what a model was asked and what it answered. They are captured under the content policy
// (hashed by default), never copied as they are.
var (
	inputContent  = []string{"gen_ai.input.messages", "gen_ai.system_instructions", "gen_ai.prompt", "gen_ai.tool.call.arguments"}
	outputContent = []string{"gen_ai.output.messages", "gen_ai.completion", "gen_ai.tool.call.result"}
)

// The attributes each event field is read from, first present wins.
var (
	modelName     = []string{"gen_ai.response.model", "gen_ai.request.model", "ml.model.name", "ai_audit.model.name"}
	modelVersion  = []string{"ml.model.version", "ai_audit.model.version"}
	modelProvider = []string{"gen_ai.provider.name", "gen_ai.system"}
	operationName = []string{"gen_ai.operation.name", "ml.operation", "ai_audit.operation"}
)

// Content policies (capture.py's modes, without `redact`: a gateway cannot know which fields
// of a message are personal).
const (
	contentHash = "hash"
	contentFull = "full"
	contentNone = "none"
)

// selector decides which telemetry is chained, and how its content is captured. Building
// events is not safe for concurrent use: the gateway chain's lock serialises it.
type selector struct {
	services []string
	scopes   []string
	prefixes []string
	content  string
	hmacKey  []byte
	// mac and scratch are reused from one content hash to the next.
	mac     hash.Hash
	scratch []byte
}

// selects: the service and the scope are among those listed (any, when none are), and some
// attribute has one of the prefixes (any, when none are listed).
func (s *selector) selects(service, scope string, attributes pcommon.Map) bool {
	if (len(s.services) > 0 && !slices.Contains(s.services, service)) ||
		(len(s.scopes) > 0 && !slices.Contains(s.scopes, scope)) {
		return false
	}
	if len(s.prefixes) == 0 {
		return true
	}
	for name := range attributes.All() {
		if s.prefixed(name) {
			return true
		}
	}
	return false
}

func (s *selector) prefixed(name string) bool {
	if len(s.prefixes) == 0 {
		return true
	}
	for _, prefix := range s.prefixes {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// policyHash is what the gateway's checkpoints sign as `policy_hash`: as in Python
// (checkpoint.py combined_policy_hash), the SHA-256 of the canonical JSON of each policy's
// own hash by name; here one policy, "gateway", describing the selection and content capture.
func (s *selector) policyHash() string {
	keyID := sha256.Sum256(s.hmacKey)
	description := map[string]any{
		"services": nonNil(s.services), "scopes": nonNil(s.scopes),
		"attribute_prefixes": nonNil(s.prefixes), "content": s.content,
		"hmac_key_id": hex.EncodeToString(keyID[:])[:16]}
	return hashOfCanonical(map[string]any{"gateway": hashOfCanonical(description)})
}

func nonNil(values []string) []string {
	if values == nil {
		return []string{}
	}
	return values
}

func hashOfCanonical(value any) string {
	canonical, _ := appendCanonical(nil, value)
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// capture records content under the policy, as capture.py does: `hash` is HMAC-SHA256 over
// the canonical JSON of the value.
func (s *selector) capture(value map[string]any) map[string]any {
	switch s.content {
	case contentNone:
		return map[string]any{"policy": contentNone}
	case contentFull:
		return map[string]any{"policy": contentFull, "value": value}
	}
	if s.mac == nil {
		s.mac = hmac.New(sha256.New, s.hmacKey)
	}
	s.scratch, _ = appendCanonical(s.scratch[:0], value)
	s.mac.Reset()
	s.mac.Write(s.scratch)
	return map[string]any{"policy": contentHash, "hmac_sha256": hex.EncodeToString(s.mac.Sum(s.scratch[:0]))}
}

// telemetryItem is what an event is built from, common to spans and log records.
type telemetryItem struct {
	signal     string
	service    string
	scope      pcommon.InstrumentationScope
	attributes pcommon.Map
	startNs    int64
	endNs      int64
	traceID    pcommon.TraceID
	spanID     pcommon.SpanID
	source     map[string]any
	failed     bool
	body       *pcommon.Value
}

func spanItem(service string, scope pcommon.InstrumentationScope, span ptrace.Span) telemetryItem {
	source := map[string]any{"signal": "span", "name": span.Name(), "kind": span.Kind().String(),
		"status": span.Status().Code().String()}
	if message := span.Status().Message(); message != "" {
		source["status_message"] = message
	}
	if parent := span.ParentSpanID(); !parent.IsEmpty() {
		source["parent_span_id"] = hex.EncodeToString(parent[:])
	}
	return telemetryItem{signal: "span", service: service, scope: scope, attributes: span.Attributes(),
		startNs: int64(span.StartTimestamp()), endNs: int64(span.EndTimestamp()),
		traceID: span.TraceID(), spanID: span.SpanID(), source: source,
		failed: span.Status().Code() == ptrace.StatusCodeError}
}

func logItem(service string, scope pcommon.InstrumentationScope, record plog.LogRecord) telemetryItem {
	at := int64(record.Timestamp())
	if at == 0 {
		at = int64(record.ObservedTimestamp())
	}
	source := map[string]any{"signal": "log", "severity": record.SeverityText()}
	if name := record.EventName(); name != "" {
		source["event_name"] = name
	}
	body := record.Body()
	item := telemetryItem{signal: "log", service: service, scope: scope, attributes: record.Attributes(),
		startNs: at, endNs: at, traceID: record.TraceID(), spanID: record.SpanID(), source: source,
		failed: record.SeverityNumber() >= plog.SeverityNumberError}
	if body.Type() != pcommon.ValueTypeEmpty {
		item.body = &body
	}
	return item
}

// event is the audit event of one span or log record and its type.
func (s *selector) event(item telemetryItem, id string) (map[string]any, string) {
	eventType := "request"
	model := map[string]any{}
	first(item.attributes, modelName, func(v string) { model["name"] = v })
	first(item.attributes, modelVersion, func(v string) { model["version"] = v })
	first(item.attributes, modelProvider, func(v string) { model["provider"] = v })
	for name := range item.attributes.All() {
		if strings.HasPrefix(name, "gen_ai.") || strings.HasPrefix(name, "ml.") {
			eventType = "inference"
			break
		}
	}
	source := item.source
	source["scope"] = map[string]any{"name": item.scope.Name(), "version": item.scope.Version()}
	event := map[string]any{"id": id, "type": eventType, "time": rfc3339(item.endNs), "source": source}
	if len(model) > 0 {
		event["model"] = model
	}
	operation := ""
	first(item.attributes, operationName, func(v string) { operation = v })
	if operation == "" && item.signal == "span" {
		operation = source["name"].(string)
	}
	if operation != "" {
		event["operation"] = operation
	}
	if item.service != "" {
		event["service"] = map[string]any{"name": item.service}
	}
	if !item.traceID.IsEmpty() {
		event["trace"] = map[string]any{"trace_id": hex.EncodeToString(item.traceID[:]),
			"span_id": hex.EncodeToString(item.spanID[:])}
	}
	if item.signal == "span" {
		event["latency_ms"] = float64(item.endNs-item.startNs) / 1e6
	}
	if item.failed {
		errorType := "error"
		first(item.attributes, []string{"error.type"}, func(v string) { errorType = v })
		event["error"] = map[string]any{"type": errorType}
	}
	input, output, attributes := map[string]any{}, map[string]any{}, map[string]any{}
	for name, value := range item.attributes.All() {
		switch {
		case slices.Contains(inputContent, name):
			input[name] = jsonValue(value)
		case slices.Contains(outputContent, name):
			output[name] = jsonValue(value)
		case s.prefixed(name):
			attributes[name] = jsonValue(value)
		}
	}
	if len(input) > 0 {
		event["input"] = s.capture(input)
	}
	if len(output) > 0 {
		event["output"] = s.capture(output)
	}
	if item.body != nil {
		event["body"] = s.capture(map[string]any{"body": jsonValue(*item.body)})
	}
	if len(attributes) > 0 {
		event["attributes"] = attributes
	}
	return event, eventType
}

func first(attributes pcommon.Map, names []string, use func(string)) {
	for _, name := range names {
		if value, ok := attributes.Get(name); ok && value.AsString() != "" {
			use(value.AsString())
			return
		}
	}
}

// jsonValue is an attribute value as JSON data the record can hold (I-JSON, RFC 7493):
// bytes as base64, integers beyond 2**53-1 and non-finite floats as strings.
func jsonValue(value pcommon.Value) any {
	switch value.Type() {
	case pcommon.ValueTypeStr:
		return value.Str()
	case pcommon.ValueTypeBool:
		return value.Bool()
	case pcommon.ValueTypeInt:
		if n := value.Int(); n > maxSafeInteger || n < -maxSafeInteger {
			return strconv.FormatInt(n, 10)
		}
		return value.Int()
	case pcommon.ValueTypeDouble:
		if f := value.Double(); math.IsNaN(f) || math.IsInf(f, 0) {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
		return value.Double()
	case pcommon.ValueTypeBytes:
		return base64.StdEncoding.EncodeToString(value.Bytes().AsRaw())
	case pcommon.ValueTypeSlice:
		items := make([]any, 0, value.Slice().Len())
		for _, item := range value.Slice().All() {
			items = append(items, jsonValue(item))
		}
		return items
	case pcommon.ValueTypeMap:
		fields := map[string]any{}
		for name, item := range value.Map().All() {
			fields[name] = jsonValue(item)
		}
		return fields
	}
	return nil
}
