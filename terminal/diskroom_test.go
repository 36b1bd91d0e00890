package terminal

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/diskspace"
	"github.com/faregate/faregate/fare/gatefeed"
)

// TestDiskFullRefusesTaps: with less free space than the outbox's margin a
// tap is refused with ErrDiskFull, naming the figures, and the gate stays
// up; nothing already taken is lost, and taps go on once there is room. An
// outbox on a disk without the margin is not opened (its store would die of
// SIGBUS writing into a file the disk has no blocks for).
func TestDiskFullRefusesTaps(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	defer term.Close()
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "before"}); err != nil {
		t.Fatal(err)
	}
	free, size, err := diskspace.Free(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := term.room.Min(); got != max(min(DefaultMinFreeBytes, size/4), storeRoom) {
		t.Errorf("the automatic margin on a %d MiB disk: %d MiB", size>>20, got>>20)
	}
	term.room.Set(free+(1<<40), 0, nil) // a margin this disk cannot keep
	_, err = term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "full"})
	if !errors.Is(err, ErrDiskFull) || term.LastSequence() != 1 || term.Pending() != 1 {
		t.Fatalf("a tap on a full disk: %v; last %d, pending %d", err, term.LastSequence(), term.Pending())
	}
	term.room.Set(DefaultMinFreeBytes, 0, nil)
	if ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "after"}); err != nil || ev.Sequence != 2 {
		t.Fatalf("a tap once there is room: seq %d, %v", ev.Sequence, err)
	}

	// Opening asks only for the floor (or the margin, if lower): a gate
	// whose disk filled up still opens to send what it holds.
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	big, err := Open(Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: filepath.Join(t.TempDir(), "new", "outbox"),
		NATSURL: "nats://127.0.0.1:1", MinFreeBytes: int64(free + 1<<40), ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatalf("an outbox on a disk with its floor but not its margin: %v", err)
	}
	if _, err := big.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "x"}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a tap below the margin: %v", err)
	}
	big.Close()
	r := newDiskRoom(dir, int64(free+1<<40))
	if err := r.checkAbove(time.Now(), free+1<<30); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("below the floor: %v", err)
	}
	// A file system that reports no sizes (ramfs) cannot be judged: no
	// check, rather than a gate that never opens.
	if _, _, err := diskspace.Free("/proc"); !errors.Is(err, diskspace.ErrNoFigures) {
		t.Logf("/proc reports sizes here (%v): the no-figures case is not exercised", err)
	}
	r = newDiskRoom("/proc", 1<<40)
	if err := r.check(time.Now()); err != nil {
		t.Fatalf("a file system without figures: %v", err)
	}
}

// TestMissingCAKeepsTheGateUp: a TLS CA file not there yet (a mount not up,
// provisioning late) stops nothing: Run keeps trying while the gate takes
// taps into its outbox, and ends cleanly when stopped.
func TestMissingCAKeepsTheGateUp(t *testing.T) {
	dir := t.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	term, err := Open(Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: filepath.Join(dir, "outbox"),
		NATSURL: "tls://127.0.0.1:1", NATSCA: filepath.Join(dir, "not-yet.pem"), ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- term.Run(ctx) }()
	time.Sleep(1500 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Run ended without a CA file: %v", err)
	default:
	}
	if ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "offline"}); err != nil || ev.Sequence != 1 {
		t.Fatalf("a tap while the CA is missing: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run stopped: %v", err)
	}
}

