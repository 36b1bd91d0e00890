package journeys

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
)

// Boundary cases of the fare book on the city feed (testdata/city: daily
// cap 8.00 and calendar-week cap 30.00 for adults, fare days from 04:00
// Europe/Berlin), the pure-engine counterparts of clearing's live
// boundary tests (clearing/boundaries_test.go).

// rider books one rider's taps as clearing's live path does
// (clearing/riderbook.go): through Book.Post, by the cut-over rule, with
// the charges of the calendar week's earlier days as the weekly caps'
// earlier days. It is the Days Post reads and keeps.
type rider struct {
	b     *Book
	days  map[fares.Date]*Day
	weeks map[fares.Date][]WeekDay // by the week's Monday
}

func newRider(b *Book) *rider {
	return &rider{b: b, days: map[fares.Date]*Day{}, weeks: map[fares.Date][]WeekDay{}}
}

func monday(d fares.Date) fares.Date { return d - fares.Date((int(d.Weekday())+6)%7) }

func (r *rider) Day(date fares.Date, create bool) (*Day, error) {
	d := r.days[date]
	if d == nil && create {
		d = &Day{Date: date, Category: "adult", Medium: "card"}
		r.days[date] = d
	}
	return d, nil
}

func (r *rider) Week(date fares.Date) ([]WeekDay, error) { return r.weeks[monday(date)], nil }

func (r *rider) Charged(date fares.Date, charged int64) {
	wk := monday(date)
	i, found := slices.BinarySearchFunc(r.weeks[wk], date, func(w WeekDay, d fares.Date) int { return int(w.Date) - int(d) })
	if found {
		r.weeks[wk][i].Charged = charged
	} else {
		r.weeks[wk] = slices.Insert(r.weeks[wk], i, WeekDay{Date: date, Charged: charged})
	}
}

// booked returns the rider's days that hold taps (a day whose only tap
// crossed to the day before is empty).
func (r *rider) booked() map[fares.Date]*Day {
	out := map[fares.Date]*Day{}
	for date, d := range r.days {
		if len(d.Taps) > 0 {
			out[date] = d
		}
	}
	return out
}

// post books tap and returns what Post did, checking that every repriced
// day's delta's agency amounts sum to its total, that the day's bookings
// sum to its charge, and that the event's delta is the days' sum.
func (r *rider) post(t *testing.T, tap Tap) Posted {
	t.Helper()
	p, err := r.b.Post(r, tap)
	if err != nil {
		t.Fatalf("tap at %s: %v", tap.Time, err)
	}
	var total int64
	for _, rd := range p.Days {
		checkShares(t, r.days[rd.Date], rd.Delta)
		total += rd.Delta.Total
	}
	if total != p.Delta.Total || sumBookings(p.Delta.ByAgency) != total {
		t.Errorf("tap at %s: days' deltas sum to %d, event's delta %+v", tap.Time, total, p.Delta)
	}
	return p
}

func sumBookings(bs []Booking) int64 {
	var s int64
	for _, b := range bs {
		s += b.Amount
	}
	return s
}

// add books tap and returns the day it is booked in, its event's delta and
// that day's summary.
func (r *rider) add(t *testing.T, tap Tap) (*Day, Delta, Summary) {
	t.Helper()
	p := r.post(t, tap)
	var sum Summary
	for _, rd := range p.Days {
		if rd.Date == p.Date {
			sum = rd.Summary
		}
	}
	return r.days[p.Date], p.Delta, sum
}

// checkShares: the delta's agency amounts sum to its total, the day's
// bookings to its charge, and no booking is zero.
func checkShares(t *testing.T, d *Day, delta Delta) {
	t.Helper()
	var s int64
	for _, a := range delta.ByAgency {
		s += a.Amount
	}
	if s != delta.Total {
		t.Errorf("delta %+v: agencies' amounts sum to %d, total %d", delta, s, delta.Total)
	}
	s = 0
	for _, b := range d.Booked {
		if b.Amount == 0 {
			t.Errorf("day %s: zero booking %v", d.Date, d.Booked)
		}
		s += b.Amount
	}
	if s != d.Charged {
		t.Errorf("day %s: bookings %v sum to %d, charged %d", d.Date, d.Booked, s, d.Charged)
	}
}

