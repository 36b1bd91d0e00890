package clearing

import (
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
)

// TestLateTapRacesDayClose: a batch whose preparation began before the
// collector moved the billed-before day (so it does not put the day it
// changes, indexed already, back in the index of days to bill) commits
// after the collector read the index and asked for the amount. The post
// must keep the day's key, so that the next round bills the late tap's
// charge; it used to delete it (its version had not changed), and the
// charge waited for the rider's next fare day, or forever. race=false: the
// same steps with the batch committed before the collector reads.
// (From an outside review.)
func TestLateTapRacesDayClose(t *testing.T) {
	for _, race := range []bool{false, true} {
		name := map[bool]string{false: "serial", true: "race"}[race]
		t.Run(name, func(t *testing.T) {
			f := newPricedFixture(t, t.TempDir())
			defer f.st.Close()
			d := f.pricing.Book.Feed.FareDay(wednesday(11, 0))
			f.st.noteBilledBefore(d) // the days before D were billed at the last close
			f.apply(t, f.tap(t, "bus-s01-g1", fare.Validate, "card-a", wednesday(11, 0)))
			rider := f.rider("card-a")
			late := []candidate{f.tap(t, "bus-s01-g1", fare.Validate, "card-a", wednesday(16, 0))}
			now := time.Now()
			var pb *preparedBatch
			var err error
			if race {
				// The applying goroutine begins the batch: it reads
				// billed-before D.
				if pb, err = f.st.prepare(f.st.db.NewTransaction(true), nil, late, f.cur, now); err != nil {
					t.Fatal(err)
				}
			} else {
				f.apply(t, late...)
			}
			c := &Clearing{store: f.st, log: auditLogger(), payments: make(chan *paymentPost, 8), cur: f.cur}
			// round is one collection of D: the billed-before day moved,
			// the index read, the amount asked for; then (the race) the
			// batch commits; then the approval is posted.
			round := func(commit bool) (asked fare.Amount, found int) {
				f.st.noteBilledBefore(d + 1)
				items, err := f.st.dueRiders(d+1, now, 256, nil)
				if err != nil {
					t.Fatal(err)
				}
				if len(items) == 0 {
					return 0, 0
				}
				it := items[0]
				req, _, err := f.st.chargeRequest(&it, "EUR")
				if err != nil {
					t.Fatal(err)
				}
				if commit {
					if err := f.st.commit(pb); err != nil {
						t.Fatal(err)
					}
					f.st.committed(pb, &c.cur)
				}
				p := &paymentPost{item: it, at: now, currency: "EUR", reply: make(chan error, 1)}
				if req != nil {
					p.req, p.res = *req, ChargeResult{Approved: true, Amount: req.Amount, Reference: "r"}
					asked = req.Amount
				}
				c.postPayments(p)
				if err := <-p.reply; err != nil {
					t.Fatal(err)
				}
				return asked, len(items)
			}
			first, _ := round(race)
			second, found := round(false)
			f.cur = c.cur
			if net := f.balance(t, rider); net != 0 || first+second != 360 {
				t.Errorf("asked %d then %d (rider found again: %d), balance %d after both rounds; want 3.60 in all and nothing owed", first, second, found, net)
			}
			if !race && found != 0 {
				t.Errorf("a rider billed in full was found again: %d", found)
			}
		})
	}
}
