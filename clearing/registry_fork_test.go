package clearing_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
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
	froms         []uint64 // the blocks reads began at
}

// copyTo is a copy of c holding its blocks up to n: the same chain, behind.
func (c *forkingChain) copyTo(n uint64) *forkingChain {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := &forkingChain{made: c.made, hashes: append([]common.Hash(nil), c.hashes[:n+1]...), changes: map[uint64][]ledger.TerminalChange{}}
	for b := range n + 1 {
		d.changes[b] = c.changes[b]
	}
	return d
}

// splitNodes answers block hashes from one node and registry reads from
// another, as a load balancer may.
type splitNodes struct {
	ledger.Ledger
	hashes, reads *forkingChain
}

func (s *splitNodes) BlockHash(ctx context.Context, n uint64) (common.Hash, error) {
	return s.hashes.BlockHash(ctx, n)
}

func (s *splitNodes) TerminalChanges(ctx context.Context, from uint64) (ledger.RegistryRead, error) {
	return s.reads.TerminalChanges(ctx, from)
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

// mineAt makes empty blocks up to n-1, then block n holding changes.
func (c *forkingChain) mineAt(n uint64, changes ...ledger.TerminalChange) {
	c.mineTo(n - 1)
	c.mine(changes)
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
	if from <= head {
		c.froms = append(c.froms, from)
	}
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
	mustSync := func(t *testing.T, r *clearing.ChainTerminals) {
		t.Helper()
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// following is a registry following l, read once.
	following := func(t *testing.T, l ledger.Ledger) *clearing.ChainTerminals {
		t.Helper()
		r := clearing.NewChainTerminals(l)
		mustSync(t, r)
		return r
	}
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
			c.mineAt(10, registration(t, "metro-g1", "metro"))
			c.mineTo(1000)
			r := following(t, c)
			c.rewind(500)
			c.mineAt(600, ledger.TerminalChange{ID: "metro-g1", Operator: "metro", Revoked: true})
			c.mine([]ledger.TerminalChange{registration(t, "metro-g2", "metro")})
			for c.head() < 1200 {
				c.mine(nil)
				if tc.syncEvery {
					mustSync(t, r)
				}
			}
			mustSync(t, r)
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
		r := following(t, c)
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
		mustSync(t, r)
		if got, ok := r.Lookup("metro-g1"); ok {
			t.Errorf("metro-g1 followed as %+v after its registration was orphaned", got)
		}
		if ref := r.Refused(); len(ref) != 1 || ref[0].Operator != "bus" {
			t.Errorf("refused registrations %+v: want bus's squat", ref)
		}
	})
	t.Run("a reorganisation of the tip is read from where it forked", func(t *testing.T) {
		c := newForkingChain()
		c.mineAt(10, registration(t, "metro-g1", "metro"))
		c.mineTo(998)
		r := clearing.NewChainTerminals(c)
		for range 2 {
			mustSync(t, r)
			c.mine(nil)
		}
		// Blocks 999 and 1000 made again: the revocation in 1000 now.
		c.rewind(998)
		c.mine(nil)
		c.mine([]ledger.TerminalChange{{ID: "metro-g1", Operator: "metro", Revoked: true}})
		c.froms = nil
		mustSync(t, r)
		if got, ok := r.Lookup("metro-g1"); !ok || got.RevokedBlock != 1000 {
			t.Errorf("metro-g1 %+v, %v: want revoked in block 1000", got, ok)
		}
		if len(c.froms) != 1 || c.froms[0] != 999 {
			t.Errorf("reads began at blocks %v, want one at 999, after block 998 both chains hold", c.froms)
		}
	})
	t.Run("a node behind answering the read after a fork takes nothing back", func(t *testing.T) {
		a := newForkingChain()
		a.mineAt(10, registration(t, "metro-g1", "metro"))
		a.mineAt(700, ledger.TerminalChange{ID: "metro-g1", Operator: "metro", Revoked: true})
		a.mineTo(1000)
		split := &splitNodes{hashes: a, reads: a}
		r := following(t, split)
		// A's tip made again; the reads go to a replica at block 500.
		a.rewind(999)
		a.mine(nil)
		split.reads = a.copyTo(500)
		if err := r.Sync(ctx); err == nil || !strings.Contains(err.Error(), "the read reached only block 500 (a node behind answered it)") {
			t.Errorf("sync: %v, want an error saying a node behind answered", err)
		}
		if got, ok := r.Lookup("metro-g1"); !ok || got.RevokedBlock != 700 || r.NextBlock() != 1001 {
			t.Errorf("metro-g1 %+v, %v, read to %d: want still revoked in block 700, read to 1001", got, ok, r.NextBlock())
		}
		// The up-to-date node answers again: the fork is read, the
		// revocation kept.
		split.reads = a
		mustSync(t, r)
		if got, ok := r.Lookup("metro-g1"); !ok || got.RevokedBlock != 700 || r.NextBlock() != 1001 {
			t.Errorf("metro-g1 %+v, %v, read to %d: want revoked in block 700, read to 1001", got, ok, r.NextBlock())
		}
	})
	t.Run("a read a node behind answered hides no later fork", func(t *testing.T) {
		a := newForkingChain()
		a.mineAt(998, registration(t, "orph-1", "metro")) // block 998
		a.mineTo(1000)
		split := &splitNodes{hashes: a, reads: a}
		r := following(t, split)
		split.reads = a.copyTo(500)
		mustSync(t, r)
		if r.NextBlock() != 1001 {
			t.Errorf("read to block %d after a node at 500 answered, want still 1001", r.NextBlock())
		}
		// Block 998 orphaned by a reorganisation from 990.
		split.reads = a
		a.rewind(990)
		a.mineTo(1010)
		mustSync(t, r)
		if got, ok := r.Lookup("orph-1"); ok {
			t.Errorf("orph-1 followed (block %d) though its block was orphaned", got.RegisteredBlock)
		}
	})
	t.Run("a shorter branch's registration is not followed", func(t *testing.T) {
		a := newForkingChain()
		a.mineTo(1020)
		split := &splitNodes{hashes: a, reads: a}
		r := following(t, split)
		// A node that made blocks after 1005 again, shorter, answers for a
		// while, then the original chain again.
		b := a.copyTo(1005)
		b.made = 1 << 40 // blocks of its own
		b.mine([]ledger.TerminalChange{registration(t, "orph-2", "metro")})
		b.mineTo(1010)
		split.hashes, split.reads = b, b
		mustSync(t, r)
		split.hashes, split.reads = a, a
		a.mineTo(1030)
		mustSync(t, r)
		if got, ok := r.Lookup("orph-2"); ok {
			t.Errorf("orph-2, only on the abandoned shorter branch, followed (block %d)", got.RegisteredBlock)
		}
	})
	t.Run("a replica behind changes nothing followed", func(t *testing.T) {
		c := newForkingChain()
		c.mineAt(10, registration(t, "metro-g1", "metro"))
		c.mineTo(1000)
		r := following(t, c)
		// The same chain, 20 blocks shorter (a replica behind a load
		// balancer), then whole again.
		c.mu.Lock()
		saved := append([]common.Hash(nil), c.hashes...)
		c.hashes = c.hashes[:981]
		c.mu.Unlock()
		mustSync(t, r)
		if _, ok := r.Lookup("metro-g1"); !ok || r.NextBlock() != 1001 {
			t.Errorf("behind: metro-g1 followed %v, read to %d: want followed, still 1001", ok, r.NextBlock())
		}
		c.mu.Lock()
		c.hashes = saved
		c.mu.Unlock()
		c.mineTo(1010)
		mustSync(t, r)
		if _, ok := r.Lookup("metro-g1"); !ok || r.NextBlock() != 1011 {
			t.Errorf("caught up: metro-g1 followed %v, read to %d: want followed, 1011", ok, r.NextBlock())
		}
	})
}
