package clearing_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestDiskFullHoldsEvents: with less free space on its data dir than its
// margin, clearing takes no events (Badger would die of SIGBUS writing
// into a full disk, at every start): they wait in the stream, readiness
// names the figures, and they are applied once there is room. Below the
// floor clearing does not open its store at all.
func TestDiskFullHoldsEvents(t *testing.T) {
	var free atomic.Uint64
	free.Store(400 << 20) // above the 256 MiB floor, below the 512 MiB margin
	stat := func(string) (uint64, uint64, error) { return free.Load(), 100 << 30, nil }
	dir := t.TempDir()
	reg, keys := testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cfg := clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour}
	clearing.WithStatfs(&cfg, stat)
	cl := startClearing(t, cfg)
	defer cl.stop(t)

	nc := terminalConn(t, cl.NATSURL(), keys["t1"], "t1")
	defer nc.Close()
	for seq := uint64(1); seq <= 3; seq++ {
		ev := fare.Event{ID: fare.NewEventID(time.Now()), Terminal: "t1", Operator: "metro", Stop: "stop-t1", Gate: "g1",
			Direction: fare.Entry, Media: fare.Card, MediaToken: "card-1", DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: seq}
		raw, err := fare.Sign(&ev, keys["t1"])
		if err != nil {
			t.Fatal(err)
		}
		publishEvent(t, nc, fare.EventSubject("metro", "t1"), raw)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := cl.Stats().Applied; n != 0 {
		t.Fatalf("%d events applied on a disk below the margin, want 0", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := cl.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "has 400 MiB free, clearing keeps 512 MiB (faregate clearing --min-free-mib)") {
		t.Fatalf("ready on a disk below the margin: %v, want the figures", err)
	}

	free.Store(10 << 30) // room again
	waitFor(t, "the waiting events applied once there is room", 10*time.Second, func() bool { return cl.Stats().Applied == 3 })
	if err := cl.Ready(ctx); err != nil {
		t.Fatalf("ready once there is room: %v", err)
	}
	checkBooks(t, cl.Store(), map[string]fare.Amount{"metro": 3 * 250, "bus": 0})

	// Below the floor the store is not opened.
	low := clearing.Config{DataDir: filepath.Join(dir, "other"), Registry: reg, Ledger: led, Period: time.Hour, NATSPort: -1, Logger: quietLogger()}
	clearing.WithStatfs(&low, func(string) (uint64, uint64, error) { return 100 << 20, 100 << 30, nil })
	if c, err := clearing.Open(ctx, low); !errors.Is(err, clearing.ErrDiskFull) || !strings.Contains(err.Error(), "has 100 MiB free, clearing keeps 256 MiB") {
		if c != nil {
			c.Close()
		}
		t.Fatalf("open below the floor: %v, want ErrDiskFull with the figures", err)
	}
	// No check: any disk.
	low.MinFreeBytes = -1
	c, err := clearing.Open(ctx, low)
	if err != nil {
		t.Fatalf("open with no margin: %v", err)
	}
	c.Close()
}
