package clearing_test

import (
	"context"
	"path/filepath"
	"strings"
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
// the anchored batch failing every audit. It is quarantined as
// event-id-taken, not applied; so is the second of two events sharing a
// fresh id; the sealed batch audits clean against the chain.
func TestEventIDTaken(t *testing.T) {
	dir := t.TempDir()
	reg, keys := testRegistry(2) // t1 metro, t2 bus
	led := openLedger(t, filepath.Join(dir, "chain"))
	defer led.Close()
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour})
	defer cl.stop(t)
	conns := map[string]string{"t1": "metro", "t2": "bus"}
	send := func(term string, seq uint64, id fare.EventID) {
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
	}
	taken := func() uint64 { return cl.Stats().QuarantineByWhy[clearing.ReasonEventIDTaken] }
	victim := fare.NewEventID(time.Now())
	send("t1", 1, victim)
	waitFor(t, "the victim's event applied", 10*time.Second, func() bool { return cl.Stats().Applied == 1 })
	// The attack: the bus gate's own sequence 1, the metro event's id.
	send("t2", 1, victim)
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
	// Nothing else was held up: the next sequences apply (t2's first
	// stays a gap its terminal made).
	send("t1", 3, fare.NewEventID(time.Now()))
	send("t2", 3, fare.NewEventID(time.Now()))
	waitFor(t, "the next events applied", 10*time.Second, func() bool { return cl.Stats().Applied == 4 })
	if w := cl.TerminalWatermark("t1"); w != 3 {
		t.Errorf("t1's watermark %d, want 3", w)
	}
	ctx := context.Background()
	if err := cl.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := cl.Store().Audit(ctx, led, clearing.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Clean but for the gap t2 left behind its refused events: roots,
	// nets, signatures and every applied event as anchored.
	for _, m := range rep.Mismatches {
		if !strings.Contains(m.String(), "sequence gap of terminal t2") {
			t.Errorf("audit after the attack: %s", m)
		}
	}
	if len(rep.Mismatches) != 1 {
		t.Errorf("audit after the attack: %d findings, want t2's gap only", len(rep.Mismatches))
	}
}