func busAt(stop string, t time.Time) Tap  { return validate("bus", stop, t) }
func tramAt(stop string, t time.Time) Tap { return validate("tram", stop, t) }

// boundaryStep is one tap of a boundary case: the fare day it must be
// booked in (a day of December 2026), what it must post, and optionally
// the agencies' amounts of that posting.
type boundaryStep struct {
	tap    Tap
	day    int
	delta  int64
	agency []Booking
	capped bool // the day's summary counts a capped journey after this tap
}

func TestBookBoundaries(t *testing.T) {
	b := testBook(t)
	dec := func(d int) fares.Date { return fares.DateOf(2026, 12, d) }
	tests := []struct {
		name    string
		steps   []boundaryStep
		charged map[int]int64 // per fare day of December
		booked  map[int][]Booking
	}{
		{
			// Wednesday's fare day runs to Thursday 03:59:59; Thursday's
			// starts at 04:00:00. Each is capped at 8.00 on its own. An
			// entry is charged the maximum fare from its zone off-peak
			// (4.50 from zone 1 or 3) until its exit settles the leg.
			name: "fare-day cut-over at 04:00: either side are different days, each capped separately",
			steps: []boundaryStep{
				{tap: metroIn("metro-s01", at(2, 20, 0)), day: 2, delta: 450},
				{tap: metroOut("metro-s04", at(2, 20, 20)), day: 2, delta: 0}, // zone 1 to 3: 4.50
				// 4.50 + 4.50 is over the cap: the entry is charged 3.50.
				{tap: metroIn("metro-s04", at(2, 21, 0)), day: 2, delta: 350, capped: true},
				{tap: metroOut("metro-s01", at(2, 21, 20)), day: 2, delta: 0, capped: true},
				{tap: tramAt("tram-s01", at(3, 3, 30)), day: 2, delta: 0, capped: true},
				{tap: busAt("bus-s01", at(3, 3, 59).Add(59*time.Second)), day: 2, delta: 0, capped: true},
				{tap: busAt("bus-s02", at(3, 4, 0)), day: 3, delta: 180, agency: bookings("bus", 180)},
				{tap: metroIn("metro-s01", at(3, 11, 0)), day: 3, delta: 450},
				{tap: metroOut("metro-s04", at(3, 11, 20)), day: 3, delta: 0},
				// 1.80 + 4.50 + 4.50 is over the cap: the entry is charged
				// the 1.70 left, and its exit changes nothing.
				{tap: metroIn("metro-s04", at(3, 12, 0)), day: 3, delta: 170, agency: bookings("metro", 170), capped: true},
				{tap: metroOut("metro-s01", at(3, 12, 20)), day: 3, delta: 0, capped: true},
			},
			charged: map[int]int64{2: 800, 3: 800},
			booked:  map[int][]Booking{2: bookings("metro", 800), 3: bookings("bus", 180, "metro", 620)},
		},
		{
			// Thursday to Saturday reach 24.00; Sunday is charged what is
			// left under the week's 30.00 (its second entry, at the
			// maximum fare, takes the 1.50 left; then nothing, also for a
			// ride after midnight, which is still Sunday's fare day);
			// Monday from 04:00 starts a new calendar week and is charged
			// again (peak entries at the maximum fare from their zone at
			// peak, 5.00).
			name: "week boundary Sunday to Monday: the calendar-week cap resets",
			steps: []boundaryStep{
				{tap: metroIn("metro-s01", at(3, 11, 0)), day: 3, delta: 450}, {tap: metroOut("metro-s04", at(3, 11, 20)), day: 3},
				{tap: metroIn("metro-s04", at(3, 12, 0)), day: 3, delta: 350, capped: true}, {tap: metroOut("metro-s01", at(3, 12, 20)), day: 3, capped: true},
				{tap: metroIn("metro-s01", at(4, 11, 0)), day: 4, delta: 450}, {tap: metroOut("metro-s04", at(4, 11, 20)), day: 4},
				{tap: metroIn("metro-s04", at(4, 12, 0)), day: 4, delta: 350, capped: true}, {tap: metroOut("metro-s01", at(4, 12, 20)), day: 4, capped: true},
				{tap: metroIn("metro-s01", at(5, 11, 0)), day: 5, delta: 450}, {tap: metroOut("metro-s04", at(5, 11, 20)), day: 5},
				{tap: metroIn("metro-s04", at(5, 12, 0)), day: 5, delta: 350, capped: true}, {tap: metroOut("metro-s01", at(5, 12, 20)), day: 5, capped: true},
				{tap: metroIn("metro-s01", at(6, 11, 0)), day: 6, delta: 450}, {tap: metroOut("metro-s04", at(6, 11, 20)), day: 6},
				{tap: metroIn("metro-s04", at(6, 12, 0)), day: 6, delta: 150, capped: true}, {tap: metroOut("metro-s01", at(6, 12, 20)), day: 6, capped: true},
				{tap: busAt("bus-s01", at(6, 20, 0)), day: 6, delta: 0, capped: true},
				{tap: tramAt("tram-s01", at(7, 3, 30)), day: 6, delta: 0, capped: true},
				{tap: busAt("bus-s01", at(7, 5, 30)), day: 7, delta: 180}, // 2 h after the tram: no transfer, Monday's
				{tap: metroIn("metro-s01", at(7, 8, 0)), day: 7, delta: 500}, {tap: metroOut("metro-s04", at(7, 8, 20)), day: 7},
				{tap: metroIn("metro-s04", at(7, 9, 0)), day: 7, delta: 120, capped: true}, {tap: metroOut("metro-s01", at(7, 9, 20)), day: 7, capped: true},
			},
			charged: map[int]int64{3: 800, 4: 800, 5: 800, 6: 600, 7: 800},
			booked:  map[int][]Booking{6: bookings("metro", 600), 7: bookings("bus", 180, "metro", 620)},
		},
		{
			// 4.50 + 2.50 = 7.00 charged once the exits are in (the second
			// entry's maximum fare was capped at 3.50 meanwhile, then
			// settled at 2.50: 1.00 back); a bus ride (1.80) crosses the
			// cap and is charged the 1.00 left; the metro entry after it
			// is an incomplete leg under a reached cap (nothing more); its
			// exit joins bus and metro into one journey, which changes
			// the total by nothing but splits the 1.00 between bus and
			// metro (180:450, largest remainder); a later journey costs
			// nothing.
			name: "daily cap reached on a journey's first leg",
			steps: []boundaryStep{
				{tap: metroIn("metro-s01", at(2, 11, 0)), day: 2, delta: 450}, {tap: metroOut("metro-s04", at(2, 11, 20)), day: 2},
				{tap: metroIn("metro-s01", at(2, 12, 0)), day: 2, delta: 350, capped: true},
				{tap: metroOut("metro-s02", at(2, 12, 15)), day: 2, delta: -100, agency: bookings("metro", -100)},
				{tap: busAt("bus-s01", at(2, 14, 0)), day: 2, delta: 100, agency: bookings("bus", 100), capped: true},
				{tap: metroIn("metro-s01", at(2, 14, 30)), day: 2, delta: 0, capped: true},
				{tap: metroOut("metro-s04", at(2, 14, 45)), day: 2, delta: 0, agency: bookings("bus", -71, "metro", 71), capped: true},
				{tap: tramAt("tram-s01", at(2, 16, 30)), day: 2, delta: 0, capped: true},
				{tap: metroIn("metro-s02", at(2, 18, 0)), day: 2, capped: true},
				{tap: metroOut("metro-s04", at(2, 18, 20)), day: 2, delta: 0, capped: true},
			},
			charged: map[int]int64{2: 800},
			booked:  map[int][]Booking{2: bookings("bus", 29, "metro", 771)},
		},
		{
			// 5.00 charged once the exits are in (each 4.50 entry settled
			// at 2.50); bus 1.80 is charged in full; the metro entry after
			// it, an incomplete leg on its own at 4.50, is charged the
			// 1.20 left under the cap; its exit makes bus and metro one
			// journey (1.80 + 4.50 - 0.60 = 5.70, 3.00 left for it): the
			// total stays 8.00, the 3.00 split 180:450 (bus 0.86, metro
			// 2.14), so the bus gives 0.94 back to the metro.
			name: "daily cap reached on a journey's second leg",
			steps: []boundaryStep{
				{tap: metroIn("metro-s01", at(2, 11, 0)), day: 2, delta: 450}, {tap: metroOut("metro-s02", at(2, 11, 10)), day: 2, delta: -200},
				{tap: metroIn("metro-s02", at(2, 12, 0)), day: 2, delta: 450}, {tap: metroOut("metro-s01", at(2, 12, 10)), day: 2, delta: -200},
				{tap: busAt("bus-s01", at(2, 14, 0)), day: 2, delta: 180, agency: bookings("bus", 180)},
				{tap: metroIn("metro-s01", at(2, 14, 30)), day: 2, delta: 120, agency: bookings("metro", 120), capped: true},
				{tap: metroOut("metro-s04", at(2, 14, 45)), day: 2, delta: 0, agency: bookings("bus", -94, "metro", 94), capped: true},
				{tap: busAt("bus-s02", at(2, 16, 30)), day: 2, delta: 0, capped: true},
			},
			charged: map[int]int64{2: 800},
			booked:  map[int][]Booking{2: bookings("bus", 86, "metro", 714)},
		},
		{
			// The entry at 11:00 is charged the maximum fare from zone 1
			// off-peak (4.50) at once; the next entry at 13:00 is too, but
			// only 3.50 is left under the cap. The 11:00 entry's exit
			// arriving late brings its leg down to 2.50 (8.00 to 7.00);
			// the 13:00 entry's exit (zone 1 to 3, 4.50) changes nothing.
			name: "entry followed by the next entry: maximum fare, corrected by the late exit",
			steps: []boundaryStep{
				{tap: metroIn("metro-s01", at(2, 11, 0)), day: 2, delta: 450, agency: bookings("metro", 450)},
				{tap: metroIn("metro-s02", at(2, 13, 0)), day: 2, delta: 350, agency: bookings("metro", 350), capped: true},
				{tap: metroOut("metro-s02", at(2, 11, 25)), day: 2, delta: -100, agency: bookings("metro", -100)},
				{tap: metroOut("metro-s04", at(2, 13, 20)), day: 2, delta: 0},
			},
			charged: map[int]int64{2: 700},
			booked:  map[int][]Booking{2: bookings("metro", 700)},
		},
		{
			// The entry is charged the maximum fare (4.50); a bus
			// validation after it is charged in full (1.80: an incomplete
			// leg joins nothing, so no transfer discount); the late exit
			// settles the leg at 2.50 and the transfer then applies:
			// 2.50 + 1.80 - 0.60 = 3.70, split 250:180 (metro 2.15, bus
			// 1.55).
			name: "entry followed by a bus ride: maximum fare, corrected by the late exit",
			steps: []boundaryStep{
				{tap: metroIn("metro-s01", at(2, 11, 0)), day: 2, delta: 450, agency: bookings("metro", 450)},
				{tap: busAt("bus-s01", at(2, 11, 40)), day: 2, delta: 180, agency: bookings("bus", 180)},
				{tap: metroOut("metro-s02", at(2, 11, 25)), day: 2, delta: -260, agency: bookings("bus", -25, "metro", -235)},
			},
			charged: map[int]int64{2: 370},
			booked:  map[int][]Booking{2: bookings("bus", 155, "metro", 215)},
		},
		{
			// The maximum fare is capped like any other journey: 4.50,
			// then the 12:00 entry at 4.50 takes the 3.50 left and the
			// 14:00 entry nothing. The 12:00 entry's exit settles its leg
			// at 2.50, which leaves 1.00 for the 14:00 entry, never
			// exited: the day stays at the cap.
			name: "maximum fare counted against the daily cap",
			steps: []boundaryStep{
				{tap: metroIn("metro-s01", at(2, 11, 0)), day: 2, delta: 450}, {tap: metroOut("metro-s04", at(2, 11, 20)), day: 2},
				{tap: metroIn("metro-s01", at(2, 12, 0)), day: 2, delta: 350, capped: true},
				{tap: metroIn("metro-s04", at(2, 14, 0)), day: 2, delta: 0, capped: true},
				{tap: metroOut("metro-s02", at(2, 12, 15)), day: 2, delta: 0, capped: true},
			},
			charged: map[int]int64{2: 800},
			booked:  map[int][]Booking{2: bookings("metro", 800)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRider(b)
			for i, s := range tc.steps {
				d, delta, sum := r.add(t, s.tap)
				if d.Date != dec(s.day) {
					t.Errorf("step %d (%s): booked in fare day %s, want %s", i, s.tap.Time, d.Date, dec(s.day))
				}
				if delta.Total != s.delta {
					t.Errorf("step %d (%s): delta %d, want %d (%+v)", i, s.tap.Time, delta.Total, s.delta, delta)
				}
				if s.agency != nil && !slices.Equal(delta.ByAgency, s.agency) {
					t.Errorf("step %d (%s): agencies %v, want %v", i, s.tap.Time, delta.ByAgency, s.agency)
				}
				if (sum.Capped > 0) != s.capped {
					t.Errorf("step %d (%s): %d capped journeys, want capped %v", i, s.tap.Time, sum.Capped, s.capped)
				}
			}
			for day, want := range tc.charged {
				d := r.booked()[dec(day)]
				if d == nil || d.Charged != want {
					t.Errorf("fare day %s: %+v, want charged %d", dec(day), d, want)
				}
			}
			for day, want := range tc.booked {
				if d := r.days[dec(day)]; d == nil || !slices.Equal(d.Booked, want) {
					t.Errorf("fare day %s booked %v, want %v", dec(day), d.Booked, want)
				}
			}
			if len(r.booked()) != len(tc.charged) {
				t.Errorf("%d fare days booked, want %d", len(r.booked()), len(tc.charged))
			}
		})
	}
}

