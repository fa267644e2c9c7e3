package auditprocessor

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
)

// signatureContext is prefixed to the signed bytes (otel_ai_audit/integrity/checkpoint.py).
const signatureContext = "otel-ai-audit checkpoint v1\n"

// checkpoint is the signed payload of a checkpoint (canonical JSON, version 1).
type checkpoint struct {
	ChainID        string         `json:"chain_id"`
	Closed         bool           `json:"closed"`
	Counters       map[string]any `json:"counters"`
	Head           string         `json:"head"`
	Index          int64          `json:"index"`
	IssuedAt       string         `json:"issued_at"`
	KeyID          string         `json:"key_id"`
	PolicyHash     string         `json:"policy_hash"`
	PrevCheckpoint string         `json:"prev_checkpoint"`
	Root           string         `json:"root"`
	Size           int64          `json:"size"`
	V              int            `json:"v"`

	issuedAtNs int64
}

// parseCheckpoint reads signed bytes back, as Checkpoint.from_payload does.
func parseCheckpoint(payload []byte) (checkpoint, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(payload, &probe); err != nil {
		return checkpoint{}, errors.New("not a version 1 checkpoint")
	}
	var c checkpoint
	if err := json.Unmarshal(payload, &c); err != nil || c.V != 1 {
		return checkpoint{}, errors.New("not a version 1 checkpoint")
	}
	for _, field := range []string{"chain_id", "closed", "counters", "head", "index", "issued_at",
		"key_id", "policy_hash", "prev_checkpoint", "root", "size"} {
		if _, ok := probe[field]; !ok {
			return checkpoint{}, fmt.Errorf("checkpoint payload lacks or mistypes a field: '%s'", field)
		}
	}
	issued, err := strconv.ParseInt(c.IssuedAt, 10, 64)
	if err != nil {
		return checkpoint{}, fmt.Errorf("checkpoint payload lacks or mistypes a field: %v", err)
	}
	c.issuedAtNs = issued
	return c, nil
}

// payloadHash is what the next checkpoint's prev_checkpoint holds.
func payloadHash(payload []byte) string {
	sum := sha256.Sum256(payload)
	return hex.EncodeToString(sum[:])
}

func signatureValid(key ed25519.PublicKey, payload, signature []byte) bool {
	message := make([]byte, 0, len(signatureContext)+len(payload))
	message = append(append(message, signatureContext...), payload...)
	return ed25519.Verify(key, message, signature)
}

// parsePublicKeys reads every Ed25519 SubjectPublicKeyInfo PEM block of text, by key id: the
// SHA-256 of the DER SubjectPublicKeyInfo (otel_ai_audit/integrity/keys.py).
func parsePublicKeys(text []byte) (map[string]ed25519.PublicKey, error) {
	keys := map[string]ed25519.PublicKey{}
	for {
		var block *pem.Block
		block, text = pem.Decode(text)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("unreadable public key: %w", err)
		}
		key, ok := parsed.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("not an Ed25519 public key: %T", parsed)
		}
		der, err := x509.MarshalPKIXPublicKey(key)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(der)
		keys[hex.EncodeToString(sum[:])] = key
	}
	if len(keys) == 0 {
		return nil, errors.New("holds no PEM public key (-----BEGIN PUBLIC KEY-----)")
	}
	return keys, nil
}
