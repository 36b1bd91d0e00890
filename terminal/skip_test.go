package terminal

import (
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// confirmByHand records the outbox confirmed to seq as an earlier build
// did, in a transaction of its own that passes no skip: its entries up to
// seq deleted.
func confirmByHand(t *testing.T, term *Terminal, seq uint64) {
	t.Helper()
	err := term.db.Update(func(txn *badger.Txn) error {
		for s := term.confirmed.Load() + 1; s <= seq; s++ {
			if err := txn.Delete(outboxKey(s)); err != nil {
				return err
			}
		}
		return setU64(txn, keyConfirmed, seq)
	})
	if err != nil {
		t.Fatal(err)
	}
	term.confirmed.Store(seq)
}

// TestSkipAcrossAStop: an outbox whose sequence jumped past clearing's
// record (a skip (3, 100]) and that stopped confirmed to the skip's start,
// the skip not passed (an earlier build passed it in a transaction of its
// own: an outside review's kill -9 between the two stopped the gate's
// draining for good), passes it when it opens. While the skip is pending
// its sequences are not counted as taps the outbox should hold (the review
// saw 97 of 100 called lost, the copy kept, and after three such starts
// the gate refused).
func TestSkipAcrossAStop(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	tapN(t, term, 3)
	if moved, err := term.skipPast(100); err != nil || !moved {
		t.Fatalf("skip past 100: %v, %v", moved, err)
	}
	if held, want, err := term.heldUnconfirmed(); err != nil || held != 3 || want != 3 {
		t.Errorf("with a skip pending: %d held, %d wanted, %v; want 3 and 3", held, want, err)
	}
	confirmByHand(t, term, 3)
	if err := term.Close(); err != nil {
		t.Fatal(err)
	}
	term = openTest(t, dir)
	defer term.Close()
	if term.Confirmed() != 100 || term.Pending() != 0 || term.LastSequence() != 100 || term.skipTo.Load() != 0 {
		t.Fatalf("reopened: confirmed %d, pending %d, last %d, skip to %d; want the skip passed", term.Confirmed(), term.Pending(), term.LastSequence(), term.skipTo.Load())
	}
	if err := term.db.View(func(txn *badger.Txn) error {
		from, to, err := readSkip(txn)
		if err == nil && (from != 0 || to != 0) {
			t.Errorf("skip (%d, %d] still stored", from, to)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	tapN(t, term, 1)
	if term.LastSequence() != 101 || term.Pending() != 1 {
		t.Errorf("a tap after: last %d, pending %d", term.LastSequence(), term.Pending())
	}
}

// TestConfirmPassesTheSkip: a confirmation to a pending skip's start
// passes the skip in the same transaction; an outbox confirmed whole jumps
// with no skip at all.
func TestConfirmPassesTheSkip(t *testing.T) {
	term := openTest(t, t.TempDir())
	defer term.Close()
	tapN(t, term, 3)
	if moved, err := term.skipPast(100); err != nil || !moved {
		t.Fatalf("skip past 100: %v, %v", moved, err)
	}
	var written uint64
	if err := term.db.Update(func(txn *badger.Txn) error {
		var err error
		written, err = term.confirmIn(txn, 2)
		return err
	}); err != nil || written != 2 {
		t.Fatalf("confirmed to 2: %d, %v", written, err)
	}
	term.confirmedTo(written)
	if err := term.db.Update(func(txn *badger.Txn) error {
		var err error
		if written, err = term.confirmIn(txn, 3); err != nil {
			return err
		}
		from, to, err := readSkip(txn) // the same transaction sees it gone
		if from != 0 || to != 0 {
			t.Errorf("skip (%d, %d] kept in the transaction that passed it", from, to)
		}
		return err
	}); err != nil || written != 100 {
		t.Fatalf("confirmed to the skip's start: recorded %d, %v; want 100", written, err)
	}
	term.confirmedTo(written)
	if term.Confirmed() != 100 || term.skipTo.Load() != 0 {
		t.Errorf("confirmed %d, skip to %d", term.Confirmed(), term.skipTo.Load())
	}
	// Confirmed whole, then clearing's record runs past: no skip.
	if moved, err := term.skipPast(150); err != nil || !moved {
		t.Fatalf("skip past 150: %v, %v", moved, err)
	}
	if term.Confirmed() != 150 || term.skipTo.Load() != 0 || term.LastSequence() != 150 {
		t.Errorf("an outbox confirmed whole jumping to 150: confirmed %d, skip to %d, last %d", term.Confirmed(), term.skipTo.Load(), term.LastSequence())
	}
}
