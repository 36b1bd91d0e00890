package clearing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/ledger/merkle"
)

// BatchRecord is a closed settlement period as clearing stores it. It is
// written once when the period closes and never rewritten; the ledger
// commit is recorded beside it as a CommitRecord, which changes only when
// the chain mines the same transaction again in another block (its
// earlier blocks kept in Remined).
type BatchRecord struct {
	ID          uint64                  `json:"id"`
	StartIndex  uint64                  `json:"start_index"` // first apply index, inclusive
	EndIndex    uint64                  `json:"end_index"`   // exclusive
	PeriodStart time.Time               `json:"period_start"`
	PeriodEnd   time.Time               `json:"period_end"`
	Root        [32]byte                `json:"root"`
	EventCount  uint64                  `json:"event_count"`
	Amounts     []ledger.OperatorAmount `json:"amounts"`
}

// CommitRecord says a batch is on the shared ledger.
type CommitRecord struct {
	BatchID     uint64    `json:"batch_id"`
	TxHash      [32]byte  `json:"tx_hash"`
	BlockNumber uint64    `json:"block_number"`
	GasUsed     uint64    `json:"gas_used"` // 0 when Recovered
	At          time.Time `json:"at"`
	// Recovered: the batch was found on the ledger at a start, committed
	// by a run stopped before it recorded the commit. TxHash and
	// BlockNumber are then read from the chain and At is the block's time.
	Recovered bool `json:"recovered,omitempty"`
	// Remined lists the blocks the chain moved the commit's transaction
	// from, oldest first: a chain that rewound past the block (a node
	// restarted without its recent state, a reorg) mines the same
	// transaction again in another block. BlockNumber is the latest.
	Remined []CommitMove `json:"remined,omitempty"`
}

// CommitMove is one move of a batch's commit transaction to another block.
type CommitMove struct {
	FromBlock uint64    `json:"from_block"`
	ToBlock   uint64    `json:"to_block"`
	At        time.Time `json:"at"` // when clearing found it moved
}

// LedgerBatch is the on-chain form of r.
func (r *BatchRecord) LedgerBatch() ledger.Batch {
	return ledger.Batch{
		ID: r.ID, Root: r.Root, EventCount: r.EventCount,
		PeriodStart: r.PeriodStart, PeriodEnd: r.PeriodEnd,
		Amounts: r.Amounts,
	}
}

// batchContents reads a batch's events and computes its tree and nets: the
// single place a batch's root is derived, used when sealing, auditing and
// proving.
func (s *Store) batchContents(from, to uint64) (*merkle.Tree, []ledger.OperatorAmount, []appliedEntry, error) {
	entries, err := s.applied(from, to)
	if err != nil {
		return nil, nil, nil, err
	}
	leaves := make([][32]byte, len(entries))
	nets := make(map[string]fare.Amount)
	for i, e := range entries {
		leaves[i] = e.digest
		for _, p := range e.postings {
			n, ok := nets[p.Operator].Add(p.Amount)
			if !ok {
				return nil, nil, nil, fmt.Errorf("batch [%d,%d): operator %s's net would wrap int64", from, to, p.Operator)
			}
			nets[p.Operator] = n
		}
	}
	tree, err := merkle.New(leaves)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("merkle tree of [%d,%d): %w", from, to, err)
	}
	return tree, sortedNets(nets), entries, nil
}

// sortedNets lists per-operator nets in operator order.
func sortedNets(nets map[string]fare.Amount) []ledger.OperatorAmount {
	amounts := make([]ledger.OperatorAmount, 0, len(nets))
	for op, v := range nets {
		amounts = append(amounts, ledger.OperatorAmount{Operator: op, Net: int64(v)})
	}
	sort.Slice(amounts, func(i, j int) bool { return amounts[i].Operator < amounts[j].Operator })
	return amounts
}

