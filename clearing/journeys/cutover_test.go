package journeys

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// TestBookAcrossCutOver: a journey entered before the 04:00 cut-over and
// exited after it is one journey of the fare day it began in, whatever
// order its taps arrive in, with redeliveries: the final days, charges and
// bookings are the same for every arrival order and are what Assign's
// grouping of the whole set prices; each event's delta is the sum of the
// days it repriced, and all deltas sum to what the days charge. Steps
// give each event's delta for named arrival orders.
//
// Fares (testdata/city, a weekday night is off-peak): an entry at a zone 1
// gate is charged the maximum fare from zone 1 off-peak, 4.50; an exit
// without entry at night the maximum of the whole metro off-peak, 4.50 (3
// zones: its entry was within 4 hours before, off-peak); a
// zone 1 to 1 ride 2.50, zone 1 to 3 4.50; a bus 1.80 off-peak, 2.30 at
// peak (07:00 to 10:00).
func TestBookAcrossCutOver(t *testing.T) {
	b := testBook(t)
	dec := func(d int) fares.Date { return fares.DateOf(2026, 12, d) }
	type order struct {
		name   string
		taps   []int   // indexes into taps
		deltas []int64 // each event's delta
	}
	tests := []struct {
		name    string
		earlier []WeekDay // the calendar week's days before (weekly cap)
		taps    []Tap
		days    map[int][]int // December day -> the taps it holds
		charged map[int]int64
		orders  []order
	}{
		{
			name:    "entry 03:50, exit 04:10: one 2.50 journey of Wednesday",
			taps:    []Tap{metroIn("metro-s01", at(3, 3, 50)), metroOut("metro-s02", at(3, 4, 10))},
			days:    map[int][]int{2: {0, 1}},
			charged: map[int]int64{2: 250},
			orders: []order{
				// The entry at the maximum fare; the exit settles it.
				{"in order", []int{0, 1}, []int64{450, -200}},
				// The exit alone on Thursday at the maximum fare for an
				// exit without entry (off-peak: its entry was after
				// 00:10); the entry takes it to Wednesday: Wednesday
				// +2.50, Thursday -4.50.
				{"exit first", []int{1, 0}, []int64{450, -200}},
			},
		},
		{
			name:    "exactly the maximum leg duration (4 hours) after the entry: still one journey",
			taps:    []Tap{metroIn("metro-s01", at(3, 3, 50)), metroOut("metro-s04", at(3, 7, 50))},
			days:    map[int][]int{2: {0, 1}},
			charged: map[int]int64{2: 450}, // zone 1 to 3 off-peak, begun at 03:50
			orders: []order{
				{"in order", []int{0, 1}, []int64{450, 0}},
				{"exit first", []int{1, 0}, []int64{500, -50}},
			},
		},
		{
			name:    "more than the maximum leg duration after the entry: an entry and an exit without their pairs",
			taps:    []Tap{metroIn("metro-s01", at(3, 3, 50)), metroOut("metro-s02", at(3, 7, 51))},
			days:    map[int][]int{2: {0}, 3: {1}},
			charged: map[int]int64{2: 450, 3: 500},
			orders: []order{
				{"in order", []int{0, 1}, []int64{450, 500}},
				{"exit first", []int{1, 0}, []int64{500, 450}},
			},
		},
		{
			name:    "a bus ride on Thursday before the exit: the exit is not the first tap of Thursday",
			taps:    []Tap{metroIn("metro-s01", at(3, 3, 50)), busAt("bus-s01", at(3, 4, 5)), metroOut("metro-s02", at(3, 4, 10))},
			days:    map[int][]int{2: {0}, 3: {1, 2}},
			charged: map[int]int64{2: 450, 3: 630},
			orders: []order{
				{"in order", []int{0, 1, 2}, []int64{450, 180, 450}},
				{"reversed", []int{2, 1, 0}, []int64{450, 180, 450}},
				// The exit crosses, then the bus ride arriving late sends
				// it back: Wednesday 2.50 to 4.50, Thursday 0 to 6.30.
				{"bus last", []int{0, 2, 1}, []int64{450, -200, 830}},
			},
		},
		{
			name:    "a late Wednesday bus ride after the entry: the entry is not the last tap of Wednesday",
			taps:    []Tap{metroIn("metro-s01", at(3, 3, 50)), metroOut("metro-s02", at(3, 4, 10)), busAt("bus-s01", at(3, 3, 55))},
			days:    map[int][]int{2: {0, 2}, 3: {1}},
			charged: map[int]int64{2: 630, 3: 450}, // the incomplete entry takes no transfer discount
			orders: []order{
				// The exit crosses, then goes back: Wednesday 2.50 to
				// 6.30, Thursday 0 to 4.50.
				{"in order", []int{0, 1, 2}, []int64{450, -200, 830}},
				{"reversed", []int{2, 1, 0}, []int64{180, 450, 450}},
			},
		},
		{
			name:    "two entries before the cut-over: the exit goes with the last",
			taps:    []Tap{metroIn("metro-s01", at(3, 2, 0)), metroIn("metro-s01", at(3, 3, 50)), metroOut("metro-s02", at(3, 4, 10))},
			days:    map[int][]int{2: {0, 1, 2}},
			charged: map[int]int64{2: 700}, // 4.50 for the entry never exited, 2.50
			orders: []order{
				// Two maximum fares, 9.00, capped at 8.00; the exit
				// settles the second leg: 7.00.
				{"in order", []int{0, 1, 2}, []int64{450, 350, -100}},
				{"reversed", []int{2, 1, 0}, []int64{450, -200, 450}},
			},
		},
		{
			// The metro leg after the cut-over is a transfer from the bus
			// (bus to metro within 90 minutes): the journey began on
			// Wednesday and is priced there, 1.80 + 2.50 - 0.60, as the
			// engine prices the three taps together.
			name:    "bus 03:40, metro 04:05 to 04:25: a transfer of Wednesday's journey",
			taps:    []Tap{busAt("bus-s01", at(3, 3, 40)), metroIn("metro-s01", at(3, 4, 5)), metroOut("metro-s02", at(3, 4, 25))},
			days:    map[int][]int{2: {0, 1, 2}},
			charged: map[int]int64{2: 370},
			orders: []order{
				// The entry at Thursday's maximum fare; its exit makes the
				// leg a transfer and moves both: Wednesday +1.90,
				// Thursday -4.50.
				{"in order", []int{0, 1, 2}, []int64{180, 450, -260}},
				// Thursday's exit without entry, then the leg at 2.50;
				// the bus takes the leg to Wednesday: +3.70, -2.50.
				{"reversed", []int{2, 1, 0}, []int64{450, -200, 120}},
			},
		},
		{
			// No bus-to-bus transfer: the second ride is a new fare, in
			// its own fare day.
			name:    "bus 03:40, bus 04:10: no transfer, two days",
			taps:    []Tap{busAt("bus-s01", at(3, 3, 40)), busAt("bus-s02", at(3, 4, 10))},
			days:    map[int][]int{2: {0}, 3: {1}},
			charged: map[int]int64{2: 180, 3: 180},
			orders: []order{
				{"in order", []int{0, 1}, []int64{180, 180}},
				{"reversed", []int{1, 0}, []int64{180, 180}},
			},
		},
		{
			// Monday 03:50 is Sunday's fare day, the last of a week that
			// has charged 29.00 of its 30.00: the journey is charged the
			// 1.00 left there, and Monday, a new week, is charged its
			// peak bus ride in full.
			name:    "Sunday to Monday: the journey counts in Sunday's week",
			earlier: []WeekDay{{fares.DateOf(2026, 11, 30), 800}, {fares.DateOf(2026, 12, 1), 800}, {fares.DateOf(2026, 12, 2), 800}, {fares.DateOf(2026, 12, 3), 500}},
			taps:    []Tap{metroIn("metro-s01", at(7, 3, 50)), metroOut("metro-s02", at(7, 4, 10)), busAt("bus-s01", at(7, 9, 0))},
			days:    map[int][]int{6: {0, 1}, 7: {2}},
			charged: map[int]int64{6: 100, 7: 230},
			orders: []order{
				{"in order", []int{0, 1, 2}, []int64{100, 0, 230}},
				// Monday holds the exit at 4.50 and the bus until the
				// entry arrives: Sunday +1.00, Monday -4.50.
				{"reversed", []int{2, 1, 0}, []int64{230, 450, -350}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run := func(t *testing.T, arrival []Tap) (*rider, []int64) {
				t.Helper()
				r := newRider(b)
				if tc.earlier != nil {
					r.weeks[monday(tc.earlier[0].Date)] = slices.Clone(tc.earlier)
				}
				var deltas []int64
				var total int64
				for _, tap := range arrival {
					p := r.post(t, tap)
					deltas = append(deltas, p.Delta.Total)
					total += p.Delta.Total
					if !slices.ContainsFunc(r.days[p.Date].Taps, func(x Tap) bool { return x.Event == tap.Event }) {
						t.Errorf("tap at %s: Post says fare day %s, which does not hold it", tap.Time, p.Date)
					}
				}
				var charged int64
				for date, d := range r.booked() {
					charged += d.Charged
					want := map[fare.EventID]bool{}
					for _, i := range tc.days[int(date-dec(0))] {
						want[tc.taps[i].Event] = true
					}
					if len(d.Taps) != len(want) || slices.ContainsFunc(d.Taps, func(x Tap) bool { return !want[x.Event] }) {
						t.Errorf("fare day %s holds %v, want the taps %v", date, d.Taps, tc.days[int(date-dec(0))])
					}
					if d.Charged != tc.charged[int(date-dec(0))] {
						t.Errorf("fare day %s charged %d, want %d", date, d.Charged, tc.charged[int(date-dec(0))])
					}
				}
				for _, d := range r.days {
					if len(d.Taps) == 0 && (d.Charged != 0 || len(d.Booked) != 0) {
						t.Errorf("empty fare day %s charges %d %v", d.Date, d.Charged, d.Booked)
					}
				}
				if len(r.booked()) != len(tc.days) {
					t.Errorf("%d fare days hold taps, want %d", len(r.booked()), len(tc.days))
				}
				if total != charged {
					t.Errorf("events' deltas sum to %d, the days charge %d", total, charged)
				}
				return r, deltas
			}
			for _, o := range tc.orders {
				t.Run(o.name, func(t *testing.T) {
					var arrival []Tap
					for _, i := range o.taps {
						arrival = append(arrival, tc.taps[i])
					}
					if _, deltas := run(t, arrival); !slices.Equal(deltas, o.deltas) {
						t.Errorf("deltas %v, want %v", deltas, o.deltas)
					}
				})
			}
			// Every arrival order, each with a redelivery of every tap at
			// every later point, gives the same books.
			var reference map[fares.Date][]Booking
			for n, perm := range permutations(len(tc.taps)) {
				for dup := range len(perm) {
					for at := dup + 1; at <= len(perm); at++ {
						var arrival []Tap
						for i, k := range perm {
							if i == at {
								arrival = append(arrival, tc.taps[perm[dup]])
							}
							arrival = append(arrival, tc.taps[k])
						}
						if at == len(perm) {
							arrival = append(arrival, tc.taps[perm[dup]])
						}
						t.Run(fmt.Sprint("order ", n, " redelivery ", dup, " at ", at), func(t *testing.T) {
							r, _ := run(t, arrival)
							got := map[fares.Date][]Booking{}
							for date, d := range r.booked() {
								got[date] = d.Booked
							}
							if reference == nil {
								reference = got
							} else if fmt.Sprint(got) != fmt.Sprint(reference) {
								t.Errorf("booked %v, another order %v", got, reference)
							}
						})
					}
				}
			}
			// Assign groups the whole set as Post books it, and Add over
			// that grouping charges the same.
			groups := b.Assign(tc.taps, func(fares.Date) string { return "adult" }, "card")
			if len(groups) != len(tc.days) {
				t.Errorf("Assign: %d fare days, want %d", len(groups), len(tc.days))
			}
			weeks := map[fares.Date][]WeekDay{}
			if tc.earlier != nil {
				weeks[monday(tc.earlier[0].Date)] = slices.Clone(tc.earlier)
			}
			for _, date := range sortedDates(groups) {
				var want []fare.EventID
				for _, i := range tc.days[int(date-dec(0))] {
					want = append(want, tc.taps[i].Event)
				}
				var got []fare.EventID
				d := &Day{Date: date, Category: "adult", Medium: "card"}
				for _, tap := range groups[date] {
					got = append(got, tap.Event)
					if _, _, err := b.Add(d, tap, weeks[monday(date)]); err != nil {
						t.Fatalf("Assign's fare day %s: %v", date, err)
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("Assign: fare day %s holds %v, want %v", date, got, want)
				}
				if d.Charged != tc.charged[int(date-dec(0))] {
					t.Errorf("Assign's fare day %s charged %d, want %d", date, d.Charged, tc.charged[int(date-dec(0))])
				}
				weeks[monday(date)] = append(weeks[monday(date)], WeekDay{Date: date, Charged: d.Charged})
			}
		})
	}
}

func sortedDates[V any](m map[fares.Date]V) []fares.Date {
	out := make([]fares.Date, 0, len(m))
	for d := range m {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// permutations returns every order of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			out = append(out, slices.Insert(slices.Clone(p), i, n-1))
		}
	}
	return out
}

// TestBookLinked: adjacent fare days are linked when an exit of the later
// one may cross to an entry of the earlier one in some arrival order.
func TestBookLinked(t *testing.T) {
	b := testBook(t)
	wed := []Tap{metroIn("metro-s01", at(2, 22, 0)), metroIn("metro-s01", at(3, 3, 50)), busAt("bus-s01", at(3, 3, 55))}
	tests := []struct {
		name string
		prev []Tap
		next []Tap
		want bool
	}{
		{"an exit within 4 hours of an entry, even not the last tap", wed, []Tap{busAt("bus-s01", at(3, 4, 5)), metroOut("metro-s02", at(3, 4, 10))}, true},
		// A transfer may cross too: any tap within 4 hours either side.
		{"a ride within 4 hours after the cut-over", wed, []Tap{busAt("bus-s01", at(3, 4, 5))}, true},
		{"nothing within 4 hours after the cut-over", wed, []Tap{metroOut("metro-s02", at(3, 8, 1))}, false},
		{"nothing within 4 hours before the cut-over", []Tap{busAt("bus-s01", at(2, 23, 0))}, []Tap{metroOut("metro-s02", at(3, 4, 10))}, false},
	}
	for _, tc := range tests {
		if got := b.Linked(tc.prev, tc.next); got != tc.want {
			t.Errorf("%s: linked %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestBookRemove: a tap taken out of a day reprices it; an event the day
// does not hold is refused and changes nothing.
func TestBookRemove(t *testing.T) {
	b := testBook(t)
	d := newDay(b, at(2, 11, 0), "adult")
	in, out := metroIn("metro-s01", at(2, 11, 0)), metroOut("metro-s02", at(2, 11, 20))
	for _, tap := range []Tap{in, out} {
		if _, _, err := b.Add(d, tap, nil); err != nil {
			t.Fatal(err)
		}
	}
	if d.Charged != 250 {
		t.Fatalf("charged %d, want 250", d.Charged)
	}
	if _, _, _, err := b.Remove(d, event(), nil); !errors.Is(err, ErrNotBooked) || d.Charged != 250 || len(d.Taps) != 2 {
		t.Errorf("removing an event not booked: %v, day %+v", err, d)
	}
	// Without its exit the entry is at the maximum fare again.
	got, delta, sum, err := b.Remove(d, out.Event, nil)
	if err != nil || got.Event != out.Event || delta.Total != 200 || !slices.Equal(delta.ByAgency, bookings("metro", 200)) || d.Charged != 450 || sum.Pending != 1 {
		t.Errorf("removed %v: delta %+v, summary %+v, day charged %d, %v", got, delta, sum, d.Charged, err)
	}
	if _, delta, _, err := b.Remove(d, in.Event, nil); err != nil || delta.Total != -450 || d.Charged != 0 || len(d.Booked) != 0 || len(d.Taps) != 0 {
		t.Errorf("last tap removed: delta %+v, day %+v, %v", delta, d, err)
	}
}

// TestBookAddCrossingExit: Add books a tap of the next fare day in a day
// (Assign's grouping) only within the maximum leg duration of the
// cut-over; any other tap of another day is refused.
func TestBookAddCrossingExit(t *testing.T) {
	b := testBook(t)
	d := newDay(b, at(2, 11, 0), "adult")
	for _, tap := range []Tap{metroOut("metro-s02", at(3, 8, 0)), metroIn("metro-s02", at(4, 4, 10)), busAt("bus-s01", at(1, 4, 10))} {
		if _, _, err := b.Add(d, tap, nil); !errors.Is(err, ErrWrongDay) {
			t.Errorf("%v at %s booked in Wednesday: %v", tap.Kind, tap.Time, err)
		}
	}
	if _, _, err := b.Add(d, metroIn("metro-s01", at(3, 3, 50)), nil); err != nil {
		t.Fatal(err)
	}
	if delta, _, err := b.Add(d, metroOut("metro-s02", at(3, 4, 10)), nil); err != nil || delta.Total != -200 || d.Charged != 250 {
		t.Errorf("crossing exit: delta %+v, charged %d, %v", delta, d.Charged, err)
	}
}
