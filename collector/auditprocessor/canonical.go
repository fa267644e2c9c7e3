package auditprocessor

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
)

// Canonical returns the RFC 8785 (JCS) form of JSON text: the bytes the Python side hashes.
// It uses gowebpki/jcs, the Go port of the RFC's reference implementation; the shared vectors
// in tests/vectors/canonical.json hold it to the Python side byte for byte.
func Canonical(jsonText []byte) ([]byte, error) {
	return jcs.Transform(jsonText)
}

// appendCanonical appends the RFC 8785 form of a value built in Go to dst: the bytes
// Canonical(json.Marshal(value)) gives, without writing JSON text and parsing it again, which
// took two thirds of the gateway's time to seal a record. Values: map[string]any, []any,
// []string, string, bool, nil, int, int64 (within ±(2**53-1)) and float64 (finite). Invalid
// UTF-8 becomes U+FFFD, as json.Marshal makes it. The shared vectors hold it to Canonical.
func appendCanonical(dst []byte, value any) ([]byte, error) {
	switch v := value.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case string:
		return appendCanonicalString(dst, v), nil
	case int:
		return appendCanonical(dst, int64(v))
	case int64:
		if v > maxSafeInteger || v < -maxSafeInteger {
			return nil, fmt.Errorf("integer %d is beyond ±(2**53-1)", v)
		}
		return strconv.AppendInt(dst, v, 10), nil
	case float64:
		return appendNumber(dst, v)
	case []string:
		dst = append(dst, '[')
		for i, item := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonicalString(dst, item)
		}
		return append(dst, ']'), nil
	case []any:
		dst = append(dst, '[')
		for i, item := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendCanonical(dst, item); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case map[string]any:
		return appendCanonicalObject(dst, v)
	}
	return nil, fmt.Errorf("no JSON form for %T", value)
}

func appendCanonicalObject(dst []byte, object map[string]any) ([]byte, error) {
	type member struct {
		name  string
		value any
	}
	var small [16]member
	members := small[:0]
	for name, value := range object {
		members = append(members, member{validUTF8(name), value})
	}
	slices.SortFunc(members, func(a, b member) int { return compareUTF16(a.name, b.name) })
	dst = append(dst, '{')
	for i, m := range members {
		if i > 0 {
			if m.name == members[i-1].name {
				return nil, fmt.Errorf("two keys read %q once invalid UTF-8 is replaced", m.name)
			}
			dst = append(dst, ',')
		}
		dst = append(appendCanonicalString(dst, m.name), ':')
		var err error
		if dst, err = appendCanonical(dst, m.value); err != nil {
			return nil, err
		}
	}
	return append(dst, '}'), nil
}

// appendNumber writes a finite double as RFC 8785 does (ECMAScript's Number.toString, as
// jcs.NumberToJSON writes it): in its range of plain decimal notation, 1e-6 <= |f| < 1e21,
// that is Go's shortest round-trip 'f' form, written here without a string per number.
func appendNumber(dst []byte, f float64) ([]byte, error) {
	if f == 0 {
		return append(dst, '0'), nil // also -0
	}
	if abs := math.Abs(f); abs >= 1e-6 && abs < 1e21 {
		return strconv.AppendFloat(dst, f, 'f', -1, 64), nil
	}
	text, err := jcs.NumberToJSON(f)
	return append(dst, text...), err
}