// closePeriod seals the open period at end into a batch record, in one
// synced transaction with the next period's start. A period with no events
// is not sealed: its time folds into the next period, so batch ids stay
// dense and bounds stay contiguous. The end is a whole second (the chain
// keeps whole seconds), rounded up, and after the last event's applied_at:
// the period [start, end) holds every event in the batch.
func (s *Store) closePeriod(cur *cursor, end time.Time) (*BatchRecord, error) {
	p := cur.period
	if cur.nextApply == p.StartIndex {
		return nil, nil
	}
	last, err := s.appliedAt(cur.nextApply - 1)
	if err != nil {
		return nil, fmt.Errorf("seal batch %d: %w", p.ID, err)
	}
	if !end.After(last) {
		// Only when the consume loop applied past the period's end (its
		// lease went stale at the seal): the batch still holds its events.
		end = last.Add(time.Nanosecond)
	}
	end = end.UTC()
	if e := end.Truncate(time.Second); e.Before(end) {
		end = e.Add(time.Second)
	}
	if !end.After(p.Start) {
		end = p.Start.Add(time.Second)
	}
	var tree *merkle.Tree
	var amounts []ledger.OperatorAmount
	if s.open.covers(p.StartIndex, cur.nextApply) {
		tree, amounts, err = s.open.tree()
	} else {
		tree, amounts, _, err = s.batchContents(p.StartIndex, cur.nextApply)
	}
	if err != nil {
		return nil, fmt.Errorf("seal batch %d: %w", p.ID, err)
	}
	rec := &BatchRecord{
		ID: p.ID, StartIndex: p.StartIndex, EndIndex: cur.nextApply,
		PeriodStart: p.Start, PeriodEnd: end,
		Root: tree.Root(), EventCount: cur.nextApply - p.StartIndex, Amounts: amounts,
	}
	next := period{ID: p.ID + 1, StartIndex: cur.nextApply, Start: end}
	rb, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	pb, err := json.Marshal(next)
	if err != nil {
		return nil, err
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		return setAll(txn, keyU64(pBatch, rec.ID), rb, metaPeriod, pb)
	})
	if err != nil {
		return nil, fmt.Errorf("seal batch %d: %w", p.ID, err)
	}
	cur.period = next
	s.open.reset(next.StartIndex)
	return rec, nil
}

// appliedAt is when the event at an apply index was applied.
func (s *Store) appliedAt(idx uint64) (time.Time, error) {
	entries, err := s.applied(idx, idx+1)
	if err != nil {
		return time.Time{}, err
	}
	if len(entries) != 1 {
		return time.Time{}, fmt.Errorf("apply index %d: %w", idx, ErrNotFound)
	}
	rec, err := s.Event(entries[0].id)
	if err != nil {
		return time.Time{}, fmt.Errorf("apply index %d: %w", idx, err)
	}
	return rec.AppliedAt, nil
}

// Batch returns a sealed batch.
func (s *Store) Batch(id uint64) (*BatchRecord, error) {
	var r BatchRecord
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyU64(pBatch, id))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &r) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("batch %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("batch %d: %w", id, err)
	}
	return &r, nil
}

// Batches returns sealed batches with id >= from, at most limit.
func (s *Store) Batches(from uint64, limit int) ([]*BatchRecord, error) {
	var out []*BatchRecord
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pBatch}})
		defer it.Close()
		for it.Seek(keyU64(pBatch, from)); it.Valid() && len(out) < limit; it.Next() {
			var r BatchRecord
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return fmt.Errorf("batch %d: %w", u64(it.Item().Key()[1:]), err)
			}
			out = append(out, &r)
		}
		return nil
	})
	return out, err
}

// Commit returns the ledger commit of a batch, or ErrNotFound if it is not
// committed yet.
func (s *Store) Commit(id uint64) (*CommitRecord, error) {
	var r CommitRecord
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyU64(pCommit, id))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &r) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("commit of batch %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Store) recordCommit(c CommitRecord) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(keyU64(pCommit, c.BatchID), b) })
}

// BatchOf finds the sealed batch holding an apply index, or ErrNotFound if
// the index is still in the open period.
func (s *Store) BatchOf(applyIndex uint64) (*BatchRecord, error) {
	var found *BatchRecord
	err := s.db.View(func(txn *badger.Txn) error {
		// Batches are few per day and proofs ask mostly for recent events,
		// so scan newest first.
		rit := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pBatch}, Reverse: true})
		defer rit.Close()
		for rit.Seek(keyU64(pBatch, ^uint64(0))); rit.Valid(); rit.Next() {
			var r BatchRecord
			if err := rit.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return err
			}
			if applyIndex >= r.StartIndex && applyIndex < r.EndIndex {
				found = &r
				return nil
			}
			if r.EndIndex <= applyIndex {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("apply index %d: %w (period still open)", applyIndex, ErrNotFound)
	}
	return found, nil
}

