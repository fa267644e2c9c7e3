package auditprocessor

import (
	"context"
	"encoding/hex"
	"fmt"
	"testing"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
)

// chainBatches makes `batches` batches of `size` record spans continuing one chain, each
// record a realistic decision (about 400 bytes) in canonical form, as the OTLP sink sends it.
func chainBatches(batches, size int) []ptrace.Traces {
	var prev [32]byte
	out := make([]ptrace.Traces, batches)
	seq := 0
	for b := range out {
		td := ptrace.NewTraces()
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr(attrPipeline, pipelineValue)
		spans := rs.ScopeSpans().AppendEmpty().Spans()
		for range size {
			data := fmt.Sprintf(`{"chain":{"id":"%s","logged":"%d","prev":"%s","seq":%d,"v":1},`+
				`"event":{"id":"%032x","input":{"age":%d,"hours":40},"model":{"name":"adult-income",`+
				`"version":"3"},"output":{"label":true,"score":0.%d},"time":"2026-12-07T04:00:00.000000000Z",`+
				`"type":"inference"}}`, trailChain, 1_765_000_000_000_000_000+seq, hex.EncodeToString(prev[:]),
				seq, seq, 20+seq%50, 250+seq%700)
			prev = LeafHash([]byte(data))
			attributes := spans.AppendEmpty().Attributes()
			attributes.PutStr(attrKind, "record")
			attributes.PutStr(attrChainID, trailChain)
			attributes.PutInt(attrChainSeq, int64(seq))
			attributes.PutStr(attrRecord, data)
			seq++
		}
		out[b] = td
	}
	return out
}

// BenchmarkVerifyRecords measures records verified per second through the processor
// (processorhelper, pdata walk, hash, link, state), one batch of 100 spans per operation:
//
//	go test -run '^$' -bench VerifyRecords -cpu 1 ./...
func BenchmarkVerifyRecords(b *testing.B) {
	const size = 100
	batches := chainBatches(max(b.N, 1), size)
	cfg := createDefaultConfig()
	cfg.AllowSelfAsserted = true
	p, err := NewFactory().CreateTraces(context.Background(), processortest.NewNopSettings(typeStr),
		cfg, consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := p.ConsumeTraces(context.Background(), batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
}
