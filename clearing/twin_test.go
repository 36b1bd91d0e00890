package clearing_test

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

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
// dropped the conflicting ones unseen), narrows the range down and signs
// each conflicting tap again under a new sequence (they were kept in its
// dead letters, never charged: an outside test lost 213 taps so). Every
// tap is applied once, under its own event id.
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

	// The backup put back: it signs 4, 5 and 6 again, other taps (offline,
	// before it can hear from clearing).
	restoreOutbox(t, backup, outbox)
	rt = startTerminal(t, dir, unreachableNATS, reg, keys, "t1")
	var taps []fare.Event
	for range 3 {
		ev := tap(t, rt.Terminal, "card-3", fare.Entry)
		if ev.Sequence < 4 {
			t.Fatalf("the restored outbox signed sequence %d", ev.Sequence)
		}
		taps = append(taps, ev)
	}
	rt.stop(t)
	rt = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer rt.stop(t)
	waitFor(t, "the conflicts signed again and applied", 60*time.Second, func() bool {
		return cl.Stats().Applied == 8 && rt.Pending() == 0
	})
	checkTapsApplied(t, cl, rt, 8, taps...)
	if n := rt.Renumbered(); n != 2 || rt.RefusedConfirmations() == 0 {
		t.Errorf("the gate signed %d taps again (want 2) and refused %d confirmations (want the range covering them)", n, rt.RefusedConfirmations())
	}
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": 8 * 250})
}

// TestRestoredOutboxNumbersAfterClearing: a gate restored from a backup
// learns, from its first answer, that clearing's record of it runs past
// its outbox, and numbers its next taps after it: no conflict at all. The
// backup's own pending event (applied, its confirmation not recorded) is
// still checked and confirmed first.
func TestRestoredOutboxNumbersAfterClearing(t *testing.T) {
	dir, reg, keys, cl := startCity(t, 1)
	outbox := filepath.Join(dir, "terminal-t1")
	drained := func(rt *runningTerminal) func() bool { return func() bool { return rt.Pending() == 0 } }

	// The backup is taken with the first tap applied but its confirmation
	// not recorded (here: the unit trusts no clearing key yet).
	rt := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	waitFor(t, "anchored", 10*time.Second, func() bool { return !rt.Unanchored() })
	rt.stop(t)
	rt = startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) {
		c.ClearingKeys = []ed25519.PublicKey{make([]byte, 32)}
	})
	first := tap(t, rt.Terminal, "card-1", fare.Entry)
	waitFor(t, "the first applied", 10*time.Second, func() bool { return cl.TerminalWatermark("t1") == 1 })
	rt.stop(t)
	backup := filepath.Join(t.TempDir(), "backup")
	if err := os.CopyFS(backup, os.DirFS(outbox)); err != nil {
		t.Fatal(err)
	}
	rt = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	for range 40 {
		tap(t, rt.Terminal, "card-2", fare.Entry)
	}
	waitFor(t, "2 to 41 confirmed", 10*time.Second, drained(rt))
	rt.stop(t)

	restoreOutbox(t, backup, outbox)
	rt = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer rt.stop(t)
	if rt.Pending() != 1 {
		t.Fatalf("the restored outbox has %d pending, want its first tap", rt.Pending())
	}
	waitFor(t, "the outbox numbered after clearing's record", 10*time.Second, func() bool { return rt.Confirmed() == 41 })
	if rt.Pending() != 0 || rt.LastSequence() != 41 {
		t.Fatalf("pending %d, confirmed %d; want nothing pending, confirmed to 41", rt.Pending(), rt.Confirmed())
	}
	ev := tap(t, rt.Terminal, "card-3", fare.Entry)
	if ev.Sequence != 42 {
		t.Fatalf("the restored gate's tap signed as sequence %d, want 42", ev.Sequence)
	}
	waitFor(t, "the tap applied", 10*time.Second, func() bool { return cl.Stats().Applied == 42 && rt.Pending() == 0 })
	checkTapsApplied(t, cl, rt, 42, first, ev)
	if n := cl.Stats().QuarantineByWhy[clearing.ReasonSequenceConflict]; n != 0 || rt.Renumbered() != 0 {
		t.Errorf("%d sequence conflicts, %d taps signed again; want none", n, rt.Renumbered())
	}
	// Reopened, the outbox is where it was.
	rt.stop(t)
	rt = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	if rt.LastSequence() != 42 || rt.Pending() != 0 {
		t.Fatalf("reopened: last %d, pending %d", rt.LastSequence(), rt.Pending())
	}
}

