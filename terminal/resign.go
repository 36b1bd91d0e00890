package terminal

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// A gate can learn, from clearing's signed answers, that clearing holds
// events of this terminal under sequences this outbox also used, or never
// reached: the outbox was restored from a backup (a re-imaged unit), a
// second unit signs with its key, or a forged event was applied under one
// of its sequences. The gate's own taps under those sequences were never
// applied (clearing quarantines them as sequence-conflict), and they are
// genuine: each is signed again under a new sequence at the end of the
// outbox, keeping its event id, so it is charged once (clearing refuses an
// event id it applied, so a copy never applies twice). And when clearing's
// record of the terminal runs past the outbox's last sequence, the
// sequence jumps past it, so the taps the gate takes next are not signed
// under sequences clearing holds.
//
// The jump leaves sequences this outbox holds no event under, a skip
// (from, to]: until it is confirmed to from, the outbox asks clearing to
// confirm no further than from (its own events, checked as always), and
// once confirmed to from it is confirmed to to.
var (
	keySkipFrom = []byte("mskip-from")
	keySkipTo   = []byte("mskip-to")
)

// Renumbered counts the outbox's events signed again under a new sequence
// because clearing holds another event under theirs.
func (t *Terminal) Renumbered() uint64 { return t.renumbered.Load() }

// readSkip reads a pending skip (to 0: none).
func readSkip(txn *badger.Txn) (from, to uint64, err error) {
	to, err = getU64(txn, keySkipTo)
	if err != nil || to == 0 {
		return 0, 0, err
	}
	from, err = getU64(txn, keySkipFrom)
	return from, to, err
}

// maxSequence bounds the sequences the outbox moves to on clearing's
// word (its signed answers): far past any gate's life, far from wrapping.
const maxSequence = 1 << 62

// loadSkip reads the outbox's pending skip, if any.
func (t *Terminal) loadSkip(txn *badger.Txn) error {
	from, to, err := readSkip(txn)
	if err != nil || to == 0 {
		return err
	}
	if from >= to || to > t.lastSeq.Load() || t.confirmed.Load() > from {
		return fmt.Errorf("outbox skip (%d, %d] with last sequence %d, confirmed %d: %w", from, to, t.lastSeq.Load(), t.confirmed.Load(), errCorruptSkip)
	}
	t.skipFrom.Store(from)
	t.skipTo.Store(to)
	return nil
}

var errCorruptSkip = fmt.Errorf("corrupt skip record")

// skipPast moves the outbox's sequence to w, clearing's watermark of this
// terminal as a signed answer to its own request said, when w is past the
// outbox's last sequence and no skip is pending. It says whether it did.
func (t *Terminal) skipPast(w uint64) (bool, error) {
	if err := t.room.checkAbove(time.Now(), openFloor); err != nil {
		t.diskLog.Add("sequence not moved", err.Error())
		return false, errNoRoom
	}
	t.seqMu.Lock()
	defer t.seqMu.Unlock()
	if err := t.undoFailedCommit(); err != nil { // nothing moves over refused taps
		return false, err
	}
	last := t.lastSeq.Load()
	if w <= last || t.skipTo.Load() != 0 {
		return false, nil
	}
	if w > maxSequence {
		return false, fmt.Errorf("clearing's record of this terminal runs to sequence %d, past %d: not followed (a sequence near 2^64 would wrap the outbox's)", w, uint64(maxSequence))
	}
	// Every event confirmed: the outbox is confirmed to w at once, in the
	// same transaction (a skip whose start is the confirmed watermark would
	// wait for a confirmation that never comes, were the process to stop
	// before it passed).
	all := t.confirmed.Load() == last
	err := t.update(true, func(txn *badger.Txn) error {
		if all {
			if err := setU64(txn, keyConfirmed, w); err != nil {
				return err
			}
		} else {
			if err := setU64(txn, keySkipFrom, last); err != nil {
				return err
			}
			if err := setU64(txn, keySkipTo, w); err != nil {
				return err
			}
		}
		return setU64(txn, keyLastSeq, w)
	})
	if err != nil {
		return false, fmt.Errorf("move the outbox's sequence past clearing's %d: %w", w, err)
	}
	t.lastSeq.Store(w) // before the skip: Pending may count it a moment, never less
	if all {
		t.confirmed.Store(w)
	} else {
		t.skipFrom.Store(last)
		t.skipTo.Store(w)
	}
	if err := t.hw.note(w); err != nil {
		t.log.Error("outbox high-water mark", "err", err)
	}
	return true, nil
}

