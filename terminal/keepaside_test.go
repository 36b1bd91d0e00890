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

	"github.com/faregate/faregate/fare"
)

// onDisk is the apparent size and the allocated bytes (st_blocks) of the
// regular files in dir.
func onDisk(t *testing.T, dir string) (size, used int64) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !info.Mode().IsRegular() {
			continue
		}
		size += info.Size()
		used += info.Sys().(*syscall.Stat_t).Blocks * 512
	}
	return size, used
}

// TestKeepAsideCopiesOnlyWhatIsUsed: the copy of a store not closed
// cleanly takes the bytes the store holds, not its pre-sized files' sizes
// (an outside test saw a copy of a 100 KB store need 42 MB, and a gate
// with 33.5 MiB free stay down after a crash), holds the same bytes, and is
// made only if it leaves the room the outbox opens with; one that would
// not is refused with ErrDiskFull naming the figures, nothing left behind.
func TestKeepAsideCopiesOnlyWhatIsUsed(t *testing.T) {
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	term := openTest(t, dir)
	defer term.Close()
	for range 20 {
		if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	// The store open is the store a crash leaves: its write-ahead log and
	// value log pre-sized, mostly holes.
	size, used := onDisk(t, outbox)
	if size < 16<<20 {
		t.Fatalf("the store's files are %d bytes: not the pre-sized files the test needs", size)
	}
	need, err := storeBytesInUse(outbox)
	if err != nil {
		t.Fatal(err)
	}
	why := errors.New("a write-ahead log left")
	for _, c := range []struct {
		name string
		free uint64
		ok   bool
	}{
		{"room for the copy and the floor", openFloor + need + 1<<20, true},
		{"33.5 MiB free, as the outside test had", 67 << 19, true},
		{"the copy would eat into the floor", openFloor + need - 1, false},
		{"below the floor", openFloor - 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			room := newDiskRoom(outbox, 0)
			room.Set(32<<20, 0, func(string) (uint64, uint64, error) { return c.free, 107 << 20, nil })
			kept, _, err := keepAside(outbox, room, why)
			if !c.ok {
				if !errors.Is(err, ErrDiskFull) || kept != "" || len(keptCopies(outbox, damagedInfix)) != 0 || len(keptCopies(outbox, copyingInfix)) != 0 {
					t.Fatalf("%d bytes free, the copy needing %d: %q, %v; want ErrDiskFull and no copy", c.free, need, kept, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(kept)
			csize, cused := onDisk(t, kept)
			if csize != size || cused > used+64<<10 || cused > 2<<20 {
				t.Fatalf("the copy: %d bytes, %d on disk; the store: %d bytes, %d on disk; want the same size and no more on disk", csize, cused, size, used)
			}
			ents, _ := os.ReadDir(outbox)
			for _, e := range ents {
				if !e.Type().IsRegular() {
					continue
				}
				a, _ := os.ReadFile(filepath.Join(outbox, e.Name()))
				b, err := os.ReadFile(filepath.Join(kept, e.Name()))
				if err != nil || !bytes.Equal(a, b) {
					t.Errorf("%s: the copy differs (%v)", e.Name(), err)
				}
			}
		})
	}
}

// TestCopyFileSparse: holes and blocks of zeros are left out of a copy,
// data kept at its offsets, on any file system (zeros written as data are
// left out too).
func TestCopyFileSparse(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20)
	for _, at := range []int{0, 5000, 3 << 20, 8<<20 - 10} {
		copy(want[at:], "data here")
	}
	zeros := make([]byte, 1<<20)
	for _, w := range []struct {
		b  []byte
		at int64
	}{{want[:10000], 0}, {zeros, 1 << 20}, {want[3<<20 : 3<<20+10], 3 << 20}, {want[8<<20-10:], 8<<20 - 10}} {
		if _, err := f.WriteAt(w.b, w.at); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	to := filepath.Join(dir, "copy")
	if err := copyFileSynced(src, to); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(to)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the copy differs from the file (%v)", err)
	}
	info, _ := os.Stat(to)
	if used := info.Sys().(*syscall.Stat_t).Blocks * 512; used > 64<<10 || info.Mode().Perm() != 0o600 {
		t.Fatalf("the copy takes %d bytes on disk, mode %v; want at most 64 KiB, owner-only", used, info.Mode())
	}
}

// crashImage copies the files of the store in dir, open, to a new
// directory beside it, once they have settled (Badger's open flushes the
// write-ahead log it replayed in the background): the files a crash at
// that moment leaves.
func crashImage(t *testing.T, dir string) string {
	t.Helper()
	listing := func() string {
		ents, _ := os.ReadDir(dir)
		var b strings.Builder
		for _, e := range ents {
			info, err := e.Info()
			if err == nil {
				fmt.Fprintf(&b, "%s %d\n", e.Name(), info.Size())
			}
		}
		return b.String()
	}
	last, same := listing(), 0
	for deadline := time.Now().Add(10 * time.Second); same < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if now := listing(); now == last {
			same++
		} else {
			last, same = now, 0
		}
	}
	image := filepath.Join(t.TempDir(), "image")
	if err := os.CopyFS(image, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return image
}

// replaceDir puts the directory from in place of to.
func replaceDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.RemoveAll(to); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// TestBootCrashLoopLeavesNoCopies: a gate stopped while opening, again and
// again (a power flicker at boot), copies its store at each start, its
// open having changed the files; a copy that holds nothing lost (repaired,
// it reaches its high-water mark and holds every unconfirmed tap) is
// removed by the next start, so the copies do not pile up to the limit and
// the gate starts with every tap (an outside test saw three such crashes
// refuse every later start for copies nothing was missing from). A copy
// that does hold a loss stays, and every start names it.
func TestBootCrashLoopLeavesNoCopies(t *testing.T) {
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	term := openTest(t, dir)
	for range 5 {
		if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	image := crashImage(t, outbox)
	term.Close()
	replaceDir(t, image, outbox)
	lossy := crashImage(t, outbox) // for later: a copy that lost taps

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	room := newDiskRoom(outbox, 0)
	for i := range maxKeptCopies + 2 {
		// A start, stopped once Badger's open has changed the files.
		pruneKeptCopies(outbox, room, log)
		db, kept, _, err := openStore(storeOptions(outbox), room, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
		if kept == "" {
			t.Fatalf("start %d made no copy of a store not closed cleanly", i+1)
		}
		image := crashImage(t, outbox)
		db.Close()
		replaceDir(t, image, outbox)
	}
	cfg := testConfig(t, dir, outbox)
	cfg.Logger = log
	term, err := Open(cfg)
	if err != nil {
		t.Fatalf("the start after the crash loop: %v", err)
	}
	term.Close()
	if copies := keptCopies(outbox, damagedInfix); len(copies) != 0 || term.LastSequence() != 5 || term.Pending() != 5 {
		t.Fatalf("after the crash loop: copies %v, last %d, pending %d; want none, 5, 5\n%s", copies, term.LastSequence(), term.Pending(), logs.String())
	}
	if left := keptCopies(outbox, checkingInfix); len(left) != 0 {
		t.Fatalf("scratch copies left: %v", left)
	}

	// A copy whose high-water mark is above what it holds (taps lost to a
	// repair) is kept, and named by each start.
	hw, _, _, err := openHighWater(lossy)
	if err != nil {
		t.Fatal(err)
	}
	if err := hw.reset(9); err != nil {
		t.Fatal(err)
	}
	hw.close()
	needed := outbox + damagedInfix + "20260101T000000.000000000Z"
	if err := os.Rename(lossy, needed); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		logs.Reset()
		term, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		term.Close()
		if _, err := os.Stat(needed); err != nil || !strings.Contains(logs.String(), "wait to be recovered") || !strings.Contains(logs.String(), needed) {
			t.Fatalf("start %d with a copy that holds a loss: %v, log:\n%s\nwant it kept and named", i+1, err, logs.String())
		}
	}
}

// TestKeptCopyRemovalCutShort: a kept copy whose removal a crash cut short
// goes at the next start; it is removed under a name of its own, so it is
// never left as a kept copy of a few files that no start can show
// redundant (an outside crash loop left such copies, and three refused
// the gate's next start after a crash for good).
func TestKeptCopyRemovalCutShort(t *testing.T) {
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	if err := os.MkdirAll(outbox, 0o700); err != nil {
		t.Fatal(err)
	}
	kept := outbox + damagedInfix + "20260101T000000.000000000Z"
	if err := os.MkdirAll(kept, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kept, "000010.sst"), []byte("part of a table"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeKept(kept); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kept); !os.IsNotExist(err) {
		t.Fatalf("kept copy still there: %v", err)
	}
	// A removal cut short: the copy already under its removal name.
	cut := outbox + removingInfix + "20260101T000001.000000000Z"
	if err := os.MkdirAll(cut, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cut, "000010.sst"), []byte("part of a table"), 0o600); err != nil {
		t.Fatal(err)
	}
	left := pruneKeptCopies(outbox, newDiskRoom(outbox, 0), slog.New(slog.DiscardHandler))
	if len(left) != 0 || len(keptCopies(outbox, removingInfix)) != 0 || len(keptCopies(outbox, damagedInfix)) != 0 {
		t.Fatalf("after the next start's prune: left %v, removing %v, kept %v", left, keptCopies(outbox, removingInfix), keptCopies(outbox, damagedInfix))
	}
	if err := removeKept(filepath.Join(dir, "elsewhere")); err == nil {
		t.Error("removeKept removed a directory that is not a kept copy")
	}
}
