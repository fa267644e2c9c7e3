package auditprocessor

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// attrSeal carries an attached record's seal on the chained span or log record itself
// (chain.records: attached): what a verifier needs, beside the item, to rebuild the record's
// canonical bytes.
const attrSeal = "ai_audit.seal"

// sealVersion is the seal format's first byte.
const sealVersion = 1

// Content policies as a seal writes them (one byte).
const (
	policyHash = 'h'
	policyFull = 'f'
	policyNone = 'n'
)

// The content an event captures, in the seal's flag bit order and HMAC order.
const (
	contentInput = iota
	contentOutput
	contentBody
	contentKinds
)

// seal is what an attached record adds to its item:
//
//	byte 0         format version, 1
//	bytes 1..16    chain id (raw; its text is their lower-case hex)
//	uvarint        seq
//	uvarint        logged (ns since the Unix epoch)
//	32 bytes       prev (the previous record's leaf hash)
//	1 byte         content policy: 'h', 'f' or 'n'
//	1 byte         flags: bit0 input, bit1 output, bit2 body present
//	32 bytes each  policy 'h' only: HMAC-SHA256 of input, output, body, for each flag set
//
// The flags keep a hash-policy seal verifiable when a later processor removes the content
// attributes; macs is indexed by contentInput/contentOutput/contentBody.
type seal struct {
	chainID  [16]byte
	seq      int64
	loggedNs int64
	prev     [32]byte
	policy   byte
	flags    byte
	macs     [contentKinds][32]byte
}

func (s *seal) has(kind int) bool { return s.flags&(1<<kind) != 0 }

// appendTo writes the seal's bytes.
func (s *seal) appendTo(dst []byte) []byte {
	dst = append(dst, sealVersion)
	dst = append(dst, s.chainID[:]...)
	dst = binary.AppendUvarint(dst, uint64(s.seq))
	dst = binary.AppendUvarint(dst, uint64(s.loggedNs))
	dst = append(dst, s.prev[:]...)
	dst = append(dst, s.policy, s.flags)
	if s.policy == policyHash {
		for kind := range contentKinds {
			if s.has(kind) {
				dst = append(dst, s.macs[kind][:]...)
			}
		}
	}
	return dst
}

var errShortSeal = errors.New("ends early")

// parseSeal reads a seal's bytes; anything else (another version, unknown policy or flags,
// a seq beyond 2**53-1, trailing bytes) is an error.
func parseSeal(data []byte) (seal, error) {
	var s seal
	if len(data) < 1+16 {
		return s, errShortSeal
	}
	if data[0] != sealVersion {
		return s, fmt.Errorf("format version %d, not %d", data[0], sealVersion)
	}
	copy(s.chainID[:], data[1:17])
	rest := data[17:]
	seq, n := binary.Uvarint(rest)
	if n <= 0 || seq > maxSafeInteger {
		return s, errors.New("unreadable seq")
	}
	rest = rest[n:]
	logged, n := binary.Uvarint(rest)
	if n <= 0 || logged > math.MaxInt64 {
		return s, errors.New("unreadable logged time")
	}
	rest = rest[n:]
	if len(rest) < 32+2 {
		return s, errShortSeal
	}
	s.seq, s.loggedNs = int64(seq), int64(logged)
	copy(s.prev[:], rest[:32])
	s.policy, s.flags, rest = rest[32], rest[33], rest[34:]
	if s.flags >= 1<<contentKinds {
		return s, fmt.Errorf("unknown flags %#x", s.flags)
	}
	switch s.policy {
	case policyHash:
		for kind := range contentKinds {
			if s.has(kind) {
				if len(rest) < 32 {
					return s, errShortSeal
				}
				copy(s.macs[kind][:], rest[:32])
				rest = rest[32:]
			}
		}
	case policyFull, policyNone:
	default:
		return s, fmt.Errorf("unknown content policy %q", s.policy)
	}
	if len(rest) > 0 {
		return s, fmt.Errorf("%d bytes after its end", len(rest))
	}
	return s, nil
}

// sealOf is an item's seal bytes, if it has any.
func sealOf(attributes pcommon.Map) ([]byte, bool) {
	value, ok := attributes.Get(attrSeal)
	if !ok || value.Type() != pcommon.ValueTypeBytes {
		return nil, ok
	}
	return value.Bytes().AsRaw(), true
}

// appendEventID writes the event id derived from the seal, a UUIDv7 (RFC 9562) as 32 hex
// digits: the Unix milliseconds of `logged`, then chain id bytes and the seq, so a verifier
// rebuilds it and no two records of a chain share it.
func (s *seal) appendEventID(dst []byte) []byte {
	var id [16]byte
	ms := uint64(s.loggedNs / 1e6)
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	id[6] = 0x70 | s.chainID[0]&0x0f
	id[7] = s.chainID[1]
	id[8] = 0x80 | s.chainID[2]&0x3f
	copy(id[9:12], s.chainID[3:6])
	binary.BigEndian.PutUint32(id[12:], uint32(s.seq))
	return hex.AppendEncode(dst, id[:])
}

// rebuild is the record an attached seal stands for: its chain id, seq and canonical bytes,
// written into new memory (a verifier keeps them).
func (w *eventWriter) rebuild(item *telemetryItem, sealData []byte) (string, int64, []byte, error) {
	s, err := parseSeal(sealData)
	if err != nil {
		return "", 0, nil, err
	}
	chainID := hex.EncodeToString(s.chainID[:])
	data := appendRecordHeader(make([]byte, 0, 1536), chainID, s.loggedNs, &s.prev, s.seq)
	w.scan(item)
	data, _, err = w.appendEvent(data, item, &s)
	return chainID, s.seq, append(data, '}'), err
}
