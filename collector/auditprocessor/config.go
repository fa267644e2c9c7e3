package auditprocessor

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"time"

	"go.opentelemetry.io/collector/component"
)

// Config is the processor's configuration.
type Config struct {
	// TrustedKeys are PEM files of the Ed25519 public keys whose checkpoint signatures are
	// trusted (a file may hold several keys), like `otel-ai-audit verify --public-key`.
	TrustedKeys []string `mapstructure:"trusted_keys"`
	// AllowSelfAsserted accepts, when no key is trusted, checkpoints signed by a key that
	// travelled with the trail itself (otherwise each is a self_asserted_key finding).
	AllowSelfAsserted bool `mapstructure:"allow_self_asserted"`
	// GapTimeout is how long a record may wait for its predecessor (records can overtake
	// each other between the application and the Collector) before the missing ones are a gap.
	GapTimeout time.Duration `mapstructure:"gap_timeout"`
	// Window is how many recent records of each chain are remembered to tell a duplicate
	// (same bytes) from an inserted record (other bytes) at a seq already seen.
	Window int64 `mapstructure:"window"`
	// Storage names a storage extension (file_storage) that keeps each chain's state, so a
	// restarted Collector goes on where it stopped; without one, state is kept in memory.
	Storage *component.ID `mapstructure:"storage"`
	// Verdict adds the attribute ai_audit.verdict to each record and checkpoint span or log
	// record: what the processor knew of it as it passed, for Elasticsearch and Kibana to show.
	// The record's own bytes never change.
	Verdict bool `mapstructure:"verdict"`
	// Chain turns selected telemetry of other services into audit records at the gateway.
	Chain ChainConfig `mapstructure:"chain"`
	// Sampling drops a share of the ordinary telemetry, never the audit trail, the chained
	// items or what a keep condition matches, and counts what it dropped in the chain's
	// signed checkpoints.
	Sampling SamplingConfig `mapstructure:"sampling"`
}

// SamplingConfig is the risk-aware sampling at the gateway (docs/collector-processor.md).
type SamplingConfig struct {
	// Rate is the share of ordinary spans and log records kept, by trace id (1: no sampling).
	Rate float64 `mapstructure:"rate"`
	// KeepErrors keeps spans with status Error and log records of severity ERROR or above.
	KeepErrors bool `mapstructure:"keep_errors"`
	// KeepAttributes keeps items with one of these attributes, with one of the listed values
	// (any value, if the list is empty): e.g. {ai_audit.risk.level: [high]}.
	KeepAttributes map[string][]string `mapstructure:"keep_attributes"`
}

// ChainConfig is the chaining at the gateway (docs/collector-processor.md): on when a signing
// key is set.
type ChainConfig struct {
	// SigningKey is the PEM file of the Ed25519 private key (PKCS#8, as `otel-ai-audit keygen`
	// writes it) that signs the gateway chain's checkpoints.
	SigningKey string `mapstructure:"signing_key"`
	// Services and Scopes select by service.name and instrumentation scope name (any, if empty).
	Services []string `mapstructure:"services"`
	Scopes   []string `mapstructure:"scopes"`
	// AttributePrefixes select spans and log records with an attribute of one of these
	// prefixes (any, if empty). They only select: a record holds all of an item's attributes
	// but its content and ai_audit.* ones, since a verifier that rebuilds it from the item
	// does not know the selection.
	AttributePrefixes []string `mapstructure:"attribute_prefixes"`
	// CheckpointEvery and CheckpointInterval: a checkpoint after this many records, or this
	// long after the last one when records wait.
	CheckpointEvery    int64         `mapstructure:"checkpoint_every"`
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval"`
	// Content is how GenAI prompt and completion content is captured: hash (keyed
	// HMAC-SHA256, the default), full, or none.
	Content string `mapstructure:"content"`
	// HMACKeyFile holds the key of the content hashes; required with content: hash.
	HMACKeyFile string `mapstructure:"hmac_key_file"`
	// Records is where a chained item's record travels: attached (the default) as a compact
	// seal (attribute ai_audit.seal) on the span or log record itself, from which a verifier
	// rebuilds the record's bytes; separate as an audit span or log record of its own that
	// holds the whole record, beside the original.
	Records string `mapstructure:"records"`
}

// Where chained records travel (ChainConfig.Records).
const (
	recordsAttached = "attached"
	recordsSeparate = "separate"
)

func createDefaultConfig() *Config {
	return &Config{GapTimeout: 5 * time.Second, Window: 4096, Chain: ChainConfig{
		AttributePrefixes: []string{"gen_ai.", "ml."}, CheckpointEvery: 1000,
		CheckpointInterval: 5 * time.Second, Content: contentHash, Records: recordsAttached},
		Sampling: SamplingConfig{Rate: 1, KeepErrors: true}}
}

// Validate checks the settings and that every trusted key file holds Ed25519 keys.
func (c *Config) Validate() error {
	if c.GapTimeout <= 0 {
		return errors.New("gap_timeout must be positive")
	}
	if c.Window < 1 {
		return errors.New("window must be at least 1")
	}
	if _, err := c.loadTrustedKeys(); err != nil {
		return err
	}
	if c.Sampling.Rate < 0 || c.Sampling.Rate > 1 {
		return errors.New("sampling.rate must be between 0 and 1")
	}
	if c.Sampling.Rate < 1 && c.Chain.SigningKey == "" {
		return errors.New("sampling needs chain.signing_key: what is sampled out is counted " +
			"in the gateway chain's signed checkpoints")
	}
	return c.Chain.validate()
}

func (c *ChainConfig) validate() error {
	if c.SigningKey == "" {
		return nil
	}
	if _, err := loadSigningKey(c.SigningKey); err != nil {
		return err
	}
	switch {
	case c.CheckpointEvery < 1:
		return errors.New("chain.checkpoint_every must be at least 1")
	case c.CheckpointInterval <= 0:
		return errors.New("chain.checkpoint_interval must be positive")
	case c.Content != contentHash && c.Content != contentFull && c.Content != contentNone:
		return fmt.Errorf("chain.content must be hash, full or none, not %q", c.Content)
	case c.Records != recordsAttached && c.Records != recordsSeparate:
		return fmt.Errorf("chain.records must be attached or separate, not %q", c.Records)
	case c.Content == contentHash && c.HMACKeyFile == "":
		return errors.New("chain.hmac_key_file is required with chain.content: hash " +
			"(the key of the keyed content hashes)")
	}
	return nil
}

func (c *Config) loadTrustedKeys() (map[string]ed25519.PublicKey, error) {
	keys := map[string]ed25519.PublicKey{}
	for _, path := range c.TrustedKeys {
		text, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("cannot read public key %s: %w", path, err)
		}
		found, err := parsePublicKeys(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for id, key := range found {
			keys[id] = key
		}
	}
	return keys, nil
}
