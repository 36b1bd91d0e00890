package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDirFramesTakesEachFrameOnce: a frame file is read once it has
// settled and then removed; a new frame under a name used before is a new
// frame (an outside review found such frames ignored and left on disk for
// good); a file still being written waits; with keep, a file is moved
// aside and not read again, after a restart either.
func TestDirFramesTakesEachFrameOnce(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, age time.Duration) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-age)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	next := func(d *dirFrames, within time.Duration) (string, string, bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		b, name, err := d.next(ctx)
		if err != nil {
			return "", "", false
		}
		return name, string(b), true
	}
	d, err := newDirFrames(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	d.poll = 10 * time.Millisecond
	write("same.fgd", "first", time.Second)
	if name, body, ok := next(d, time.Second); !ok || name != "same.fgd" || body != "first" {
		t.Fatalf("first frame: %q %q %v", name, body, ok)
	}
	if _, err := os.Stat(filepath.Join(dir, "same.fgd")); !os.IsNotExist(err) {
		t.Fatalf("the frame was not removed after its decision: %v", err)
	}
	write("same.fgd", "second", time.Second)
	if name, body, ok := next(d, time.Second); !ok || name != "same.fgd" || body != "second" {
		t.Fatalf("a new frame under the same name: %q %q %v", name, body, ok)
	}
	// A frame without a known extension is a frame too (its content says
	// what it is): taken and removed, not left unseen on disk.
	write("a14-noext", "frame", time.Second)
	if name, body, ok := next(d, time.Second); !ok || name != "a14-noext" || body != "frame" {
		t.Fatalf("a frame without an extension: %q %q %v", name, body, ok)
	}
	if _, err := os.Stat(filepath.Join(dir, "a14-noext")); !os.IsNotExist(err) {
		t.Fatalf("the frame without an extension was not removed: %v", err)
	}
	// A file still being written under a temporary name is not a frame
	// yet, however long it pauses.
	write("x.jpg.part", "half a frame", time.Second)
	if name, _, ok := next(d, 100*time.Millisecond); ok {
		t.Fatalf("a file under a temporary name was taken: %s", name)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.jpg.part")); err != nil {
		t.Fatalf("a file under a temporary name was removed: %v", err)
	}
	write("growing.jpg", "half", 0) // just written: not settled
	if name, _, ok := next(d, 100*time.Millisecond); ok {
		t.Fatalf("a file still being written was taken: %s", name)
	}
	if name, body, ok := next(d, 2*time.Second); !ok || name != "growing.jpg" || body != "half" {
		t.Fatalf("the settled file: %q %q %v", name, body, ok)
	}

	keep, err := newDirFrames(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	keep.poll = 10 * time.Millisecond
	write("kept.png", "one", time.Second)
	if name, _, ok := next(keep, time.Second); !ok || name != "kept.png" {
		t.Fatalf("kept frame: %q %v", name, ok)
	}
	if name, _, ok := next(keep, 100*time.Millisecond); ok {
		t.Fatalf("a kept frame was read again: %s", name)
	}
	write("kept.png", "two!", 2*time.Second)
	if name, body, ok := next(keep, time.Second); !ok || body != "two!" {
		t.Fatalf("a kept file rewritten: %q %q %v", name, body, ok)
	}
	// Kept means moved aside: a restarted gate (a new watcher) does not
	// decide it again (an outside test saw every kept frame become a new,
	// charged tap at each restart).
	if b, err := os.ReadFile(filepath.Join(dir, decidedDir, "kept.png")); err != nil || string(b) != "two!" {
		t.Fatalf("the kept frame in %s: %q %v", decidedDir, b, err)
	}
	restarted, err := newDirFrames(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	restarted.poll = 10 * time.Millisecond
	if name, _, ok := next(restarted, 200*time.Millisecond); ok {
		t.Fatalf("a restarted gate decided a kept frame again: %s", name)
	}
}

// TestTapLinesStopWithoutInput: a terminal taking taps from standard input
// stops when it is told to (SIGTERM cancels its context) even while no
// line comes; it used to wait for its input to close.
func TestTapLinesStopWithoutInput(t *testing.T) {
	r, w := io.Pipe() // input that never writes a line
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tapsFromLines(ctx, nil, tapLineRules{cats: documentedRiderCategories}, r, io.Discard) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stopped with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the tap line reader did not stop while its input was open and silent")
	}
}
