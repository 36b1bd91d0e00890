package journeys

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
)

// TestBookRollingWeek: riders travelling a month on the shared feeds with a
// daily, a calendar-week and a rolling-week cap, their taps posted one fare
// day at a time in a random arrival order with redeliveries, are charged
// for each fare day exactly what the fare engine charges when it prices
// their whole month in time order with one Capper: the rolling windows
// chain from day to day (a window opens at the first journey it charges,
// the next one at the first charged journey after it ends) however late a
// tap arrives. The caps are low, so rolling windows limit many journeys.
func TestBookRollingWeek(t *testing.T) {
	shared := sharedGTFS(t)
	vancouver, _ := time.LoadLocation("America/Vancouver")
	feeds := []diffFeed{
		loadDiffFeed(t, "city+rolling", "testdata/city", time.Date(2026, 11, 30, 5, 0, 0, 0, berlin), []string{"9.00", "40.00", "14.00"}),
		loadDiffFeed(t, "translink+rolling", filepath.Join(shared, "gtfsorg-translink-guide"), time.Date(2025, 3, 10, 5, 0, 0, 0, vancouver), []string{"10.00", "35.00", "12.00"}),
		loadDiffFeed(t, "nigiri+rolling", filepath.Join(shared, "nigiri-fares"), time.Date(2022, 3, 28, 5, 0, 0, 0, berlin), []string{"20.00", "60.00", "25.00"}),
	}
	rollingCapped := 0
	for fi := range feeds {
		f := &feeds[fi]
		if !f.book.HasRolling() {
			t.Fatalf("%s: no rolling-week cap", f.name)
		}
		for seed := range uint64(40) {
			rng := rand.New(rand.NewPCG(seed, 7))
			var taps []Tap
			for k := range 12 {
				g := *f
				g.base = f.base.AddDate(0, 0, 7*(k/3))
				var id byte
				for _, tp := range diffTaps(rng, &g, &id) {
					tp.Event[3] = byte(k)
					taps = append(taps, tp)
				}
			}
			r := &diffRider{cat: f.cats[rng.IntN(len(f.cats))], medium: f.media[rng.IntN(len(f.media))],
				days: map[fares.Date]*Day{}, weeks: map[fares.Date][]WeekDay{}}
			b := f.book
			posted := map[fares.Date]int64{}
			order := rng.Perm(len(taps))
			for step, k := range order {
				arrivals := []Tap{taps[k]}
				if rng.IntN(8) == 0 && step > 0 {
					arrivals = append(arrivals, taps[order[rng.IntN(step)]]) // a redelivery
				}
				for _, tp := range arrivals {
					p, err := b.Post(r, tp)
					if err != nil {
						t.Fatalf("post %s: %v", tp.Event, err) // a place the feed lacks is booked too
					}
					for _, rd := range p.Days {
						posted[rd.Date] += rd.Delta.Total
					}
				}
			}
			// The engine's price of the whole month: every fare day's taps
			// (grouped by the cut-over rule) in date order, one Capper.
			var priceable []Tap
			for _, d := range r.days {
				priceable = append(priceable, d.Taps...)
			}
			assigned := b.Assign(priceable, func(fares.Date) string { return r.cat }, r.medium)
			capper := b.Feed.NewCapper()
			for _, date := range slices.Sorted(mapsKeys(assigned)) {
				d := r.days[date]
				if d == nil {
					t.Fatalf("%s seed %d: fare day %s not booked", f.name, seed, date)
				}
				ftaps := make([]fares.Tap, 0, len(assigned[date]))
				for _, tp := range assigned[date] {
					ftaps = append(ftaps, fares.Tap{Kind: tp.Kind, Time: tp.Time, StopID: tp.Stop, RouteID: tp.Route, NetworkID: tp.Network, AgencyID: tp.Agency})
				}
				settlements, err := b.Feed.Settle(ftaps, d.Category, d.Medium, b.Policy, capper)
				if err != nil {
					t.Fatalf("%s seed %d: the engine on fare day %s: %v", f.name, seed, date, err)
				}
				var want int64
				for _, s := range settlements {
					want += s.Charge.Charged.Amount
					if s.Charge.CappedBy == "r" {
						rollingCapped++
					}
				}
				if d.Charged != want || posted[date] != want {
					t.Errorf("%s seed %d: fare day %s charged %d (deltas %d), the engine over the month %d\n%s", f.name, seed, date, d.Charged, posted[date], want, rollingText(r))
				}
			}
			// Every stored day survives its record with its windows.
			for date, d := range r.days {
				raw, err := d.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				var back Day
				if err := back.UnmarshalBinary(raw); err != nil {
					t.Fatalf("fare day %s: %v", date, err)
				}
				if !sameRolling(back.RollingIn, d.RollingIn) || !sameRolling(back.RollingOut, d.RollingOut) {
					t.Fatalf("fare day %s: windows %v / %v read back as %v / %v", date, d.RollingIn, d.RollingOut, back.RollingIn, back.RollingOut)
				}
			}
		}
	}
	if rollingCapped < 50 {
		t.Errorf("only %d journeys limited by a rolling-week cap: the test does not exercise them", rollingCapped)
	}
	t.Logf("%d journeys limited by a rolling-week cap", rollingCapped)
}

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func rollingText(r *diffRider) string {
	s := ""
	for _, date := range sortedDates(r.days) {
		d := r.days[date]
		s += fmt.Sprintf("  %s charged %d taps %d in %v out %v\n", date, d.Charged, len(d.Taps), d.RollingIn, d.RollingOut)
	}
	return s
}