// TestDiskFullLeavesWritesForLater: below the floor the store's own writes
// (the gate lists' copy, a confirmation's deletions) are not made — on a
// full disk they killed the gate with SIGBUS — yet the in-memory copy
// decides, nothing is lost, and both are written once there is room.
func TestDiskFullLeavesWritesForLater(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	full := func(string) (uint64, uint64, error) { return 1 << 20, 1 << 30, nil }
	setStat := func(stat func(string) (uint64, uint64, error)) {
		term.room.Set(DefaultMinFreeBytes, 0, stat)
	}
	ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "rider"})
	if err != nil {
		t.Fatal(err)
	}
	setStat(full)

	// A deny listing arrives: decided from memory, its write left staged.
	f := &gateFollower{t: term}
	deny := &listSession{list: fare.DenyGateList, seen: map[fare.DenyHash]struct{}{}}
	b, err := (&fare.GateEntry{List: fare.DenyGateList, Version: 1, Key: fare.HashDeny(fare.Card, "stolen"), Listed: true}).Sign(testClearingKey)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(deny, &gatefeed.Entry{Key: fare.HashDeny(fare.Card, "stolen").String(), Value: b})
	if err := f.flush(); err != nil || len(f.pending) == 0 {
		t.Fatalf("flush on a full disk: %v, %d staged; want nothing written and the writes kept", err, len(f.pending))
	}
	if d, why := term.Decide(Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "stolen"}); d != fare.Denied {
		t.Fatalf("a listing not yet stored: %v/%s, want denied from the copy in memory", d, why)
	}

	// Clearing confirms the tap: not recorded, the event stays to be sent.
	var raw []byte
	if err := term.db.View(func(txn *badger.Txn) error {
		var err error
		raw, err = readOutboxEntry(txn, ev.Sequence)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := &sender{t: term, next: 2}
	c := &fare.Confirmation{Terminal: "t1", Watermark: ev.Sequence, Digest: fare.EventDigest(raw)}
	if err := s.confirm(c, 0, true); !errors.Is(err, errNoRoom) || term.Pending() != 1 {
		t.Fatalf("a confirmation on a full disk: %v, pending %d; want it left for later", err, term.Pending())
	}

	setStat(nil) // room again
	if err := s.confirm(c, 0, true); err != nil || term.Pending() != 0 {
		t.Fatalf("the confirmation once there is room: %v, pending %d", err, term.Pending())
	}
	if err := f.flush(); err != nil || len(f.pending) != 0 {
		t.Fatalf("flush once there is room: %v, %d still staged", err, len(f.pending))
	}
	term.Close()
	term = openTest(t, dir)
	defer term.Close()
	if d, _ := term.Decide(Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "stolen"}); d != fare.Denied {
		t.Fatalf("after a restart the stored listing: %v", d)
	}
	if term.Pending() != 0 || term.LastSequence() != 1 {
		t.Fatalf("after a restart: pending %d, last %d", term.Pending(), term.LastSequence())
	}
}

// TestOutboxDirMadePrivate: a --data directory that exists open to other
// users (0755) is made owner-only at open, so the card tokens in Badger's
// files (0644) cannot be read by another local user (an outside test read
// them with `su nobody`).
func TestOutboxDirMadePrivate(t *testing.T) {
	dir := t.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	outbox := filepath.Join(dir, "outbox")
	if err := os.Mkdir(outbox, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(outbox, 0o755); err != nil {
		t.Fatal(err)
	}
	term, err := Open(Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: outbox,
		ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "private-token"}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(outbox)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("outbox dir mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
}

// TestCloseOnAFullDisk: with no room for the flush that closing the store
// makes (its memtable written out through a mapped file, which a full disk
// turns into SIGBUS: an outside test's gate, stopped on a full disk, died
// so), the store is left open for the process's end, said so; every tap
// was synced when taken, and the next start has them all. With room, it
// closes.
func TestCloseOnAFullDisk(t *testing.T) {
	dir := t.TempDir()
	term := openTest(t, dir)
	tapN(t, term, 5)
	need, _, _ := term.flushRoom()
	if need <= openFloor {
		t.Fatalf("the closing flush needs %d bytes, want its write-ahead log's beside the floor's %d", need, openFloor)
	}
	term.room.Set(DefaultMinFreeBytes, 0, func(string) (uint64, uint64, error) { return need - 1, 1 << 30, nil })
	db := term.db
	err := term.Close()
	if err == nil || !strings.Contains(err.Error(), "was not closed") || !strings.Contains(err.Error(), "replays them") {
		t.Fatalf("Close on a full disk: %v, want the store left open, said so", err)
	}
	// The process's end, as it would come: the store's log holds every tap.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	term = openTest(t, dir)
	if term.Pending() != 5 || term.LastSequence() != 5 {
		t.Fatalf("after the start that followed: %d pending, last %d; want 5, 5", term.Pending(), term.LastSequence())
	}
	term.room.Set(DefaultMinFreeBytes, 0, func(string) (uint64, uint64, error) { return need + (1 << 20), 1 << 30, nil })
	if err := term.Close(); err != nil {
		t.Fatalf("Close with room for the flush: %v", err)
	}
}

// TestDiskRoomReadAfreshNearTheMargin: within twice the margin the free
// space is read for every tap, not once a second (an outside test's disk,
// filled by dd, took a tap with 5 MiB free on a reading a second old).
func TestDiskRoomReadAfreshNearTheMargin(t *testing.T) {
	term := openTest(t, t.TempDir())
	defer term.Close()
	var free atomic.Uint64
	free.Store(DefaultMinFreeBytes * 3 / 2)
	term.room.Set(DefaultMinFreeBytes, 0, func(string) (uint64, uint64, error) { return free.Load(), 1 << 30, nil })
	tap := func() error {
		_, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "rider"})
		return err
	}
	if err := tap(); err != nil {
		t.Fatalf("a tap with 1.5 times the margin free: %v", err)
	}
	free.Store(5 << 20) // filled within the second
	if err := tap(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a tap right after the disk filled: %v, want ErrDiskFull", err)
	}
	free.Store(1 << 30)
	term.room.Set(DefaultMinFreeBytes, 0, func(string) (uint64, uint64, error) { return free.Load(), 1 << 30, nil })
}