// TestBookCutOverInstant: the fare day of a tap either side of 04:00
// Europe/Berlin, including the daylight-saving changes, and a day refusing
// the other side's taps.
func TestBookCutOverInstant(t *testing.T) {
	b := testBook(t)
	tests := []struct {
		name  string
		at    time.Time
		want  fares.Date
		begin time.Time // the instant the fare day begins
	}{
		{"03:59:59 on Thursday is Wednesday's", time.Date(2026, 12, 3, 3, 59, 59, 0, berlin), fares.DateOf(2026, 12, 2), time.Date(2026, 12, 2, 4, 0, 0, 0, berlin)},
		{"04:00:00 on Thursday is Thursday's", time.Date(2026, 12, 3, 4, 0, 0, 0, berlin), fares.DateOf(2026, 12, 3), time.Date(2026, 12, 3, 4, 0, 0, 0, berlin)},
		{"00:00 is still the evening's", time.Date(2026, 12, 3, 0, 0, 0, 0, berlin), fares.DateOf(2026, 12, 2), time.Date(2026, 12, 2, 4, 0, 0, 0, berlin)},
		{"03:59 UTC is 04:59 in Berlin (winter)", time.Date(2026, 12, 3, 3, 59, 0, 0, time.UTC), fares.DateOf(2026, 12, 3), time.Date(2026, 12, 3, 4, 0, 0, 0, berlin)},
		{"02:59 UTC is 03:59 in Berlin (winter)", time.Date(2026, 12, 3, 2, 59, 0, 0, time.UTC), fares.DateOf(2026, 12, 2), time.Date(2026, 12, 2, 4, 0, 0, 0, berlin)},
		{"summer: 01:59 UTC is 03:59 in Berlin", time.Date(2026, 7, 1, 1, 59, 0, 0, time.UTC), fares.DateOf(2026, 6, 30), time.Date(2026, 6, 30, 4, 0, 0, 0, berlin)},
		{"summer: 02:00 UTC is 04:00 in Berlin", time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC), fares.DateOf(2026, 7, 1), time.Date(2026, 7, 1, 4, 0, 0, 0, berlin)},
		{"night of the spring change (02:00 to 03:00)", time.Date(2026, 3, 29, 3, 30, 0, 0, berlin), fares.DateOf(2026, 3, 28), time.Date(2026, 3, 28, 4, 0, 0, 0, berlin)},
		{"morning after the autumn change", time.Date(2026, 10, 25, 4, 0, 0, 0, berlin), fares.DateOf(2026, 10, 25), time.Date(2026, 10, 25, 4, 0, 0, 0, berlin)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.Feed.FareDay(tc.at); got != tc.want {
				t.Fatalf("fare day of %s: %s, want %s", tc.at, got, tc.want)
			}
			if got := b.Feed.FareDayBegins(tc.want); !got.Equal(tc.begin) {
				t.Errorf("fare day %s begins %s, want %s", tc.want, got, tc.begin)
			}
			// A day of the other side refuses the tap and stays as it was.
			other := &Day{Date: tc.want + 1, Category: "adult", Medium: "card"}
			if _, _, err := b.Add(other, busAt("bus-s01", tc.at), nil); !errors.Is(err, ErrWrongDay) {
				t.Errorf("tap of %s booked in fare day %s: %v", tc.want, other.Date, err)
			}
			if len(other.Taps) != 0 || other.Charged != 0 {
				t.Errorf("refused tap changed the day: %+v", other)
			}
			own := &Day{Date: tc.want, Category: "adult", Medium: "card"}
			if _, _, err := b.Add(own, busAt("bus-s01", tc.at), nil); err != nil || own.Charged <= 0 {
				t.Errorf("tap in its own fare day: charged %d, %v", own.Charged, err)
			}
		})
	}
}

