package clearing

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// Quarantine reasons, stable strings that operators can count and alert on.
const (
	ReasonMalformed        = "malformed"
	ReasonUnknownTerminal  = "unknown-terminal"
	ReasonTerminalRevoked  = "terminal-revoked"
	ReasonOperatorMismatch = "operator-mismatch"
	ReasonStopMismatch     = "stop-mismatch"
	ReasonBadSignature     = "bad-signature"
	ReasonSequenceReplayed = "sequence-replayed"
	// ReasonSequenceConflict: an event its terminal really signed (its
	// signature checked) under a sequence already applied with another
	// digest: a second unit signing with the terminal's key, its outbox
	// restored from a backup, or, with verifier partitions, a forged
	// applied event (`ledger audit` checks its signature again). The
	// genuine event is kept in the quarantine stream; the terminal, whose
	// confirmations cover whole ranges, keeps it in its outbox too.
	ReasonSequenceConflict = "sequence-conflict"
	// ReasonSequenceAhead: a sequence more than MaxSequenceJump above its
	// terminal's watermark.
	ReasonSequenceAhead = "sequence-ahead"
	// ReasonEventIDTaken: an event whose id (the terminal's choice) names
	// another event already applied, or another in the same batch. Applied,
	// it would overwrite that event's record: its signed bytes, its proof
	// and its operator's view. Refused for good, its sequence recorded as
	// rejected, so its terminal is told and goes on (a genuine terminal's
	// random ids never collide: only a misused key or a bug makes one).
	ReasonEventIDTaken = "event-id-taken"
	// ReasonDeviceTimeAhead: the event's signed device time is more than
	// Config.MaxDeviceTimeAhead ahead of clearing's fare clock. Applied, a
	// year 2200 tap would open a fare day that never closes; judged for
	// good, a tap would be lost to a wrong clearing clock. So it is held:
	// not recorded, the gate keeps it and sends it again, and it applies
	// once clearing's clock is within the bound of it.
	ReasonDeviceTimeAhead = "device-time-ahead"
	// ReasonDeviceTimeFarAhead: the event's signed device time is more than
	// Config.MaxDeviceTimeHeld ahead of clearing's fare clock: a gate whose
	// clock is broken (a year 2200 tap), not a clock drifting or a clearing
	// clock some days wrong. Rejected for good, recorded, so the gate goes
	// on: held, it would keep every later tap of its gate unconfirmed in
	// the outbox for as long as it claims that date, until the disk
	// margin refused taps.
	ReasonDeviceTimeFarAhead = "device-time-far-ahead"
	// ReasonDeviceTimeBehind: the event's signed device time is more than
	// Config.MaxDeviceTimeBehind before clearing's fare clock: a gate whose
	// clock was reset (a 1971 tap) or set a month back. Rejected for good,
	// recorded, so the gate goes on: the tap is signed with that time and
	// could never be dated right, and charged it would open a fare day
	// that was billed long ago.
	ReasonDeviceTimeBehind = "device-time-behind"
	// ReasonSubjectMismatch: the event names another terminal or operator
	// than the subject it was published on.
	ReasonSubjectMismatch = "subject-mismatch"
)

// Outcome is what happened to one event in a batch.
type Outcome uint8

// Outcomes.
const (
	Applied Outcome = iota + 1
	Duplicate
	Quarantined
)

// period is the open settlement period: it will become batch ID and covers
// apply indexes from StartIndex.
type period struct {
	ID         uint64    `json:"id"`
	StartIndex uint64    `json:"start_index"`
	Start      time.Time `json:"start"`
}

// cursor is the in-memory copy of the store's counters. Only the applying
// goroutine touches it; it is reloaded from the store on start.
type cursor struct {
	nextApply    uint64
	nextTransfer uint64
	period       period
}

func (s *Store) loadCursor(now time.Time) (cursor, error) {
	var c cursor
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		if c.nextApply, err = getU64(txn, metaNextApply); err != nil {
			return err
		}
		if c.nextTransfer, err = getU64(txn, metaNextTransfer); err != nil {
			return err
		}
		item, err := txn.Get(metaPeriod)
		if errors.Is(err, badger.ErrKeyNotFound) {
			c.period = period{ID: 1, StartIndex: 0, Start: now.UTC().Truncate(time.Second)}
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &c.period) })
	})
	if err != nil {
		return c, fmt.Errorf("load clearing counters: %w", err)
	}
	if c.period.ID == 1 && c.nextApply == 0 {
		// A fresh store: persist the first period's start so a restart
		// before the first seal keeps the bounds.
		pb, _ := json.Marshal(c.period)
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(metaPeriod, pb) }); err != nil {
			return c, fmt.Errorf("store first period: %w", err)
		}
	}
	return c, nil
}

