package clearing

import (
	"fmt"
	"testing"
	"time"
)

// TestDueRidersResumeWhereLastStopped: riders ahead in the index of days
// to bill who are due every round (issuers that hang, back from their
// timeouts and back-offs) must not keep a rider after them from being
// read: each read goes on where the last stopped, wrapping to the start.
// (Read from the start each time, a healthy rider behind 1,500 hanging
// ones was never billed: an outside recheck.)
func TestDueRidersResumeWhereLastStopped(t *testing.T) {
	const hanging, limit = 10, 4
	var taps []struct {
		card string
		at   time.Time
	}
	for i := range hanging {
		taps = append(taps, struct {
			card string
			at   time.Time
		}{fmt.Sprintf("card-hang-%02d", i), wednesday(9, i)})
	}
	// The healthy rider's day is after theirs: last in the index.
	taps = append(taps, struct {
		card string
		at   time.Time
	}{"card-healthy", wednesday(34, 0)})
	b := newBillingFixture(t, taps...)
	healthy := b.rider("card-healthy")
	upTo := b.pricing.Book.Feed.FareDay(wednesday(58, 0))
	b.st.noteBilledBefore(upTo)
	// Nothing read is billed: the hanging riders stay due every round.
	const bound = (hanging+1+limit-1)/limit + 1
	seen := map[string]int{}
	for round := 1; round <= 2*bound; round++ {
		items, err := b.st.dueRiders(upTo, b.now, limit, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) == 0 || len(items) > limit {
			t.Fatalf("round %d read %d riders, want 1 to %d", round, len(items), limit)
		}
		for _, it := range items {
			seen[it.rider]++
		}
		if seen[healthy] == 0 && round >= bound {
			t.Fatalf("healthy rider not read in %d rounds of %d behind %d riders due every round", round, limit, hanging)
		}
	}
	// Round-robin: every rider read as often as the others, give or take one.
	if len(seen) != hanging+1 {
		t.Fatalf("read %d riders, want %d", len(seen), hanging+1)
	}
	lo, hi := 1<<30, 0
	for _, n := range seen {
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi-lo > 1 {
		t.Errorf("riders read unevenly: %d to %d times in %d rounds (%v)", lo, hi, 2*bound, seen)
	}
}