// TestBookCalendarWeek: what Add is given as the week's earlier days counts
// against the weekly cap only for days of the same calendar week (Monday
// 04:00 to Monday 04:00): the fare book itself keeps weeks apart, whatever
// its caller passes.
func TestBookCalendarWeek(t *testing.T) {
	b := testBook(t)
	thuToSun := []WeekDay{{fares.DateOf(2026, 12, 3), 800}, {fares.DateOf(2026, 12, 4), 800}, {fares.DateOf(2026, 12, 5), 800}, {fares.DateOf(2026, 12, 6), 600}}
	tests := []struct {
		name    string
		at      time.Time
		earlier []WeekDay
		want    int64
	}{
		{"Sunday with 24.00 charged Thursday to Saturday: 6.00 left, a 4.50 ride in full", at(6, 11, 0), thuToSun[:3], 450},
		{"Sunday with 28.00 charged: 2.00 left", at(6, 11, 0), append(thuToSun[:3:3], WeekDay{fares.DateOf(2026, 12, 1), 400}), 200},
		{"Monday after a capped week: charged in full", at(7, 11, 0), thuToSun, 450},
		{"Monday, last week's days passed by mistake, still charged in full", at(7, 11, 0), append(slices.Clone(thuToSun), WeekDay{fares.DateOf(2026, 11, 30), 800}), 450},
		{"Sunday with a later day of the week passed: it does not count", at(6, 11, 0), []WeekDay{{fares.DateOf(2026, 12, 7), 800}}, 450},
		{"Monday 03:30 is Sunday's fare day: the old week's 28.00 counts", time.Date(2026, 12, 7, 3, 30, 0, 0, berlin), append(thuToSun[:3:3], WeekDay{fares.DateOf(2026, 12, 1), 400}), 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The entry is charged the maximum fare from zone 1 off-peak,
			// 4.50, or what is left under the week's cap; the exit (zone
			// 1 to 3, 4.50 too) changes nothing.
			d := &Day{Date: b.Feed.FareDay(tc.at), Category: "adult", Medium: "card"}
			in, _, err := b.Add(d, metroIn("metro-s01", tc.at), tc.earlier)
			if err != nil {
				t.Fatal(err)
			}
			checkShares(t, d, in)
			out, _, err := b.Add(d, metroOut("metro-s04", tc.at.Add(20*time.Minute)), tc.earlier)
			if err != nil {
				t.Fatal(err)
			}
			checkShares(t, d, out)
			if in.Total != tc.want || out.Total != 0 || d.Charged != tc.want {
				t.Errorf("charged %d (entry %d, exit %d), want %d at the entry", d.Charged, in.Total, out.Total, tc.want)
			}
		})
	}
}

