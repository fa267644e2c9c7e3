// Command genai-producer is a non-Python service for the end-to-end tests: it emits spans
// in the OpenTelemetry GenAI semantic conventions (chat calls to a model, with prompt and
// completion content) by OTLP/HTTP protobuf, as an LLM gateway or an inference server would,
// plus plain HTTP spans that the gateway's selection must leave out.
//
//	go run ./testdata/genai-producer -endpoint http://127.0.0.1:4318 -calls 50
package main

import (
	"bytes"
	"crypto/rand"
	"flag"
	"fmt"
	"log"
	"net/http"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func main() {
	endpoint := flag.String("endpoint", "http://127.0.0.1:4318", "OTLP/HTTP endpoint (without /v1/traces)")
	calls := flag.Int("calls", 20, "chat calls to emit")
	batch := flag.Int("batch", 5, "calls per export request")
	service := flag.String("service", "loan-assistant", "service.name")
	interval := flag.Duration("interval", 0, "pause between export requests")
	retry := flag.Duration("retry", 0, "keep retrying a failed export this long, as an SDK "+
		"exporter retries (0: fail at once)")
	flag.Parse()
	for start := 0; start < *calls; start += *batch {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", *service)
		rs.Resource().Attributes().PutStr("telemetry.sdk.language", "go")
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("example.com/genai-producer")
		ss.Scope().SetVersion("1.0.0")
		for i := start; i < min(start+*batch, *calls); i++ {
			chat(ss.Spans(), i)
		}
		if err := exportRetrying(*endpoint+"/v1/traces", td, *retry); err != nil {
			log.Fatal(err)
		}
		time.Sleep(*interval)
	}
	fmt.Printf("sent %d chat spans\n", *calls)
}

// chat appends one GenAI chat span and the HTTP server span it ran under.
func chat(spans ptrace.SpanSlice, i int) {
	var traceID pcommon.TraceID
	var serverID, chatID pcommon.SpanID
	_, _ = rand.Read(traceID[:])
	_, _ = rand.Read(serverID[:])
	_, _ = rand.Read(chatID[:])
	end := time.Now()
	start := end.Add(-time.Duration(80+i) * time.Millisecond)

	server := spans.AppendEmpty()
	server.SetName("POST /ask")
	server.SetKind(ptrace.SpanKindServer)
	server.SetTraceID(traceID)
	server.SetSpanID(serverID)
	server.SetStartTimestamp(pcommon.NewTimestampFromTime(start.Add(-time.Millisecond)))
	server.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
	server.Attributes().PutStr("http.request.method", "POST")
	server.Attributes().PutStr("http.route", "/ask")

	span := spans.AppendEmpty()
	span.SetName("chat loan-model")
	span.SetKind(ptrace.SpanKindClient)
	span.SetTraceID(traceID)
	span.SetSpanID(chatID)
	span.SetParentSpanID(serverID)
	span.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	span.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
	attributes := span.Attributes()
	attributes.PutStr("gen_ai.operation.name", "chat")
	attributes.PutStr("gen_ai.provider.name", "vllm")
	attributes.PutStr("gen_ai.request.model", "loan-model")
	attributes.PutStr("gen_ai.response.model", "loan-model-2026-11")
	attributes.PutDouble("gen_ai.request.temperature", 0.2)
	attributes.PutInt("gen_ai.usage.input_tokens", int64(40+i))
	attributes.PutInt("gen_ai.usage.output_tokens", int64(12+i%7))
	attributes.PutStr("gen_ai.input.messages", fmt.Sprintf(
		`[{"role":"user","parts":[{"type":"text","content":"Applicant %d asks: can I borrow %d euros?"}]}]`, i, 1000*(i+1)))
	attributes.PutStr("gen_ai.output.messages", fmt.Sprintf(
		`[{"role":"assistant","parts":[{"type":"text","content":"Decision %d: %s"}],"finish_reason":"stop"}]`,
		i, []string{"approved", "declined"}[i%2]))
	if i%9 == 8 {
		span.Status().SetCode(ptrace.StatusCodeError)
		span.Status().SetMessage("upstream timeout")
		attributes.PutStr("error.type", "timeout")
	}
}

// exportRetrying exports until it succeeds or `patience` has passed since the first attempt.
func exportRetrying(url string, td ptrace.Traces, patience time.Duration) error {
	deadline := time.Now().Add(patience)
	for {
		err := export(url, td)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// export posts the spans as an OTLP/HTTP protobuf request. ExportTraceServiceRequest and
// TracesData are the same message on the wire (field 1: repeated ResourceSpans), so pdata's
// TracesData marshaler writes the request without the gRPC-dependent ptraceotlp package.
func export(url string, td ptrace.Traces) error {
	body, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		return err
	}
	response, err := http.Post(url, "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return fmt.Errorf("export to %s: %s", url, response.Status)
	}
	return nil
}