// candidate is one decoded, signature-verified event ready to apply, or a
// message to quarantine.
type candidate struct {
	ev     *fare.Signed
	digest [32]byte
	fare   fare.Amount
	// rider is the journal account the fare is debited to (pseudonymous).
	rider string
	// reason is set when the event must be quarantined (malformed, unknown
	// terminal, bad signature...).
	reason string
	detail string
	// reject says the quarantined event came from its own terminal (the
	// subject proves it) and is refused for good: its sequence is recorded
	// as rejected so the watermark moves past it and the terminal is told.
	reject bool
}

// touch is what one applied batch did to a terminal's sequences.
type touch struct {
	from, to       uint64 // watermark before and after
	minSeq, maxSeq uint64 // sequences seen in the batch
	// The confirmation of (from, confirmTo]: confirmTo is to unless the
	// rejections on the way fill one confirmation; digest is the one
	// recorded at confirmTo.
	confirmTo uint64
	digest    [32]byte
	rejected  []fare.Rejection
	// rangeDigest is fare.RangeHash over (from, confirmTo]: what a
	// terminal that checks whole ranges compares with its outbox.
	rangeDigest [32]byte
}

// applyResult summarises one applied batch.
type applyResult struct {
	// first is the apply index of the batch's first applied event;
	// applied its events' leaves and postings, for the open period.
	first     uint64
	leaves    []appliedEntry
	outcomes  []Outcome
	reasons   []string // per candidate, set for Quarantined
	touched   map[string]*touch
	applied   int
	duplicate int
	rejected  int
	pricing   PricingStats
}

// apply writes one batch of candidates in a single synced transaction
// (prepare, then commit): cur is advanced only if the commit succeeds.
func (s *Store) apply(cands []candidate, cur *cursor, now time.Time) (applyResult, error) {
	pb, err := s.prepare(s.db.NewTransaction(true), nil, cands, *cur, now)
	if err != nil {
		return pb.res, err
	}
	if err := s.commit(pb); err != nil {
		return pb.res, err
	}
	s.committed(pb, cur)
	return pb.res, nil
}

// committed moves cur past a committed batch and notes its events in the
// open period.
func (s *Store) committed(pb *preparedBatch, cur *cursor) {
	*cur = pb.next
	s.appliedN.Store(pb.next.nextApply)
	s.open.add(pb.res.first, pb.res.leaves)
}

// preparedBatch is a batch applied into its open transaction: committing
// it makes it durable.
type preparedBatch struct {
	bt   *batchTxn
	res  applyResult
	next cursor // the counters once it is committed
}

// commit commits pb synchronously (synced to disk).
func (s *Store) commit(pb *preparedBatch) error {
	defer pb.bt.txn.Discard()
	if err := pb.bt.txn.Commit(); err != nil {
		s.forgetUncommitted()
		return fmt.Errorf("commit applied batch: %w", err)
	}
	return nil
}

// commitAsync starts pb's synced commit and returns at once; done receives
// its outcome (after a failure the caller must reset the rider cache). The
// next batch may be prepared meanwhile, in a transaction opened before this
// call, reading pb's writes through batchTxn.prev.
func (s *Store) commitAsync(pb *preparedBatch) <-chan error {
	done := make(chan error, 1)
	pb.bt.txn.CommitWith(func(err error) {
		if err != nil {
			err = fmt.Errorf("commit applied batch: %w", err)
		}
		done <- err
	})
	return done
}