// TestBookCapsAndSharesProperty: riders travelling a week at random
// (metro, bus and tram, peak and off-peak, entries without exits, late
// and out-of-order taps within a day): every delta's agency amounts sum to
// its total, every day's bookings to its charge, no fare day is charged
// above 8.00, no calendar week above 30.00, and the deltas of a day sum to
// what it was charged.
func TestBookCapsAndSharesProperty(t *testing.T) {
	b := testBook(t)
	rng := rand.New(rand.NewPCG(10, 42))
	metroStops := []string{"metro-s01", "metro-s02", "metro-s03", "metro-s04"}
	for n := range 60 {
		t.Run(fmt.Sprint("rider ", n), func(t *testing.T) {
			r := newRider(b)
			var taps []Tap
			for day := 30; day < 30+9; day++ { // Monday 30 Nov to Tuesday 8 Dec
				at := time.Date(2026, 11, day, 5, 0, 0, 0, berlin)
				for range rng.IntN(9) {
					at = at.Add(time.Duration(10+rng.IntN(90)) * time.Minute) // the day's last tap before 04:00
					switch rng.IntN(4) {
					case 0:
						taps = append(taps, busAt("bus-s01", at))
					case 1:
						taps = append(taps, tramAt("tram-s02", at))
					default:
						taps = append(taps, metroIn(metroStops[rng.IntN(4)], at))
						if rng.IntN(6) > 0 { // some never exit
							at = at.Add(time.Duration(5+rng.IntN(40)) * time.Minute)
							taps = append(taps, metroOut(metroStops[rng.IntN(4)], at))
						}
					}
				}
			}
			// Late taps: swap a few neighbours of the same fare day.
			for range 3 {
				if len(taps) < 2 {
					break
				}
				i := rng.IntN(len(taps) - 1)
				if b.Feed.FareDay(taps[i].Time) == b.Feed.FareDay(taps[i+1].Time) {
					taps[i], taps[i+1] = taps[i+1], taps[i]
				}
			}
			deltas := map[fares.Date]int64{}
			for _, tap := range taps {
				d, delta, _ := r.add(t, tap)
				deltas[d.Date] += delta.Total
				if d.Charged > 800 || d.Charged < 0 {
					t.Fatalf("fare day %s charged %d", d.Date, d.Charged)
				}
			}
			weeks := map[fares.Date]int64{}
			for date, d := range r.days {
				if deltas[date] != d.Charged {
					t.Errorf("fare day %s: deltas sum to %d, charged %d", date, deltas[date], d.Charged)
				}
				weeks[monday(date)] += d.Charged
			}
			for wk, total := range weeks {
				if total > 3000 {
					t.Errorf("week of %s charged %d, over the 30.00 cap", wk, total)
				}
			}
		})
	}
}

