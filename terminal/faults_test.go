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
