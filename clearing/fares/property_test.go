package fares_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
)

func TestPropertySplitAmountSumsExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 1))
	for i := 0; i < 20000; i++ {
		total := rng.Int64N(2_000_000_001) - 1_000_000_000
		weights := make([]int64, 1+rng.IntN(8))
		var w int64
		for k := range weights {
			if rng.IntN(4) > 0 {
				weights[k] = rng.Int64N(1_000_000)
			}
			w += weights[k]
		}
		parts := fares.SplitAmount(total, weights)
		var sum int64
		for k, p := range parts {
			sum += p
			if w > 0 {
				// Each part is within one unit of its exact proportion.
				exact := float64(total) * float64(weights[k]) / float64(w)
				if d := float64(p) - exact; d <= -1 || d >= 1 {
					t.Fatalf("SplitAmount(%d, %v): part %d = %d, exact %.3f", total, weights, k, p, exact)
				}
			}
		}
		if sum != total {
			t.Fatalf("SplitAmount(%d, %v) = %v sums to %d", total, weights, parts, sum)
		}
	}
}

// randomJourney draws a 1-3 leg journey on baseFeed.
func randomJourney(rng *rand.Rand, start time.Time) fares.Journey {
	routes := []string{"M1", "B1", "B2", "T1"}
	stops := []string{"S1", "S2", "S3", "P1", "NY", ""}
	cats := []string{"", "adult", "senior"}
	media := []string{"card", "app", ""}
	j := fares.Journey{RiderCategory: cats[rng.IntN(len(cats))], FareMedia: media[rng.IntN(len(media))]}
	t := start
	for n := 1 + rng.IntN(3); n > 0; n-- {
		d := time.Duration(1+rng.IntN(60)) * time.Minute
		j.Legs = append(j.Legs, fares.Leg{RouteID: routes[rng.IntN(len(routes))], FromStop: stops[rng.IntN(len(stops))], ToStop: stops[rng.IntN(len(stops))], Start: t, End: t.Add(d)})
		t = t.Add(d + time.Duration(rng.IntN(90))*time.Minute)
	}
	return j
}

func TestPropertyApportionedSharesSumToPrice(t *testing.T) {
	f := mustFeed(t, nil)
	rng := rand.New(rand.NewPCG(7, 7))
	known := 0
	for i := 0; i < 5000; i++ {
		j := randomJourney(rng, at(5, 0).Add(time.Duration(rng.IntN(18*60))*time.Minute))
		fare, err := f.Price(j)
		if err != nil {
			t.Fatal(err)
		}
		if !fare.Known {
			if _, err := f.Apportion(j, fare.Total); err != nil {
				t.Fatal(err)
			}
			continue
		}
		known++
		// Apportion the price and, as capping does, any smaller amount.
		for _, amount := range []int64{fare.Total.Amount, rng.Int64N(fare.Total.Amount + 1)} {
			shares, err := f.Apportion(j, fares.Money{Amount: amount, Currency: fare.Total.Currency})
			if err != nil {
				t.Fatal(err)
			}
			var sum int64
			for _, s := range shares {
				sum += s.Amount.Amount
				if s.Amount.Amount < 0 {
					t.Fatalf("negative share %v of %d", shares, amount)
				}
			}
			if sum != amount {
				t.Fatalf("journey %+v: shares %v sum to %d, want %d", j, shares, sum, amount)
			}
		}
	}
	if known < 500 {
		t.Errorf("only %d of 5000 random journeys had a known fare; the property is barely exercised", known)
	}
}

type capJourney struct {
	at   time.Time
	fare int64
}