// TestBookRideAcrossTheRepeatedHour: with the fare day beginning at 02:30
// Europe/Berlin, a metro ride that entered at 02:40 summer time and left
// 40 minutes later, at 02:20 winter time, on the night the clocks go back
// is one journey of one fare day, charged what the ride costs (an outside
// test saw it split into an exit without entry, 5.00, and an entry at the
// maximum fare, 4.50: 9.50 for a 3.50 ride).
func TestBookRideAcrossTheRepeatedHour(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/city")); err != nil {
		t.Fatal(err)
	}
	caps := "fare_cap_id,rider_category_id,fare_media_id,cap_period,amount,currency,day_start_time\ndaily-adult,adult,,0,8.00,EUR,02:30:00\nweekly-adult,adult,,1,30.00,EUR,02:30:00\n"
	if err := os.WriteFile(filepath.Join(dir, "fare_caps.txt"), []byte(caps), 0o644); err != nil {
		t.Fatal(err)
	}
	feed, err := gtfs.LoadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &Book{Feed: feed, FeedVersion: "city-0230", Currency: "EUR"}
	in, out := time.Date(2027, 10, 31, 0, 40, 0, 0, time.UTC), time.Date(2027, 10, 31, 1, 20, 0, 0, time.UTC)
	want, err := feed.Price(fares.Journey{Legs: []fares.Leg{{RouteID: "metro-L1", FromStop: "metro-s01", ToStop: "metro-s04", Start: in, End: out}}, RiderCategory: "adult", FareMedia: "card"})
	if err != nil || !want.Known {
		t.Fatalf("the ride's own price: %+v, %v", want, err)
	}
	r := newRider(b)
	r.add(t, metroIn("metro-s01", in))
	day, _, sum := r.add(t, metroOut("metro-s04", out))
	if booked := r.booked(); len(booked) != 1 || day.Charged != want.Total.Amount || sum.Journeys != 1 || sum.Incomplete != 0 {
		t.Errorf("booked in %d fare day(s), charged %d in %d journey(s) (%d incomplete); want one day, one journey at %d", len(booked), day.Charged, sum.Journeys, sum.Incomplete, want.Total.Amount)
	}
	if day.Date != fares.DateOf(2027, 10, 30) {
		t.Errorf("fare day %s, want 2027-10-30 (the second 02:30 begins 2027-10-31)", day.Date)
	}
}

