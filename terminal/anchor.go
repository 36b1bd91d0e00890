package terminal

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
)

// A terminal's sequence numbers are clearing's dedup key: a gate whose
// outbox was lost (a replaced unit, a wiped disk) and that starts again
// from 1 with the same key would have every event refused as a replay.
// So a new outbox is unanchored: it takes taps at once, numbering them
// from 1, but publishes nothing until clearing has said, in a signed
// confirmation, the highest sequence it holds of this terminal. If that is
// above 0, the outbox's events are renumbered after it and signed again
// (they were never sent, so no other copy of them exists), and the
// sequence goes on from there. An outbox made before this rule is anchored
// by its own history.
var (
	// keyUnanchored marks an outbox that has not yet learnt where
	// clearing's record of this terminal ends.
	keyUnanchored = []byte("munanchored")
	// keyRebaseBy and keyRebaseNext record a renumbering in progress:
	// every event at or below next moves up by the offset; what is above
	// next has moved. Open finishes one a crash interrupted.
	keyRebaseBy   = []byte("mrebase-by")
	keyRebaseNext = []byte("mrebase-next")
)

// rebaseChunk bounds the events one renumbering transaction moves.
const rebaseChunk = 256

// anchorNonceSize is the size of the nonce an unanchored outbox's request
// carries: the answer must echo it. A genuine but old confirmation
// replayed by whoever sits on the network path would otherwise put the
// sequence behind clearing's record, and every tap after it would be
// refused as a replay.
const anchorNonceSize = 16

// markNew marks an outbox that has never held an event unanchored.
func markNew(txn *badger.Txn) error {
	if _, err := txn.Get(keyLastSeq); !errors.Is(err, badger.ErrKeyNotFound) {
		return err // it has a history: nil, or a read error
	}
	return txn.Set(keyUnanchored, nil)
}

// Unanchored reports whether the outbox still waits to learn from
// clearing where this terminal's sequence stands (it publishes nothing
// meanwhile; see anchor.go).
func (t *Terminal) Unanchored() bool { return t.unanchored.Load() }

// anchor acts on clearing's answer to an unanchored outbox's request: one
// that verifies against a provisioned clearing key, names this terminal and
// echoes the request's nonce tells the highest sequence clearing holds of
// it, and the outbox continues after it. Anything else is refused and counted as handle does.
// Announcements on the terminal's confirmation subject are not used (Run).
func (s *sender) anchor(msg []byte) {
	t := s.t
	c, ok := s.verified(msg)
	if !ok {
		return
	}
	if len(s.nonce) == 0 || !bytes.Equal(c.Nonce, s.nonce) {
		s.refuse(RefusedNonce, fmt.Sprintf("an answer to a new outbox's request with nonce 0x%x, issued %s, does not echo the request's nonce 0x%x (a replayed or unrequested answer, or a clearing too old to echo nonces)",
			c.Nonce, c.IssuedAt.Format(time.RFC3339), s.nonce))
		return
	}
	// After clearing's watermark, not its highest: where the lost outbox
	// had sequences clearing lacks, a gap clearing would wait on for ever
	// (no confirmation could pass it, and this outbox would never drain:
	// an outside review), this outbox's taps fill it, and those landing
	// on sequences clearing holds are signed again after them, as for a
	// restored backup (resign.go).
	by := c.Watermark
	if c.Highest > by {
		t.log.Error("clearing holds later sequences of this terminal than its watermark, and only the lost outbox had the ones between: they are gone; this outbox continues after the watermark, filling them, and its taps on sequences clearing holds are signed again after those",
			"watermark", c.Watermark, "highest", c.Highest)
	}
	if err := t.rebase(by); err != nil {
		t.log.Error("continue the sequence after clearing's", "highest_at_clearing", by, "err", err)
		return
	}
	s.next = t.confirmed.Load() + 1
	s.progressAt = time.Now() // the sender measures progress on the wall clock, whatever the terminal's clock
}

