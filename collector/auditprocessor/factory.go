// Package auditprocessor verifies otel-ai-audit's tamper-evident audit records in flight in
// an OpenTelemetry Collector (leaf hashes, hash links, signed checkpoints, duplicates), chains
// other services' AI telemetry into audit records of the same format at the gateway (each
// record attached to its span or log record as a compact seal from which a verifier rebuilds
// it, or sent as a record of its own), and samples ordinary telemetry without ever dropping
// the audit trail.
package auditprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"
)

// typeStr is the processor's name in a Collector configuration (`processors: audit:`).
var typeStr = component.MustNewType("audit")

// NewFactory creates the factory of the audit processor.
func NewFactory() processor.Factory {
	return processor.NewFactory(typeStr,
		func() component.Config { return createDefaultConfig() },
		processor.WithTraces(createTraces, component.StabilityLevelDevelopment),
		processor.WithLogs(createLogs, component.StabilityLevelDevelopment))
}

// capabilities: the processor only reads the data, unless it adds the verdict attribute or
// appends the records it chains.
func capabilities(cfg component.Config) processorhelper.Option {
	c := cfg.(*Config)
	return processorhelper.WithCapabilities(consumer.Capabilities{
		MutatesData: c.Verdict || c.Chain.SigningKey != ""})
}

func createTraces(ctx context.Context, set processor.Settings, cfg component.Config,
	next consumer.Traces) (processor.Traces, error) {
	p, err := newAuditProcessor(set, cfg.(*Config), "traces")
	if err != nil {
		return nil, err
	}
	return p.traces(ctx, set, cfg, next)
}

func (p *auditProcessor) traces(ctx context.Context, set processor.Settings, cfg component.Config,
	next consumer.Traces) (processor.Traces, error) {
	if p.chainer != nil {
		p.emit = func(ctx context.Context, items []auditItem) error {
			td := ptrace.NewTraces()
			p.chainer.appendSpans(td, items)
			return next.ConsumeTraces(ctx, td)
		}
	}
	return processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces, capabilities(cfg),
		processorhelper.WithStart(p.start), processorhelper.WithShutdown(p.shutdown))
}

func createLogs(ctx context.Context, set processor.Settings, cfg component.Config,
	next consumer.Logs) (processor.Logs, error) {
	p, err := newAuditProcessor(set, cfg.(*Config), "logs")
	if err != nil {
		return nil, err
	}
	return p.logs(ctx, set, cfg, next)
}

func (p *auditProcessor) logs(ctx context.Context, set processor.Settings, cfg component.Config,
	next consumer.Logs) (processor.Logs, error) {
	if p.chainer != nil {
		p.emit = func(ctx context.Context, items []auditItem) error {
			ld := plog.NewLogs()
			p.chainer.appendLogs(ld, items)
			return next.ConsumeLogs(ctx, ld)
		}
	}
	return processorhelper.NewLogs(ctx, set, cfg, next, p.processLogs, capabilities(cfg),
		processorhelper.WithStart(p.start), processorhelper.WithShutdown(p.shutdown))
}
