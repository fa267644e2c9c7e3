package auditprocessor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component/componenttest"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := NewFactory().CreateDefaultConfig()
	if err := componenttest.CheckConfigStruct(cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.(*Config).Validate(); err != nil {
		t.Fatal(err)
	}
	if records := cfg.(*Config).Chain.Records; records != recordsAttached {
		t.Fatalf("chain.records defaults to %q, not attached", records)
	}
}

func TestConfigRejectsWhatCannotWork(t *testing.T) {
	notAKey := filepath.Join(t.TempDir(), "not-a-key.pem")
	if err := os.WriteFile(notAKey, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	private, _, hmacKey := gatewayKeys(t)
	chain := func(records string) func(*Config) {
		return func(c *Config) {
			c.Chain.SigningKey, c.Chain.HMACKeyFile, c.Chain.Records = private, hmacKey, records
		}
	}
	for name, c := range map[string]struct {
		change func(*Config)
		error  string
	}{
		"no gap timeout":    {func(c *Config) { c.GapTimeout = 0 }, "gap_timeout"},
		"no window":         {func(c *Config) { c.Window = 0 }, "window"},
		"missing key":       {func(c *Config) { c.TrustedKeys = []string{"/nonexistent.pem"} }, "cannot read public key"},
		"not a key file":    {func(c *Config) { c.TrustedKeys = []string{notAKey} }, "holds no PEM public key"},
		"the trail's key":   {func(c *Config) { c.TrustedKeys = []string{trailKeyPath} }, ""},
		"records attached":  {chain(recordsAttached), ""},
		"records separate":  {chain(recordsSeparate), ""},
		"records elsewhere": {chain("inline"), "chain.records must be attached or separate"},
	} {
		cfg := createDefaultConfig()
		c.change(cfg)
		err := cfg.Validate()
		if (c.error == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.error)) {
			t.Errorf("%s: %v, want %q", name, err, c.error)
		}
	}
}
