package clearing_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestRestoredOutboxKeepsItsEvents: a gate whose outbox is restored from a
// backup (or a second unit under its key) signs new taps under sequences
// clearing already holds. Clearing names those sequence-conflict (kept in
// the quarantine stream); and the gate, whose confirmations carry the
// digest of the whole range, refuses the one that covers them, keeping its
// events (it used to check only the last sequence's digest, which matched
// its own newest event, and dropped the conflicting ones unseen).
func TestRestoredOutboxKeepsItsEvents(t *testing.T) {
	dir, reg, keys, cl := startCity(t, 1)
	outbox := filepath.Join(dir, "terminal-t1")
	drained := func(rt *runningTerminal) func() bool { return func() bool { return rt.Pending() == 0 } }

	rt := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	for range 3 {
		tap(t, rt.Terminal, "card-1", fare.Entry)
	}
	waitFor(t, "the first three confirmed", 10*time.Second, drained(rt))
	rt.stop(t)
	backup := filepath.Join(t.TempDir(), "backup")
	if err := os.CopyFS(backup, os.DirFS(outbox)); err != nil {
		t.Fatal(err)
	}

	rt = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	for range 2 {
		tap(t, rt.Terminal, "card-2", fare.Entry) // sequences 4 and 5
	}
	waitFor(t, "4 and 5 confirmed", 10*time.Second, drained(rt))
	rt.stop(t)

	// The backup put back: it signs 4, 5 and 6 again, other taps.
	if err := os.RemoveAll(outbox); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(backup, outbox); err != nil {
		t.Fatal(err)
	}
	rt = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer rt.stop(t)
	for range 3 {
		if ev := tap(t, rt.Terminal, "card-3", fare.Entry); ev.Sequence < 4 {
			t.Fatalf("the restored outbox signed sequence %d", ev.Sequence)
		}
	}
	waitFor(t, "4 and 5 quarantined as conflicts, 6 applied", 10*time.Second, func() bool {
		s := cl.Stats()
		return s.QuarantineByWhy[clearing.ReasonSequenceConflict] >= 2 && s.Applied == 6
	})
	waitFor(t, "the confirmation covering them refused at the gate", 10*time.Second, func() bool { return rt.RefusedConfirmations() > 0 })
	time.Sleep(2 * time.Second) // more confirmations come: none may take the events
	if p := rt.Pending(); p != 3 || rt.Confirmed() != 3 {
		t.Fatalf("the restored gate holds %d pending, confirmed to %d; want its three taps kept, confirmed to 3", p, rt.Confirmed())
	}
	if rt.RefusedConfirmations() == 0 {
		t.Fatal("no confirmation refused")
	}
}
