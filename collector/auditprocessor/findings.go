package auditprocessor

import "fmt"

// The finding kinds the in-flight checks can report: the values of `otel-ai-audit verify`'s
// Kind (otel_ai_audit/verify/findings.py), so one alert rule or dashboard covers both.
const (
	kindRecordModified        = "record_modified"
	kindNoncanonical          = "noncanonical"
	kindMalformedRecord       = "malformed_record"
	kindGap                   = "gap"
	kindInserted              = "inserted"
	kindDuplicate             = "duplicate"
	kindIndexMismatch         = "index_mismatch"
	kindTimestampBackwards    = "timestamp_backwards"
	kindRecordAfterClose      = "record_after_close"
	kindCheckpointMismatch    = "checkpoint_mismatch"
	kindBadSignature          = "bad_signature"
	kindUntrustedKey          = "untrusted_key"
	kindSelfAssertedKey       = "self_asserted_key"
	kindUnknownKey            = "unknown_key"
	kindCheckpointChainBroken = "checkpoint_chain_broken"
	kindMalformedCheckpoint   = "malformed_checkpoint"
	kindFork                  = "fork"
	kindUnsupportedVersion    = "unsupported_version"
)

// noSeq marks a finding about a chain, not one record.
const noSeq = -1

// Finding is one thing the processor found, where it found it.
type Finding struct {
	ChainID string
	Seq     int64
	Kind    string
	Detail  string
}

// String is the line `otel-ai-audit verify` prints for the same finding.
func (f Finding) String() string {
	where := "store"
	if f.ChainID != "" {
		where = "chain " + f.ChainID
	}
	if f.Seq != noSeq {
		where += fmt.Sprintf(" seq %d", f.Seq)
	}
	return fmt.Sprintf("%s: %s: %s", where, f.Kind, f.Detail)
}
