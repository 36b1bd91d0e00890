package clearing_test

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// TestRestoredOutboxKeepsItsEvents: a gate whose outbox is restored from a
// backup (or a second unit under its key) signs new taps under sequences
// clearing already holds. Clearing names those sequence-conflict (kept in
// the quarantine stream); the gate, whose confirmations carry the digest
// of the whole range, refuses the one that covers them (it used to check
// only the last sequence's digest, which matched its own newest event, and
// dropped the conflicting ones unseen), narrows the range down, keeps each
// conflicting event in its dead letters and drains past them.
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
	restoreOutbox(t, backup, outbox)
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
	checkConflictsKept(t, rt, 6, 4, 5)
}

// restoreOutbox puts the outbox backup back in place of the terminal's
// (stopped) outbox.
func restoreOutbox(t *testing.T, backup, outbox string) {
	t.Helper()
	if err := os.RemoveAll(outbox); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(backup, outbox); err != nil {
		t.Fatal(err)
	}
}

// checkConflictsKept waits for rt to drain past its conflicting sequences
// and checks that they, and only they, are in its dead letters.
func checkConflictsKept(t *testing.T, rt *runningTerminal, confirmed uint64, conflicts ...uint64) {
	t.Helper()
	waitFor(t, "the gate drained past its conflicting sequences", 30*time.Second, func() bool { return rt.Pending() == 0 })
	if rt.Confirmed() != confirmed || rt.RefusedConfirmations() == 0 {
		t.Fatalf("the gate is confirmed to %d (want %d), refused %d confirmations (want the range covering the conflicts)", rt.Confirmed(), confirmed, rt.RefusedConfirmations())
	}
	dls, err := rt.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != len(conflicts) {
		t.Fatalf("dead letters %+v, want sequences %v", dls, conflicts)
	}
	for i, dl := range dls {
		if dl.Sequence != conflicts[i] || dl.Reason != terminal.ReasonSequenceConflict || !dl.Mismatch || dl.Event == "" {
			t.Errorf("dead letter %+v, want sequence %d kept as %s", dl, conflicts[i], terminal.ReasonSequenceConflict)
		}
	}
}

// TestRestoredUnconfirmedOutboxAfterClearingRestart: a restored outbox
// whose backup holds events clearing applied but never confirmed to it,
// and from before its first range-checked confirmation, comes back after a
// clearing restart (clearing has forgotten who asked for ranges). Plain
// announcements and resend confirmations are not acted on until clearing
// answers the gate's own request, with a range: the conflicting taps are
// kept in the dead letters (an outside review found them dropped), and
// 1 to 3, applied before, and 6 are confirmed.
func TestRestoredUnconfirmedOutboxAfterClearingRestart(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(1)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	cfg := clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour, NATSPort: freePort(t)}
	cl := startClearing(t, cfg)
	outbox := filepath.Join(dir, "terminal-t1")
	drained := func(rt *runningTerminal) func() bool { return func() bool { return rt.Pending() == 0 } }

	// The first unit's three taps reach clearing, but the backup is taken
	// before their confirmation was recorded (here: the unit trusts no key
	// yet, so it records none).
	rt := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	waitFor(t, "anchored", 10*time.Second, func() bool { return !rt.Unanchored() })
	rt.stop(t)
	rt = startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) {
		c.ClearingKeys = []ed25519.PublicKey{make([]byte, 32)}
	})
	for range 3 {
		tap(t, rt.Terminal, "card-1", fare.Entry)
	}
	waitFor(t, "the first three applied", 10*time.Second, func() bool { return cl.Stats().Applied == 3 })
	rt.stop(t)
	backup := filepath.Join(t.TempDir(), "backup")
	if err := os.CopyFS(backup, os.DirFS(outbox)); err != nil {
		t.Fatal(err)
	}
	// A backup from before this build's first range confirmation.
	db, err := badger.Open(badger.DefaultOptions(backup).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte("mrange-checked")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	rt = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	for range 2 {
		tap(t, rt.Terminal, "card-2", fare.Entry)
	}
	waitFor(t, "1 to 5 confirmed", 10*time.Second, drained(rt))
	rt.stop(t)

	// Clearing restarts (a deploy): its wantRange is empty.
	cl.stop(t)
	cl = startClearing(t, cfg)
	defer cl.stop(t)

	restoreOutbox(t, backup, outbox)
	rt = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer rt.stop(t)
	for range 3 {
		tap(t, rt.Terminal, "card-3", fare.Entry)
	}
	waitFor(t, "4 and 5 quarantined as conflicts", 10*time.Second, func() bool {
		s := cl.Stats()
		return s.QuarantineByWhy[clearing.ReasonSequenceConflict] >= 2
	})
	checkConflictsKept(t, rt, 6, 4, 5)
}
