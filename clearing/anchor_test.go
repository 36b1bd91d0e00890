package clearing_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// TestReplacedGateContinuesItsSequence: a gate unit is replaced (its
// outbox lost, the same registered key provisioned on a new one), and the
// new unit takes taps before it first reaches NATS. It publishes nothing
// until clearing has told it, in a signed confirmation, how far its
// record of the terminal goes; then its taps are renumbered after it and
// applied, none refused as a replay of the old unit's sequences.
func TestReplacedGateContinuesItsSequence(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(1)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour})
	t.Cleanup(func() { cl.stop(t) })
	url := cl.NATSURL()

	old := startTerminal(t, dir, url, reg, keys, "t1")
	for i := range 5 {
		tap(t, old.Terminal, fmt.Sprintf("card-%d", i), fare.Validate)
	}
	waitFor(t, "the old unit's taps confirmed", 20*time.Second, func() bool { return old.Pending() == 0 && !old.Unanchored() })
	old.stop(t)

	rt, _ := reg.TerminalKey("t1")
	unit, err := terminal.Open(terminal.Config{ID: "t1", Operator: rt.Operator, Stop: rt.Stop, Key: keys["t1"],
		DataDir: filepath.Join(dir, "replacement"), NATSURL: url, ResendAfter: 500 * time.Millisecond, Logger: quietLogger(),
		ClearingKeys: []ed25519.PublicKey{testConfirmKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	defer unit.Close()
	for i := range 3 {
		if ev := tap(t, unit, fmt.Sprintf("new-card-%d", i), fare.Validate); ev.Sequence != uint64(i+1) {
			t.Fatalf("tap %d on the new unit before it reached clearing: sequence %d", i, ev.Sequence)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- unit.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "the new unit's taps confirmed", 20*time.Second, func() bool { return !unit.Unanchored() && unit.Pending() == 0 })
	st := cl.Stats()
	if st.Applied != 8 || st.Quarantined != 0 || unit.LastSequence() != 8 || unit.RejectedEvents() != 0 {
		t.Fatalf("applied %d, quarantined %d (%v); new unit's last sequence %d, rejected %d: want 8 applied, none refused, sequence 8",
			st.Applied, st.Quarantined, st.QuarantineByWhy, unit.LastSequence(), unit.RejectedEvents())
	}
	if ev := tap(t, unit, "after", fare.Validate); ev.Sequence != 9 {
		t.Fatalf("the next tap: sequence %d, want 9", ev.Sequence)
	}
}
