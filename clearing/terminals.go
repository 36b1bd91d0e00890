package clearing

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/ethereum/go-ethereum/common"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// RegisteredTerminal is a terminal as the shared ledger's registry holds it.
type RegisteredTerminal struct {
	TerminalPublicKey
	// RegisteredBlock is the block of the registration.
	RegisteredBlock uint64
	// RevokedBlock is the block of the revocation; 0 while valid.
	RevokedBlock uint64
}

// Revoked reports whether the operator revoked the terminal.
func (t *RegisteredTerminal) Revoked() bool { return t.RevokedBlock != 0 }

// ChainTerminals is the terminal registry as the shared ledger holds it:
// built by replaying the contract's registration and revocation logs, and kept
// current by reading new blocks (Sync). Operators own their terminals' entries
// on chain, so clearing cannot add, move or re-key a terminal by itself: it
// only follows. Safe for concurrent use.
type ChainTerminals struct {
	l ledger.Ledger

	syncMu sync.Mutex // one Sync at a time
	mu     sync.RWMutex
	byID   map[string]*RegisteredTerminal
	byKey  map[[32]byte]string // followed terminals' keys, revoked ones too
	next   uint64              // first block not read yet
	at     common.Hash         // block next-1's hash as the last read found it
	marks  []blockMark         // the heads of recent reads, oldest first (syncMu)
	// refused are registrations Sync does not follow, with why; the
	// contract checks only that an id is not empty.
	refused map[string]RefusedRegistration
	// Log, if set, is told of each refused registration once.
	Log *slog.Logger
}

// NewChainTerminals returns an empty registry following l; call Sync to load it.
func NewChainTerminals(l ledger.Ledger) *ChainTerminals {
	return &ChainTerminals{l: l, byID: make(map[string]*RegisteredTerminal), byKey: make(map[[32]byte]string)}
}

// registryOverlap is how many blocks before the last one read each Sync
// reads again. A block read before it held all its logs (a reorg of a
// multi-signer Clique chain put a revocation into it, or a replica behind
// a load balancer answered before it had them) is read again while it is
// this near the head: an outside review's follower missed a revocation for
// good, the revoked terminal's taps accepted until clearing restarted.
// Following a change again changes nothing.
const registryOverlap = 64

// blockMark is the head a read reached: a block and its hash then.
type blockMark struct {
	n uint64
	h common.Hash
}

// maxBlockMarks bounds the heads kept to find where a reorganised chain
// forked: a fork below the oldest is read again from the start.
const maxBlockMarks = 64

