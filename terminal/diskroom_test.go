package terminal

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
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
	free, err := freeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	term.room.mu.Lock()
	term.room.min, term.room.at = free+(1<<40), time.Time{} // a margin this disk cannot keep
	term.room.mu.Unlock()
	_, err = term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "full"})
	if !errors.Is(err, ErrDiskFull) || term.LastSequence() != 1 || term.Pending() != 1 {
		t.Fatalf("a tap on a full disk: %v; last %d, pending %d", err, term.LastSequence(), term.Pending())
	}
	term.room.mu.Lock()
	term.room.min, term.room.at = DefaultMinFreeBytes, time.Time{}
	term.room.mu.Unlock()
	if ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "after"}); err != nil || ev.Sequence != 2 {
		t.Fatalf("a tap once there is room: seq %d, %v", ev.Sequence, err)
	}

	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: filepath.Join(t.TempDir(), "new", "outbox"),
		NATSURL: "nats://127.0.0.1:1", MinFreeBytes: int64(free + 1<<40), ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}})
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("an outbox opened without its margin: %v", err)
	}
}
