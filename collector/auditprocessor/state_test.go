package auditprocessor

import (
	"context"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// extensionHost is the part of the Collector's host a processor uses: its extensions.
type extensionHost map[component.ID]component.Component

func (h extensionHost) GetExtensions() map[component.ID]component.Component { return h }

// fileStorage starts the contrib file_storage extension (the one the builder manifest
// includes) on a directory.
func fileStorage(t testing.TB, directory string) (component.ID, extension.Extension) {
	t.Helper()
	factory := filestorage.NewFactory()
	cfg := factory.CreateDefaultConfig().(*filestorage.Config)
	cfg.Directory = directory
	ext, err := factory.Create(context.Background(), extensiontest.NewNopSettings(factory.Type()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ext.Start(context.Background(), extensionHost{}); err != nil {
		t.Fatal(err)
	}
	return component.NewID(factory.Type()), ext
}

// run starts a processor on the storage in `directory`, sends `spans`, moves the clock past
// the gap timeout and shuts everything down as a Collector stopping on SIGTERM does.
func run(t *testing.T, directory string, spans []ptrace.Traces) []string {
	t.Helper()
	id, ext := fileStorage(t, directory)
	h := newHarness(t, func(cfg *Config) { cfg.Storage = &id })
	if err := h.processor.Start(context.Background(), extensionHost{id: ext}); err != nil {
		t.Fatal(err)
	}
	h.send(spans...)
	h.wait(time.Minute)
	if err := h.processor.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ext.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	return h.findings()
}

func TestStateContinuesAcrossARestartFromFileStorage(t *testing.T) {
	directory := t.TempDir()
	spans := trailSpans(t)
	split := recordAt(t, spans, 6)
	expect(t, run(t, directory, spans[:split]))
	// The checkpoints after the restart are checked against the Merkle tree of records seen
	// before it: the intact trail has no finding.
	expect(t, run(t, directory, spans[split:]))

	directory = t.TempDir()
	expect(t, run(t, directory, spans[:split]))
	// Record 6, lost while the Collector restarted, is a gap: the chain's place was kept.
	expect(t, run(t, directory, spans[split+1:]), "gap@6")
}

func TestStorageMustBeAStorageExtension(t *testing.T) {
	id := component.MustNewID("nothing")
	_, err := openStateStore(context.Background(), extensionHost{}, &id, component.MustNewID("audit"), "traces")
	if err == nil {
		t.Fatal("a missing storage extension must fail the start")
	}
}