// chargeAll caps js in the given order and returns the charge of each.
func chargeAll(t *testing.T, f *fares.Feed, js []capJourney) []int64 {
	t.Helper()
	c := f.NewCapper()
	out := make([]int64, len(js))
	for i, j := range js {
		ch, err := c.Apply(j.at, "", "card", fares.Money{Amount: j.fare, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		if ch.Charged.Amount < 0 || ch.Charged.Amount > j.fare {
			t.Fatalf("charged %d for a fare of %d", ch.Charged.Amount, j.fare)
		}
		out[i] = ch.Charged.Amount
	}
	return out
}

// fareDayOf and weekOf mirror the documented windows (cut-over 04:30).
func fareDayOf(t time.Time) time.Time {
	l := t.In(berlin) // wall clock: DST days are 23 or 25 hours long
	d := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, time.UTC)
	if l.Hour()*60+l.Minute() < 4*60+30 {
		d = d.AddDate(0, 0, -1)
	}
	return d
}

func weekOf(t time.Time) time.Time {
	d := fareDayOf(t)
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

func randomCapJourneys(rng *rand.Rand, n int, from time.Time, span time.Duration) []capJourney {
	js := make([]capJourney, n)
	for i := range js {
		js[i] = capJourney{at: from.Add(time.Duration(rng.Int64N(int64(span)))), fare: rng.Int64N(800)}
	}
	return js
}

func TestPropertyCapNeverExceeded(t *testing.T) {
	f := mustFeed(t, map[string]string{"fare_caps.txt": capsFile})
	rng := rand.New(rand.NewPCG(11, 3))
	for round := 0; round < 300; round++ {
		js := randomCapJourneys(rng, 1+rng.IntN(60), day(10, 0, 0), 21*24*time.Hour)
		charges := chargeAll(t, f, js)
		perDay, perWeek := map[time.Time]int64{}, map[time.Time]int64{}
		for i, j := range js {
			perDay[fareDayOf(j.at)] += charges[i]
			perWeek[weekOf(j.at)] += charges[i]
		}
		for d, v := range perDay {
			if v > 500 {
				t.Fatalf("fare day %s charged %d > daily cap 500", d.Format("2006-01-02"), v)
			}
		}
		for w, v := range perWeek {
			if v > 2000 {
				t.Fatalf("week of %s charged %d > weekly cap 2000", w.Format("2006-01-02"), v)
			}
		}
	}
	// Rolling weeks, journeys in time order.
	roll := mustFeed(t, map[string]string{"fare_caps.txt": "fare_cap_id,cap_period,amount,currency\nroll,2,20.00,EUR"})
	for round := 0; round < 300; round++ {
		js := randomCapJourneys(rng, 1+rng.IntN(80), day(10, 0, 0), 30*24*time.Hour)
		sortCapJourneys(js)
		charges := chargeAll(t, roll, js)
		var start time.Time
		var spent int64
		for i, j := range js {
			if start.IsZero() || j.at.Sub(start) >= 7*24*time.Hour {
				if charges[i] > 0 || start.IsZero() {
					start, spent = j.at, 0
				}
			}
			spent += charges[i]
			if spent > 2000 {
				t.Fatalf("rolling window from %s charged %d > 2000", start, spent)
			}
		}
	}
}

func sortCapJourneys(js []capJourney) {
	for i := 1; i < len(js); i++ {
		for k := i; k > 0 && js[k].at.Before(js[k-1].at); k-- {
			js[k], js[k-1] = js[k-1], js[k]
		}
	}
}

// Within calendar windows the order journeys are fed in does not change
// what a window is charged in total: with a daily cap alone, every fare
// day's total is min(sum of fares, cap); with daily and weekly caps, every
// week's total is invariant (which day absorbs the weekly cap may move).
func TestPropertyCappingOrderIndependent(t *testing.T) {
	daily := mustFeed(t, map[string]string{"fare_caps.txt": "fare_cap_id,cap_period,amount,currency,day_start_time\nday,0,5.00,EUR,04:30:00"})
	both := mustFeed(t, map[string]string{"fare_caps.txt": capsFile})
	rng := rand.New(rand.NewPCG(5, 9))
	for round := 0; round < 300; round++ {
		js := randomCapJourneys(rng, 1+rng.IntN(40), day(10, 0, 0), 14*24*time.Hour)
		shuffled := append([]capJourney(nil), js...)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })

		sums := func(f *fares.Feed, js []capJourney, window func(time.Time) time.Time) map[time.Time]int64 {
			m := map[time.Time]int64{}
			for i, c := range chargeAll(t, f, js) {
				m[window(js[i].at)] += c
			}
			return m
		}
		a, b := sums(daily, js, fareDayOf), sums(daily, shuffled, fareDayOf)
		fareSum := map[time.Time]int64{}
		for _, j := range js {
			fareSum[fareDayOf(j.at)] += j.fare
		}
		for d, v := range a {
			if v != b[d] || v != min(fareSum[d], 500) {
				t.Fatalf("fare day %s: %d in order, %d shuffled, want min(%d, 500)", d, v, b[d], fareSum[d])
			}
		}
		a, b = sums(both, js, weekOf), sums(both, shuffled, weekOf)
		for w, v := range a {
			if v != b[w] {
				t.Fatalf("week of %s: %d in order, %d shuffled", w, v, b[w])
			}
		}
	}
}