// appendCanonicalString writes a string as RFC 8785 does (ECMAScript JSON.stringify): the
// two-character escapes, other control characters as \u00xx, everything else as it is. Runs
// that need no escape are copied whole, and read 8 bytes at a time while they are plain ASCII
// (text that holds JSON, as GenAI content does, has a quote every few bytes: then one by one).
func appendCanonicalString(dst []byte, text string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(text); {
		for i+8 <= len(text) && plainASCII8(text[i:i+8]) {
			i += 8
		}
		for i < len(text) && plainASCII[text[i]] {
			i++
		}
		if i == len(text) {
			break
		}
		c := text[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(text[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(append(dst, text[start:i]...), "\uFFFD"...)
				start = i + 1
			}
			i += size
			continue
		}
		dst = append(dst, text[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		}
		i++
		start = i
	}
	return append(append(dst, text[start:]...), '"')
}

// plainASCII marks the bytes written as they are: printable ASCII but '"' and '\\'.
var plainASCII = func() (table [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		table[c] = c != '"' && c != '\\'
	}
	return table
}()

// plainASCII8 is false when one of the 8 bytes may need a look: a control character, '"',
// '\\' or a byte of a non-ASCII character. (Each term sets a byte's high bit for at least
// those bytes; a false alarm only sends the bytes through the byte-by-byte path.)
func plainASCII8(text string) bool {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	x := uint64(text[0]) | uint64(text[1])<<8 | uint64(text[2])<<16 | uint64(text[3])<<24 |
		uint64(text[4])<<32 | uint64(text[5])<<40 | uint64(text[6])<<48 | uint64(text[7])<<56
	return (x|(x-0x20*ones)|((x^'"'*ones)-ones)|((x^'\\'*ones)-ones))&high == 0
}

// validUTF8 is text with each invalid byte replaced by U+FFFD (json.Marshal's rule).
func validUTF8(text string) string {
	if utf8.ValidString(text) {
		return text
	}
	out := make([]byte, 0, len(text)+8)
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if r == utf8.RuneError && size == 1 {
			out = append(out, "\uFFFD"...)
		} else {
			out = append(out, text[i:i+size]...)
		}
		i += size
	}
	return string(out)
}

// compareUTF16 orders valid UTF-8 strings by their UTF-16 code units, RFC 8785's key order.
// That is the byte order, except between U+E000..U+FFFF (lead bytes 0xEE, 0xEF) and
// characters beyond U+FFFF (lead bytes 0xF0..0xF4), which UTF-16 writes with surrogates
// (0xD800..0xDFFF) and so sorts first.
func compareUTF16(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	if i == len(a) || i == len(b) {
		return len(a) - len(b)
	}
	ca, cb := a[i], b[i]
	if ca >= 0xEE && cb >= 0xEE && (ca >= 0xF0) != (cb >= 0xF0) {
		return int(cb) - int(ca) // the character beyond U+FFFF first
	}
	return int(ca) - int(cb)
}

// LeafHash is the RFC 9162 leaf hash of a record's canonical bytes: SHA-256(0x00 || data).
func LeafHash(data []byte) [32]byte {
	var h leafHasher
	return h.sum(data)
}

var leafPrefix = []byte{0}

// leafHasher is LeafHash with a SHA-256 hasher and a sum buffer reused from one record to
// the next.
type leafHasher struct {
	h   hash.Hash
	out []byte
}

func (l *leafHasher) sum(data []byte) [32]byte {
	if l.h == nil {
		l.h = sha256.New()
	}
	l.h.Reset()
	l.h.Write(leafPrefix)
	l.h.Write(data)
	l.out = l.h.Sum(l.out[:0])
	return [32]byte(l.out)
}

func nodeHash(left, right [32]byte) [32]byte {
	var node [65]byte
	node[0] = 1
	copy(node[1:33], left[:])
	copy(node[33:], right[:])
	return sha256.Sum256(node[:])
}

// merkle is the RFC 9162 root of a growing list of leaves in O(log n) memory (the roots of
// the perfect subtrees the leaves decompose into), as otel_ai_audit/integrity/merkle.py keeps it.
type merkle struct {
	Size  int64      `json:"size"`
	Stack [][32]byte `json:"stack"`
}

func (m *merkle) append(leaf [32]byte) {
	m.Size++
	node := leaf
	for count := m.Size; count%2 == 0; count /= 2 {
		node = nodeHash(m.Stack[len(m.Stack)-1], node)
		m.Stack = m.Stack[:len(m.Stack)-1]
	}
	m.Stack = append(m.Stack, node)
}

func (m *merkle) root() [32]byte {
	if len(m.Stack) == 0 {
		return sha256.Sum256(nil)
	}
	node := m.Stack[len(m.Stack)-1]
	for i := len(m.Stack) - 2; i >= 0; i-- {
		node = nodeHash(m.Stack[i], node)
	}
	return node
}

// copyFrom makes m a copy of other, reusing m's memory (once per record verified).
func (m *merkle) copyFrom(other *merkle) {
	m.Size, m.Stack = other.Size, append(m.Stack[:0], other.Stack...)
}

func (m *merkle) clone() merkle {
	return merkle{Size: m.Size, Stack: append([][32]byte(nil), m.Stack...)}
}