// prepare applies one batch of candidates into txn, read through prev
// (the writes of the batch before, while it commits; see batchTxn): the
// permanent dedup by (terminal, sequence), the event record, its apply
// index, the priced postings as balanced transfers, the rider days, and the
// terminals' watermarks. It is the only writer of those keys. cur is the
// counters after the batch before. Nothing is durable until the batch is
// committed; its rider days are in the cache at once, for the next batch
// (a failed commit empties the cache).
func (s *Store) prepare(txn *badger.Txn, prev map[string][]byte, cands []candidate, cur cursor, now time.Time) (*preparedBatch, error) {
	// A priced event writes about 7 keys (dedup, event, apply index,
	// transfers, rider day and its week, index entries): sized so the
	// batch's write map does not grow by rehashing.
	bt := newBatchTxn(txn, prev, 8*len(cands))
	pb := &preparedBatch{bt: bt}
	res, next, err := s.prepareInto(bt, cands, cur, now)
	pb.res, pb.next = res, next
	if err != nil {
		txn.Discard()
		s.forgetUncommitted() // they may hold what this batch changed
		return pb, err
	}
	return pb, nil
}

func (s *Store) prepareInto(txn *batchTxn, cands []candidate, cur cursor, now time.Time) (applyResult, cursor, error) {
	if now.Before(cur.period.Start) {
		// The open period starts after now: its predecessor's end was put
		// past its last event, rounded up to a whole second (a seal put
		// off while the lease was stale), or the clock stepped back. Its
		// events are stamped at its start, so [start, end) holds every
		// event of a batch (an outside review).
		now = cur.period.Start
	}
	// The fare book as the batch begins: a feed version scheduled while
	// clearing runs is installed between batches (feedschedule.go).
	pricing := s.pricing.Load()
	res := applyResult{
		outcomes: make([]Outcome, len(cands)),
		reasons:  make([]string, len(cands)),
		touched:  make(map[string]*touch),
	}
	see := func(term string, seq uint64) {
		t, ok := res.touched[term]
		if !ok {
			res.touched[term] = &touch{minSeq: seq, maxSeq: seq}
			return
		}
		t.minSeq, t.maxSeq = min(t.minSeq, seq), max(t.maxSeq, seq)
	}
	next := cur
	riders := 0 // flat fares: no rider state to size
	if pricing != nil {
		riders = len(cands)
	}
	book := newRiderBatch(s.cache, riders)
	book.billedBefore = fares.Date(s.billedBefore.Load())
	// freshEvent is an event applied in this batch, its records written
	// once the batch is priced.
	type freshEvent struct {
		c   *candidate
		idx uint64
		tap pricedTap
	}
	var fresh []freshEvent
	// ids are the event ids applied in this batch (their records are
	// written once the batch is priced, so the store cannot tell yet).
	ids := make(map[fare.EventID]struct{}, len(cands))
	balances := make(map[string]*Balance)
	account := func(name string) (*Balance, error) {
		if b, ok := balances[name]; ok {
			return b, nil
		}
		b, ok := s.balances.get(name)
		if !ok {
			var err error
			if b, err = txn.balance(name); err != nil {
				return nil, fmt.Errorf("balance %s: %w", name, err)
			}
		}
		balances[name] = &b
		return &b, nil
	}
	// reject records cands[i]'s sequence as used up by a refused event.
	reject := func(i int, c *candidate) error {
		recorded, resent, err := s.recordRejection(txn, c)
		if err != nil {
			return err
		}
		switch {
		case recorded:
			res.rejected++
			see(c.ev.Terminal, c.ev.Sequence)
		case resent:
			// The very message rejected before, sent again (its
			// confirmation was late): a duplicate, not a second
			// quarantine; tell the terminal again.
			res.outcomes[i], res.reasons[i] = Duplicate, ""
			res.duplicate++
			see(c.ev.Terminal, c.ev.Sequence)
		}
		return nil
	}
	for i := range cands {
		c := &cands[i]
		if c.reason != "" {
			res.outcomes[i], res.reasons[i] = Quarantined, c.reason
			if c.reject && c.ev.Sequence > 0 {
				far, err := s.seqs.farAhead(s, txn, c.ev.Terminal, c.ev.Sequence)
				if err != nil {
					return res, next, err
				}
				if far {
					c.reject = false // recorded, it would open the same gap
				}
			}
			if c.reject && c.ev.Sequence > 0 {
				if err := reject(i, c); err != nil {
					return res, next, err
				}
			}
			continue
		}
		e := &c.ev.Event
		far, err := s.seqs.farAhead(s, txn, e.Terminal, e.Sequence)
		if err != nil {
			return res, next, err
		}
		if far {
			res.outcomes[i], res.reasons[i] = Quarantined, ReasonSequenceAhead
			c.detail = fmt.Sprintf("terminal %s sequence %d is more than %d above its watermark (every sequence below applied or rejected): not applied (a gap that size could never be filled)", e.Terminal, e.Sequence, MaxSequenceJump)
			continue
		}
		hi, known := s.seqs.get(s, e.Terminal)
		dk := dedupKey(e.Terminal, e.Sequence)
		var same bool
		err = badger.ErrKeyNotFound // a sequence above every one held is new
		if !known || e.Sequence <= hi {
			err = txn.get(dk, func(v []byte) error {
				if len(v) < 32 {
					return fmt.Errorf("dedup record of terminal %s sequence %d: %d bytes, want a 32-byte digest first (a damaged store: see faregate ledger audit)", e.Terminal, e.Sequence, len(v))
				}
				same = bytes.Equal(v[:32], c.digest[:])
				return nil
			})
		}
		switch {
		case err == nil:
			if same {
				res.outcomes[i] = Duplicate
				res.duplicate++
				// The terminal resent: tell it again how far it is confirmed.
				see(e.Terminal, e.Sequence)
			} else {
				res.outcomes[i], res.reasons[i] = Quarantined, ReasonSequenceReplayed
				c.detail = fmt.Sprintf("terminal %s sequence %d already used by another event", e.Terminal, e.Sequence)
			}
			continue
		case !errors.Is(err, badger.ErrKeyNotFound):
			return res, next, fmt.Errorf("read dedup %s/%d: %w", e.Terminal, e.Sequence, err)
		}
		// Dedup is by (terminal, sequence); the id must be new as well.
		taken, err := s.eventIDTaken(txn, ids, e.ID)
		if err != nil {
			return res, next, err
		}
		if taken {
			c.reason = ReasonEventIDTaken
			c.detail = fmt.Sprintf("terminal %s sequence %d: event id %s already names another applied event: refused for good (a terminal's key misused, or a bug)", e.Terminal, e.Sequence, e.ID)
			if s.signedByTerminal != nil && !s.signedByTerminal(c.ev) {
				// A verifier vouched for it, but its terminal did not sign
				// it: junk, which uses up nothing.
				c.badSignature()
			}
			res.outcomes[i], res.reasons[i] = Quarantined, c.reason
			if c.reject = c.reason == ReasonEventIDTaken; c.reject {
				if err := reject(i, c); err != nil {
					return res, next, err
				}
			}
			continue
		}
		ids[e.ID] = struct{}{}
		dv := make([]byte, 33)
		copy(dv, c.digest[:])
		dv[32] = statusApplied
		// The dedup record now, so a copy later in the batch is a
		// duplicate; the rest once the batch is priced.
		if err := txn.set(dk, dv); err != nil {
			return res, next, fmt.Errorf("apply event %s: %w", e.ID, err)
		}
		s.seqs.saw(e.Terminal, e.Sequence)
		fresh = append(fresh, freshEvent{c: c, idx: next.nextApply, tap: pricedTap{e: e, rider: c.rider}})
		next.nextApply++
		res.outcomes[i] = Applied
		res.applied++
		see(e.Terminal, e.Sequence)
	}
	if pricing != nil {
		taps := make([]*pricedTap, len(fresh))
		for i := range fresh {
			taps[i] = &fresh[i].tap
		}
		if err := pricing.priceAll(txn, book, taps, &res.pricing); err != nil {
			return res, next, err
		}
	}
	for i := range fresh {
		f := &fresh[i]
		c, e, idx := f.c, f.tap.e, f.idx
		er := EventRecord{ApplyIndex: idx, Fare: c.fare, AppliedAt: now, Raw: c.ev.Raw}
		postings := er.PostingsOf(e.Operator)
		if pricing != nil {
			postings = f.tap.postings
			er.Postings, er.Unpriced = postings, f.tap.unpriced
			er.Fare = 0
			for _, p := range postings {
				er.Fare += p.Amount
			}
		}
		rec, err := er.MarshalBinary()
		if err != nil {
			return res, next, err
		}
		av := appliedValue(c.digest, e.ID, postings)
		if err := txn.setAll(eventKey(e.ID), rec, keyU64(pApplied, idx), av); err != nil {
			return res, next, fmt.Errorf("apply event %s: %w", e.ID, err)
		}
		// The open period's copy is what a seal reading the store back
		// would find (batchContents).
		a, err := parseApplied(av)
		if err != nil {
			return res, next, fmt.Errorf("apply event %s: %w", e.ID, err)
		}
		if len(res.leaves) == 0 {
			res.first = idx
		}
		res.leaves = append(res.leaves, a)
		for _, p := range postings {
			if p.Amount == 0 {
				continue
			}
			// Rider pays operator; a negative posting (a later discount, a
			// corrected maximum fare) is the reverse, never an edit.
			t := Transfer{
				Seq: next.nextTransfer, ID: e.ID,
				Debit: c.rider, Credit: OperatorAccount(p.Operator),
				Amount: p.Amount, Operator: p.Operator, ApplyIndex: idx, At: now,
			}
			if p.Amount < 0 {
				t.Debit, t.Credit, t.Amount = OperatorAccount(p.Operator), c.rider, -p.Amount
			}
			next.nextTransfer++
			tb, err := t.MarshalBinary()
			if err != nil {
				return res, next, err
			}
			if err := txn.set(keyU64(pTransfer, t.Seq), tb); err != nil {
				return res, next, fmt.Errorf("journal event %s: %w", e.ID, err)
			}
			dr, err := account(t.Debit)
			if err != nil {
				return res, next, err
			}
			cr, err := account(t.Credit)
			if err != nil {
				return res, next, err
			}
			var okD, okC bool
			dr.Debits, okD = dr.Debits.Add(t.Amount)
			cr.Credits, okC = cr.Credits.Add(t.Amount)
			if !okD || !okC {
				return res, next, fmt.Errorf("transfer of event %s, %d from %s to %s: a balance would wrap int64", t.ID, t.Amount, t.Debit, t.Credit)
			}
		}
	}
	if err := book.flush(txn, &res.pricing); err != nil {
		return res, next, err
	}
	for _, b := range balances {
		if err := txn.putBalance(*b); err != nil {
			return res, next, fmt.Errorf("store balance %s: %w", b.Account, err)
		}
		s.balances.put(*b)
	}
	// Advance each touched terminal's watermark over contiguous sequences.
	for term, tc := range res.touched {
		wk := keyStr(pWatermark, term)
		w, err := txn.u64(wk)
		if err != nil {
			return res, next, fmt.Errorf("watermark %s: %w", term, err)
		}
		start := w
		tc.from = w
		rh := fare.NewRangeHash(w)
		full := false // the confirmation's rejections are full: it stops at tc.confirmTo
		for {
			// What the terminal's confirmation needs, read on the way: the
			// digest at its watermark and the rejections below it.
			if s.seqs.above(s, term, w+1) {
				break // nothing above the highest record
			}
			err := txn.get(dedupKey(term, w+1), func(v []byte) error {
				if full {
					return nil
				}
				if len(v) < 33 {
					return fmt.Errorf("dedup record %s/%d: corrupt, %d bytes", term, w+1, len(v))
				}
				if v[32] == statusQuarantined {
					if len(tc.rejected) == fare.MaxRejections {
						full = true
						return nil
					}
					r := fare.Rejection{Sequence: w + 1, Reason: string(v[33:])}
					copy(r.Digest[:], v)
					tc.rejected = append(tc.rejected, r)
				}
				copy(tc.digest[:], v)
				tc.confirmTo = w + 1
				return rh.Add(w+1, tc.digest)
			})
			if errors.Is(err, badger.ErrKeyNotFound) {
				break
			}
			if err != nil {
				return res, next, fmt.Errorf("watermark %s: %w", term, err)
			}
			w++
		}
		if w != start {
			if err := txn.setU64(wk, w); err != nil {
				return res, next, err
			}
		}
		tc.to, tc.rangeDigest = w, rh.Sum()
	}
	if err := txn.setU64(metaNextApply, next.nextApply); err != nil {
		return res, next, err
	}
	if err := txn.setU64(metaNextTransfer, next.nextTransfer); err != nil {
		return res, next, err
	}
	s.cache.install(book)
	return res, next, nil
}