// Proof is an event's inclusion proof in its settlement batch.
type Proof struct {
	BatchID uint64     `json:"batch_id"`
	Root    [32]byte   `json:"root"`
	Leaf    [32]byte   `json:"leaf"` // the event digest, the tree's leaf value
	Path    [][32]byte `json:"path"`
}

// Prove builds the inclusion proof of an applied event from the store.
func (s *Store) Prove(id fare.EventID) (*Proof, *EventRecord, error) {
	rec, err := s.Event(id)
	if err != nil {
		return nil, nil, err
	}
	b, err := s.BatchOf(rec.ApplyIndex)
	if err != nil {
		return nil, &rec, fmt.Errorf("prove event %s: %w", id, err)
	}
	tree, _, _, err := s.batchContents(b.StartIndex, b.EndIndex)
	if err != nil {
		return nil, &rec, fmt.Errorf("prove event %s: %w", id, err)
	}
	sig, err := fare.Decode(rec.Raw)
	if err != nil {
		return nil, &rec, fmt.Errorf("prove event %s: stored event: %w", id, err)
	}
	leaf := sig.Digest()
	path, err := tree.ProofFor(leaf)
	if err != nil {
		return nil, &rec, fmt.Errorf("prove event %s: its stored bytes hash to 0x%x, which is not among batch %d's leaves: the store's record of the event differs from what was sealed (faregate ledger audit says where): %w",
			id, leaf, b.ID, err)
	}
	return &Proof{BatchID: b.ID, Root: tree.Root(), Leaf: leaf, Path: path}, &rec, nil
}

// ErrLedgerLags is returned by a commit when the ledger says a batch id is
// next and, when sent, that it exists, twice in a row.
var ErrLedgerLags = errors.New("clearing: the ledger contradicts itself")

// ErrForeignBatch is returned by a commit when the ledger holds a batch
// this store did not seal, or another root under one it did: the store or
// the contract is not the one it should be, and nothing more is committed.
var ErrForeignBatch = errors.New("clearing: the ledger holds a batch this store did not seal")

// ErrLedgerBehindStore is returned by a commit when the ledger's next batch
// id is one this store has already committed: the ledger is not the one the
// store anchored to (another chain with a contract at the same address) or
// it was rewound. Nothing is sent again: re-anchoring the store's batches
// there would put them on two ledgers.
var ErrLedgerBehindStore = errors.New("clearing: the ledger lacks batches this store committed")

// checkLedgerHolds refuses, at start, a ledger whose head has passed the
// block that mined the last batch this store committed, yet lacks the
// batch or holds another root under its id: a chain rewound, or another
// chain whose contract has the same address at the same chain id (a dev
// chain made again from the same admin key) passes the binding check, and
// clearing would run against its registry, quarantining every tap as from
// an unknown terminal. A node behind that block (syncing, restarted, a
// replica behind a load balancer) or one whose reads fail now is not
// refused here: the commit loop waits for it, and readiness says so.
func (s *Store) checkLedgerHolds(ctx context.Context, l ledger.Ledger) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	last, err := s.lastCommitted()
	if err != nil || last == 0 {
		return err
	}
	rec, err := s.Batch(last)
	if err != nil {
		return err
	}
	cr, err := s.Commit(last)
	if err != nil {
		return err
	}
	onChain, err := l.Batch(ctx, last)
	switch {
	case errors.Is(err, ledger.ErrBatchNotFound):
		h, ok := l.(interface {
			HeadBlock(context.Context) (uint64, error)
		})
		if !ok {
			return nil
		}
		if head, err := h.HeadBlock(ctx); err != nil || head < cr.BlockNumber {
			return nil // behind the commit's block: it may yet get there
		}
		return fmt.Errorf("%w: batch %d, committed here in tx 0x%x (block %d) at %s, is not on the ledger at contract %s, whose head is past that block: another chain with a contract at this address (a dev chain made again?), or a chain rewound; start against the chain that holds it (check --eth-rpc; `faregate ledger audit`)",
			ErrLedgerBehindStore, last, cr.TxHash, cr.BlockNumber, cr.At.UTC().Format(time.RFC3339), l.ContractAddress().Hex())
	case err != nil:
		return nil
	case ledgerDiff(rec, onChain) != "":
		return fmt.Errorf("%w: batch %d on the ledger at contract %s differs from the store's: %s", ErrForeignBatch, last, l.ContractAddress().Hex(), ledgerDiff(rec, onChain))
	}
	return nil
}

