package clearing

import (
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/journeys"
	"github.com/faregate/faregate/fare"
)

// Pricing a batch on every core. Riders are independent: one rider's taps
// touch only that rider's days and weeks. So an applied batch prices in
// three steps:
//
//  1. Serially, in the batch's transaction, read every fare day and week
//     its taps can touch (a tap's own day, and the day before or after it
//     near a cut-over) into the batch, making the days that do not exist
//     yet (with the rider's enrolled category, which needs the store).
//  2. In parallel, one rider at a time per worker, book each rider's taps
//     in batch order with the pure fare book, reading only what step 1
//     read and writing rider-local maps.
//  3. Serially, merge the riders' maps into the batch; a rider whose tap
//     needed something step 1 did not read is finished tap by tap on the
//     transaction, from that tap on, in order.
//
// Every rider's taps are booked in the same order as one by one, so the
// charges are the same as serial pricing's: only the wall time changes.

// pricedTap is one accepted event to price and, once priced, its postings.
type pricedTap struct {
	e        *fare.Event
	rider    string
	postings []Posting
	unpriced string // why the feed could not price it (postings then zero)
}

// parallelFrom is the smallest batch priced on several cores.
const parallelFrom = 64

// readNeighbours says whether step 1 reads the days either side of a
// cut-over; tests turn it off to send riders down the serial path.
var readNeighbours = true

// errNotRead is returned by a rider's view for a day or week step 1 did
// not read: the rider finishes serially.
var errNotRead = errors.New("not read ahead")

// priceAll prices taps in order (see above) and sets their postings.
func (p *Pricing) priceAll(txn *batchTxn, rb *riderBatch, taps []*pricedTap, st *PricingStats) error {
	workers := runtime.GOMAXPROCS(0)
	if len(taps) < parallelFrom || workers < 2 {
		for _, t := range taps {
			var err error
			if t.postings, t.unpriced, err = p.price(txn, rb, t.e, t.rider, st); err != nil {
				return err
			}
		}
		return nil
	}
	// Group by rider, keeping the batch order within each.
	riders := make([][]*pricedTap, 0, len(taps))
	byRider := make(map[string]int, len(taps))
	for _, t := range taps {
		i, ok := byRider[t.rider]
		if !ok {
			i = len(riders)
			byRider[t.rider] = i
			riders = append(riders, nil)
		}
		riders[i] = append(riders[i], t)
	}
	// 1. Read ahead.
	absent := make(map[string]bool, len(taps))
	maxLeg := p.Book.MaxLeg()
	rolling := p.Book.HasRolling()
	for _, group := range riders {
		for _, t := range group {
			if t.e.Decision != fare.Accepted {
				continue
			}
			days := &riderDays{p: p, txn: txn, rb: rb, rider: t.rider, e: t.e}
			own := p.Book.Feed.FareDay(t.e.DeviceTime)
			want := []fares.Date{own}
			if readNeighbours && t.e.DeviceTime.Before(p.Book.Feed.FareDayBegins(own).Add(maxLeg)) {
				want = append(want, own-1)
			}
			if readNeighbours && !t.e.DeviceTime.Before(p.Book.Feed.FareDayBegins(own+1).Add(-maxLeg)) {
				want = append(want, own+1)
			}
			for i, date := range want {
				d, err := days.Day(date, i == 0)
				if err != nil {
					return err
				}
				if d == nil {
					absent[riderKey(pRiderDay, t.rider, date)] = true
					continue
				}
				if _, err := days.Week(date); err != nil {
					return err
				}
			}
			if rolling {
				// Rolling-week windows run from the rider's previous day
				// to the next: the days either side within their reach.
				if err := readRollingReach(days, own); err != nil {
					return err
				}
			}
		}
	}
	// 2. Book in parallel.
	views := make([]*readAhead, len(riders))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(riders)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(riders) {
					return
				}
				v := &readAhead{p: p, rb: rb, absent: absent, rider: riders[i][0].rider, weeks: map[string][]journeys.WeekDay{}, seen: map[string]journeys.Summary{}}
				for _, t := range riders[i] {
					posted, unpriced, ok := v.price(t)
					if !ok {
						break
					}
					t.postings, t.unpriced = posted, unpriced
					v.done++
				}
				if v.done == len(riders[i]) {
					v.encode()
				}
				views[i] = v
			}
		}()
	}
	wg.Wait()
	// 3. Merge, then finish serially what could not be booked ahead.
	for i, v := range views {
		for k, w := range v.weeks {
			rb.weeks[k] = w
		}
		for k, s := range v.seen {
			rb.seen[k] = s
		}
		st.add(v.st)
		for _, e := range v.encoded {
			if rb.encoded == nil {
				rb.encoded = map[string]encodedDay{}
			}
			rb.encoded[e.key] = e
		}
		for _, t := range riders[i][v.done:] {
			st.Serial++
			var err error
			if t.postings, t.unpriced, err = p.price(txn, rb, t.e, t.rider, st); err != nil {
				return err
			}
		}
	}
	return nil
}

