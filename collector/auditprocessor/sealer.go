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
	hasher             leafHasher
}

func newChainID() string {
	var id [16]byte
	_, _ = rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// seal places an event at the end of the chain, as schema.py seal() does:
// `{"chain":{"id","logged","prev","seq","v"},"event":<canonical event>}`. `logged` never goes
// backwards within the chain.
func (s *sealer) seal(event map[string]any, eventType string, loggedNs int64) (sealedRecord, error) {
	if s.closed {
		return sealedRecord{}, fmt.Errorf("chain %s is closed", s.chainID)
	}
	seq, loggedNs := s.next(loggedNs)
	data := appendRecordHeader(make([]byte, 0, 2048), s.chainID, loggedNs, &s.head, seq)
	data, err := appendCanonical(data, event)
	if err != nil {
		return sealedRecord{}, err
	}
	data = append(data, '}')
	s.commit(data, loggedNs)
	return sealedRecord{s.chainID, seq, eventType, loggedNs, data}, nil
}

// next is the seq and the logged time the next record gets, for a record logged at loggedNs.
func (s *sealer) next(loggedNs int64) (seq, logged int64) {
	return s.tree.Size, max(loggedNs, s.lastLogged)
}

// commit places a record's canonical bytes, written with next's seq and logged time, at the
// end of the chain. The bytes are not kept.
func (s *sealer) commit(data []byte, loggedNs int64) {
	s.head = s.hasher.sum(data)
	s.tree.append(s.head)
	s.lastLogged = loggedNs
}

// appendRecordHeader writes a record's canonical bytes up to its event: RFC 8785 sorts
// "chain" before "event", and the header's values need no escaping.
func appendRecordHeader(dst []byte, chainID string, loggedNs int64, prev *[32]byte, seq int64) []byte {
	dst = append(append(dst, prefixID...), chainID...)
	dst = strconv.AppendInt(append(dst, prefixLogged...), loggedNs, 10)
	dst = hex.AppendEncode(append(dst, prefixPrev...), prev[:])
	dst = strconv.AppendInt(append(dst, prefixSeq...), seq, 10)
	dst = strconv.AppendInt(append(dst, prefixV...), schemaVersion, 10)
	return append(dst, `},"event":`...)
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

// rfc3339 is schema.py's event time: UTC with nanoseconds, `2026-11-27T06:54:50.957475960Z`.
func rfc3339(unixNs int64) string {
	return string(appendTime(nil, unixNs))
}

// appendTime writes rfc3339's form, digit by digit: time.AppendFormat took a tenth of the
// time to write an event.
func appendTime(dst []byte, unixNs int64) []byte {
	t := time.Unix(0, unixNs).UTC()
	year, month, day := t.Date()
	hour, minute, second := t.Clock()
	dst = append(appendDigits(dst, year, 4), '-')
	dst = append(appendDigits(dst, int(month), 2), '-')
	dst = append(appendDigits(dst, day, 2), 'T')
	dst = append(appendDigits(dst, hour, 2), ':')
	dst = append(appendDigits(dst, minute, 2), ':')
	dst = append(appendDigits(dst, second, 2), '.')
	return append(appendDigits(dst, t.Nanosecond(), 9), 'Z')
}

// appendDigits writes a non-negative number in exactly `width` decimal digits (at most 9).
func appendDigits(dst []byte, value, width int) []byte {
	var digits [9]byte
	for i := width - 1; i >= 0; i-- {
		digits[i] = byte('0' + value%10)
		value /= 10
	}
	return append(dst, digits[:width]...)
}
