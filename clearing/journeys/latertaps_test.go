package journeys

import (
	"testing"

	"github.com/faregate/faregate/clearing/fares"
)

// TestLateTapRepricesLaterDaysOfItsWeek: a journey arriving late for an
// earlier day of the week raises that day's charge; the later days of the
// week, already priced against the weekly cap, are repriced with it, so the
// week never ends above its 30.00 cap: Tuesday +3.50 is offset by Friday
// (now 6.00, 2.00 back) and Saturday (1.50 back).
func TestLateTapRepricesLaterDaysOfItsWeek(t *testing.T) {
	b := testBook(t)
	r := newRider(b)
	metro := func(day, hh int, from, to string) {
		r.post(t, metroIn(from, at(day, hh, 0)))
		r.post(t, metroOut(to, at(day, hh, 20)))
	}
	metro(8, 11, "metro-s01", "metro-s04") // Tuesday 4.50
	for _, day := range []int{9, 10, 11} { // Wednesday to Friday at the daily cap
		metro(day, 11, "metro-s01", "metro-s04")
		metro(day, 12, "metro-s04", "metro-s01")
	}
	metro(12, 11, "metro-s01", "metro-s04") // Saturday: 1.50 left under the week's 30.00
	charged := func(day int) int64 { return r.days[fares.DateOf(2026, 12, day)].Charged }
	week := func() (sum int64) {
		for d := 8; d <= 12; d++ {
			sum += charged(d)
		}
		return sum
	}
	if charged(12) != 150 || week() != 3000 {
		t.Fatalf("Saturday %d, week %d: want 1.50 and 30.00", charged(12), week())
	}
	// Tuesday's second journey arrives late: Tuesday 8.00, the week's cap is
	// reached on Friday now.
	var posted int64
	p := r.post(t, metroIn("metro-s04", at(8, 13, 0)))
	posted += p.Delta.Total
	p = r.post(t, metroOut("metro-s01", at(8, 13, 20)))
	posted += p.Delta.Total
	if charged(8) != 800 || charged(11) != 600 || charged(12) != 0 || week() != 3000 || posted != 0 {
		t.Fatalf("Tuesday %d, Friday %d, Saturday %d, week %d, the late journey posted %d in all: want 8.00, 6.00, 0, 30.00 and 0",
			charged(8), charged(11), charged(12), week(), posted)
	}
}