// Sync reads the registry changes committed since the last Sync, up to the
// chain's head, the last registryOverlap blocks again.
//
// Where the chain holds another block than the last one read (a
// reorganisation, or a node that restarted without its recent blocks and
// made them again), Sync finds the newest head of an earlier read that the
// chain still holds, takes back what the registry followed from blocks
// after it, and reads on from there (from the start when no head kept is
// on the chain). The result replaces the registry only once a read reaches
// as high as the one it replaces: a node behind (a replica answering some
// of the requests) never takes back what it has not reached. Where the
// chain is shorter than the last block read (or a read reaches less high),
// the blocks near its head are read for their revocations alone, and where
// the registry was read to stays. An outside review showed a revocation mined
// again below a 500-block rewind never followed, and a registration from an
// orphaned block kept. A failed Sync keeps what it read before the failure.
func (r *ChainTerminals) Sync(ctx context.Context) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.mu.RLock()
	next, at := r.next, r.at
	r.mu.RUnlock()
	from, shorter, forked := next, false, false
	var base uint64 // with forked: the last block kept (0: none, from the start)
	if next > 0 {
		h, err := r.l.BlockHash(ctx, next-1)
		switch {
		case errors.Is(err, ledger.ErrBlockNotFound):
			shorter = true
			probe, err := r.l.TerminalChanges(ctx, math.MaxUint64) // reads the head alone
			if err != nil {
				return fmt.Errorf("follow terminal registry: %w", err)
			}
			from = max(1, probe.Next-min(probe.Next, registryOverlap))
		case err != nil:
			return fmt.Errorf("follow terminal registry: %w", err)
		case h != at:
			forked = true
			if base, err = r.forkBase(ctx, next-1); err != nil {
				return fmt.Errorf("follow terminal registry: find where the chain forked: %w", err)
			}
			from = base + 1
			if base == 0 {
				from = 0
			}
			if r.Log != nil {
				r.Log.Warn("the chain holds another block where the terminal registry was last read to (a reorganisation, or a node that restarted without its recent blocks made them again): the registry is read again from the last block both share",
					"block", next-1, "was", at.Hex(), "now", h.Hex(), "from_block", from)
			}
		default:
			from = max(1, next-min(next, registryOverlap))
		}
	}
	read, err := r.l.TerminalChanges(ctx, from)
	if forked && (err != nil || read.Next < next) {
		// Kept as followed until a read reaches as high as before.
		if err != nil {
			return fmt.Errorf("follow terminal registry: read it again after the chain forked: %w", err)
		}
		return fmt.Errorf("follow terminal registry: the chain forked below block %d, but the read reached only block %d (a node behind answered it): nothing taken back yet", next-1, read.Next-1)
	}
	// A read that did not reach the last block read (a shorter chain, or
	// a node behind answering it) may hold blocks of a branch that loses:
	// its revocations are followed (refusing a gate is the safe side), its
	// registrations wait until a read reaches past the old head, and where
	// the registry was read to stays (a re-check: moved back, it hid a
	// later fork, and a shorter branch's registration stayed followed).
	behind := shorter || read.Next < next
	r.mu.Lock()
	defer r.mu.Unlock()
	if forked {
		r.takeBack(base)
	}
	if behind {
		r.followRevocations(read.Changes)
	} else {
		r.follow(read.Changes)
	}
	if err != nil {
		return fmt.Errorf("follow terminal registry: %w", err)
	}
	if !behind {
		r.next, r.at = read.Next, read.Head
		if n := len(r.marks); n == 0 || r.marks[n-1].n < read.Next-1 {
			r.marks = append(r.marks, blockMark{read.Next - 1, read.Head})
			if len(r.marks) > maxBlockMarks {
				r.marks = slices.Delete(r.marks, 0, len(r.marks)-maxBlockMarks)
			}
		}
	}
	return nil
}

// forkBase is the newest head of an earlier read below block `above` that
// the chain still holds (0: none kept is).
func (r *ChainTerminals) forkBase(ctx context.Context, above uint64) (uint64, error) {
	for i := len(r.marks) - 1; i >= 0; i-- {
		m := r.marks[i]
		if m.n >= above {
			continue
		}
		h, err := r.l.BlockHash(ctx, m.n)
		switch {
		case errors.Is(err, ledger.ErrBlockNotFound):
			continue
		case err != nil:
			return 0, err
		case h == m.h:
			return m.n, nil
		}
	}
	return 0, nil
}

// takeBack forgets what the registry followed from blocks after base (all
// of it for 0), and the heads read above it; r.mu is held.
func (r *ChainTerminals) takeBack(base uint64) {
	for id, t := range r.byID {
		switch {
		case base == 0 || t.RegisteredBlock > base:
			delete(r.byID, id)
			if r.byKey[[32]byte(t.PublicKey)] == id {
				delete(r.byKey, [32]byte(t.PublicKey))
			}
		case t.RevokedBlock > base:
			t.RevokedBlock = 0
		}
	}
	for id, ref := range r.refused {
		if base == 0 || ref.Block > base {
			delete(r.refused, id)
		}
	}
	r.marks = slices.DeleteFunc(r.marks, func(m blockMark) bool { return m.n > base })
}

// followRevocations applies the revocations among changes; r.mu is held.
func (r *ChainTerminals) followRevocations(changes []ledger.TerminalChange) {
	for _, c := range changes {
		if t, ok := r.byID[c.ID]; ok && c.Revoked && t.RevokedBlock == 0 {
			t.RevokedBlock = c.Block
		}
	}
}

