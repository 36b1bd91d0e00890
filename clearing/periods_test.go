package clearing_test

import (
	"context"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/ledger"
)

// TestPeriodsHoldTheirEvents: terminals tap without pause through short
// periods, sealed on the period's tick and by Settle calls in between;
// every event's applied_at lies in its batch's half-open period
// [period_start, period_end), the periods are whole seconds, follow each
// other without gap or overlap, and are on chain as in the store. An
// outside reconciliation saw 55 of 2,611 events applied at or after their
// batch's end (the seal's time cut to the second), so a reconciler
// assigning taps to periods by time put 2% in the wrong batch.
func TestPeriodsHoldTheirEvents(t *testing.T) {
	var led ledger.Ledger
	dir, reg, keys, cl := startCityWith(t, 4, func(cfg *clearing.Config) { cfg.Period, led = 300*time.Millisecond, cfg.Ledger })
	var terms []*runningTerminal
	for _, id := range []string{"t1", "t2", "t3", "t4"} {
		rt := startTerminal(t, dir, cl.NATSURL(), reg, keys, id)
		t.Cleanup(func() { rt.stop(t) })
		terms = append(terms, rt)
	}
	taps := startTapping(t, terms, 3*time.Millisecond)
	for range 3 {
		time.Sleep(700 * time.Millisecond)
		if err := cl.Settle(context.Background()); err != nil { // a seal between the ticks
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	taps.stop()
	for _, rt := range terms {
		waitFor(t, "outbox "+rt.ID()+" drained", 30*time.Second, func() bool { return rt.Pending() == 0 })
	}
	if err := cl.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}

	st := cl.Store()
	ids, err := st.AppliedEventIDs()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(ids)) != taps.count() {
		t.Fatalf("%d events applied, %d tapped", len(ids), taps.count())
	}
	appliedAt := make(map[uint64]time.Time, len(ids))
	for _, id := range ids {
		rec, err := st.Event(id)
		if err != nil {
			t.Fatal(err)
		}
		appliedAt[rec.ApplyIndex] = rec.AppliedAt
	}
	batches, err := st.Batches(1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) < 4 {
		t.Fatalf("%d batches, want several periods", len(batches))
	}
	var outside, total int
	for i, b := range batches {
		if b.PeriodStart.Truncate(time.Second) != b.PeriodStart || b.PeriodEnd.Truncate(time.Second) != b.PeriodEnd || !b.PeriodEnd.After(b.PeriodStart) {
			t.Errorf("batch %d: period [%s, %s), want whole seconds, end after start", b.ID, b.PeriodStart, b.PeriodEnd)
		}
		if i > 0 && !b.PeriodStart.Equal(batches[i-1].PeriodEnd) {
			t.Errorf("batch %d starts at %s, batch %d ended at %s", b.ID, b.PeriodStart, batches[i-1].ID, batches[i-1].PeriodEnd)
		}
		for idx := b.StartIndex; idx < b.EndIndex; idx++ {
			at, ok := appliedAt[idx]
			total++
			if !ok {
				t.Errorf("batch %d: no event at apply index %d", b.ID, idx)
				continue
			}
			if at.Before(b.PeriodStart) || !at.Before(b.PeriodEnd) {
				outside++
				if outside <= 5 {
					t.Errorf("batch %d [%s, %s): event at apply index %d applied at %s", b.ID,
						b.PeriodStart.Format(time.RFC3339), b.PeriodEnd.Format(time.RFC3339), idx, at.Format(time.RFC3339Nano))
				}
			}
		}
		onChain, err := led.Batch(context.Background(), b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !onChain.PeriodStart.Equal(b.PeriodStart) || !onChain.PeriodEnd.Equal(b.PeriodEnd) {
			t.Errorf("batch %d: period [%s, %s) on chain, [%s, %s) in the store", b.ID, onChain.PeriodStart, onChain.PeriodEnd, b.PeriodStart, b.PeriodEnd)
		}
	}
	if outside > 0 {
		t.Errorf("%d of %d events applied outside their batch's period", outside, total)
	}
	if total != len(ids) {
		t.Errorf("batches hold %d events, %d applied", total, len(ids))
	}
	rep, err := st.Audit(context.Background(), led, clearing.AuditOptions{Terminals: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rep.Mismatches {
		t.Errorf("audit: %s", m)
	}
	t.Logf("%d events in %d batches", total, len(batches))
}