// chainBatchText says what the chain holds of a batch: its root, events,
// each operator's net in minor units, and the transaction that put it
// there.
func chainBatchText(b ledger.Batch) string {
	nets := make([]string, 0, len(b.Amounts))
	for _, a := range b.Amounts {
		nets = append(nets, fmt.Sprintf("%s %+d", a.Operator, a.Net))
	}
	return fmt.Sprintf("root 0x%x, %d events, nets in minor units [%s], tx 0x%x in block %d", b.Root, b.EventCount, strings.Join(nets, ", "), b.TxHash, b.BlockNumber)
}

// ledgerDiff says how the chain's copy of a batch differs from the store's
// record of it, in everything the chain keeps (root, event count, period
// bounds in whole seconds, each operator's net); "" when it does not.
func ledgerDiff(rec *BatchRecord, onChain ledger.Batch) string {
	var d []string
	if onChain.Root != rec.Root {
		d = append(d, fmt.Sprintf("root 0x%x on the ledger, 0x%x here", onChain.Root, rec.Root))
	}
	if onChain.EventCount != rec.EventCount {
		d = append(d, fmt.Sprintf("%d events on the ledger, %d here", onChain.EventCount, rec.EventCount))
	}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	if onChain.PeriodStart.Unix() != rec.PeriodStart.Unix() {
		d = append(d, fmt.Sprintf("period start %s on the ledger, %s here", rfc(onChain.PeriodStart), rfc(rec.PeriodStart)))
	}
	if onChain.PeriodEnd.Unix() != rec.PeriodEnd.Unix() {
		d = append(d, fmt.Sprintf("period end %s on the ledger, %s here", rfc(onChain.PeriodEnd), rfc(rec.PeriodEnd)))
	}
	chain, store := amountMap(onChain.Amounts), amountMap(rec.Amounts)
	for _, op := range unionKeys(chain, store) {
		c, inChain := chain[op]
		r, inStore := store[op]
		switch {
		case !inChain:
			d = append(d, fmt.Sprintf("no net of %s on the ledger, %d here", op, r))
		case !inStore:
			d = append(d, fmt.Sprintf("net of %s %d on the ledger, none here", op, c))
		case c != r:
			d = append(d, fmt.Sprintf("net of %s %d on the ledger, %d here", op, c, r))
		}
	}
	return strings.Join(d, "; ")
}

// lastCommitted is the id of the last batch recorded as committed (0:
// none).
func (s *Store) lastCommitted() (uint64, error) {
	var last uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pCommit}, Reverse: true})
		defer it.Close()
		it.Seek(keyU64(pCommit, ^uint64(0)))
		if it.Valid() {
			last = u64(it.Item().Key()[1:])
		}
		return nil
	})
	return last, err
}

