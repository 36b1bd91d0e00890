package fares

import (
	"math/rand/v2"
	"testing"
	"time"
)

// civilByCalendar is how civil was computed before it took the zone
// offset directly: the local calendar date and clock, the date counted
// back to days since 1970-01-01 (H. Hinnant's algorithm).
func civilByCalendar(t time.Time, loc *time.Location) (Date, int32) {
	lt := t.In(loc)
	y, m, d := lt.Date()
	hh, mm, ss := lt.Clock()
	mo := int(m)
	if mo <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (mo + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return Date(era*146097 + doe - 719468), int32(hh*3600 + mm*60 + ss)
}

// TestCivilMatchesCalendar: civil gives what the calendar gives, for
// instants around DST changes, midnight, before 1970 and far ahead, in
// zones east and west of UTC and with half-hour offsets.
func TestCivilMatchesCalendar(t *testing.T) {
	var locs []*time.Location
	for _, name := range []string{"UTC", "Europe/Berlin", "America/Vancouver", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Kiritimati", "America/St_Johns"} {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		locs = append(locs, loc)
	}
	locs = append(locs, time.FixedZone("minus", -(9*3600+30*60)), time.FixedZone("odd", 3*3600+17*60+11))
	check := func(at time.Time, loc *time.Location) {
		t.Helper()
		d, s := civil(at, loc)
		wd, ws := civilByCalendar(at, loc)
		if d != wd || s != ws {
			t.Fatalf("civil(%s, %s) = %s %d, the calendar says %s %d", at.UTC(), loc, d, s, wd, ws)
		}
	}
	rng := rand.New(rand.NewPCG(3, 9))
	for _, loc := range locs {
		for _, base := range []time.Time{
			time.Date(2025, 3, 30, 0, 0, 0, 0, time.UTC), time.Date(2025, 10, 26, 0, 0, 0, 0, time.UTC),
			time.Date(2025, 3, 9, 8, 0, 0, 0, time.UTC), time.Date(2025, 11, 2, 8, 0, 0, 0, time.UTC),
			time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), time.Date(1969, 12, 31, 20, 0, 0, 0, time.UTC),
			time.Date(1900, 2, 28, 0, 0, 0, 0, time.UTC), time.Date(2400, 2, 29, 0, 0, 0, 0, time.UTC),
		} {
			for s := -3 * 86400; s <= 3*86400; s += 397 {
				check(base.Add(time.Duration(s)*time.Second), loc)
			}
			for range 200 {
				check(base.Add(time.Duration(rng.Int64N(int64(2*365*24*time.Hour)))-365*24*time.Hour), loc)
			}
		}
	}
}
