// Package auditprocessor verifies otel-ai-audit's tamper-evident audit records in flight in
// an OpenTelemetry Collector: leaf hashes, hash links, signed checkpoints, duplicates.
package auditprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
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

// The records never change: the processor only reads them.
var capabilities = processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: false})

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
	return processorhelper.NewTraces(ctx, set, cfg, next, p.processTraces, capabilities,
		processorhelper.WithStart(p.start), processorhelper.WithShutdown(p.shutdown))
}

func createLogs(ctx context.Context, set processor.Settings, cfg component.Config,
	next consumer.Logs) (processor.Logs, error) {
	p, err := newAuditProcessor(set, cfg.(*Config), "logs")
	if err != nil {
		return nil, err
	}
	return processorhelper.NewLogs(ctx, set, cfg, next, p.processLogs, capabilities,
		processorhelper.WithStart(p.start), processorhelper.WithShutdown(p.shutdown))
}