// followRemined records the block the chain now holds recent commits in
// when it moved them: a chain rewound past a commit's block (a node killed
// before it wrote its recent state, a reorg) mines the same transaction
// again, in another block, and the store's record would name a block that
// no longer holds it for ever after (an outside test: `ledger audit` and
// `ledger prove` failed on every event of the batches). The last commit
// has the highest block, so a rewind that moved any moved it: the chain is
// read for it, and for the ones before only while each has moved (one
// read a tick when nothing moved). A commit of another transaction, or one
// the chain lacks now, is left as recorded: the commit loop and the audit
// say what is wrong.
func (s *Store) followRemined(ctx context.Context, l ledger.Ledger, now func() time.Time) error {
	last, err := s.lastCommitted()
	if err != nil || last == 0 {
		return err
	}
	for id := last; id >= 1; id-- {
		cr, err := s.Commit(id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		onChain, err := ledgerRead(ctx, func(ctx context.Context) (ledger.Batch, error) { return l.Batch(ctx, id) })
		if err != nil || onChain.TxHash != cr.TxHash || onChain.BlockNumber == cr.BlockNumber || onChain.BlockNumber == 0 {
			return nil
		}
		cr.Remined = append(cr.Remined, CommitMove{FromBlock: cr.BlockNumber, ToBlock: onChain.BlockNumber, At: now()})
		cr.BlockNumber = onChain.BlockNumber
		if err := s.recordCommit(*cr); err != nil {
			return err
		}
		s.log.Warn("the chain mined a batch's commit transaction again in another block (it rewound past the block that held it: a node restarted without its recent state, or a reorg); the record follows the chain",
			"batch", id, "tx", fmt.Sprintf("0x%x", cr.TxHash), "from_block", cr.Remined[len(cr.Remined)-1].FromBlock, "to_block", cr.BlockNumber)
	}
	return nil
}

// ledgerReadTimeout bounds one read of the ledger by clearing's background
// work (the commit loop's reads, the registry's poll): it runs for the
// process's life, and a node that takes the connection and never answers
// must not stall it. A variable for tests.
var ledgerReadTimeout = 30 * time.Second

// ledgerCommitTimeout bounds one commit of a batch: its reads, its send
// and the wait for its receipt (ledger.MineWait). A variable for tests.
var ledgerCommitTimeout = ledger.MineWait + 2*ledgerReadTimeout

// ledgerRead runs read bounded by ledgerReadTimeout.
func ledgerRead[T any](ctx context.Context, read func(context.Context) (T, error)) (T, error) {
	rctx, cancel := context.WithTimeout(ctx, ledgerReadTimeout)
	defer cancel()
	v, err := read(rctx)
	if err != nil && ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("the ledger did not answer within %s: %w", ledgerReadTimeout, err)
	}
	return v, err
}

