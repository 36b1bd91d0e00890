package terminal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/fare"
)

// TestOutboxCommitFailuresSaid: commits its disk refuses (one turned
// read-only under a running gate) refuse their taps, and are said: one
// error in the log, not one per tap, a counter, and Ready failing until a
// commit succeeds again (an outside test saw taps refused with no log line,
// no metric, and /readyz ready).
func TestOutboxCommitFailuresSaid(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, dir, filepath.Join(dir, "outbox"))
	cfg.Metrics, cfg.Logger = reg, slog.New(slog.NewTextHandler(&logs, nil))
	term, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	tap := func() error {
		_, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"})
		return err
	}
	if err := tap(); err != nil {
		t.Fatal(err)
	}
	term.failCommits(fmt.Errorf("sync 00001.mem: %w", syscall.EROFS))
	for i := range 5 {
		if err := tap(); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("tap %d on a read-only disk: %v", i+1, err)
		}
	}
	if err := term.Ready(); err == nil || !strings.Contains(err.Error(), "commits fail") || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("ready while commits fail: %v", err)
	}
	if v := gather(t, reg)["faregate_terminal_outbox_commit_failures_total/"]; v != 5 {
		t.Errorf("faregate_terminal_outbox_commit_failures_total = %v, want 5", v)
	}
	if n := strings.Count(logs.String(), "level=ERROR msg=\"an outbox commit failed"); n != 1 {
		t.Errorf("%d error lines for 5 failed commits, want 1:\n%s", n, logs.String())
	}
	term.failCommits(nil)
	if err := tap(); err != nil {
		t.Fatal(err)
	}
	if err := term.Ready(); err != nil || !strings.Contains(logs.String(), "outbox commits succeed again") || term.LastSequence() != 2 {
		t.Fatalf("once a commit succeeds: ready %v, last %d, log:\n%s", err, term.LastSequence(), logs.String())
	}
}

// TestCloseBoundedWhenStoreCannotFlush: a store whose memtable flush its
// disk refuses (Badger retries it for ever: here the table file's name is
// taken by a directory) does not hang Close: it gives up after its wait,
// saying so (an outside test saw SIGTERM hang a gate on a disk turned
// read-only).
func TestCloseBoundedWhenStoreCannotFlush(t *testing.T) {
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	term := openTest(t, dir)
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for id := 1; id <= 30; id++ {
		b := filepath.Join(outbox, fmt.Sprintf("%06d.sst", id))
		if err := os.Mkdir(b, 0o700); err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, b)
	}
	t.Cleanup(func() {
		// Let the store the test gave up on finish closing, before the
		// directory goes.
		for _, b := range blocks {
			os.Remove(b)
		}
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(outbox, "LOCK")); errors.Is(err, os.ErrNotExist) {
				return
			}
		}
		t.Log("the store given up on did not close after all")
	})
	term.closeWait = 500 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- term.Close() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "did not close within") {
			t.Fatalf("Close over a store that cannot flush: %v; want it given up, said", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs over a store that cannot flush")
	}
}