// checkTapsApplied checks that the gate drained with no dead letter,
// confirmed to want, and that clearing applied each of taps once, under a
// sequence at or after the one it was first signed with.
func checkTapsApplied(t *testing.T, cl *running, rt *runningTerminal, want uint64, taps ...fare.Event) {
	t.Helper()
	if rt.Confirmed() != want || rt.LastSequence() != want {
		t.Fatalf("the gate is confirmed to %d, last %d; want %d", rt.Confirmed(), rt.LastSequence(), want)
	}
	if dls, err := rt.DeadLetters(); err != nil || len(dls) != 0 {
		t.Fatalf("dead letters %+v (%v), want none", dls, err)
	}
	for _, ev := range taps {
		rec, err := cl.Store().Event(ev.ID)
		if err != nil {
			t.Fatalf("tap %s (signed as sequence %d) not applied: %v", ev.ID, ev.Sequence, err)
		}
		got, err := fare.Decode(rec.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if got.Sequence < ev.Sequence || got.MediaToken != ev.MediaToken || got.DeviceTime != ev.DeviceTime {
			t.Errorf("tap %s applied as %+v, want the tap signed as sequence %d", ev.ID, got.Event, ev.Sequence)
		}
	}
	if w := cl.TerminalWatermark(rt.ID()); w != want {
		t.Errorf("clearing's watermark %d, want %d", w, want)
	}
}

// unreachableNATS is a NATS URL nothing listens on: a gate started with it
// takes taps offline.
const unreachableNATS = "nats://127.0.0.1:1"

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

// TestRestoredUnconfirmedOutboxAfterClearingRestart: a restored outbox
// whose backup holds events clearing applied but never confirmed to it,
// and from before its first range-checked confirmation, comes back after a
// clearing restart (clearing has forgotten who asked for ranges). Plain
// announcements and resend confirmations are not acted on until clearing
// answers the gate's own request, with a range: the conflicting taps are
// signed again and applied (an outside review found them dropped), and
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
	rt = startTerminal(t, dir, unreachableNATS, reg, keys, "t1") // offline: 4, 5 and 6 signed again
	for range 3 {
		tap(t, rt.Terminal, "card-3", fare.Entry)
	}
	rt.stop(t)
	rt = startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	defer rt.stop(t)
	waitFor(t, "the conflicts signed again and applied", 60*time.Second, func() bool {
		return cl.TerminalWatermark("t1") == 8 && rt.Pending() == 0 // clearing's counters began at its restart
	})
	checkTapsApplied(t, cl, rt, 8)
	if rt.Renumbered() != 2 {
		t.Errorf("the gate signed %d taps again, want 2", rt.Renumbered())
	}
}

// TestClearingBehindIsNamed: clearing restored from a backup older than
// what it confirmed to a gate holds less of the terminal than the gate
// deleted on confirmation. The gate used to wait in silence, resending
// what clearing dropped; it refuses the answer as clearing-behind and logs
// why (an outside test found gates stuck so behind an older copy).
func TestClearingBehindIsNamed(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(1)
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	dataDir, backup := filepath.Join(dir, "clearing"), filepath.Join(dir, "backup")
	cfg := clearing.Config{DataDir: dataDir, Registry: reg, Ledger: led, Period: time.Hour, NATSPort: freePort(t)}
	cl := startClearing(t, cfg)
	cl.stop(t)
	if err := os.CopyFS(backup, os.DirFS(dataDir)); err != nil {
		t.Fatal(err)
	}
	cl = startClearing(t, cfg)
	rt := startTerminal(t, dir, cl.NATSURL(), reg, keys, "t1")
	for range 3 {
		tap(t, rt.Terminal, "card-1", fare.Entry)
	}
	waitFor(t, "the three confirmed", 30*time.Second, func() bool { return rt.Pending() == 0 && rt.Confirmed() == 3 })
	rt.stop(t)
	cl.stop(t)
	restoreOutbox(t, backup, dataDir) // clearing's data dir put back as it was before the taps
	cl = startClearing(t, cfg)
	defer cl.stop(t)
	prom := prometheus.NewRegistry()
	rt = startTerminalWith(t, dir, cl.NATSURL(), reg, keys, "t1", func(c *terminal.Config) { c.Metrics = prom })
	defer rt.stop(t)
	waitFor(t, "the answer refused as clearing-behind", 10*time.Second, func() bool {
		return labelled(t, prom, "faregate_terminal_confirmations_refused_total", "reason", terminal.RefusedBehind) > 0
	})
}
