package auditprocessor

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func TestSamplingKeepsTheTrailAndWhatMattersAndSignsWhatItDrops(t *testing.T) {
	h, public := chainHarness(t, func(c *Config) {
		c.Chain.CheckpointEvery = 1000
		c.Sampling = SamplingConfig{Rate: 0, KeepErrors: true,
			KeepAttributes: map[string][]string{"ai_audit.risk.level": {"high"}}}
	})
	if err := h.processor.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	td := genAISpans("loan-llm") // a chat span (chained: kept) and a plain span (dropped)
	spans := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	risky := spans.AppendEmpty()
	risky.SetName("score")
	risky.Attributes().PutStr("ai_audit.risk.level", "high")
	low := spans.AppendEmpty()
	low.SetName("score")
	low.Attributes().PutStr("ai_audit.risk.level", "low")
	failed := spans.AppendEmpty()
	failed.SetName("POST /ask")
	failed.Status().SetCode(ptrace.StatusCodeError)
	h.send(td)
	h.send(trailSpans(t)...) // the Python trail is never sampled
	if err := h.processor.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	var names []string
	for _, out := range h.sink.AllTraces() {
		for _, rs := range out.ResourceSpans().All() {
			if str(rs.Resource().Attributes(), "service.name") != "loan-llm" {
				continue
			}
			for _, span := range rs.ScopeSpans().At(0).Spans().All() {
				names = append(names, span.Name()+"/"+str(span.Attributes(), "ai_audit.risk.level"))
			}
		}
	}
	if want := "[chat gpt-4o/ score/high POST /ask/]"; fmt.Sprint(names) != want {
		t.Fatalf("kept %v, want %s", names, want)
	}
	if got := len(auditSpans(h.sink.AllTraces())["record"]); got != 10+2 {
		t.Fatalf("%d records passed, want the trail's 10 and the gateway's chain_open and 1", got)
	}

	// The closing checkpoint signs the count of what was dropped, by service.
	var counters map[string]any
	for _, attributes := range auditSpans(h.sink.AllTraces())["checkpoint"] {
		payload, _ := base64.StdEncoding.DecodeString(str(attributes, attrCheckpointPayload))
		var c checkpoint
		if err := json.Unmarshal(payload, &c); err == nil && c.ChainID == h.audit.chainer.sealer.chainID {
			counters = c.Counters
		}
	}
	if fmt.Sprint(counters) != "map[sampled_out:map[loan-llm:2]]" {
		t.Fatalf("counters %v", counters)
	}
	verifier := newHarness(t, func(cfg *Config) { cfg.TrustedKeys = []string{public, trailKeyPath} })
	verifier.send(h.sink.AllTraces()...)
	verifier.wait(time.Minute)
	expect(t, verifier.findings())
}

func TestSamplingKeepsWholeTracesAtTheRate(t *testing.T) {
	h, _ := chainHarness(t, func(c *Config) {
		c.Chain.AttributePrefixes = []string{"never."}
		c.Sampling.Rate = 0.25
	})
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	const traces = 4000
	for i := range traces {
		var id pcommon.TraceID
		binary.BigEndian.PutUint64(id[8:], uint64(i+1)*0x9E3779B97F4A7C15) // spread; never the empty id
		for range 2 {
			spans.AppendEmpty().SetTraceID(id)
		}
	}
	h.send(td)
	kept := map[pcommon.TraceID]int{}
	for _, span := range h.sink.AllTraces()[0].ResourceSpans().At(0).ScopeSpans().At(0).Spans().All() {
		kept[span.TraceID()]++
	}
	for id, n := range kept {
		if n != 2 {
			t.Fatalf("trace %v kept %d of its 2 spans", id, n)
		}
	}
	if share := float64(len(kept)) / traces; share < 0.22 || share > 0.28 {
		t.Fatalf("kept %.3f of the traces, want about 0.25", share)
	}
	if h.audit.chainer.sampledOut[""] != int64(2*(traces-len(kept))) {
		t.Fatalf("counted %v", h.audit.chainer.sampledOut)
	}
}

func TestSamplingNeedsTheChain(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.Sampling.Rate = 0.5
	if err := cfg.Validate(); err == nil {
		t.Fatal("sampling without a chain to count it in must fail validation")
	}
}