// rebase anchors the outbox after sequence by: its events (1..last, never
// published) become by+1..by+last, signed again, and the outbox is
// confirmed up to by. Taps wait meanwhile.
func (t *Terminal) rebase(by uint64) error {
	t.seqMu.Lock()
	defer t.seqMu.Unlock()
	if err := t.undoFailedCommit(); err != nil { // nothing moves over refused taps
		return err
	}
	if by > maxSequence-t.lastSeq.Load() {
		return fmt.Errorf("clearing's record of this terminal runs to sequence %d: past %d with this outbox's %d taps, not followed (it would wrap the outbox's sequence)", by, uint64(maxSequence), t.lastSeq.Load())
	}
	last := t.lastSeq.Load()
	if t.rebasing.Load() {
		// One that failed part way is finished as it was recorded, never
		// recorded again over its own moves.
		return t.resumeRebase()
	}
	if by > 0 {
		err := t.db.Update(func(txn *badger.Txn) error {
			if err := setU64(txn, keyRebaseBy, by); err != nil {
				return err
			}
			return setU64(txn, keyRebaseNext, last)
		})
		if err != nil {
			return err
		}
		t.rebasing.Store(true)
		if err := t.resumeRebase(); err != nil {
			return err
		}
		t.log.Warn("clearing already holds events of this terminal (a new outbox for a known terminal): its events are renumbered after clearing's and signed again",
			"highest_at_clearing", by, "renumbered", last, "from", by+1)
		return nil
	}
	if err := t.db.Update(func(txn *badger.Txn) error { return txn.Delete(keyUnanchored) }); err != nil {
		return err
	}
	t.unanchored.Store(false)
	t.log.Info("clearing holds no event of this terminal: its sequence starts at 1")
	return nil
}

// resumeRebase finishes a renumbering that failed part way (seqMu held):
// until it has, no tap is numbered, nothing is sent and no other
// renumbering is recorded (an outside review: a tap numbered meanwhile
// overwrote an event already moved, and the next answer recorded the
// renumbering again over its own moves).
func (t *Terminal) resumeRebase() error {
	if !t.rebasing.Load() {
		return nil
	}
	if err := t.finishRebase(); err != nil {
		return err
	}
	t.rebasing.Store(false)
	return nil
}

// finishRebase moves the events of a renumbering recorded in the store, in
// bounded steps from the top (so no event overwrites one not yet moved),
// then sets the outbox's sequence and watermark and anchors it. Each step
// is one transaction with its progress; a crash resumes where it stopped.
func (t *Terminal) finishRebase() error {
	var by, next uint64
	err := t.db.View(func(txn *badger.Txn) (err error) {
		if by, err = getU64(txn, keyRebaseBy); err != nil {
			return err
		}
		next, err = getU64(txn, keyRebaseNext)
		return err
	})
	if err != nil || by == 0 {
		return err
	}
	last, err := t.readLastSeq()
	if err != nil {
		return err
	}
	for next > 0 {
		err := t.db.Update(func(txn *badger.Txn) error {
			stop := next - min(next, rebaseChunk)
			for seq := next; seq > stop; seq-- {
				raw, err := readOutboxEntry(txn, seq)
				if err != nil {
					return err
				}
				// Verified, not only decoded: an entry the disk damaged
				// signed again under a new sequence would become a valid
				// event of what the damage made of it.
				ev, err := t.ownEvent(raw)
				if err != nil {
					return fmt.Errorf("outbox entry %d is damaged (%w): it cannot be signed again under its new sequence; give it up first (the gate stopped: faregate terminal give-up --sequence %d), then start the gate again", seq, err, seq)
				}
				ev.Sequence = seq + by
				moved, err := fare.Sign(&ev.Event, t.cfg.Key)
				if err != nil {
					return fmt.Errorf("outbox entry %d: %w", seq, err)
				}
				if err := txn.Set(outboxKey(seq+by), moved); err != nil {
					return err
				}
				if err := txn.Delete(outboxKey(seq)); err != nil {
					return err
				}
			}
			return setU64(txn, keyRebaseNext, stop)
		})
		if err != nil {
			return fmt.Errorf("renumber the outbox after sequence %d: %w", by, err)
		}
		next -= min(next, rebaseChunk)
	}
	err = t.update(true, func(txn *badger.Txn) error {
		if err := setU64(txn, keyLastSeq, last+by); err != nil {
			return err
		}
		if err := setU64(txn, keyConfirmed, by); err != nil {
			return err
		}
		for _, k := range [][]byte{keyRebaseBy, keyRebaseNext, keyUnanchored} {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("anchor the outbox after sequence %d: %w", by, err)
	}
	t.lastSeq.Store(last + by)
	if err := t.hw.note(last + by); err != nil {
		t.log.Error("outbox high-water mark", "err", err)
	}
	t.confirmed.Store(by)
	t.unanchored.Store(false)
	return nil
}

// readLastSeq reads the outbox's highest sequence as stored.
func (t *Terminal) readLastSeq() (last uint64, err error) {
	err = t.db.View(func(txn *badger.Txn) error {
		last, err = getU64(txn, keyLastSeq)
		return err
	})
	return last, err
}
