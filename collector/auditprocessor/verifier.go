package auditprocessor

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"sort"
	"time"
)

// genesis is the prev of the first record of every chain.
var genesis [32]byte

const (
	reserialised = "record was re-serialised: its bytes are not the canonical form that was hashed"
	modified     = "record differs from what the chain committed to"
)

// recordItem is one audit record as it travels: the span's (or log record's) position
// attributes, the record's exact bytes and their chain header (valid: the bytes are a record).
type recordItem struct {
	chainID string
	seq     int64
	hasSeq  bool
	data    []byte
	header  header
	valid   bool
}

// newRecordItem reads the record's header once, for its check and its verdict.
func newRecordItem(chainID string, seq int64, hasSeq bool, data []byte) recordItem {
	item := recordItem{chainID: chainID, seq: seq, hasSeq: hasSeq, data: data}
	item.header, item.valid = parseHeader(data)
	return item
}

// checkpointItem is one signed checkpoint as it travels.
type checkpointItem struct {
	chainID   string
	index     int64
	size      int64
	keyID     string
	payload   []byte
	signature []byte
}

// pendingRecord is a record that arrived ahead of its predecessor, held until the
// predecessor arrives or gapTimeout passes.
type pendingRecord struct {
	data    []byte
	leaf    [32]byte
	header  header
	arrived time.Time
}

// chainState is what the processor keeps of one chain between records. The exported fields
// are the state a restart needs (see stateStore); the rest is rebuilt as records arrive.
type chainState struct {
	Started     bool     `json:"started"`
	Next        int64    `json:"next"`
	Head        [32]byte `json:"head"`
	HaveHead    bool     `json:"have_head"`
	LastLogged  int64    `json:"last_logged"`
	Tree        merkle   `json:"tree"`
	TreeValid   bool     `json:"tree_valid"`
	NextIndex   int64    `json:"next_index"`
	SeenIndex   bool     `json:"seen_index"`
	LastIndex   int64    `json:"last_index"`
	LastPayload string   `json:"last_payload"`
	LastIssued  int64    `json:"last_issued"`
	LastSize    int64    `json:"last_size"`
	LastGood    int64    `json:"last_good"` // size of the last checkpoint the records matched
	Rewritten   int64    `json:"rewritten"` // size of the last checkpoint they did not match
	Closed      bool     `json:"closed"`
	ClosedAt    int64    `json:"closed_at"`
	// FollowsRejected: the last checkpoint was rejected (already a finding), so the next
	// one's link to it is not checked: one edited checkpoint is one finding.
	FollowsRejected bool `json:"follows_rejected"`

	before   merkle
	lastData []byte
	recent   map[int64][32]byte
	pending  map[int64]pendingRecord
	waiting  []checkpoint
	sent     map[string]struct{}
}

// verifier checks the records and checkpoints of every chain it sees, in flight. Not safe
// for concurrent use: the processor serialises calls.
type verifier struct {
	trusted           map[string]ed25519.PublicKey
	announced         map[string]ed25519.PublicKey
	allowSelfAsserted bool
	window            int64
	gapTimeout        time.Duration
	chains            map[string]*chainState
	touched           map[string]struct{}
	verified          int64
	lag               time.Duration
}

func newVerifier(trusted map[string]ed25519.PublicKey, allowSelfAsserted bool, window int64,
	gapTimeout time.Duration) *verifier {
	return &verifier{trusted: trusted, announced: map[string]ed25519.PublicKey{},
		allowSelfAsserted: allowSelfAsserted, window: window, gapTimeout: gapTimeout,
		chains: map[string]*chainState{}, touched: map[string]struct{}{}}
}

// chainsOpen counts the chains seen without a closing checkpoint.
func (v *verifier) chainsOpen() int64 {
	var open int64
	for _, state := range v.chains {
		if !state.Closed {
			open++
		}
	}
	return open
}

func (v *verifier) chain(id string) *chainState {
	state, ok := v.chains[id]
	if !ok {
		state = &chainState{}
		v.chains[id] = state
	}
	v.touched[id] = struct{}{}
	if state.recent == nil {
		state.recent = map[int64][32]byte{}
		state.pending = map[int64]pendingRecord{}
		state.sent = map[string]struct{}{}
	}
	return state
}

// key announces a public key that travelled with the trail (self-asserted, not trusted).
func (v *verifier) key(text string) {
	keys, err := parsePublicKeys([]byte(text))
	if err != nil {
		return
	}
	for id, key := range keys {
		v.announced[id] = key
	}
}