// TestBookMidnightTheClocksSkip: in the Azores the clocks skip from 00:00
// to 01:00 on the last Sunday of March, and time.Date puts a skipped
// midnight an hour early, at 23:00 on Saturday: with fare days from 00:00,
// Sunday's fare day begins then. Rides at 23:10 and 23:40 on Saturday are
// Sunday's, whichever tap comes first, and a redelivery of every tap books
// nothing again (an outside test saw them booked twice, 16.00 for 8.00).
func TestBookMidnightTheClocksSkip(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/city")); err != nil {
		t.Fatal(err)
	}
	agency, err := os.ReadFile(filepath.Join(dir, "agency.txt"))
	if err != nil {
		t.Fatal(err)
	}
	caps := "fare_cap_id,rider_category_id,fare_media_id,cap_period,amount,currency,day_start_time\ndaily-adult,adult,,0,80.00,EUR,00:00:00\n"
	for name, body := range map[string]string{"agency.txt": strings.ReplaceAll(string(agency), "Europe/Berlin", "Atlantic/Azores"), "fare_caps.txt": caps} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	feed, err := gtfs.LoadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	azores := feed.Location()
	if azores.String() != "Atlantic/Azores" {
		t.Fatalf("feed zone %s", azores)
	}
	b := &Book{Feed: feed, FeedVersion: "city-azores", Currency: "EUR"}
	at := func(day, hh, mm int) time.Time { return time.Date(2026, 3, day, hh, mm, 0, 0, azores) }
	taps := []Tap{
		metroIn("metro-s01", at(28, 22, 10)), metroOut("metro-s02", at(28, 22, 20)),
		metroIn("metro-s01", at(28, 23, 10)), metroOut("metro-s02", at(28, 23, 20)),
		metroIn("metro-s01", at(28, 23, 40)), metroOut("metro-s02", at(28, 23, 50)),
		metroIn("metro-s01", at(29, 1, 30)), metroOut("metro-s02", at(29, 1, 40)),
	}
	r := newRider(b)
	for _, tap := range taps {
		r.post(t, tap)
	}
	charged := func() (sum int64, n int) {
		for _, d := range r.booked() {
			sum += d.Charged
			n += len(d.Taps)
		}
		return
	}
	once, n := charged()
	if n != len(taps) {
		t.Fatalf("%d taps booked, want %d", n, len(taps))
	}
	for _, tap := range taps {
		if p := r.post(t, tap); p.Delta.Total != 0 {
			t.Errorf("the tap of %s delivered again posted %d", tap.Time.Format(time.RFC3339), p.Delta.Total)
		}
	}
	if twice, n2 := charged(); twice != once || n2 != n {
		t.Errorf("after a redelivery of every tap: %d taps charged %d; before: %d charged %d", n2, twice, n, once)
	}
	for _, tap := range taps[2:] {
		if d := feed.FareDay(tap.Time); d != fares.DateOf(2026, 3, 29) {
			t.Errorf("%s in fare day %s, want 2026-03-29 (it begins at %s)", tap.Time.Format(time.RFC3339), d, feed.FareDayBegins(fares.DateOf(2026, 3, 29)).Format(time.RFC3339))
		}
	}
}