// Pricing a journey does not depend on the other journeys priced before it.
func TestPropertyPriceIsPure(t *testing.T) {
	f := mustFeed(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	js := make([]fares.Journey, 200)
	want := make([]fares.Fare, len(js))
	for i := range js {
		js[i] = randomJourney(rng, at(6, 0).Add(time.Duration(rng.IntN(12*60))*time.Minute))
		want[i], _ = f.Price(js[i])
	}
	var reuse fares.Fare
	for _, i := range rng.Perm(len(js)) {
		if err := f.PriceInto(&reuse, &js[i]); err != nil {
			continue
		}
		if reuse.Known != want[i].Known || reuse.Total != want[i].Total || len(reuse.Legs) != len(want[i].Legs) {
			t.Fatalf("journey %d priced %+v after others, %+v alone", i, reuse, want[i])
		}
	}
}

// TestPropertyMaximumFareBoundsCompletions: on random rule sets (areas,
// departure and arrival timeframes, priorities, with and without the
// rule_priority column, products sold to adults only; days the clocks
// change in the feed's zone or a stop's), an incomplete leg's
// maximum fare is never below what any completion of it is charged: every
// stop the other end could be at, at every minute of the window the
// missing validation lies in (Leg.Within), and each timeframe's edges.
// Where some completion has a fare, so has the incomplete leg.
func TestPropertyMaximumFareBoundsCompletions(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 5))
	const within = 4 * time.Hour
	stops := []string{"S1", "S2", "S3", "NY"}
	areas := []string{"", "Z1", "Z2"}
	tfs := []string{"", "", "peak", "evening", "night", "back"}
	// back: in the hours the clocks go through twice (Berlin 02:00-03:00,
	// New York 01:00-02:00) on any day.
	timeframes := "timeframe_group_id,start_time,end_time,service_id\npeak,07:00:00,09:00:00,weekday\nevening,16:00:00,19:00:00,weekday\nnight,00:00:00,05:00:00,weekday\nback,01:10:00,01:20:00,all\nback,02:20:00,02:30:00,all"
	calendar := "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nweekday,1,1,1,1,1,0,0,20250101,20251231\nall,1,1,1,1,1,1,1,20250101,20251231"
	// Within 5 hours of a clock change: Berlin's back on 10-26 and forward
	// on 03-30, New York's back on 11-02 and forward on 03-09.
	changes := []time.Time{time.Date(2025, 10, 26, 1, 0, 0, 0, time.UTC), time.Date(2025, 3, 30, 1, 0, 0, 0, time.UTC),
		time.Date(2025, 11, 2, 6, 0, 0, 0, time.UTC), time.Date(2025, 3, 9, 7, 0, 0, 0, time.UTC)}
	checked, bounded := 0, 0
	for feedN := 0; feedN < 60; feedN++ {
		priority := rng.IntN(3) > 0
		var rules, products strings.Builder
		rules.WriteString("leg_group_id,network_id,from_area_id,to_area_id,from_timeframe_group_id,to_timeframe_group_id,fare_product_id")
		if priority {
			rules.WriteString(",rule_priority")
		}
		products.WriteString("fare_product_id,amount,currency,rider_category_id")
		for r := 0; r < 2+rng.IntN(6); r++ {
			fmt.Fprintf(&rules, "\nm%d,metro,%s,%s,%s,%s,p%d", r, areas[rng.IntN(3)], areas[rng.IntN(3)], tfs[rng.IntN(len(tfs))], tfs[rng.IntN(len(tfs))], r)
			if priority {
				fmt.Fprintf(&rules, ",%d", rng.IntN(3))
			}
			cat := ""
			if rng.IntN(5) == 0 {
				cat = "adult"
			}
			fmt.Fprintf(&products, "\np%d,%d.%02d,EUR,%s", r, 1+rng.IntN(9), rng.IntN(100), cat)
		}
		f, err := loadFeed(t, map[string]string{"timeframes.txt": timeframes, "calendar.txt": calendar, "fare_products.txt": products.String(),
			"fare_leg_rules.txt": rules.String(), "fare_transfer_rules.txt": ""})
		if err != nil {
			t.Fatalf("feed %d: %v\n%s\n%s", feedN, err, rules.String(), products.String())
		}
		for k := 0; k < 12; k++ {
			// Any minute of Wednesday 2025-03-12 to Friday (which runs
			// no weekday service), or near a clock change.
			at := at(0, 0).Add(time.Duration(rng.IntN(3*24*60)) * time.Minute)
			if rng.IntN(2) == 0 {
				at = changes[rng.IntN(len(changes))].Add(time.Duration(rng.IntN(10*60)-5*60) * time.Minute).In(berlin)
			}
			known := stops[rng.IntN(len(stops))]
			cat := []string{"", "senior"}[rng.IntN(2)]
			exitAlone := rng.IntN(2) == 0
			inc := fares.Leg{RouteID: "M1", FromStop: known, Start: at, End: at, Incomplete: true, Within: within}
			if exitAlone {
				inc.FromStop, inc.ToStop = "", known
			}
			maxFare, err := f.Price(fares.Journey{Legs: []fares.Leg{inc}, RiderCategory: cat, FareMedia: "card"})
			if err != nil {
				t.Fatal(err)
			}
			// The other end's times: every minute of the window and each
			// timeframe edge in it.
			var times []time.Time
			lo, hi := at, at.Add(within)
			if exitAlone {
				lo, hi = at.Add(-within), at
			}
			for x := lo; !x.After(hi); x = x.Add(time.Minute) {
				times = append(times, x)
			}
			for d := -1; d <= 1; d++ {
				for _, hh := range []int{0, 5, 7, 9, 16, 19} {
					e := time.Date(at.Year(), at.Month(), at.Day()+d, hh, 0, 0, 0, at.Location())
					for _, x := range []time.Time{e, e.Add(-time.Second)} {
						if !x.Before(lo) && !x.After(hi) {
							times = append(times, x)
						}
					}
				}
			}
			var worst int64 = -1
			var worstLeg fares.Leg
			for _, other := range stops {
				for _, x := range times {
					l := fares.Leg{RouteID: "M1", FromStop: known, ToStop: other, Start: at, End: x}
					if exitAlone {
						l = fares.Leg{RouteID: "M1", FromStop: other, ToStop: known, Start: x, End: at}
					}
					if l.End.Before(l.Start) {
						continue
					}
					c, err := f.Price(fares.Journey{Legs: []fares.Leg{l}, RiderCategory: cat, FareMedia: "card"})
					if err != nil {
						t.Fatal(err)
					}
					if c.Known && c.Total.Amount > worst {
						worst, worstLeg = c.Total.Amount, l
					}
				}
			}
			checked++
			if worst < 0 {
				continue
			}
			bounded++
			if !maxFare.Known || maxFare.Total.Amount < worst {
				t.Fatalf("feed %d, %s alone at %s, category %q: maximum fare %v (known %v), but a completion (%s to %s, %s to %s) costs %d\n%s\n%s",
					feedN, map[bool]string{false: "entry", true: "exit"}[exitAlone], at, cat, maxFare.Total, maxFare.Known,
					worstLeg.FromStop, worstLeg.ToStop, worstLeg.Start.Format("Mon 15:04:05"), worstLeg.End.Format("Mon 15:04:05"), worst, rules.String(), products.String())
			}
		}
	}
	if bounded < checked/5 {
		t.Fatalf("only %d of %d incomplete legs had a completion with a fare: the rule sets test little", bounded, checked)
	}
}
