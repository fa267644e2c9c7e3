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

// Content policies (capture.py's modes, without `redact`: a gateway cannot know which fields
// of a message are personal).
const (
	contentHash = "hash"
	contentFull = "full"
	contentNone = "none"
)

// selector decides which telemetry is chained, and how its content is captured.
type selector struct {
	services []string
	scopes   []string
	prefixes []string
	content  string
	hmacKey  []byte
}

// selects: the service and the scope are among those listed (any, when none are), some
// attribute has one of the prefixes (any, when none are listed), and the item carries no
// seal yet (a gateway before this one chained it: it is verified, not chained again).
func (s *selector) selects(service, scope string, attributes pcommon.Map) bool {
	if (len(s.services) > 0 && !slices.Contains(s.services, service)) ||
		(len(s.scopes) > 0 && !slices.Contains(s.scopes, scope)) {
		return false
	}
	if _, sealed := attributes.Get(attrSeal); sealed {
		return false
	}
	if len(s.prefixes) == 0 {
		return true
	}
	for name := range attributes.All() {
		for _, prefix := range s.prefixes {
			if strings.HasPrefix(name, prefix) {
				return true
			}
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

// telemetryItem is what an event is built from, common to spans and log records.
type telemetryItem struct {
	signal        string // "span" or "log"
	service       string
	scope         pcommon.InstrumentationScope
	attributes    pcommon.Map
	startNs       int64
	endNs         int64
	traceID       pcommon.TraceID
	spanID        pcommon.SpanID
	parentSpanID  pcommon.SpanID
	name          string
	kind          ptrace.SpanKind
	status        ptrace.StatusCode
	statusMessage string
	severity      string
	eventName     string
	failed        bool
	hasBody       bool
	body          pcommon.Value
}

func spanItem(service string, scope pcommon.InstrumentationScope, span ptrace.Span) telemetryItem {
	return telemetryItem{signal: "span", service: service, scope: scope, attributes: span.Attributes(),
		startNs: int64(span.StartTimestamp()), endNs: int64(span.EndTimestamp()),
		traceID: span.TraceID(), spanID: span.SpanID(), parentSpanID: span.ParentSpanID(),
		name: span.Name(), kind: span.Kind(), status: span.Status().Code(),
		statusMessage: span.Status().Message(), failed: span.Status().Code() == ptrace.StatusCodeError}
}

func logItem(service string, scope pcommon.InstrumentationScope, record plog.LogRecord) telemetryItem {
	at := int64(record.Timestamp())
	if at == 0 {
		at = int64(record.ObservedTimestamp())
	}
	body := record.Body()
	return telemetryItem{signal: "log", service: service, scope: scope, attributes: record.Attributes(),
		startNs: at, endNs: at, traceID: record.TraceID(), spanID: record.SpanID(),
		severity: record.SeverityText(), eventName: record.EventName(),
		failed:  record.SeverityNumber() >= plog.SeverityNumberError,
		hasBody: body.Type() != pcommon.ValueTypeEmpty, body: body}
}

// The attributes the mapping reads by name, each list in its order of preference: the
// content attributes of the GenAI semantic conventions, by kind and in their canonical
// (sorted) order, what a model was asked (input) and what it answered (output), captured
// under the content policy (hashed by default) and never copied as they are; then those an
// event field is read from (the first whose value is a non-empty string).
var namedLists = [...][]string{
	listInput:         {"gen_ai.input.messages", "gen_ai.prompt", "gen_ai.system_instructions", "gen_ai.tool.call.arguments"},
	listOutput:        {"gen_ai.completion", "gen_ai.output.messages", "gen_ai.tool.call.result"},
	listModelName:     {"gen_ai.response.model", "gen_ai.request.model", "ml.model.name", "ai_audit.model.name"},
	listModelVersion:  {"ml.model.version", "ai_audit.model.version"},
	listModelProvider: {"gen_ai.provider.name", "gen_ai.system"},
	listOperation:     {"gen_ai.operation.name", "ml.operation", "ai_audit.operation"},
	listErrorType:     {"error.type"},
}

const (
	listInput  = iota // = contentInput
	listOutput        // = contentOutput
	listModelName
	listModelVersion
	listModelProvider
	listOperation
	listErrorType
	lists
)

// slotOf numbers the named attributes in namedLists order; listSlots[i] is list i's first.
var slotOf, listSlots = func() (map[string]int, [lists + 1]int) {
	slots, starts := map[string]int{}, [lists + 1]int{}
	for i, names := range namedLists {
		starts[i] = len(slots)
		for _, name := range names {
			slots[name] = len(slots)
		}
	}
	starts[lists] = len(slots)
	return slots, starts
}()

// eventWriter writes an item's audit event as RFC 8785 canonical JSON straight from pdata,
// members in their sorted order, into the caller's buffer: the one mapping of telemetry to
// events, used to seal records (sealEvent) and to rebuild attached ones (rebuild). Attribute
// values that are arrays or maps go through jsonValue and appendCanonical. Not safe for
// concurrent use.
type eventWriter struct {
	// mac is the keyed content hash (nil where no content is hashed, as in a verifier).
	mac     hash.Hash
	policy  byte
	scratch []byte
	// What scan found in the item's attributes, in one pass: the members of `attributes`
	// (sorted), the event type, and the named attributes (named[slot], when found has bit slot).
	members   []member
	eventType string
	named     [32]pcommon.Value
	found     uint32
}

type member struct {
	name  string
	value pcommon.Value
}

// newEventWriter is the writer of a chain that captures content under `content` (hash, full
// or none, validated: the seal's policy byte is its first letter).
func newEventWriter(content string, hmacKey []byte) *eventWriter {
	w := &eventWriter{policy: content[0]}
	if w.policy == policyHash {
		w.mac = hmac.New(sha256.New, hmacKey)
	}
	return w
}

// sealEvent writes the event of an item being sealed, after capturing its content into the
// seal (the seal's other fields are set by the caller).
func (w *eventWriter) sealEvent(dst []byte, item *telemetryItem, s *seal) ([]byte, string, error) {
	w.scan(item)
	if err := w.capture(item, s); err != nil {
		return nil, "", err
	}
	return w.appendEvent(dst, item, s)
}

// scan reads the item's attributes once. Two attributes with one name (possible in pdata,
// not valid OTLP): `attributes` holds the last one's value (after invalid UTF-8 becomes
// U+FFFD, as a JSON object reader would keep them), a named field the first one's.
func (w *eventWriter) scan(item *telemetryItem) {
	w.eventType, w.found = "request", 0
	members := w.members[:0]
	for name, value := range item.attributes.All() {
		if w.eventType == "request" && (strings.HasPrefix(name, "gen_ai.") || strings.HasPrefix(name, "ml.")) {
			w.eventType = "inference"
		}
		if slot, ok := slotOf[name]; ok {
			if w.found&(1<<slot) == 0 {
				w.found |= 1 << slot
				w.named[slot] = value
			}
			if slot < listSlots[listOutput+1] {
				continue // content
			}
		}
		if !strings.HasPrefix(name, "ai_audit.") {
			members = append(members, member{validUTF8(name), value})
		}
	}
	slices.SortStableFunc(members, func(a, b member) int { return compareUTF16(a.name, b.name) })
	w.members = members
}

// has tells whether scan found any attribute of the list.
func (w *eventWriter) has(list int) bool {
	return w.found>>listSlots[list]&(1<<(listSlots[list+1]-listSlots[list])-1) != 0
}

// first is the first attribute of the list that scan found with a non-empty string value.
func (w *eventWriter) first(list int) string {
	for slot := listSlots[list]; slot < listSlots[list+1]; slot++ {
		if value := w.named[slot]; w.found&(1<<slot) != 0 && value.Type() == pcommon.ValueTypeStr && value.Str() != "" {
			return value.Str()
		}
	}
	return ""
}

// capture fills the seal's content part from the scanned item: the policy, which content is
// present, and under `hash` the HMAC-SHA256 of each one's canonical JSON (capture.py).
func (w *eventWriter) capture(item *telemetryItem, s *seal) error {
	s.policy, s.flags = w.policy, 0
	for kind := range contentKinds {
		if (kind == contentBody && item.hasBody) || (kind != contentBody && w.has(kind)) {
			s.flags |= 1 << kind
		}
	}
	if w.mac == nil {
		return nil
	}
	for kind := range contentKinds {
		if !s.has(kind) {
			continue
		}
		var err error
		if w.scratch, err = w.appendContent(w.scratch[:0], item, kind); err != nil {
			return err
		}
		w.mac.Reset()
		w.mac.Write(w.scratch)
		w.mac.Sum(s.macs[kind][:0])
	}
	return nil
}

// appendContent writes the captured value: {attribute name: value} of the content
// attributes of the kind that the item has, or {"body": value}.
func (w *eventWriter) appendContent(dst []byte, item *telemetryItem, kind int) ([]byte, error) {
	if kind == contentBody {
		dst = append(dst, `{"body":`...)
		dst, err := appendValue(dst, item.body)
		return append(dst, '}'), err
	}
	dst = append(dst, '{')
	first := true
	for slot := listSlots[kind]; slot < listSlots[kind+1]; slot++ {
		if w.found&(1<<slot) == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(appendCanonicalString(dst, namedLists[kind][slot-listSlots[kind]]), ':')
		var err error
		if dst, err = appendValue(dst, w.named[slot]); err != nil {
			return nil, err
		}
	}
	return append(dst, '}'), nil
}

// appendCaptured writes content under the seal's policy: hash {"hmac_sha256", "policy"},
// full {"policy", "value"}, none {"policy"}.
func (w *eventWriter) appendCaptured(dst []byte, item *telemetryItem, s *seal, kind int) ([]byte, error) {
	switch s.policy {
	case policyNone:
		return append(dst, `{"policy":"none"}`...), nil
	case policyFull:
		dst, err := w.appendContent(append(dst, `{"policy":"full","value":`...), item, kind)
		return append(dst, '}'), err
	}
	dst = hex.AppendEncode(append(dst, `{"hmac_sha256":"`...), s.macs[kind][:])
	return append(dst, `","policy":"hash"}`...), nil
}

// appendEvent writes the scanned item's event (docs/semantic-conventions.md, "Telemetry
// chained at the gateway") and returns its type. The id, the content's presence and its
// hashes come from the seal, so a verifier that has the item and its seal writes the same
// bytes. `attributes` holds every attribute but the content and ai_audit.* ones.
func (w *eventWriter) appendEvent(dst []byte, item *telemetryItem, s *seal) ([]byte, string, error) {
	var err error
	dst = append(dst, '{')
	if members := w.members; len(members) > 0 {
		dst = append(dst, `"attributes":{`...)
		for i, m := range members {
			if i+1 < len(members) && members[i+1].name == m.name {
				continue
			}
			dst = append(appendCanonicalString(dst, m.name), ':')
			if dst, err = appendValue(dst, m.value); err != nil {
				return nil, "", err
			}
			dst = append(dst, ',')
		}
		dst[len(dst)-1] = '}'
		dst = append(dst, ',')
	}
	if s.has(contentBody) {
		if dst, err = w.appendCaptured(append(dst, `"body":`...), item, s, contentBody); err != nil {
			return nil, "", err
		}
		dst = append(dst, ',')
	}
	if item.failed {
		errorType := w.first(listErrorType)
		if errorType == "" {
			errorType = "error"
		}
		dst = append(appendCanonicalString(append(dst, `"error":{"type":`...), errorType), "},"...)
	}
	dst = append(s.appendEventID(append(dst, `"id":"`...)), `",`...)
	if s.has(contentInput) {
		if dst, err = w.appendCaptured(append(dst, `"input":`...), item, s, contentInput); err != nil {
			return nil, "", err
		}
		dst = append(dst, ',')
	}
	if item.signal == "span" {
		if dst, err = appendNumber(append(dst, `"latency_ms":`...), float64(item.endNs-item.startNs)/1e6); err != nil {
			return nil, "", err
		}
		dst = append(dst, ',')
	}
	dst = w.appendModel(dst)
	operation := w.first(listOperation)
	if operation == "" && item.signal == "span" {
		operation = item.name
	}
	if operation != "" {
		dst = append(appendCanonicalString(append(dst, `"operation":`...), operation), ',')
	}
	if s.has(contentOutput) {
		if dst, err = w.appendCaptured(append(dst, `"output":`...), item, s, contentOutput); err != nil {
			return nil, "", err
		}
		dst = append(dst, ',')
	}
	if item.service != "" {
		dst = append(appendCanonicalString(append(dst, `"service":{"name":`...), item.service), "},"...)
	}
	dst = append(appendSource(append(dst, `"source":`...), item), `,"time":"`...)
	dst = appendTime(dst, item.endNs)
	dst = append(dst, `",`...)
	if !item.traceID.IsEmpty() {
		dst = hex.AppendEncode(append(dst, `"trace":{"span_id":"`...), item.spanID[:])
		dst = hex.AppendEncode(append(dst, `","trace_id":"`...), item.traceID[:])
		dst = append(dst, `"},`...)
	}
	// Sealed input or output is GenAI content: the type holds when a later processor
	// removed the content attributes, which may have been the item's only gen_ai.* ones.
	eventType := w.eventType
	if s.has(contentInput) || s.has(contentOutput) {
		eventType = "inference"
	}
	dst = append(append(append(dst, `"type":"`...), eventType...), `"}`...)
	return dst, eventType, nil
}

// appendModel writes `"model":{name, provider, version},` with the members found, if any.
func (w *eventWriter) appendModel(dst []byte) []byte {
	start := len(dst)
	dst = append(dst, `"model":{`...)
	empty := len(dst)
	for _, field := range [...]struct {
		key  string
		list int
	}{{`"name":`, listModelName}, {`"provider":`, listModelProvider}, {`"version":`, listModelVersion}} {
		if value := w.first(field.list); value != "" {
			dst = append(appendCanonicalString(append(dst, field.key...), value), ',')
		}
	}
	if len(dst) == empty {
		return dst[:start]
	}
	dst[len(dst)-1] = '}'
	return append(dst, ',')
}

// appendSource writes the item's `source`: what kind of telemetry it was, and where from.
func appendSource(dst []byte, item *telemetryItem) []byte {
	scope := func(dst []byte) []byte {
		dst = appendCanonicalString(append(dst, `"scope":{"name":`...), item.scope.Name())
		return append(appendCanonicalString(append(dst, `,"version":`...), item.scope.Version()), "},"...)
	}
	if item.signal == "log" {
		dst = append(dst, '{')
		if item.eventName != "" {
			dst = append(appendCanonicalString(append(dst, `"event_name":`...), item.eventName), ',')
		}
		dst = appendCanonicalString(append(scope(dst), `"severity":`...), item.severity)
		return append(dst, `,"signal":"log"}`...)
	}
	dst = append(append(append(dst, `{"kind":"`...), item.kind.String()...), `","name":`...)
	dst = append(appendCanonicalString(dst, item.name), ',')
	if !item.parentSpanID.IsEmpty() {
		dst = append(hex.AppendEncode(append(dst, `"parent_span_id":"`...), item.parentSpanID[:]), `",`...)
	}
	dst = append(append(append(scope(dst), `"signal":"span","status":"`...), item.status.String()...), '"')
	if item.statusMessage != "" {
		dst = appendCanonicalString(append(dst, `,"status_message":`...), item.statusMessage)
	}
	return append(dst, '}')
}

// appendValue writes an attribute value as JSON data a record can hold (I-JSON, RFC 7493):
// bytes as base64, integers beyond ±(2**53-1) and non-finite doubles as strings.
func appendValue(dst []byte, value pcommon.Value) ([]byte, error) {
	switch value.Type() {
	case pcommon.ValueTypeStr:
		return appendCanonicalString(dst, value.Str()), nil
	case pcommon.ValueTypeBool:
		return strconv.AppendBool(dst, value.Bool()), nil
	case pcommon.ValueTypeInt:
		if n := value.Int(); n > maxSafeInteger || n < -maxSafeInteger {
			return append(strconv.AppendInt(append(dst, '"'), n, 10), '"'), nil
		}
		return strconv.AppendInt(dst, value.Int(), 10), nil
	case pcommon.ValueTypeDouble:
		f := value.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return append(strconv.AppendFloat(append(dst, '"'), f, 'g', -1, 64), '"'), nil
		}
		return appendNumber(dst, f)
	case pcommon.ValueTypeBytes:
		dst = base64.StdEncoding.AppendEncode(append(dst, '"'), value.Bytes().AsRaw())
		return append(dst, '"'), nil
	}
	return appendCanonical(dst, jsonValue(value))
}

// jsonValue is an attribute value as Go data for appendCanonical (the forms appendValue writes).
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