func (st *PricingStats) add(o PricingStats) {
	st.Priced += o.Priced
	st.Unpriced += o.Unpriced
	st.Charged += o.Charged
	if o.LastError != "" {
		st.LastError = o.LastError
	}
}

// readAhead is one rider's days and weeks as step 2 sees them: the batch's
// (read only while workers run) and the rider's own writes.
type readAhead struct {
	p      *Pricing
	rb     *riderBatch
	absent map[string]bool
	rider  string
	weeks  map[string][]journeys.WeekDay
	seen   map[string]journeys.Summary
	st     PricingStats
	done   int
	missed bool
	// keys are the days Day returned; encoded, once the rider is booked,
	// those that changed, encoded on the worker (flush then only writes).
	keys    []string
	encoded []encodedDay
}

// encodedDay is a rider day's record encoded on a pricing worker, with the
// day as it was then: flush uses b only if the day is still the same.
type encodedDay struct {
	key string
	day journeys.Day
	b   []byte
}

// encode encodes the changed days of the rider's booked taps, as flush
// would (reading the batch's maps, which no one writes during step 2).
func (v *readAhead) encode() {
	for i, k := range v.keys {
		if slices.Contains(v.keys[:i], k) {
			continue
		}
		d := v.rb.days[k]
		if write, _ := v.rb.dayWrite(k, d); !write {
			continue
		}
		b, err := d.MarshalBinary()
		if err != nil {
			continue // flush encodes it again and reports the error
		}
		v.encoded = append(v.encoded, encodedDay{key: k, day: *d, b: b})
	}
}

// price books one tap as Pricing.price does; ok is false when the tap
// needs what was not read ahead (nothing was changed then).
func (v *readAhead) price(t *pricedTap) ([]Posting, string, bool) {
	postings, unpriced, err := v.p.book(v, func() error {
		if v.missed {
			return errNotRead
		}
		return nil
	}, t.e, v.rider, &v.st, v.seen)
	return postings, unpriced, err == nil
}

// Day implements journeys.Days from what was read ahead.
func (v *readAhead) Day(date fares.Date, create bool) (*journeys.Day, error) {
	key := riderKey(pRiderDay, v.rider, date)
	if d, ok := v.rb.days[key]; ok {
		v.keys = append(v.keys, key)
		return d, nil
	}
	if !create && v.absent[key] {
		return nil, nil
	}
	v.missed = true
	return nil, errNotRead
}

// Week implements journeys.Days.
func (v *readAhead) Week(date fares.Date) ([]journeys.WeekDay, error) {
	key := riderKey(pRiderWeek, v.rider, weekStart(date))
	if w, ok := v.weeks[key]; ok {
		return w, nil
	}
	if w, ok := v.rb.weeks[key]; ok {
		return w, nil
	}
	v.missed = true
	return nil, errNotRead
}

// Charged implements journeys.Days.
func (v *readAhead) Charged(date fares.Date, charged int64) {
	w, err := v.Week(date)
	if err != nil {
		return
	}
	v.weeks[riderKey(pRiderWeek, v.rider, weekStart(date))] = setWeekDay(w, date, charged)
}

// readRollingReach reads into the batch the rider's weeks and days that
// journeys.Book.Post may ask for around fare day own under rolling-week
// caps: those within journeys.RollingReach days either side (at most three
// calendar weeks, each asked for once).
func readRollingReach(days *riderDays, own fares.Date) error {
	lo, hi := own-journeys.RollingReach, own+journeys.RollingReach
	for ws := weekStart(lo); ws <= hi; ws += 7 {
		w, err := days.Week(ws)
		if err != nil {
			return err
		}
		for _, wd := range w {
			if wd.Date >= lo && wd.Date <= hi && wd.Date != own {
				if _, err := days.Day(wd.Date, false); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
