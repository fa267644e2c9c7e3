package auditprocessor

import (
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
)

// Spans per OTLP request: what the Python side's OtlpSink sends (batch_size 1000), and what
// an OpenTelemetry SDK's batch span processor exports at most (512).
const (
	trailBatch = 1000
	genAIBatch = 512
)

// trailRequests is `count` OTLP/protobuf requests of `trailBatch` record spans continuing one
// chain as the Python sink sends it: inference decisions of about 400 bytes sealed in
// canonical form, with a checkpoint signed by `key` every 1000 records.
func trailRequests(b *testing.B, count int, key *signingKey) [][]byte {
	b.Helper()
	c := &gatewayChain{key: key, sealer: sealer{chainID: trailChain}, every: 1000}
	at := time.Unix(0, 1_765_000_000_000_000_000)
	requests := make([][]byte, count)
	seq := 0
	for i := range requests {
		var items []auditItem
		for len(items) < trailBatch {
			event := map[string]any{"id": fmt.Sprintf("%032x", seq), "type": "inference",
				"time":  "2026-12-07T04:00:00.000000000Z",
				"model": map[string]any{"name": "adult-income", "version": "3"},
				"input": map[string]any{"age": 20 + seq%50, "hours": 40, "occupation": "Tech-support",
					"education": "Bachelors"},
				"output": map[string]any{"label": true, "score": float64(250+seq%700) / 1000}}
			record, err := c.sealer.seal(event, "inference", at.Add(time.Duration(seq)).UnixNano())
			if err != nil {
				b.Fatal(err)
			}
			items = append(items, recordAudit(record))
			if c.sealer.pendingSinceCheckpoint() >= c.every {
				items = append(items, c.checkpointLocked(at.Add(time.Duration(seq)), false)...)
			}
			seq++
		}
		td := ptrace.NewTraces()
		c.appendSpans(td, items)
		requests[i] = marshal(b, td)
	}
	return requests
}

// genAIRequests is `count` OTLP/protobuf requests of `genAIBatch` GenAI chat spans of a
// service, each selected for chaining (the processor's most expensive case).
func genAIRequests(b *testing.B, count int) [][]byte {
	b.Helper()
	requests := make([][]byte, count)
	for i := range requests {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", "loan-assistant")
		ss := rs.ScopeSpans().AppendEmpty()
		ss.Scope().SetName("example.com/llm-gateway")
		for j := range genAIBatch {
			span := ss.Spans().AppendEmpty()
			span.SetName("chat loan-model")
			span.SetTraceID(pcommon.TraceID{byte(i), byte(i >> 8), byte(j), 1})
			span.SetSpanID(pcommon.SpanID{byte(i), byte(i >> 8), byte(j), 2})
			span.SetKind(ptrace.SpanKindClient)
			span.SetStartTimestamp(pcommon.Timestamp(1_765_000_000_000_000_000 + int64(i*genAIBatch+j)*1e6))
			span.SetEndTimestamp(span.StartTimestamp() + 250_000_000)
			attributes := span.Attributes()
			attributes.PutStr("gen_ai.operation.name", "chat")
			attributes.PutStr("gen_ai.provider.name", "vllm")
			attributes.PutStr("gen_ai.request.model", "loan-model")
			attributes.PutStr("gen_ai.response.model", "loan-model-2026-11")
			attributes.PutInt("gen_ai.usage.input_tokens", int64(40+j))
			attributes.PutInt("gen_ai.usage.output_tokens", int64(12+j))
			attributes.PutStr("gen_ai.input.messages", fmt.Sprintf(`[{"role":"user","parts":[{"type":"text",`+
				`"content":"Applicant %d asks: can I borrow %d euros?"}]}]`, j, 1000+j))
			attributes.PutStr("gen_ai.output.messages", `[{"role":"assistant","parts":[{"type":"text",`+
				`"content":"The request needs a review."}],"finish_reason":"stop"}]`)
			attributes.PutStr("server.address", "vllm.internal")
		}
		requests[i] = marshal(b, td)
	}
	return requests
}

