package auditprocessor

import (
	"fmt"
	"slices"
	"strings"
)

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

// The verdict values besides finding kinds (the `ai_audit.verdict` attribute).
const (
	verdictOK      = "ok"
	verdictPending = "pending"
)

// recordVerdict is what is known of a record as it passes: the kinds of the findings at its
// own seq, "pending" while it waits for its predecessor (whose link is checked later), else
// "ok". A finding that only a later record can reveal (the record altered, seen from its
// successor's link; a gap) is not in it: that goes to the metrics and the log.
func (v *verifier) recordVerdict(item recordItem, found []Finding) string {
	chainID, seq := item.chainID, int64(noSeq)
	if item.hasSeq {
		seq = item.seq
	}
	if item.valid {
		chainID, seq = item.header.chainID, item.header.seq
	}
	verdict := verdictOf(found, func(f Finding) bool { return f.ChainID == chainID && f.Seq == seq })
	if state, ok := v.chains[chainID]; ok && verdict == verdictOK {
		if _, held := state.pending[seq]; held && seq >= state.Next {
			return verdictPending
		}
	}
	return verdict
}

// verdictOf is the sorted, comma-separated kinds of the findings `about` selects, or "ok".
func verdictOf(found []Finding, about func(Finding) bool) string {
	var kinds []string
	for _, f := range found {
		if about(f) && !slices.Contains(kinds, f.Kind) {
			kinds = append(kinds, f.Kind)
		}
	}
	if len(kinds) == 0 {
		return verdictOK
	}
	slices.Sort(kinds)
	return strings.Join(kinds, ",")
}
