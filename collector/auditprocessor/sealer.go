package auditprocessor

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"strconv"
	"time"
)

// signingKey is an Ed25519 private key and its key id, as otel_ai_audit/integrity/keys.py
// names keys: the SHA-256 of the public key's DER SubjectPublicKeyInfo.
type signingKey struct {
	private ed25519.PrivateKey
	id      string
	pem     string
}

func newSigningKey(private ed25519.PrivateKey) (*signingKey, error) {
	der, err := x509.MarshalPKIXPublicKey(private.Public())
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	text := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return &signingKey{private, hex.EncodeToString(sum[:]), string(text)}, nil
}

// loadSigningKey reads an unencrypted PKCS#8 PEM Ed25519 private key, the form
// `otel-ai-audit keygen` and SigningKey.save write.
func loadSigningKey(path string) (*signingKey, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read signing key %s: %w", path, err)
	}
	block, _ := pem.Decode(text)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s holds no PEM private key (-----BEGIN PRIVATE KEY-----)", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: unreadable private key: %w", path, err)
	}
	private, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 private key: %T", path, parsed)
	}
	return newSigningKey(private)
}

// sign is the signature over a checkpoint payload (checkpoint.py sign_payload).
func (k *signingKey) sign(payload []byte) []byte {
	message := make([]byte, 0, len(signatureContext)+len(payload))
	return ed25519.Sign(k.private, append(append(message, signatureContext...), payload...))
}

// sealedRecord is a record the sealer placed in its chain.
type sealedRecord struct {
	chainID   string
	seq       int64
	eventType string
	loggedNs  int64
	data      []byte
}

// signedCheckpoint is a checkpoint as the Python store keeps it: the exact signed bytes.
type signedCheckpoint struct {
	chainID   string
	index     int64
	size      int64
	keyID     string
	issuedNs  int64
	payload   []byte
	signature []byte
}

// sealer is one hash chain written at the gateway, the Go twin of Python's `Chain`
// (otel_ai_audit/integrity/chain.py): the same record bytes, leaf hashes, Merkle root and
// checkpoint payloads, held to it by tests/vectors/sealing.json. Not safe for concurrent use.
type sealer struct {
	chainID            string
	head               [32]byte
	tree               merkle
	checkpointIndex    int64
	lastCheckpointHash string
	lastCheckpointSize int64
	lastLogged         int64
	closed             bool
}

func newChainID() string {
	var id [16]byte
	_, _ = rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// seal places an event at the end of the chain, as schema.py seal() does:
// `{"chain":{"id","logged","prev","seq","v"},"event":<canonical event>}`. RFC 8785 sorts
// "chain" before "event" and the header's values need no escaping, so this is the canonical
// form of the whole record. `logged` never goes backwards within the chain.
func (s *sealer) seal(event map[string]any, eventType string, loggedNs int64) (sealedRecord, error) {
	if s.closed {
		return sealedRecord{}, fmt.Errorf("chain %s is closed", s.chainID)
	}
	loggedNs = max(loggedNs, s.lastLogged)
	seq := s.tree.Size
	data := make([]byte, 0, 2048)
	data = fmt.Appendf(data, `{"chain":{"id":"%s","logged":"%d","prev":"%s","seq":%d,"v":%d},"event":`,
		s.chainID, loggedNs, hex.EncodeToString(s.head[:]), seq, schemaVersion)
	data, err := appendCanonical(data, event)
	if err != nil {
		return sealedRecord{}, err
	}
	data = append(data, '}')
	s.head = LeafHash(data)
	s.tree.append(s.head)
	s.lastLogged = loggedNs
	return sealedRecord{s.chainID, seq, eventType, loggedNs, data}, nil
}

// checkpoint signs the chain's size, head and Merkle root (chain.py Chain.checkpoint).
func (s *sealer) checkpoint(key *signingKey, issuedNs int64, closed bool,
	counters map[string]any, policyHash string) (signedCheckpoint, error) {
	if counters == nil {
		counters = map[string]any{}
	}
	root := s.tree.root()
	text, err := json.Marshal(checkpoint{
		ChainID: s.chainID, Closed: closed, Counters: counters, Head: hex.EncodeToString(s.head[:]),
		Index: s.checkpointIndex, IssuedAt: strconv.FormatInt(issuedNs, 10), KeyID: key.id,
		PolicyHash: policyHash, PrevCheckpoint: s.lastCheckpointHash,
		Root: hex.EncodeToString(root[:]), Size: s.tree.Size, V: 1})
	if err != nil {
		return signedCheckpoint{}, err
	}
	payload, err := Canonical(text)
	if err != nil {
		return signedCheckpoint{}, err
	}
	signed := signedCheckpoint{s.chainID, s.checkpointIndex, s.tree.Size, key.id, issuedNs,
		payload, key.sign(payload)}
	s.checkpointIndex++
	s.lastCheckpointHash = payloadHash(payload)
	s.lastCheckpointSize = s.tree.Size
	s.closed = closed
	return signed, nil
}

// pendingSinceCheckpoint is how many records the last checkpoint does not cover.
func (s *sealer) pendingSinceCheckpoint() int64 {
	return s.tree.Size - s.lastCheckpointSize
}

// newEventID is a UUIDv7 (RFC 9562) as 32 hex digits, as schema.py new_event_id makes them.
func newEventID(at time.Time) string {
	var id [16]byte
	_, _ = rand.Read(id[6:])
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	id[6] = id[6]&0x0f | 0x70
	id[8] = id[8]&0x3f | 0x80
	return hex.EncodeToString(id[:])
}

// rfc3339 is schema.py's event time: UTC with nanoseconds, `2026-11-27T06:54:50.957475960Z`.
func rfc3339(unixNs int64) string {
	return time.Unix(0, unixNs).UTC().Format("2006-01-02T15:04:05.000000000Z")
}