// record checks one record and returns what it found.
func (v *verifier) record(item recordItem, now time.Time) []Finding {
	h := item.header
	if !item.valid {
		seq := int64(noSeq)
		if item.hasSeq {
			seq = item.seq
		}
		return []Finding{{item.chainID, seq, kindMalformedRecord, "stored bytes are not an audit record"}}
	}
	var found []Finding
	if (item.chainID != "" && item.chainID != h.chainID) || (item.hasSeq && item.seq != h.seq) {
		found = append(found, Finding{h.chainID, h.seq, kindIndexMismatch, fmt.Sprintf(
			"the record travels as %s:%d, its own bytes say %s:%d",
			item.chainID, item.seq, h.chainID, h.seq)})
	}
	if h.version > schemaVersion {
		return append(found, Finding{h.chainID, h.seq, kindUnsupportedVersion,
			fmt.Sprintf("record schema is newer than version %d", schemaVersion)})
	}
	state := v.chain(h.chainID)
	if !state.Started {
		// A chain first seen past its start (the processor started mid-stream) is joined
		// where it is: nothing before it can be checked, the Merkle root neither.
		state.Started, state.Next, state.TreeValid = true, h.seq, h.seq == 0
	}
	leaf := LeafHash(item.data)
	switch {
	case h.seq < state.Next:
		return append(found, v.repeat(h, leaf, state.recent)...)
	case h.seq > state.Next:
		if held, ok := state.pending[h.seq]; ok {
			return append(found, v.repeat(h, leaf, map[int64][32]byte{h.seq: held.leaf})...)
		}
		state.pending[h.seq] = pendingRecord{item.data, leaf, h, now}
		return found
	}
	found = append(found, v.accept(state, h, item.data, leaf, now)...)
	return append(found, v.drain(state, now)...)
}

// repeat judges a record whose seq was already seen: the same bytes are a duplicate, other
// bytes a record that is not linked into the chain. Outside the window nothing is known.
func (v *verifier) repeat(h header, leaf [32]byte, known map[int64][32]byte) []Finding {
	seen, ok := known[h.seq]
	switch {
	case !ok:
		return nil
	case seen == leaf:
		return []Finding{{h.chainID, h.seq, kindDuplicate,
			fmt.Sprintf("record seq %d arrived again (replay)", h.seq)}}
	default:
		return []Finding{{h.chainID, h.seq, kindInserted,
			fmt.Sprintf("a record not linked into the chain claims seq %d", h.seq)}}
	}
}

// accept checks the record that comes next in its chain and moves the chain on.
func (v *verifier) accept(state *chainState, h header, data []byte, leaf [32]byte, now time.Time) []Finding {
	var found []Finding
	switch {
	case h.seq == 0 && h.prev != genesis:
		found = append(found, Finding{h.chainID, 0, kindRecordModified, modified})
	case state.HaveHead && h.prev != state.Head:
		// The successor's link commits to the predecessor's original bytes: the
		// predecessor is what changed (verify's blame, links.py _blame).
		found = append(found, blame(h.chainID, h.seq-1, state.lastData))
		state.restore(h.seq-1, h.prev)
	case state.HaveHead && h.loggedNs < state.LastLogged:
		found = append(found, Finding{h.chainID, h.seq, kindTimestampBackwards,
			"record was logged earlier than its predecessor"})
	}
	if state.Closed && h.seq >= state.ClosedAt {
		found = append(found, Finding{h.chainID, state.ClosedAt, kindRecordAfterClose,
			fmt.Sprintf("%d record(s) after the closing checkpoint (size %d)",
				h.seq-state.ClosedAt+1, state.ClosedAt)})
	}
	state.Head, state.HaveHead, state.LastLogged, state.lastData = leaf, true, h.loggedNs, data
	if state.TreeValid {
		state.before.copyFrom(&state.Tree)
		state.Tree.append(leaf)
	}
	state.recent[h.seq] = leaf
	delete(state.recent, h.seq-v.window)
	state.Next = h.seq + 1
	v.verified++
	v.lag = now.Sub(time.Unix(0, h.loggedNs))
	return append(found, v.commitments(state)...)
}

// blame names a record whose bytes no longer hash to what the chain committed to:
// NONCANONICAL when they only changed their serialisation, RECORD_MODIFIED otherwise.
func blame(chainID string, seq int64, data []byte) Finding {
	if data != nil {
		if canonical, err := Canonical(data); err == nil && !bytes.Equal(canonical, data) {
			return Finding{chainID, seq, kindNoncanonical, reserialised}
		}
	}
	return Finding{chainID, seq, kindRecordModified, modified}
}