// TestRefusedTapsNeverTaken: taps whose commit failed after Badger took
// them into its memtable (a failed sync) were refused at the gate: they
// are deleted before anything else is numbered, so they are never sent,
// counted or brought back by the store's flush at close (an outside
// review: a refused rider tapping again would have been charged twice).
func TestRefusedTapsNeverTaken(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, filepath.Join(dir, "outbox"))
	term, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tap := func(token string) error {
		_, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: token})
		return err
	}
	if err := tap("kept-1"); err != nil {
		t.Fatal(err)
	}
	term.failSyncs(fmt.Errorf("sync 00001.mem: %w", syscall.EIO))
	for i := range 3 {
		if err := tap(fmt.Sprintf("refused-%d", i)); !errors.Is(err, syscall.EIO) {
			t.Fatalf("tap %d with syncs failing: %v", i+1, err)
		}
	}
	check := func(when string, last uint64) {
		t.Helper()
		if term.LastSequence() != last || term.Pending() != last {
			t.Errorf("%s: last %d, pending %d; want %d and %d", when, term.LastSequence(), term.Pending(), last, last)
		}
		err := term.db.View(func(txn *badger.Txn) error {
			for seq := uint64(1); seq <= 5; seq++ {
				raw, err := readOutboxEntry(txn, seq)
				switch {
				case seq > last && err == nil:
					t.Errorf("%s: an entry under sequence %d, past the last", when, seq)
				case seq <= last && err != nil:
					t.Errorf("%s: entry %d: %v", when, seq, err)
				case seq <= last:
					ev, err := fare.Decode(raw)
					if err != nil || ev.MediaToken != fmt.Sprintf("kept-%d", seq) {
						t.Errorf("%s: entry %d is %+v (%v), want the tap kept-%d", when, seq, ev, err, seq)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check("after the failures", 1)
	// Closed with the disk answering again: the store's flush at close
	// must not make the refused taps durable.
	term.failSyncs(nil)
	if err := term.Close(); err != nil {
		t.Fatal(err)
	}
	if term, err = Open(cfg); err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	check("reopened", 1)
	if err := tap("kept-2"); err != nil {
		t.Fatal(err)
	}
	check("a tap after", 2)
}

// TestTapDeadlineWhileWriterHeld: a tap whose caller's deadline passes
// while the writer is held up (here: the sequence lock, as a renumbering
// holds it) is answered at once, not taken, and not written once the
// writer goes on (an outside review saw a 100 ms deadline wait 2.4 s).
func TestTapDeadlineWhileWriterHeld(t *testing.T) {
	term := openTest(t, t.TempDir())
	defer term.Close()
	tapN(t, term, 1)
	term.seqMu.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := term.Tap(ctx, Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "late"})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not taken") {
			t.Errorf("a tap past its deadline behind a held writer: %v", err)
		}
	case <-time.After(30 * time.Second):
		term.seqMu.Unlock()
		t.Fatal("the tap waited for the writer past its deadline")
	}
	term.seqMu.Unlock()
	tapN(t, term, 1)
	if term.LastSequence() != 2 || term.Pending() != 2 {
		t.Errorf("last %d, pending %d: want the abandoned tap not written", term.LastSequence(), term.Pending())
	}
}

// TestFailedSyncOfSequenceRecords: a commit of the outbox's sequence
// records (a confirmation's step, a jump past clearing's record) whose sync
// failed after Badger made it readable leaves the sequences in memory as
// the store reads them (an outside review): the next confirmation does not
// look for entries already deleted (the outbox stopped draining until a
// restart), and the next tap is not numbered under a sequence the jump
// passed (the next start refused the outbox as a corrupt skip).
func TestFailedSyncOfSequenceRecords(t *testing.T) {
	eio := fmt.Errorf("sync 00001.mem: %w", syscall.EIO)
	confirmation := func(t *testing.T, term *Terminal, seq uint64) *fare.Confirmation {
		t.Helper()
		var raw []byte
		if err := term.db.View(func(txn *badger.Txn) (err error) {
			raw, err = readOutboxEntry(txn, seq)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return &fare.Confirmation{Terminal: "t1", Watermark: seq, Digest: fare.EventDigest(raw)}
	}
	t.Run("confirmation", func(t *testing.T) {
		term := openTest(t, t.TempDir())
		defer term.Close()
		tapN(t, term, 5)
		s := &sender{t: term, next: 6}
		term.failSyncs(eio)
		if err := s.confirm(confirmation(t, term, 5), term.Confirmed(), true); !errors.Is(err, syscall.EIO) {
			t.Fatalf("a confirmation whose sync fails: %v", err)
		}
		term.failSyncs(nil)
		if term.Confirmed() != 5 || term.Pending() != 0 {
			t.Errorf("after the failed sync: confirmed %d, pending %d; want what the store reads, 5 and 0", term.Confirmed(), term.Pending())
		}
		tapN(t, term, 1)
		if err := s.confirm(confirmation(t, term, 6), term.Confirmed(), true); err != nil || term.Confirmed() != 6 || term.Pending() != 0 {
			t.Fatalf("the next confirmation: %v, confirmed %d, pending %d", err, term.Confirmed(), term.Pending())
		}
	})
	t.Run("jump", func(t *testing.T) {
		dir := t.TempDir()
		term := openTest(t, dir)
		tapN(t, term, 3)
		term.failSyncs(eio)
		if _, err := term.skipPast(100); !errors.Is(err, syscall.EIO) {
			t.Fatalf("a jump whose sync fails: %v", err)
		}
		term.failSyncs(nil)
		if term.LastSequence() != 100 || term.skipTo.Load() != 100 {
			t.Errorf("after the failed sync: last %d, skip to %d; want what the store reads, 100 and 100", term.LastSequence(), term.skipTo.Load())
		}
		tapN(t, term, 1)
		if term.LastSequence() != 101 {
			t.Errorf("the next tap: last %d, want 101", term.LastSequence())
		}
		if err := term.Close(); err != nil {
			t.Fatal(err)
		}
		term = openTest(t, dir)
		defer term.Close()
		if term.LastSequence() != 101 || term.Pending() != 4 {
			t.Errorf("reopened: last %d, pending %d; want 101 and 4 (3 taps, the skip, 1 tap)", term.LastSequence(), term.Pending())
		}
	})
}
