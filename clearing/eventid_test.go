package clearing_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestEventIDTaken: a terminal signs, with its own key and its own next
// sequence, an event carrying the id of another operator's applied event
// (ids are the terminal's choice; operators and auditors see them). It
// used to be applied over the victim's record: the victim's signed bytes
// gone, its operator's view and proof pointing at the attacker's tap, and
// the anchored batch failing every audit. It is refused for good as
// event-id-taken (its sequence recorded as rejected, so its terminal is
// told and goes on); so is the second of two events sharing a fresh id;
// the sealed batch audits clean against the chain.
func TestEventIDTaken(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2) // t1 metro, t2 bus
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour})
	defer cl.stop(t)
	conns := map[string]string{"t1": "metro", "t2": "bus"}
	send := func(term string, seq uint64, id fare.EventID) []byte {
		t.Helper()
		nc := terminalConn(t, cl.NATSURL(), keys[term], term)
		defer nc.Close()
		ev := fare.Event{ID: id, Terminal: term, Operator: conns[term], Stop: "stop-" + term, Gate: "g1",
			Direction: fare.Validate, Media: fare.Card, MediaToken: "card-" + term, DeviceTime: time.Now(), Decision: fare.Accepted, Sequence: seq}
		raw, err := fare.Sign(&ev, keys[term])
		if err != nil {
			t.Fatal(err)
		}
		publishEvent(t, nc, fare.EventSubject(conns[term], term), raw)
		return raw
	}
	taken := func() uint64 { return cl.Stats().QuarantineByWhy[clearing.ReasonEventIDTaken] }
	victim := fare.NewEventID(time.Now())
	send("t1", 1, victim)
	waitFor(t, "the victim's event applied", 10*time.Second, func() bool { return cl.Stats().Applied == 1 })
	// The attack: the bus gate's own sequence 1, the metro event's id.
	attack := send("t2", 1, victim)
	waitFor(t, "the colliding event quarantined", 10*time.Second, func() bool { return taken() == 1 })
	rec, err := cl.Store().Event(victim)
	if err != nil {
		t.Fatal(err)
	}
	if sig, err := fare.Decode(rec.Raw); err != nil || sig.Terminal != "t1" || sig.Sequence != 1 {
		t.Fatalf("the victim's record after the attack: %+v, %v; want t1's sequence 1", sig, err)
	}
	// Two events sharing a fresh id, sent together: the first applied,
	// the second quarantined, whether or not they share a batch.
	shared := fare.NewEventID(time.Now())
	send("t1", 2, shared)
	send("t2", 2, shared)
	waitFor(t, "one of the pair quarantined", 10*time.Second, func() bool { return taken() == 2 })
	waitFor(t, "the other applied", 10*time.Second, func() bool { return cl.Stats().Applied == 2 })
	// Nothing was held up: the next sequences apply, and both terminals'
	// watermarks pass the refused events.
	send("t1", 3, fare.NewEventID(time.Now()))
	send("t2", 3, fare.NewEventID(time.Now()))
	waitFor(t, "the next events applied", 10*time.Second, func() bool { return cl.Stats().Applied == 4 })
	waitFor(t, "both watermarks at 3", 10*time.Second, func() bool {
		return cl.TerminalWatermark("t1") == 3 && cl.TerminalWatermark("t2") == 3
	})
	if r := cl.Stats().Rejected; r != 2 {
		t.Errorf("%d events rejected for good, want the 2 refused", r)
	}
	// The refusal sent again (its terminal not told yet) is a duplicate.
	nc := terminalConn(t, cl.NATSURL(), keys["t2"], "t2")
	defer nc.Close()
	publishEvent(t, nc, fare.EventSubject("bus", "t2"), attack)
	waitFor(t, "the refusal resent counted a duplicate", 10*time.Second, func() bool { return cl.Stats().Duplicates == 1 })
	ctx := context.Background()
	if err := cl.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := cl.Store().Audit(ctx, led, clearing.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Roots, nets, signatures, sequences and every applied event as
	// anchored.
	if len(rep.Mismatches) != 0 {
		t.Errorf("audit after the attack: %v", rep.Mismatches)
	}
}
