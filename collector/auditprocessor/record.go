package auditprocessor

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"strconv"
)

// schemaVersion is the record schema this verifier reads (otel_ai_audit/record/schema.py).
const schemaVersion = 1

// The canonical prefix of every record (schema.py HEADER_PATTERN): RFC 8785 sorts "chain"
// before "event", so chain id, logged time, prev and seq are read without parsing the whole
// record. Read by hand: a regular expression costs a third of the processor's time.
const (
	prefixID     = `{"chain":{"id":"`
	prefixLogged = `","logged":"`
	prefixPrev   = `","prev":"`
	prefixSeq    = `","seq":`
	prefixV      = `,"v":`
	prefixEvent  = `},"event":{`
)

// header is the chain fields of a record's canonical bytes.
type header struct {
	chainID  string
	loggedNs int64
	prev     [32]byte
	seq      int64
	version  int
}

// maxSafeInteger is the I-JSON integer limit, 2**53-1.
const maxSafeInteger = 1<<53 - 1

// parseHeader reads the chain header; ok is false when the bytes are not a record.
func parseHeader(data []byte) (header, bool) {
	if h, ok := canonicalHeader(data); ok {
		return h, true
	}
	return fallbackHeader(data)
}

// canonicalHeader reads the header in its canonical layout (schema.py HEADER_PATTERN).
func canonicalHeader(data []byte) (header, bool) {
	var h header
	rest, ok := cut(data, prefixID)
	if !ok || len(rest) < 32 || !lowerHex(rest[:32]) {
		return h, false
	}
	h.chainID, rest = string(rest[:32]), rest[32:]
	if rest, ok = cut(rest, prefixLogged); !ok {
		return h, false
	}
	logged, rest, ok := digits(rest, 20, true)
	if !ok {
		return h, false
	}
	// Clamped as the Python reader does: a forged 20-digit time is reported, not rejected.
	h.loggedNs = int64(min(logged, math.MaxInt64))
	if rest, ok = cut(rest, prefixPrev); !ok || len(rest) < 64 || !lowerHex(rest[:64]) {
		return h, false
	}
	_, _ = hex.Decode(h.prev[:], rest[:64])
	if rest, ok = cut(rest[64:], prefixSeq); !ok {
		return h, false
	}
	seq, rest, ok := digits(rest, 16, false)
	if !ok {
		return h, false
	}
	h.seq = int64(seq)
	if rest, ok = cut(rest, prefixV); !ok {
		return h, false
	}
	version, rest, ok := digits(rest, 4, false)
	if !ok || version == 0 {
		return h, false
	}
	h.version = int(version)
	_, ok = cut(rest, prefixEvent)
	return h, ok
}

func cut(data []byte, prefix string) ([]byte, bool) {
	if len(data) < len(prefix) || string(data[:len(prefix)]) != prefix {
		return nil, false
	}
	return data[len(prefix):], true
}

// lowerHexDigit marks the bytes 0-9 and a-f: a table, since the header's 96 hex digits are
// checked for every record.
var lowerHexDigit = func() (table [256]bool) {
	for _, c := range []byte("0123456789abcdef") {
		table[c] = true
	}
	return table
}()

func lowerHex(text []byte) bool {
	for _, c := range text {
		if !lowerHexDigit[c] {
			return false
		}
	}
	return true
}

// digits reads 1 to `most` decimal digits; without `leadingZeros`, a number other than 0
// cannot start with 0 (the JSON number form).
func digits(text []byte, most int, leadingZeros bool) (uint64, []byte, bool) {
	n := 0
	for n < len(text) && n <= most && text[n] >= '0' && text[n] <= '9' {
		n++
	}
	if n == 0 || n > most || (!leadingZeros && n > 1 && text[0] == '0') {
		return 0, nil, false
	}
	var value uint64
	for _, c := range text[:n] {
		if value > (math.MaxUint64-9)/10 {
			value = math.MaxUint64 // saturates: 20 digits can exceed 64 bits
			break
		}
		value = value*10 + uint64(c-'0')
	}
	return value, text[n:], true
}

// fallbackHeader reads the header of a record whose bytes are JSON but not in canonical form
// (reading.py _fallback_header): such a record still has its place in the chain, and the
// link after it tells that it was re-serialised.
func fallbackHeader(data []byte) (header, bool) {
	var record struct {
		Chain *struct {
			ID     any         `json:"id"`
			Logged json.Number `json:"logged"`
			Prev   string      `json:"prev"`
			Seq    json.Number `json:"seq"`
		} `json:"chain"`
		Event map[string]any `json:"event"`
	}
	if err := json.Unmarshal(data, &record); err != nil || record.Chain == nil || record.Event == nil {
		return header{}, false
	}
	prev, err := hex.DecodeString(record.Chain.Prev)
	seq, seqErr := strconv.ParseInt(string(record.Chain.Seq), 10, 64)
	logged, loggedErr := strconv.ParseInt(string(record.Chain.Logged), 10, 64)
	id, isString := record.Chain.ID.(string)
	if err != nil || len(prev) != 32 || seqErr != nil || seq < 0 || seq > maxSafeInteger ||
		loggedErr != nil || !isString {
		return header{}, false
	}
	return header{chainID: id, loggedNs: max(logged, 0), prev: [32]byte(prev), seq: seq,
		version: schemaVersion}, true
}
