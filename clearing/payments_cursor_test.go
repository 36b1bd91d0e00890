package clearing

import (
	"context"
	"fmt"
	"sync"
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

// TestBillSlowAfter: a bill counts as slow (and gives its slot to the next
// rider) after four times what answered bills take, between minSlowBill
// and slowBill: at slowBill before any answer, quick answers bring it down
// to minSlowBill, one slow answer puts it up at once, and it comes down
// again by an eighth an answer.
func TestBillSlowAfter(t *testing.T) {
	s := newBillSlots()
	if got := s.slowAfter(); got != slowBill {
		t.Fatalf("before any answer: %s, want %s", got, slowBill)
	}
	for _, c := range []struct {
		name    string
		answers []time.Duration
		want    time.Duration
	}{
		{"quick answers", repeat(40, 10*time.Millisecond), minSlowBill},
		{"one answer of 300 ms", []time.Duration{300 * time.Millisecond}, 1200 * time.Millisecond},
		{"one of 2 s", []time.Duration{2 * time.Second}, slowBill},
		{"quick ones again, a few", repeat(8, 10*time.Millisecond), slowBill},
		{"quick ones again, many", repeat(60, 10*time.Millisecond), minSlowBill},
	} {
		for _, d := range c.answers {
			s.answered(d)
		}
		if got := s.slowAfter(); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func repeat(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// BenchmarkHealthyBehindHanging: how long a healthy rider waits for a bill
// slot behind 64 riders whose issuer hangs (their bills never end while
// measured), with the slow-bill threshold as it stands before any answer
// (slowBill) and after answers of 10 ms (minSlowBill). The slots alone,
// as the collector takes and holds them.
func BenchmarkHealthyBehindHanging(b *testing.B) {
	const hanging = 64
	for _, c := range []struct {
		name    string
		answers int
	}{{"no-answers-yet", 0}, {"acquirer-answering-in-10ms", 40}} {
		b.Run(c.name, func(b *testing.B) {
			var waited time.Duration
			for range b.N {
				s := newBillSlots()
				for range c.answers {
					s.answered(10 * time.Millisecond)
				}
				release := make(chan struct{})
				var wg sync.WaitGroup
				start := time.Now()
				for range hanging {
					s.take(context.Background())
					done := make(chan struct{})
					wg.Go(func() { s.hold(done) })
					wg.Go(func() { <-release; close(done) })
				}
				s.take(context.Background()) // the healthy rider's slot
				waited += time.Since(start)
				<-s.fast
				close(release)
				wg.Wait()
			}
			b.ReportMetric(waited.Seconds()/float64(b.N), "s-healthy-waits")
		})
	}
}
