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
}

func createDefaultConfig() *Config {
	return &Config{GapTimeout: 5 * time.Second, Window: 4096}
}

// Validate checks the settings and that every trusted key file holds Ed25519 keys.
func (c *Config) Validate() error {
	if c.GapTimeout <= 0 {
		return errors.New("gap_timeout must be positive")
	}
	if c.Window < 1 {
		return errors.New("window must be at least 1")
	}
	_, err := c.loadTrustedKeys()
	return err
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
