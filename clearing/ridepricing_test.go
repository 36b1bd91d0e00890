package clearing

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
)

// TestParallelPricingMatchesSerial: a batch big enough to be priced on
// every core books exactly what the same taps booked one batch each
// (serial pricing) book: every event's postings, every rider's and
// operator's balance, and a clean independent repricing. The riders ride
// bus and metro at random through the week and across the 04:00 cut-over
// (entries before it, exits after it, in either order), the taps shuffled
// so that earlier days of a week arrive late and reprice the later ones
// under the weekly cap: riders need days the read-ahead did not read and
// finish serially.
func TestParallelPricingMatchesSerial(t *testing.T) {
	type tapPlan struct {
		term string
		dir  fare.Direction
		card string
		at   time.Time
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var plan []tapPlan
	for r := range 150 {
		card := fmt.Sprintf("card-%03d", r)
		at := wednesday(24*rng.IntN(5)+6+rng.IntN(16), rng.IntN(60)) // Wednesday to Sunday
		if r%10 == 0 {
			at = wednesday(27, 20+rng.IntN(30)) // Thursday 03:20-03:49
		}
		for range 1 + rng.IntN(12) { // some riders reach the daily and weekly caps
			switch rng.IntN(3) {
			case 0:
				plan = append(plan, tapPlan{"bus-s01-g1", fare.Validate, card, at})
			default:
				plan = append(plan, tapPlan{"metro-s01-g1", fare.Entry, card, at.Add(5 * time.Minute)},
					tapPlan{"metro-s04-g1", fare.Exit, card, at.Add(40 * time.Minute)})
			}
			// Apart by more than a journey: no two taps of a rider at the same
			// time (their order would then follow random event ids).
			at = at.Add(time.Duration(45+rng.IntN(200)) * time.Minute)
		}
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	type books struct {
		postings map[int][]Posting
		balances map[string]fare.Amount
		serial   int // taps finished serially in a parallel batch
	}
	run := func(batch int, pipelined bool) books {
		f := newPricedFixture(t, t.TempDir())
		defer f.st.Close()
		cands := make([]candidate, len(plan))
		for i, p := range plan {
			cands[i] = f.tap(t, p.term, p.dir, p.card, p.at)
		}
		b := books{postings: map[int][]Posting{}, balances: map[string]fare.Amount{}}
		if pipelined {
			b.serial = applyPipelined(t, f, cands, batch)
		}
		for q := cands; len(q) > 0 && !pipelined; {
			k := min(batch, len(q))
			res := f.apply(t, q[:k]...)
			if res.applied != k {
				t.Fatalf("applied %d of %d", res.applied, k)
			}
			b.serial += res.pricing.Serial
			q = q[k:]
		}
		for i, c := range cands {
			rec, err := f.st.Event(c.ev.ID)
			if err != nil {
				t.Fatal(err)
			}
			b.postings[i] = rec.Postings // event ids differ between runs: by plan index
			b.balances[c.rider] = f.balance(t, c.rider)
		}
		for _, op := range []string{"bus", "metro"} {
			b.balances[OperatorAccount(op)] = f.balance(t, OperatorAccount(op))
		}
		fa, err := f.st.AuditFares(f.pricing, func(m fare.MediaKind, tok string) string { return RiderAccount(f.riderKey, m, tok) })
		if err != nil || fa.Count != 0 {
			t.Fatalf("batches of %d: fare audit %+v, %v", batch, fa, err)
		}
		return b
	}
	serial, parallel := run(1, false), run(len(plan), false)
	// Pipelined as clearing runs under load: each batch prepared while the
	// one before commits, reading its writes through the overlay (small
	// batches priced serially, large ones in parallel).
	pipelinedSmall, pipelinedLarge := run(7, true), run(3*parallelFrom, true)
	// And with nothing read either side of the cut-over: its riders finish
	// serially from the tap that needed it.
	readNeighbours = false
	defer func() { readNeighbours = true }()
	fallback := run(len(plan), false)
	if parallel.serial != 0 || fallback.serial == 0 {
		t.Fatalf("taps finished serially: %d with the read-ahead, %d without its cut-over days; want none, then some", parallel.serial, fallback.serial)
	}
	if len(plan) < parallelFrom {
		t.Fatalf("only %d taps: the batch is not priced in parallel", len(plan))
	}
	for name, got := range map[string]books{"parallel": parallel, "parallel then serial": fallback,
		"pipelined batches of 7": pipelinedSmall, "pipelined parallel batches": pipelinedLarge} {
		for i, want := range serial.postings {
			if p := got.postings[i]; !slices.Equal(p, want) {
				t.Errorf("%s: tap %d (%+v) posted %v, serial %v", name, i, plan[i], p, want)
			}
		}
		for acct, want := range serial.balances {
			if b := got.balances[acct]; b != want {
				t.Errorf("%s: %s %d, serial %d", name, acct, b, want)
			}
		}
	}
	if serial.balances[OperatorAccount("metro")] <= 0 || serial.balances[OperatorAccount("bus")] <= 0 {
		t.Fatalf("nothing charged: %v", serial.balances)
	}
}

// applyPipelined applies cands in batches as Clearing.applyVerified does
// under load: each batch's transaction is opened before the previous batch
// commits, and the batch is prepared through the previous one's writes
// while that commit runs. Every batch also carries again the first event
// of the batch before (a redelivery), which must be found a duplicate
// through the overlay. It returns the taps finished serially.
func applyPipelined(t *testing.T, f *pricedFixture, cands []candidate, batch int) (serial int) {
	t.Helper()
	var pb *preparedBatch
	var resent *candidate
	for q := cands; len(q) > 0; {
		k := min(batch, len(q))
		b := slices.Clone(q[:k])
		if resent != nil {
			b = append(b, *resent)
		}
		resent = &q[0]
		q = q[k:]
		txn := f.st.db.NewTransaction(true)
		cur, prev := f.cur, map[string][]byte(nil)
		var done <-chan error
		if pb != nil {
			done, cur, prev = f.st.commitAsync(pb), pb.next, pb.bt.wrote
		}
		npb, err := f.st.prepare(txn, prev, b, cur, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if done != nil {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			f.cur = pb.next
		}
		dups := 0
		if len(b) > k {
			dups = 1
		}
		if npb.res.applied != k || npb.res.duplicate != dups {
			t.Fatalf("batch of %d (+%d resent): applied %d, duplicates %d", k, dups, npb.res.applied, npb.res.duplicate)
		}
		serial += npb.res.pricing.Serial
		pb = npb
	}
	if err := f.st.commit(pb); err != nil {
		t.Fatal(err)
	}
	f.cur = pb.next
	return serial
}
