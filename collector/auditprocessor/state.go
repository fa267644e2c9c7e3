package auditprocessor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
)

// chainsKey lists the chain ids whose state is stored, each under chainKey(id).
const chainsKey = "chains"

func chainKey(id string) string { return "chain:" + id }

// gatewayChainKey holds the id of the last gateway chain that got records (chaining at the
// gateway): the chain the next start's chain_open names as its parent.
const gatewayChainKey = "gateway_chain"

// savedChain is what a restart needs of a chain: its position, head, Merkle tree and
// checkpoint chain (chainState's exported fields), the checkpoints waiting for their records,
// and the records held for a missing predecessor. The window of recent leaves is not kept:
// after a restart a record repeated from before it is not judged.
type savedChain struct {
	*chainState
	Waiting []checkpoint     `json:"waiting"`
	Pending map[int64][]byte `json:"pending"`
	Before  merkle           `json:"before"`
}

// stateStore keeps the chains' state across restarts: in the Collector's storage extension
// (file_storage) when the config names one; without one, state lives in memory only.
type stateStore struct {
	client storage.Client
	known  map[string]bool
}

// openStateStore gets a client of the storage extension `id` (nil: no persistence).
func openStateStore(ctx context.Context, host component.Host, id *component.ID,
	self component.ID, signal string) (*stateStore, error) {
	if id == nil {
		return &stateStore{}, nil
	}
	ext, ok := host.GetExtensions()[*id]
	if !ok {
		return nil, fmt.Errorf("storage extension %s is not configured", id)
	}
	st, ok := ext.(storage.Extension)
	if !ok {
		return nil, fmt.Errorf("extension %s is not a storage extension", id)
	}
	client, err := st.GetClient(ctx, component.KindProcessor, self, signal)
	if err != nil {
		return nil, fmt.Errorf("storage extension %s: %w", id, err)
	}
	return &stateStore{client: client, known: map[string]bool{}}, nil
}

// load puts the stored chains into v.
func (s *stateStore) load(ctx context.Context, v *verifier, now time.Time) error {
	if s.client == nil {
		return nil
	}
	text, err := s.client.Get(ctx, chainsKey)
	if err != nil || text == nil {
		return err
	}
	var ids []string
	if err := json.Unmarshal(text, &ids); err != nil {
		return fmt.Errorf("stored chain list: %w", err)
	}
	for _, id := range ids {
		text, err := s.client.Get(ctx, chainKey(id))
		if err != nil {
			return err
		}
		saved := savedChain{chainState: &chainState{}}
		if err := json.Unmarshal(text, &saved); err != nil {
			return fmt.Errorf("stored state of chain %s: %w", id, err)
		}
		state := saved.chainState
		v.chains[id] = state
		v.chain(id)
		state.waiting, state.before = saved.Waiting, saved.Before
		for seq, data := range saved.Pending {
			if h, ok := parseHeader(data); ok {
				state.pending[seq] = pendingRecord{data, LeafHash(data), h, now}
			}
		}
		s.known[id] = true
	}
	return nil
}

// save writes the state of the chains `v` touched since the last save, in one batch.
func (s *stateStore) save(ctx context.Context, v *verifier) error {
	if s.client == nil {
		clear(v.touched)
		return nil
	}
	var ops []*storage.Operation
	listed := len(s.known)
	for id := range v.touched {
		state := v.chains[id]
		saved := savedChain{chainState: state, Waiting: state.waiting, Before: state.before,
			Pending: make(map[int64][]byte, len(state.pending))}
		for seq, held := range state.pending {
			saved.Pending[seq] = held.data
		}
		text, err := json.Marshal(saved)
		if err != nil {
			return err
		}
		ops = append(ops, storage.SetOperation(chainKey(id), text))
		s.known[id] = true
	}
	clear(v.touched)
	if len(s.known) != listed {
		ids := make([]string, 0, len(s.known))
		for id := range s.known {
			ids = append(ids, id)
		}
		text, _ := json.Marshal(ids)
		ops = append(ops, storage.SetOperation(chainsKey, text))
	}
	if len(ops) == 0 {
		return nil
	}
	return s.client.Batch(ctx, ops...)
}

// gatewayChain is the id of the last gateway chain written ("" if none, or no storage).
func (s *stateStore) gatewayChain(ctx context.Context) (string, error) {
	if s.client == nil {
		return "", nil
	}
	id, err := s.client.Get(ctx, gatewayChainKey)
	return string(id), err
}

// setGatewayChain records the gateway chain now written, before its first records move on.
func (s *stateStore) setGatewayChain(ctx context.Context, id string) error {
	if s.client == nil {
		return nil
	}
	return s.client.Set(ctx, gatewayChainKey, []byte(id))
}

func (s *stateStore) close(ctx context.Context) error {
	if s.client == nil {
		return nil
	}
	return s.client.Close(ctx)
}
