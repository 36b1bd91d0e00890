package clearing_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// forkingChain is a chain of registry changes whose blocks can be made
// again: rewound (a node restarted without its recent blocks) or replaced
// (a reorganisation). Each block made gets a hash of its own.
type forkingChain struct {
	ledger.Ledger // nil: only the registry's reads are answered
	mu            sync.Mutex
	made          uint64 // blocks ever made: each one's hash differs
	hashes        []common.Hash
	changes       map[uint64][]ledger.TerminalChange
}

func newForkingChain() *forkingChain {
	c := &forkingChain{changes: map[uint64][]ledger.TerminalChange{}}
	c.mine(nil) // genesis
	return c
}

func (c *forkingChain) head() uint64 { return uint64(len(c.hashes) - 1) }

// mine makes the next block, holding changes.
func (c *forkingChain) mine(changes []ledger.TerminalChange) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.made++
	var h common.Hash
	binary.BigEndian.PutUint64(h[:], c.made)
	n := uint64(len(c.hashes))
	c.hashes = append(c.hashes, h)
	for i := range changes {
		changes[i].Block = n
	}
	c.changes[n] = changes
}

// mineTo makes empty blocks up to n.
func (c *forkingChain) mineTo(n uint64) {
	for c.head() < n {
		c.mine(nil)
	}
}

// rewind drops every block after n.
func (c *forkingChain) rewind(n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for b := n + 1; b < uint64(len(c.hashes)); b++ {
		delete(c.changes, b)
	}
	c.hashes = c.hashes[:n+1]
}

func (c *forkingChain) TerminalChanges(_ context.Context, from uint64) (ledger.RegistryRead, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	head := uint64(len(c.hashes) - 1)
	var out []ledger.TerminalChange
	for b := from; b <= head; b++ {
		out = append(out, c.changes[b]...)
	}
	return ledger.RegistryRead{Changes: out, Next: head + 1, Head: c.hashes[head]}, nil
}

func (c *forkingChain) BlockHash(_ context.Context, n uint64) (common.Hash, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n >= uint64(len(c.hashes)) {
		return common.Hash{}, fmt.Errorf("block %d: %w", n, ledger.ErrBlockNotFound)
	}
	return c.hashes[n], nil
}

// TestRegistryFollowsAChainMadeAgain: the registry clearing follows is the
// one the chain holds after a node rewound or reorganised it (an outside
// review: after a rewind from block 1000 to 500, a revocation mined again
// in block 600 was never followed, the revoked gate's taps accepted until
// clearing restarted; and a registration from an orphaned block stayed
// followed, while a restarted clearing followed the winning branch's).
func TestRegistryFollowsAChainMadeAgain(t *testing.T) {
	ctx := context.Background()
	registration := func(t *testing.T, id, op string) ledger.TerminalChange {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		proof, err := fare.ProveKey(priv, op, id, "s01")
		if err != nil {
			t.Fatal(err)
		}
		var pk [32]byte
		copy(pk[:], priv.Public().(ed25519.PublicKey))
		return ledger.TerminalChange{ID: id, Operator: op, Stop: "s01", PublicKey: pk, KeyProof: proof}
	}
	for _, tc := range []struct {
		name      string
		syncEvery bool // Sync after every block, or once at the end
	}{
		{"rewind, read at every block", true},
		{"rewind, read once the chain is past where it was", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newForkingChain()
			c.mineTo(9)
			c.mine([]ledger.TerminalChange{registration(t, "metro-g1", "metro")})
			c.mineTo(1000)
			r := clearing.NewChainTerminals(c)
			if err := r.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			c.rewind(500)
			c.mineTo(599)
			c.mine([]ledger.TerminalChange{{ID: "metro-g1", Operator: "metro", Revoked: true}})
			c.mine([]ledger.TerminalChange{registration(t, "metro-g2", "metro")})
			for c.head() < 1200 {
				c.mine(nil)
				if tc.syncEvery {
					if err := r.Sync(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := r.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if got, ok := r.Lookup("metro-g1"); !ok || !got.Revoked() || got.RevokedBlock != 600 {
				t.Errorf("metro-g1: %+v, %v: want revoked in block 600", got, ok)
			}
			if _, ok := r.Lookup("metro-g2"); !ok {
				t.Error("metro-g2, registered in block 601 after the rewind: not followed")
			}
			if r.NextBlock() != 1201 {
				t.Errorf("read to block %d, want 1201", r.NextBlock())
			}
		})
	}
	t.Run("a registration orphaned by a reorganisation", func(t *testing.T) {
		c := newForkingChain()
		c.mineTo(99)
		metro := registration(t, "metro-g1", "metro")
		c.mine([]ledger.TerminalChange{metro})
		c.mineTo(103)
		r := clearing.NewChainTerminals(c)
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got, ok := r.Lookup("metro-g1"); !ok || got.Operator != "metro" {
			t.Fatalf("before the reorganisation: %+v, %v", got, ok)
		}
		// The winning branch: bus took the id first with a junk key proof
		// (refused), and metro's registration reverted there.
		c.rewind(99)
		squat := registration(t, "metro-g1", "bus")
		squat.KeyProof = make([]byte, len(squat.KeyProof))
		c.mine([]ledger.TerminalChange{squat})
		c.mineTo(105)
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got, ok := r.Lookup("metro-g1"); ok {
			t.Errorf("metro-g1 followed as %+v after its registration was orphaned", got)
		}
		if ref := r.Refused(); len(ref) != 1 || ref[0].Operator != "bus" {
			t.Errorf("refused registrations %+v: want bus's squat", ref)
		}
	})
	t.Run("a replica behind changes nothing followed", func(t *testing.T) {
		c := newForkingChain()
		c.mineTo(9)
		c.mine([]ledger.TerminalChange{registration(t, "metro-g1", "metro")})
		c.mineTo(1000)
		r := clearing.NewChainTerminals(c)
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		// The same chain, 20 blocks shorter (a replica behind a load
		// balancer), then whole again.
		c.mu.Lock()
		saved := append([]common.Hash(nil), c.hashes...)
		c.hashes = c.hashes[:981]
		c.mu.Unlock()
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := r.Lookup("metro-g1"); !ok || r.NextBlock() != 1001 {
			t.Errorf("behind: metro-g1 followed %v, read to %d: want followed, still 1001", ok, r.NextBlock())
		}
		c.mu.Lock()
		c.hashes = saved
		c.mu.Unlock()
		c.mineTo(1010)
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := r.Lookup("metro-g1"); !ok || r.NextBlock() != 1011 {
			t.Errorf("caught up: metro-g1 followed %v, read to %d: want followed, 1011", ok, r.NextBlock())
		}
	})
}