// update runs fn in a read-write transaction committed through commitTxn,
// for the outbox's sequence records (its confirmed watermark, skip, last
// sequence, renumbering). Badger makes a transaction's writes readable
// before it syncs them, so a commit whose sync failed may still be read,
// and made durable by a later commit or at close: on any failed commit the
// sequences in memory are read back from the store (reloadSequences), so
// they follow what is read. Otherwise, after one failed sync, every later
// confirmation looked for entries already deleted and the outbox stopped
// draining until a restart, and a tap could be numbered under a sequence
// a jump had already passed, which the next start refused as a corrupt
// skip (an outside review). seqHeld: the caller holds seqMu, so the last
// sequence is read back too.
func (t *Terminal) update(seqHeld bool, fn func(*badger.Txn) error) error {
	txn := t.db.NewTransaction(true)
	defer txn.Discard()
	if err := fn(txn); err != nil {
		return err
	}
	err := t.commitTxn(txn)
	if err != nil {
		t.reloadSequences(seqHeld)
	}
	return err
}

// reloadSequences sets the outbox's sequences in memory to what its store
// reads (see update). The last sequence, a renumbering and a skip are read
// back only with seqMu held (seqHeld: no other writer of them runs), and
// only after undoFailedCommit has left nothing of refused taps (every
// caller undoes first). Only moves forward are taken: the watermark up (a
// skip it reaches passed, as confirmedTo does), a skip only where none is
// held and the watermark is below its end, so a confirmation running
// beside it is never undone.
func (t *Terminal) reloadSequences(seqHeld bool) {
	var last, conf, from, to, rebaseBy uint64
	unanchored := false
	err := t.db.View(func(txn *badger.Txn) (err error) {
		if conf, err = getU64(txn, keyConfirmed); err != nil {
			return err
		}
		if from, to, err = readSkip(txn); err != nil {
			return err
		}
		if !seqHeld {
			return nil
		}
		if last, err = getU64(txn, keyLastSeq); err != nil {
			return err
		}
		if rebaseBy, err = getU64(txn, keyRebaseBy); err != nil {
			return err
		}
		if _, err := txn.Get(keyUnanchored); err == nil {
			unanchored = true
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		t.log.Error("read the outbox's sequences back after a failed commit", "err", err)
		return
	}
	if seqHeld {
		if last > t.lastSeq.Load() {
			t.lastSeq.Store(last)
			if err := t.hw.note(last); err != nil {
				t.log.Error("outbox high-water mark", "err", err)
			}
		}
		t.rebasing.Store(rebaseBy != 0)
		t.unanchored.Store(unanchored)
		if to != 0 && t.skipTo.Load() == 0 && to > t.confirmed.Load() {
			t.skipFrom.Store(from)
			t.skipTo.Store(to)
		}
	}
	if conf > t.confirmed.Load() {
		t.confirmedTo(conf)
	}
}

// confirmIn records, in txn, the outbox confirmed to seq, or, where seq is
// a pending skip's start, to the skip's end, the skip passed in the same
// transaction: in two, a stop between them left the outbox confirmed to
// the start, waiting for ever for a confirmation of sequences it holds no
// event under (an outside review's kill -9 stopped a gate's draining for
// good). It returns what it recorded; confirmedTo takes it once txn is
// committed.
func (t *Terminal) confirmIn(txn *badger.Txn, seq uint64) (uint64, error) {
	if from, to := t.skipFrom.Load(), t.skipTo.Load(); to != 0 && seq == from {
		if err := txn.Delete(keySkipFrom); err != nil {
			return 0, err
		}
		if err := txn.Delete(keySkipTo); err != nil {
			return 0, err
		}
		seq = to
	}
	return seq, setU64(txn, keyConfirmed, seq)
}

// confirmedTo takes what a committed confirmIn recorded.
func (t *Terminal) confirmedTo(seq uint64) {
	t.confirmed.Store(seq)
	if to := t.skipTo.Load(); to != 0 && seq >= to {
		t.skipTo.Store(0)
		t.skipFrom.Store(0)
	}
}

// passSkip confirms the outbox to the end of its pending skip once it is
// confirmed to the skip's start (an outbox an earlier build left so).
func (t *Terminal) passSkip() error {
	from, to := t.skipFrom.Load(), t.skipTo.Load()
	if to == 0 || t.confirmed.Load() != from {
		return nil
	}
	err := t.update(false, func(txn *badger.Txn) error {
		if err := setU64(txn, keyConfirmed, to); err != nil {
			return err
		}
		if err := txn.Delete(keySkipFrom); err != nil {
			return err
		}
		return txn.Delete(keySkipTo)
	})
	if err != nil {
		return fmt.Errorf("confirm the outbox past the sequences clearing holds (%d, %d]: %w", from, to, err)
	}
	t.confirmed.Store(to)
	t.skipTo.Store(0)
	t.skipFrom.Store(0)
	return nil
}

// skipGap is how many sequences of the outbox's pending skip lie above its
// confirmed watermark (they hold no event of this outbox).
func (t *Terminal) skipGap() uint64 {
	from, to := t.skipFrom.Load(), t.skipTo.Load()
	if to == 0 || t.confirmed.Load() > from {
		return 0
	}
	return to - from
}

// appliedUnder says which other operator the gate was started with
// (keyOperatorsRun) ev, signed again naming it, has digest theirs under: the
// tap itself, as clearing applied it ("" if none). Signatures are
// deterministic (ed25519), so the same event signed again is the same
// bytes.
func (t *Terminal) appliedUnder(txn *badger.Txn, ev *fare.Signed, theirs [32]byte) (string, error) {
	run, err := getString(txn, keyOperatorsRun)
	if err != nil || run == "" {
		return "", err
	}
	for _, op := range strings.Split(run, ",") {
		if op == ev.Operator {
			continue
		}
		other := ev.Event
		other.Operator = op
		raw, err := fare.Sign(&other, t.cfg.Key)
		if err != nil {
			return "", err
		}
		if fare.EventDigest(raw) == theirs {
			return op, nil
		}
	}
	return "", nil
}

// ownEvent decodes an outbox entry and checks it against this terminal's
// own key: one the disk damaged is an error, never sent or signed again.
func (t *Terminal) ownEvent(raw []byte) (*fare.Signed, error) {
	ev, err := fare.Decode(raw)
	if err != nil {
		return nil, err
	}
	if err := ev.Verify(t.PublicKey()); err != nil {
		return nil, err
	}
	return ev, nil
}

// conflictAt acts on clearing's signed record of another event under seq,
// where this outbox holds its own, never applied: the outbox's event is
// signed again under the next sequence, and the outbox is confirmed up to
// seq. An entry that does not decode (a damaged store) cannot be signed
// again: it goes to the dead letters (reason sequence-conflict). The
// stand-in for an entry given up (GiveUpDamaged) is dropped: clearing holds
// the tap it stood for.
//
// Where clearing's event there is this gate's own tap, signed naming another
// operator it was started with (theirs is its digest), the tap was applied
// and the gate's copy was signed again at a start under a wrong --operator
// (signForOperator) before it heard so: it is confirmed, not signed again
// under a new sequence (an outside recheck's gate had two applied taps
// moved, then rejected as event-id-taken), and that operator is recorded as
// the registration's.
func (s *sender) conflictAt(seq uint64, theirs [32]byte) error {
	t := s.t
	if err := t.room.checkAbove(time.Now(), openFloor); err != nil {
		t.diskLog.Add("confirmation not recorded", err.Error())
		return errNoRoom
	}
	t.seqMu.Lock()
	defer t.seqMu.Unlock()
	if err := t.undoFailedCommit(); err != nil { // nothing moves over refused taps
		return err
	}
	to := t.lastSeq.Load() + 1
	kept, dropped := false, false
	appliedAs := ""
	var written uint64
	err := t.update(true, func(txn *badger.Txn) error {
		raw, err := readOutboxEntry(txn, seq)
		if err != nil {
			return err
		}
		ev, err := t.ownEvent(raw)
		if err == nil && !standIn(&ev.Event) {
			if appliedAs, err = t.appliedUnder(txn, ev, theirs); err != nil {
				return err
			}
		}
		if appliedAs != "" {
			// Clearing applied this very tap: nothing to sign again.
			if err := txn.Set(keyOperatorApplied, []byte(appliedAs)); err != nil {
				return err
			}
		} else if err == nil && standIn(&ev.Event) {
			// The stand-in for an entry given up: clearing holds the
			// tap itself, applied before the disk damaged it (a damaged
			// entry is never sent). The stand-in is dropped, not signed
			// again: it stood for that tap.
			dropped = true
		} else if err != nil {
			kept = true
			dl := DeadLetter{Sequence: seq, Reason: ReasonSequenceConflict, Mismatch: true, RejectedAt: t.cfg.Now().UTC(), Event: "0x" + hex.EncodeToString(raw)}
			b, err := json.Marshal(dl)
			if err != nil {
				return err
			}
			if err := txn.Set(deadLetterKey(seq), b); err != nil {
				return err
			}
		} else {
			ev.Sequence = to
			moved, err := fare.Sign(&ev.Event, t.cfg.Key)
			if err != nil {
				return fmt.Errorf("outbox entry %d: %w", seq, err)
			}
			if err := txn.Set(outboxKey(to), moved); err != nil {
				return err
			}
			if err := setU64(txn, keyLastSeq, to); err != nil {
				return err
			}
		}
		if err := txn.Delete(outboxKey(seq)); err != nil {
			return err
		}
		written, err = t.confirmIn(txn, seq)
		return err
	})
	if err != nil {
		return err
	}
	t.confirmedTo(written)
	if s.next <= written {
		s.next = written + 1
	}
	switch {
	case appliedAs != "":
		t.log.Error("clearing applied this gate's tap naming operator "+appliedAs+", not "+t.cfg.Operator+": the gate runs with a wrong --operator (its events were signed again naming it at this start); give --operator "+appliedAs,
			"sequence", seq)
	case dropped:
		t.log.Info("clearing holds an event under the sequence of an entry given up as damaged: the tap itself, applied before the disk damaged it; the denied tap signed in its place is dropped",
			"sequence", seq)
	case kept:
		t.rejected.Add(1)
		t.log.Error("clearing applied another event under this gate's sequence, and this gate's event there is damaged: it is kept in the dead letters (faregate terminal rejected), the outbox goes on past it",
			"sequence", seq, "reason", ReasonSequenceConflict)
	default:
		t.lastSeq.Store(to)
		if err := t.hw.note(to); err != nil {
			t.log.Error("outbox high-water mark", "err", err)
		}
		t.renumbered.Add(1)
		t.log.Error("clearing applied another event under this gate's sequence (a second unit signing with its key, its outbox restored from a backup, or a forged event): this gate's tap there was never applied and is signed again under a new sequence",
			"sequence", seq, "new_sequence", to)
	}
	if err := t.passSkip(); err != nil {
		return err
	}
	s.narrow.hi = 0
	if t.confirmed.Load() == seq && seq+1 < to {
		// Taps signed after a restore conflict one after another: the
		// next request asks about the next sequence alone.
		s.narrow.hi = seq + 2
	}
	return nil
}
