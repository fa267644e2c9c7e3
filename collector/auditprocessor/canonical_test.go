package auditprocessor

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"
)

// vectorsPath is the vector file shared with the Python side's tests/unit/test_vectors.py.
const vectorsPath = "../../tests/vectors/canonical.json"

type vectors struct {
	Cases []struct {
		Name      string `json:"name"`
		Input     string `json:"input"`
		Canonical string `json:"canonical"`
		LeafHash  string `json:"leaf_hash"`
	} `json:"cases"`
	Numbers []struct {
		IEEEHex   string `json:"ieee_hex"`
		Canonical string `json:"canonical"`
	} `json:"numbers"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	text, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(text, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Cases) == 0 || len(v.Numbers) == 0 {
		t.Fatal("no vectors")
	}
	return v
}

func TestCanonicalFormAndLeafHashAgreeWithPython(t *testing.T) {
	for _, c := range loadVectors(t).Cases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := Canonical([]byte(c.Input))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.Canonical {
				t.Fatalf("canonical form\n got %q\nwant %q", got, c.Canonical)
			}
			leaf := LeafHash(got)
			if hex.EncodeToString(leaf[:]) != c.LeafHash {
				t.Fatalf("leaf hash %x, want %s", leaf, c.LeafHash)
			}
		})
	}
}

// TestValuesBuiltInGoCanonicaliseAsTheirText holds appendCanonical, which the gateway seals
// with, to the same vectors: each input decoded into Go values must give the same bytes.
func TestValuesBuiltInGoCanonicaliseAsTheirText(t *testing.T) {
	for _, c := range loadVectors(t).Cases {
		var value any
		if err := json.Unmarshal([]byte(c.Input), &value); err != nil {
			t.Fatal(err)
		}
		got, err := appendCanonical(nil, value)
		if err != nil || string(got) != c.Canonical {
			t.Errorf("%s: got %q (%v)\nwant %q", c.Name, got, err, c.Canonical)
		}
	}
	// What json.Marshal does before Canonical: invalid UTF-8 becomes U+FFFD; and what has no
	// canonical form is refused.
	got, _ := appendCanonical(nil, map[string]any{"k\xff": "a\xffb\x01", "\U0001F600": 1, "\uFB01": int64(2)})
	if string(got) != "{\"k\uFFFD\":\"a\uFFFDb\\u0001\",\"\U0001F600\":1,\"\uFB01\":2}" {
		t.Errorf("got %q", got)
	}
	for _, bad := range []any{int64(1 << 53), math.NaN(), struct{}{}} {
		if _, err := appendCanonical(nil, bad); err == nil {
			t.Errorf("%v has no canonical form", bad)
		}
	}
}

// TestStringsCanonicaliseAsJSONText: random strings (ASCII runs longer than the 8-byte
// fast path, escapes, control and non-ASCII characters, invalid UTF-8) are written as
// Canonical(json.Marshal(s)) writes them.
func TestStringsCanonicaliseAsJSONText(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 785))
	pieces := []string{"a", "plain ascii text ", "\"", "\\", "\n", "\x00", "\x1f", "\x7f", "é",
		"\u2028", "\U0001F600", "\xff", "\xe2\x82", "<&>", "0123456789"}
	for range 20000 {
		var text strings.Builder
		for range r.IntN(12) {
			text.WriteString(pieces[r.IntN(len(pieces))])
		}
		marshalled, _ := json.Marshal(text.String())
		want, err := Canonical(marshalled)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendCanonicalString(nil, text.String()); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", text.String(), got, want)
		}
	}
}

func TestES6NumberFormsAgreeWithPython(t *testing.T) {
	for _, n := range loadVectors(t).Numbers {
		bits, err := hex.DecodeString(n.IEEEHex)
		if err != nil {
			t.Fatal(err)
		}
		value := math.Float64frombits(binary.BigEndian.Uint64(bits))
		got, err := jcs.NumberToJSON(value)
		if err != nil || got != n.Canonical {
			t.Errorf("%s: got %q (%v), want %q", n.IEEEHex, got, err, n.Canonical)
		}
		if direct, err := appendNumber(nil, value); err != nil || string(direct) != n.Canonical {
			t.Errorf("%s: appendNumber wrote %q (%v), want %q", n.IEEEHex, direct, err, n.Canonical)
		}
	}
	// appendNumber's plain range and its edges, against jcs.NumberToJSON.
	r := rand.New(rand.NewPCG(6, 1e6))
	edges := []float64{1e-6, math.Nextafter(1e-6, 0), 1e21, math.Nextafter(1e21, 0), 0.1, 250.123456, 1e20 + 1}
	for i := range 200000 {
		value := math.Float64frombits(r.Uint64())
		switch {
		case i < len(edges):
			value = edges[i]
		case i%2 == 0:
			value = (r.Float64() - 0.5) * math.Pow(10, float64(r.IntN(30)-8))
		}
		if math.IsNaN(value) || math.IsInf(value, 0) {
			continue
		}
		want, _ := jcs.NumberToJSON(value)
		if got, err := appendNumber(nil, value); err != nil || string(got) != want {
			t.Fatalf("%v: appendNumber wrote %q (%v), want %q", value, got, err, want)
		}
	}
}

func TestMerkleRootOfNoLeavesAndOne(t *testing.T) {
	var tree merkle
	if got := tree.root(); hex.EncodeToString(got[:]) !=
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("empty root %x", got)
	}
	leaf := LeafHash([]byte("x"))
	tree.append(leaf)
	if tree.root() != leaf {
		t.Fatal("the root of one leaf is the leaf")
	}
}

func TestHeaderIsReadOnlyInItsCanonicalLayout(t *testing.T) {
	prev := strings.Repeat("ab", 32)
	good := `{"chain":{"id":"` + trailChain + `","logged":"0012","prev":"` + prev + `","seq":7,"v":1},"event":{}}`
	h, ok := canonicalHeader([]byte(good))
	if !ok || h.chainID != trailChain || h.loggedNs != 12 || h.seq != 7 || h.version != 1 || h.prev[0] != 0xab {
		t.Fatalf("%+v %v", h, ok)
	}
	if h, _ := canonicalHeader([]byte(strings.Replace(good, `"0012"`, `"99999999999999999999"`, 1))); h.loggedNs != math.MaxInt64 {
		t.Fatalf("a 20-digit time is clamped, got %d", h.loggedNs)
	}
	for _, bad := range []string{
		strings.Replace(good, `"seq":7`, `"seq":07`, 1),
		strings.Replace(good, `"seq":7`, `"seq":12345678901234567`, 1),
		strings.Replace(good, `"v":1`, `"v":0`, 1),
		strings.Replace(good, trailChain, strings.ToUpper(trailChain), 1),
		strings.Replace(good, `"logged":"0012"`, `"logged":"123456789012345678901"`, 1),
		strings.Replace(good, `,"event":{`, `,"event":[`, 1),
		good[:40],
	} {
		if _, ok := canonicalHeader([]byte(bad)); ok {
			t.Errorf("read a header from %s", bad)
		}
	}
}