// commitPending puts every sealed but uncommitted batch on the ledger, in id
// order. It is idempotent across crashes: the chain's next batch id says
// which batches are already there, and a batch found on chain is compared
// with the store instead of being sent again. onCommit, if not nil, is told
// of each batch this call sent and recorded.
func (s *Store) commitPending(ctx context.Context, l ledger.Ledger, now func() time.Time, onCommit func(*BatchRecord, CommitRecord)) (int, error) {
	if err := s.followRemined(ctx, l, now); err != nil {
		return 0, err
	}
	committed := 0
	var exists uint64 // a next id the ledger said was taken once already
	for {
		next, err := ledgerRead(ctx, l.NextBatchID)
		if err != nil {
			return committed, fmt.Errorf("read ledger next batch id: %w", err)
		}
		// Record commits we lost track of (crash after send, before record).
		for id := next - 1; id >= 1; id-- {
			if _, err := s.Commit(id); err == nil {
				break
			} else if !errors.Is(err, ErrNotFound) {
				return committed, err
			}
			rec, err := s.Batch(id)
			if errors.Is(err, ErrNotFound) {
				// What it moved, and where: a batch sent with clearing's
				// key by someone else credits operators on the contract
				// (an outside test's forged one, +5000.00 EUR, showed
				// only as a batch id).
				what := ""
				if onChain, err := ledgerRead(ctx, func(ctx context.Context) (ledger.Batch, error) { return l.Batch(ctx, id) }); err == nil {
					what = " (on the ledger: " + chainBatchText(onChain) + ")"
				}
				return committed, fmt.Errorf("%w: batch %d, never sealed here%s: the clearing house's key used by another process (stolen?), or the wrong store or contract; nothing more is committed (faregate ledger audit)", ErrForeignBatch, id, what)
			}
			if err != nil {
				return committed, err
			}
			onChain, err := ledgerRead(ctx, func(ctx context.Context) (ledger.Batch, error) { return l.Batch(ctx, id) })
			if err != nil {
				return committed, fmt.Errorf("read ledger batch %d: %w", id, err)
			}
			if diff := ledgerDiff(rec, onChain); diff != "" {
				return committed, fmt.Errorf("%w: batch %d on the ledger differs from the store's: %s", ErrForeignBatch, id, diff)
			}
			if onChain.TxHash == ([32]byte{}) || onChain.BlockNumber == 0 {
				return committed, fmt.Errorf("read ledger batch %d: the chain names no transaction or block for it", id)
			}
			// Where and when the chain says it went: the record is what
			// the API, the statements and `ledger prove` show.
			cr := CommitRecord{BatchID: id, TxHash: onChain.TxHash, BlockNumber: onChain.BlockNumber, At: onChain.CommittedAt, Recovered: true}
			if cr.At.IsZero() {
				cr.At = now()
			}
			if err := s.recordCommit(cr); err != nil {
				return committed, err
			}
			committed++
			if onCommit != nil {
				onCommit(rec, cr)
			}
		}
		rec, err := s.Batch(next)
		if errors.Is(err, ErrNotFound) {
			return committed, nil
		}
		if err != nil {
			return committed, err
		}
		if cr, err := s.Commit(next); err == nil {
			// The store committed the batch the ledger calls next. Either
			// the node's next-id read lags its own state (a replica behind
			// a load balancer: the batch is there when read by id), or the
			// ledger truly lacks it. Nothing is sent in either case.
			onChain, err := ledgerRead(ctx, func(ctx context.Context) (ledger.Batch, error) { return l.Batch(ctx, next) })
			switch {
			case err == nil && ledgerDiff(rec, onChain) == "":
				return committed, fmt.Errorf("%w: its next batch id reads %d, yet batch %d is on it as this store committed it; is the node's state behind its head (a lagging replica)?", ErrLedgerLags, next, next)
			case err == nil:
				return committed, fmt.Errorf("%w: batch %d on the ledger differs from the store's: %s", ErrForeignBatch, next, ledgerDiff(rec, onChain))
			case !errors.Is(err, ledger.ErrBatchNotFound):
				return committed, fmt.Errorf("read ledger batch %d: %w", next, err)
			}
			if h, ok := l.(interface {
				HeadBlock(context.Context) (uint64, error)
			}); ok {
				if head, err := ledgerRead(ctx, h.HeadBlock); err == nil && head < cr.BlockNumber {
					// Behind the block that mined it: a node syncing, or cut
					// off from its peers (an outside test's was called
					// another chain). It may yet get there.
					return committed, fmt.Errorf("%w: its head is block %d, behind block %d, which mined batch %d (tx 0x%x) that this store committed: a node syncing or cut off from its peers; nothing is sent until it holds the batch (check the node's peers, or --eth-rpc)",
						ErrLedgerLags, head, cr.BlockNumber, next, cr.TxHash)
				}
			}
			return committed, fmt.Errorf("%w: its next batch id is %d, yet this store committed batch %d in tx 0x%x (block %d) at %s: another chain with a contract at this address, or a chain rewound; nothing is sent again (check --eth-rpc, and `faregate ledger audit`)",
				ErrLedgerBehindStore, next, next, cr.TxHash, cr.BlockNumber, cr.At.UTC().Format(time.RFC3339))
		} else if !errors.Is(err, ErrNotFound) {
			return committed, err
		}
		// Bounded: a node that took the connection and never answers (over
		// a WebSocket, where no HTTP request bound applies) held the commit
		// loop, and every later batch, for good (an outside review). The
		// next tick finds a batch sent meanwhile on chain, as after a crash.
		cctx, cancel := context.WithTimeout(ctx, ledgerCommitTimeout)
		rcpt, err := l.CommitBatch(cctx, rec.LedgerBatch())
		if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("the ledger did not answer within %s: %w", ledgerCommitTimeout, err)
		}
		cancel()
		if errors.Is(err, ledger.ErrBatchExists) {
			if exists == next {
				// Twice the same answer: the node contradicts itself, and
				// re-reading at once would only spin. The commit loop
				// says so and tries again at its next tick.
				return committed, fmt.Errorf("%w: its next batch id reads %d, yet batch %d exists when sent (%v); is the node's state behind its head (a lagging replica)?", ErrLedgerLags, next, next, err)
			}
			exists = next
			continue // someone (a previous run) got there first; re-check
		}
		if err != nil {
			return committed, fmt.Errorf("commit batch %d: %w", rec.ID, err)
		}
		cr := CommitRecord{BatchID: rec.ID, TxHash: rcpt.TxHash, BlockNumber: rcpt.BlockNumber, GasUsed: rcpt.GasUsed, At: now()}
		if err := s.recordCommit(cr); err != nil {
			return committed, err
		}
		committed++
		if onCommit != nil {
			onCommit(rec, cr)
		}
	}
}
