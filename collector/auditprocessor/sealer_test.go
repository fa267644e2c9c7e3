package auditprocessor

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// sealingVectors is tests/vectors/sealing.json: a chain the Python `Chain` sealed.
type sealingVectors struct {
	KeySeed string `json:"key_seed"`
	KeyID   string `json:"key_id"`
	ChainID string `json:"chain_id"`
	Steps   []struct {
		Event      string `json:"event"`
		EventType  string `json:"event_type"`
		LoggedNs   int64  `json:"logged_ns"`
		Record     string `json:"record"`
		LeafHash   string `json:"leaf_hash"`
		Checkpoint *struct {
			IssuedAtNs int64          `json:"issued_at_ns"`
			Closed     bool           `json:"closed"`
			Counters   map[string]any `json:"counters"`
			PolicyHash string         `json:"policy_hash"`
			Index      int64          `json:"index"`
			Size       int64          `json:"size"`
			Payload    string         `json:"payload"`
			Signature  string         `json:"signature"`
		} `json:"checkpoint"`
	} `json:"steps"`
}

func TestSealerWritesTheBytesPythonWrites(t *testing.T) {
	text, err := os.ReadFile("../../tests/vectors/sealing.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors sealingVectors
	if err := json.Unmarshal(text, &vectors); err != nil {
		t.Fatal(err)
	}
	seed, _ := hex.DecodeString(vectors.KeySeed)
	key, err := newSigningKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	if key.id != vectors.KeyID {
		t.Fatalf("key id %s, Python says %s", key.id, vectors.KeyID)
	}
	chain := &sealer{chainID: vectors.ChainID}
	checkpoints := 0
	for i, step := range vectors.Steps {
		if c := step.Checkpoint; c != nil {
			signed, err := chain.checkpoint(key, c.IssuedAtNs, c.Closed, c.Counters, c.PolicyHash)
			if err != nil {
				t.Fatal(err)
			}
			if string(signed.payload) != c.Payload {
				t.Fatalf("step %d: checkpoint payload\n%s\nPython:\n%s", i, signed.payload, c.Payload)
			}
			if base64.StdEncoding.EncodeToString(signed.signature) != c.Signature ||
				signed.index != c.Index || signed.size != c.Size {
				t.Fatalf("step %d: signature, index or size differ from Python's", i)
			}
			checkpoints++
			continue
		}
		var event map[string]any
		if err := json.Unmarshal([]byte(step.Event), &event); err != nil {
			t.Fatal(err)
		}
		record, err := chain.seal(event, step.EventType, step.LoggedNs)
		if err != nil {
			t.Fatal(err)
		}
		leaf := LeafHash(record.data)
		if string(record.data) != step.Record || hex.EncodeToString(leaf[:]) != step.LeafHash {
			t.Fatalf("step %d: record\n%s\nPython:\n%s", i, record.data, step.Record)
		}
	}
	if checkpoints < 3 {
		t.Fatalf("only %d checkpoints in the vectors", checkpoints)
	}
	if _, err := chain.seal(map[string]any{}, "inference", 0); err == nil {
		t.Fatal("a closed chain must not take records")
	}
}

func TestSealedTrailVerifiesInFlight(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	key, _ := newSigningKey(ed25519.NewKeyFromSeed(seed))
	v := newVerifier(map[string]ed25519.PublicKey{key.id: key.private.Public().(ed25519.PublicKey)},
		false, 100, time.Second)
	chain := &sealer{chainID: newChainID()}
	var found []Finding
	for i := range 7 {
		record, err := chain.seal(map[string]any{"n": i}, "inference", int64(i))
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, v.record(newRecordItem(chain.chainID, record.seq, true, record.data), time.Unix(0, 0))...)
		if i%3 == 2 || i == 6 {
			c, err := chain.checkpoint(key, int64(100+i), i == 6, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			found = append(found, v.checkpoint(checkpointItem{c.chainID, c.index, c.size, c.keyID,
				c.payload, c.signature})...)
		}
	}
	if len(found) != 0 || v.verified != 7 || v.chainsOpen() != 0 {
		t.Fatalf("findings %v, verified %d, open %d", found, v.verified, v.chainsOpen())
	}
}