// recordRejection marks c's sequence as rejected for good, unless the
// sequence is already decided (applied, or rejected before): the dedup value
// is the refused message's digest, statusQuarantined and the reason. resent
// reports a sequence decided by this very message before.
func (s *Store) recordRejection(txn *batchTxn, c *candidate) (recorded, resent bool, err error) {
	e := &c.ev.Event
	dk := dedupKey(e.Terminal, e.Sequence)
	if !s.seqs.above(s, e.Terminal, e.Sequence) {
		err := txn.get(dk, func(v []byte) error { resent = len(v) >= 32 && bytes.Equal(v[:32], c.digest[:]); return nil })
		if err == nil {
			return false, resent, nil
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return false, false, fmt.Errorf("read dedup %s/%d: %w", e.Terminal, e.Sequence, err)
		}
	}
	v := make([]byte, 0, 33+len(c.reason))
	v = append(v, c.digest[:]...)
	v = append(v, statusQuarantined)
	v = append(v, c.reason...)
	if err := txn.set(dk, v); err != nil {
		return false, false, fmt.Errorf("record rejection %s/%d: %w", e.Terminal, e.Sequence, err)
	}
	s.seqs.saw(e.Terminal, e.Sequence)
	return true, false, nil
}

func setAll(txn *badger.Txn, kv ...[]byte) error {
	for i := 0; i < len(kv); i += 2 {
		if err := txn.Set(kv[i], kv[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// appliedValue is the value under an apply index: what a settlement batch
// needs of each event (leaf, id, and its postings for the nets).
//
//	one posting:  digest[32] | event id[16] | amount i64 | operator
//	otherwise:    digest[32] | event id[16] | total i64 | 0x00 |
//	              n u8 | n × (amount i64 | operator str8)
//
// Operator ids never start with a zero byte, so the two read apart.
func appliedValue(digest [32]byte, id fare.EventID, postings []Posting) []byte {
	v := make([]byte, 0, 58+len(postings)*24)
	v = append(v, digest[:]...)
	v = append(v, id[:]...)
	if len(postings) == 1 {
		v = binary.BigEndian.AppendUint64(v, uint64(postings[0].Amount))
		return append(v, postings[0].Operator...)
	}
	var total fare.Amount
	for _, p := range postings {
		total += p.Amount
	}
	v = binary.BigEndian.AppendUint64(v, uint64(total))
	v = append(v, 0, byte(len(postings)))
	for _, p := range postings {
		v = binary.BigEndian.AppendUint64(v, uint64(p.Amount))
		v = append(v, byte(len(p.Operator)))
		v = append(v, p.Operator...)
	}
	return v
}

type appliedEntry struct {
	digest   [32]byte
	id       fare.EventID
	fare     fare.Amount // the total
	postings []Posting
}

func parseApplied(v []byte) (appliedEntry, error) {
	var a appliedEntry
	if len(v) < 57 {
		return a, fmt.Errorf("corrupt applied record of %d bytes", len(v))
	}
	copy(a.digest[:], v)
	copy(a.id[:], v[32:])
	a.fare = fare.Amount(binary.BigEndian.Uint64(v[48:]))
	if v[56] != 0 {
		a.postings = []Posting{{Operator: string(v[56:]), Amount: a.fare}}
		return a, nil
	}
	rest := v[57:]
	if len(rest) < 1 {
		return a, fmt.Errorf("corrupt applied record: truncated postings")
	}
	n := int(rest[0])
	rest = rest[1:]
	var total fare.Amount
	for range n {
		if len(rest) < 9 || len(rest) < 9+int(rest[8]) {
			return a, fmt.Errorf("corrupt applied record: truncated postings")
		}
		p := Posting{Amount: fare.Amount(binary.BigEndian.Uint64(rest)), Operator: string(rest[9 : 9+int(rest[8])])}
		rest = rest[9+int(rest[8]):]
		total += p.Amount
		a.postings = append(a.postings, p)
	}
	if len(rest) != 0 || total != a.fare {
		return a, fmt.Errorf("corrupt applied record: postings sum to %d, total %d, %d trailing bytes", total, a.fare, len(rest))
	}
	return a, nil
}

// eventIDTaken reports whether id names an event applied before or earlier
// in this batch (batch).
func (s *Store) eventIDTaken(txn *batchTxn, batch map[fare.EventID]struct{}, id fare.EventID) (bool, error) {
	if _, ok := batch[id]; ok {
		return true, nil
	}
	err := txn.get(eventKey(id), func([]byte) error { return nil })
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("read event %s: %w", id, err)
}