// follow applies changes read from the chain; r.mu is held.
func (r *ChainTerminals) follow(changes []ledger.TerminalChange) {
	for _, c := range changes {
		switch {
		case c.Revoked:
			if t, ok := r.byID[c.ID]; ok && t.RevokedBlock == 0 {
				t.RevokedBlock = c.Block
			}
		default:
			// The contract refuses a second registration of an id, so a
			// registration never overwrites.
			if _, ok := r.byID[c.ID]; ok {
				continue
			}
			// Ids, operators and stops become NATS subject tokens and
			// permissions ("*" would grant every terminal's subjects, ">"
			// break every user's), the key must be one no signature can
			// be forged for, and the key itself must have signed this
			// registration: otherwise an operator could take another's
			// published key first and lock its terminal out.
			why := refuseRegistration(c.ID, c.Operator, c.Stop, c.PublicKey[:], c.KeyProof)
			if other, ok := r.byKey[c.PublicKey]; ok && why == "" {
				// One key, one terminal: a second id under a key would let
				// whoever holds it sign as either (another operator's
				// terminal included), and its NATS identity differs.
				why = fmt.Sprintf("public key 0x%x is terminal %s's already: one key, one terminal", c.PublicKey[:], other)
			}
			if why != "" {
				if r.refused == nil {
					r.refused = map[string]RefusedRegistration{}
				}
				if _, told := r.refused[c.ID]; !told && r.Log != nil {
					r.Log.Error("terminal registration on the ledger refused: not followed", "terminal", clipID(c.ID), "operator", clipID(c.Operator), "block", c.Block, "why", why)
				}
				// Shown clipped: the chain bounds no string, and a 100 kB id
				// made every log line, status and audit note that quoted it
				// 200 kB (an outside review). A clipped id is no valid id, so
				// no lookup of a registry's id meets it.
				r.refused[c.ID] = RefusedRegistration{Terminal: clipID(c.ID), Operator: clipID(c.Operator), Stop: clipID(c.Stop),
					PublicKey: "0x" + hex.EncodeToString(c.PublicKey[:]), KeyProof: "0x" + hex.EncodeToString(c.KeyProof),
					Block: c.Block, Why: why}
				continue
			}
			r.byID[c.ID] = &RegisteredTerminal{
				TerminalPublicKey: TerminalPublicKey{
					ID: c.ID, Operator: c.Operator, Stop: c.Stop,
					PublicKey: ed25519.PublicKey(slices.Clone(c.PublicKey[:])),
					KeyProof:  slices.Clone(c.KeyProof),
				},
				RegisteredBlock: c.Block,
			}
			r.byKey[c.PublicKey] = c.ID
		}
	}
}

// refuseRegistration says why a registration read from the ledger cannot
// be followed, or "".
func refuseRegistration(id, operator, stop string, pub, keyProof []byte) string {
	for _, f := range []struct{ name, v string }{{"terminal id", id}, {"operator", operator}, {"stop", stop}} {
		if err := fare.ValidateID(f.v); err != nil {
			return fmt.Sprintf("%s %q: %v", f.name, clipID(f.v), err)
		}
	}
	if err := checkTerminalKey(pub); err != nil {
		return err.Error()
	}
	if err := fare.VerifyKeyProof(pub, operator, id, stop, keyProof); err != nil {
		return err.Error()
	}
	return ""
}

// clipID is s cut to fare.MaxIDLen bytes (on a character boundary) with
// its length, when longer: for showing an id read from the chain.
func clipID(s string) string {
	if len(s) <= fare.MaxIDLen {
		return s
	}
	n := fare.MaxIDLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:n], len(s))
}

// CheckRegistration says what is wrong with a terminal registration before
// it is sent to the ledger: what clearing would refuse to follow (the key
// held by another terminal aside: see ChainTerminals.KeyHolder).
func CheckRegistration(id, operator, stop string, pub, keyProof []byte) error {
	if why := refuseRegistration(id, operator, stop, pub, keyProof); why != "" {
		return errors.New(why)
	}
	return nil
}

// KeyHolder returns the terminal whose key pub is (revoked or not), if
// clearing follows one: a registration of another id under it is refused.
func (r *ChainTerminals) KeyHolder(pub [32]byte) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	id, ok := r.byKey[pub]
	return id, ok
}

// RefusedRegistration is a terminal registration on the ledger that
// clearing does not follow (an id, operator or stop that is no subject
// token, a key of small order or another terminal's, a key proof that does
// not verify), and why. The chain holds it; no event signed under it is
// ever applied.
type RefusedRegistration struct {
	Terminal  string `json:"terminal"`
	Operator  string `json:"operator"`
	Stop      string `json:"stop"`
	PublicKey string `json:"public_key"`
	// KeyProof is the key proof as the operator sent it ("0x" for none).
	KeyProof string `json:"key_proof"`
	Block    uint64 `json:"block"`
	Why      string `json:"why"`
}

// Refused returns the registrations Sync does not follow, in the order
// the chain holds them.
func (r *ChainTerminals) Refused() []RefusedRegistration {
	r.mu.RLock()
	out := slices.Collect(maps.Values(r.refused))
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b RefusedRegistration) int {
		if a.Block != b.Block {
			return cmp.Compare(a.Block, b.Block)
		}
		return strings.Compare(a.Terminal, b.Terminal)
	})
	return out
}