// restore puts the leaf the chain committed to in place of the last record's altered one,
// so that one altered record is one finding: later links and roots are checked against the
// history that was signed, and a second change is still seen.
func (state *chainState) restore(seq int64, committed [32]byte) {
	state.Head = committed
	state.recent[seq] = committed
	if state.TreeValid && state.Tree.Size == seq+1 {
		state.Tree = state.before.clone()
		state.Tree.append(committed)
	}
}

// reject notes a checkpoint that did not verify: it keeps its place in the numbering.
func (state *chainState) reject(index int64) {
	if state.SeenIndex || index == 0 {
		state.SeenIndex, state.NextIndex = true, index+1
	}
	state.FollowsRejected = true
}

// drain accepts the held records that now come next.
func (v *verifier) drain(state *chainState, now time.Time) []Finding {
	var found []Finding
	for {
		held, ok := state.pending[state.Next]
		if !ok {
			return found
		}
		delete(state.pending, state.Next)
		found = append(found, v.accept(state, held.header, held.data, held.leaf, now)...)
	}
}

// expire reports GAP for records still missing gapTimeout after a successor arrived, and
// goes on from the successors.
func (v *verifier) expire(now time.Time) []Finding {
	var found []Finding
	for id, state := range v.chains {
		if len(state.pending) == 0 {
			continue
		}
		oldest, first := now, int64(-1)
		for seq, held := range state.pending {
			if held.arrived.Before(oldest) {
				oldest = held.arrived
			}
			if first < 0 || seq < first {
				first = seq
			}
		}
		if now.Sub(oldest) < v.gapTimeout && int64(len(state.pending)) < v.window {
			continue
		}
		span := fmt.Sprint(state.Next)
		if first-state.Next > 1 {
			span = fmt.Sprintf("%d..%d", state.Next, first-1)
		}
		v.touched[id] = struct{}{}
		found = append(found, Finding{id, state.Next, kindGap, fmt.Sprintf("record(s) %s are missing", span)})
		// The missing records' leaves are unknown: no link into `first`, no Merkle root.
		state.Next, state.HaveHead, state.TreeValid = first, false, false
		found = append(found, v.drain(state, now)...)
	}
	sortFindings(found)
	return found
}

func sortFindings(found []Finding) {
	sort.SliceStable(found, func(i, j int) bool {
		if found[i].ChainID != found[j].ChainID {
			return found[i].ChainID < found[j].ChainID
		}
		return found[i].Seq < found[j].Seq
	})
}

// checkpoint checks one signed checkpoint: its form, signature, signer's trust, its place
// in the checkpoint chain, and (once the records are in) the head and Merkle root it signs.
func (v *verifier) checkpoint(item checkpointItem) []Finding {
	c, err := parseCheckpoint(item.payload)
	if err != nil {
		if state, ok := v.chains[item.chainID]; ok {
			state.reject(item.index)
		}
		return []Finding{{item.chainID, noSeq, kindMalformedCheckpoint, fmt.Sprintf("checkpoint %d: %v", item.index, err)}}
	}
	where := max(c.Size-1, 0)
	state := v.chain(c.ChainID)
	if _, seen := state.sent[string(item.signature)]; seen {
		return []Finding{{c.ChainID, where, kindDuplicate, fmt.Sprintf("checkpoint %d arrived again (replay)", c.Index)}}
	}
	var found []Finding
	if c.ChainID != item.chainID || c.Index != item.index || c.Size != item.size || c.KeyID != item.keyID {
		found = append(found, Finding{c.ChainID, where, kindMalformedCheckpoint, fmt.Sprintf(
			"checkpoint %d: stored index fields disagree with its signed payload", item.index)})
	}
	key, trusted := v.trusted[c.KeyID]
	if !trusted {
		key = v.announced[c.KeyID]
	}
	if key == nil {
		state.reject(c.Index)
		return append(found, Finding{c.ChainID, where, kindUnknownKey, fmt.Sprintf(
			"checkpoint %d is signed by key %s, which is known nowhere", c.Index, c.KeyID)})
	}
	short := c.KeyID[:min(16, len(c.KeyID))]
	if !signatureValid(key, item.payload, item.signature) {
		state.reject(c.Index)
		return append(found, Finding{c.ChainID, where, kindBadSignature, fmt.Sprintf(
			"checkpoint %d: signature does not verify with key %s: edited or forged", c.Index, short)})
	}
	state.sent[string(item.signature)] = struct{}{}
	switch {
	case trusted:
	case len(v.trusted) > 0:
		found = append(found, Finding{c.ChainID, where, kindUntrustedKey, fmt.Sprintf(
			"checkpoint %d is signed by key %s, not one you trust", c.Index, short)})
	case !v.allowSelfAsserted:
		found = append(found, Finding{c.ChainID, where, kindSelfAssertedKey, fmt.Sprintf(
			"checkpoint %d is signed by key %s, vouched for only by the store", c.Index, short)})
	}
	found = append(found, v.link(state, c, item.payload, where)...)
	state.waiting = append(state.waiting, c)
	return append(found, v.commitments(state)...)
}

