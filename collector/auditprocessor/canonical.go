package auditprocessor

import (
	"crypto/sha256"

	"github.com/gowebpki/jcs"
)

// Canonical returns the RFC 8785 (JCS) form of JSON text: the bytes the Python side hashes.
// It uses gowebpki/jcs, the Go port of the RFC's reference implementation; the shared vectors
// in tests/vectors/canonical.json hold it to the Python side byte for byte.
func Canonical(jsonText []byte) ([]byte, error) {
	return jcs.Transform(jsonText)
}

// LeafHash is the RFC 9162 leaf hash of a record's canonical bytes: SHA-256(0x00 || data).
func LeafHash(data []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func nodeHash(left, right [32]byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{1})
	h.Write(left[:])
	h.Write(right[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
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

func (m *merkle) clone() merkle {
	return merkle{Size: m.Size, Stack: append([][32]byte(nil), m.Stack...)}
}