// Lookup returns terminal id's entry, revoked or not.
func (r *ChainTerminals) Lookup(id string) (RegisteredTerminal, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.byID[id]
	if !ok {
		return RegisteredTerminal{}, false
	}
	return *t, true
}

// TerminalKey implements TerminalKeys: revoked terminals included, since
// the events they signed before revocation stay valid.
func (r *ChainTerminals) TerminalKey(id string) (TerminalPublicKey, bool) {
	t, ok := r.Lookup(id)
	return t.TerminalPublicKey, ok
}

// Active counts operator's registered terminals that are not revoked.
func (r *ChainTerminals) Active(operator string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, t := range r.byID {
		if t.Operator == operator && !t.Revoked() {
			n++
		}
	}
	return n
}

// All returns every terminal ever registered, sorted by id.
func (r *ChainTerminals) All() []RegisteredTerminal {
	r.mu.RLock()
	out := make([]RegisteredTerminal, 0, len(r.byID))
	for _, t := range r.byID {
		out = append(out, *t)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b RegisteredTerminal) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// NextBlock is the first block Sync has not read: the registry reflects every
// block before it.
func (r *ChainTerminals) NextBlock() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.next
}

// Embedded-chain bootstrap.

// PublishRegistry puts a registry file's operators and terminals on an
// embedded (dev) chain, where the chain's data dir holds the admin key and
// custodial operator keys: each operator is admitted, and registers those of
// its terminals the chain does not have yet. A terminal already on chain with
// a different operator, stop or key is an error, not overwritten: the chain is
// the registry. Production chains are not bootstrapped this way; each operator
// registers its own terminals with its own key (`faregate ledger
// register-terminals`).
func PublishRegistry(ctx context.Context, e *ledger.Embedded, reg *Registry) error {
	if err := reg.Validate(); err != nil {
		return err
	}
	onChain := NewChainTerminals(e)
	if err := onChain.Sync(ctx); err != nil {
		return fmt.Errorf("publish registry: %w", err)
	}
	refused := map[string]RefusedRegistration{}
	for _, r := range onChain.Refused() {
		refused[r.Terminal] = r
	}
	byOp := make(map[string][]ledger.TerminalRegistration)
	for _, t := range reg.Terminals {
		if r, ok := refused[t.ID]; ok {
			// The contract holds the id (ids are never reused), under a
			// registration clearing does not follow.
			return fmt.Errorf("publish registry: terminal id %s is on chain, registered by operator %s in block %d, and clearing does not follow it (%s): give the gate a new id (`faregate terminal keygen --key FILE --id NEW --operator %s --stop %s` with the same key file) in the registry file",
				t.ID, r.Operator, r.Block, r.Why, t.Operator, t.Stop)
		}
		if have, ok := onChain.Lookup(t.ID); ok {
			if have.Operator != t.Operator || have.Stop != t.Stop || !bytes.Equal(have.PublicKey, t.PublicKey) {
				return fmt.Errorf("publish registry: terminal %s is on chain as %s at %s with another key or owner; the registry file says %s at %s",
					t.ID, have.Operator, have.Stop, t.Operator, t.Stop)
			}
			continue
		}
		// Validate checked a proof that is there; the ledger needs one.
		if len(t.KeyProof) == 0 {
			return fmt.Errorf("publish registry: terminal %s has no key_proof (the terminal key's signature of its registration, which clearing needs to follow it): `faregate terminal keygen --key FILE --id %s --operator %s --stop %s` prints the entry with it",
				t.ID, t.ID, t.Operator, t.Stop)
		}
		var pk [32]byte
		copy(pk[:], t.PublicKey)
		byOp[t.Operator] = append(byOp[t.Operator], ledger.TerminalRegistration{ID: t.ID, Stop: t.Stop, PublicKey: pk, KeyProof: t.KeyProof})
	}
	for _, op := range reg.OperatorIDs() {
		acct, err := e.OperatorAccount(ctx, op)
		if err != nil {
			return fmt.Errorf("publish registry: %w", err)
		}
		if ts := byOp[op]; len(ts) > 0 {
			if _, err := acct.RegisterTerminals(ctx, ts); err != nil {
				return fmt.Errorf("publish registry: operator %s: %w", op, err)
			}
		}
	}
	return nil
}