func marshal(b *testing.B, td ptrace.Traces) []byte {
	b.Helper()
	data, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// exportGzip: BenchmarkPipeline's exporter compresses (`-args -gzip=false`: it only marshals).
var exportGzip = flag.Bool("gzip", true, "BenchmarkPipeline: the exporter compresses with gzip, "+
	"the otlp exporter's default")

// exporter is the pipeline's end as a Collector runs it for each request: the batch moves the
// request's spans into the outgoing batch, and the exporter marshals a full batch (the batch
// processor's default size) to OTLP/protobuf and compresses it with gzip, as the otlp
// exporter does by default (otlpexporter's createDefaultConfig: compression gzip).
type exporter struct {
	batch ptrace.Traces
	gzip  *gzip.Writer
}

const exportBatch = 8192

func (e *exporter) Capabilities() consumer.Capabilities { return consumer.Capabilities{} }

func (e *exporter) ConsumeTraces(_ context.Context, td ptrace.Traces) error {
	td.ResourceSpans().MoveAndAppendTo(e.batch.ResourceSpans())
	if e.batch.SpanCount() >= exportBatch {
		return e.flush()
	}
	return nil
}

func (e *exporter) flush() error {
	data, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(e.batch)
	if err != nil {
		return err
	}
	e.batch = ptrace.NewTraces()
	if !*exportGzip {
		return nil
	}
	e.gzip.Reset(io.Discard)
	if _, err := e.gzip.Write(data); err != nil {
		return err
	}
	return e.gzip.Close()
}

// BenchmarkPipeline runs the same OTLP requests through what a Collector does per request
// (receiver: unmarshal the protobuf; batch; exporter: marshal and gzip), without the processor
// ("plain") and with it, one request per operation. `trail` is the Python side's trail in
// requests of 1000 records, verified (`trail/verify`: state saved in file_storage per
// request, verdict on); `genai` is a service's GenAI chat spans in requests of 512, each
// chained (sealed, content hashed, a checkpoint signed every 1000 records), the records
// attached to the spans as seals (`genai/chain`, the default) or sent as spans of their own
// (`genai/separate`). Run on one core:
//
//	go test -run '^$' -bench Pipeline -cpu 1 -benchtime 40x ./...
//
// benchmarks/bench_collector.py runs it and reports the processor's cost beside the plain
// pipeline's.
func BenchmarkPipeline(b *testing.B) {
	private, public, hmacKey := gatewayKeys(b)
	key, err := loadSigningKey(private)
	if err != nil {
		b.Fatal(err)
	}
	verify := func(cfg *Config, b *testing.B) (component.Host, func()) {
		cfg.TrustedKeys, cfg.Verdict = []string{public}, true
		id, ext := fileStorage(b, b.TempDir())
		cfg.Storage = &id
		return extensionHost{id: ext}, func() { _ = ext.Shutdown(context.Background()) }
	}
	chain := func(records string) func(*Config, *testing.B) (component.Host, func()) {
		return func(cfg *Config, _ *testing.B) (component.Host, func()) {
			cfg.Chain.SigningKey, cfg.Chain.HMACKeyFile, cfg.Chain.Records = private, hmacKey, records
			return extensionHost{}, func() {}
		}
	}
	type variant struct {
		name      string
		configure func(*Config, *testing.B) (component.Host, func())
	}
	for _, input := range []struct {
		name     string
		size     int
		requests func(b *testing.B) [][]byte
		variants []variant
	}{
		{"trail", trailBatch, func(b *testing.B) [][]byte { return trailRequests(b, b.N, key) },
			[]variant{{"verify", verify}}},
		{"genai", genAIBatch, func(b *testing.B) [][]byte { return genAIRequests(b, b.N) },
			[]variant{{"chain", chain(recordsAttached)}, {"separate", chain(recordsSeparate)}}},
	} {
		b.Run(input.name+"/plain", func(b *testing.B) {
			runPipeline(b, input.size, input.requests(b), nil)
		})
		if input.name == "genai" {
			b.Run("genai/floor", func(b *testing.B) {
				runPipeline(b, input.size, input.requests(b), recordFloor)
			})
		}
		for _, v := range input.variants {
			b.Run(input.name+"/"+v.name, func(b *testing.B) {
				cfg := createDefaultConfig()
				host, stop := v.configure(cfg, b)
				defer stop()
				runPipeline(b, input.size, input.requests(b), func(next consumer.Traces) consumer.Traces {
					p, err := NewFactory().CreateTraces(context.Background(),
						processortest.NewNopSettings(typeStr), cfg, next)
					if err != nil {
						b.Fatal(err)
					}
					if err := p.Start(context.Background(), host); err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
					return p
				})
			})
		}
	}
}

// recordFloor is the least any processor that makes a record of each span must do: write the
// span's event in canonical form (the mapping of docs/semantic-conventions.md, content left
// out: policy none) and hash it (the leaf hash). Nothing is attached or sent, no content is
// hashed, no link, Merkle tree or checkpoint is made: `genai/floor` against `genai/plain` is
// how far below `genai/chain` any per-span record design could get.
func recordFloor(next consumer.Traces) consumer.Traces {
	var chain gatewayChain // its empty selector selects every span
	writer := newEventWriter(contentNone, nil)
	var s seal
	var record []byte
	var items []telemetryItem
	var leaf leafHasher
	floor, _ := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
		items = chain.selectedSpans(td, items[:0])
		for i := range items {
			var err error
			record, _, err = writer.sealEvent(record[:0], &items[i], &s)
			if err != nil {
				return err
			}
			leaf.sum(record)
		}
		return next.ConsumeTraces(ctx, td)
	})
	return floor
}

// runPipeline unmarshals each request (of `size` records) and passes it to the processor `withProcessor` makes
// in front of the exporter (nil: straight to the exporter), timing only that. Besides the
// wall time it reports the process's CPU time per request and records per CPU second: on a
// machine shared with other work, wall time also counts the time the benchmark waited for
// the core, CPU time does not.
func runPipeline(b *testing.B, size int, requests [][]byte, withProcessor func(consumer.Traces) consumer.Traces) {
	end := &exporter{batch: ptrace.NewTraces(), gzip: gzip.NewWriter(io.Discard)}
	var first consumer.Traces = end
	if withProcessor != nil {
		first = withProcessor(end)
	}
	unmarshaler := &ptrace.ProtoUnmarshaler{}
	runtime.GC() // the garbage of making the requests is not the pipeline's
	cpuBefore := cpuTime(b)
	b.ResetTimer()
	for i := range b.N {
		td, err := unmarshaler.UnmarshalTraces(requests[i])
		if err != nil {
			b.Fatal(err)
		}
		if err := first.ConsumeTraces(context.Background(), td); err != nil {
			b.Fatal(err)
		}
	}
	if err := end.flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpuBefore
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N*size)/cpu.Seconds(), "records/cpu-s")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		b.Fatal(err)
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}