// link checks a checkpoint's place after the last one that verified (LastIndex), as
// checkpoints.py _check_link does.
func (v *verifier) link(state *chainState, c checkpoint, payload []byte, where int64) []Finding {
	var found []Finding
	if state.SeenIndex {
		if c.Index != state.NextIndex {
			found = append(found, Finding{c.ChainID, where, kindCheckpointChainBroken, fmt.Sprintf(
				"checkpoint %d is missing (found %d in its place)", state.NextIndex, c.Index)})
		} else if c.PrevCheckpoint != state.LastPayload && !state.FollowsRejected {
			found = append(found, Finding{c.ChainID, where, kindCheckpointChainBroken, fmt.Sprintf(
				"checkpoint %d does not link to checkpoint %d", c.Index, c.Index-1)})
		}
		if c.issuedAtNs < state.LastIssued {
			found = append(found, Finding{c.ChainID, where, kindTimestampBackwards, fmt.Sprintf(
				"checkpoint %d was issued before checkpoint %d", c.Index, state.LastIndex)})
		}
		if state.Closed {
			found = append(found, Finding{c.ChainID, where, kindRecordAfterClose, fmt.Sprintf(
				"checkpoint %d follows the closing checkpoint %d", c.Index, state.LastIndex)})
		}
		if c.Size < state.LastSize {
			found = append(found, Finding{c.ChainID, where, kindFork, fmt.Sprintf(
				"checkpoint %d (size %d) is smaller than checkpoint %d (size %d)",
				c.Index, c.Size, state.LastIndex, state.LastSize)})
		}
	} else if c.Index == 0 && c.PrevCheckpoint != "" && !state.FollowsRejected {
		found = append(found, Finding{c.ChainID, where, kindCheckpointChainBroken, fmt.Sprintf(
			"checkpoint %d links to a predecessor that is missing", c.Index)})
	}
	state.SeenIndex, state.NextIndex, state.LastPayload = true, c.Index+1, payloadHash(payload)
	state.FollowsRejected = false
	state.LastIndex, state.LastIssued, state.LastSize = c.Index, c.issuedAtNs, c.Size
	if c.Closed && !state.Closed {
		state.Closed, state.ClosedAt = true, c.Size
	}
	return found
}

// commitments checks the waiting checkpoints whose size the chain has reached: the head
// against the last record's leaf, the root against the Merkle tree of the records.
func (v *verifier) commitments(state *chainState) []Finding {
	var found []Finding
	kept := state.waiting[:0]
	for _, c := range state.waiting {
		if c.Size > state.Next {
			kept = append(kept, c)
			continue
		}
		if c.Size == 0 {
			continue
		}
		leaf, known := state.recent[c.Size-1]
		head := hex.EncodeToString(leaf[:])
		switch {
		case !known:
		case !state.TreeValid || state.Tree.Size != c.Size:
			if head != c.Head {
				found = append(found, blame(c.ChainID, c.Size-1, nil))
				signed, err := hex.DecodeString(c.Head)
				if c.Size == state.Next && err == nil && len(signed) == 32 {
					state.restore(c.Size-1, [32]byte(signed))
				}
			}
		default:
			root := state.Tree.root()
			if head == c.Head && hex.EncodeToString(root[:]) == c.Root {
				state.LastGood = c.Size
				continue
			}
			if head != c.Head {
				// The root with the signed head in the last place: only the last record changed.
				if signed, err := hex.DecodeString(c.Head); err == nil && len(signed) == 32 {
					tree := state.before.clone()
					tree.append([32]byte(signed))
					if other := tree.root(); hex.EncodeToString(other[:]) == c.Root {
						found = append(found, blame(c.ChainID, c.Size-1, state.lastData))
						state.restore(c.Size-1, [32]byte(signed))
						continue
					}
				}
			}
			if state.Rewritten > state.LastGood {
				continue // the rewrite that reaches past LastGood is already a finding
			}
			state.Rewritten = c.Size
			found = append(found, Finding{c.ChainID, c.Size - 1, kindCheckpointMismatch, fmt.Sprintf(
				"records %d..%d do not hash to the head and Merkle root that checkpoint %d signed: "+
					"the chain was rewritten after signing", state.LastGood, c.Size-1, c.Index)})
		}
	}
	state.waiting = kept
	return found
}
