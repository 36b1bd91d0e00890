package fares_test

import (
	"errors"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
)

const capsFile = `fare_cap_id,rider_category_id,fare_media_id,cap_period,amount,currency,day_start_time
day,,card,0,5.00,EUR,04:30:00
week,,card,1,20.00,EUR,04:30:00
senior_day,senior,card,0,1.00,EUR,04:30:00`

func day(d, hh, mm int) time.Time { return time.Date(2025, 3, d, hh, mm, 0, 0, berlin) } // 2025-03-10 is a Monday

func TestCapDaily(t *testing.T) {
	f := mustFeed(t, map[string]string{"fare_caps.txt": capsFile})
	c := f.NewCapper()
	steps := []struct {
		at       time.Time
		category string
		fare     string
		want     string
		cappedBy string
	}{
		{day(12, 10, 0), "", "3.00", "3.00", ""},
		{day(12, 12, 0), "", "3.00", "2.00", "day"}, // partial charge at the threshold
		{day(12, 14, 0), "", "3.00", "0.00", "day"},
		{day(13, 4, 29), "", "3.00", "0.00", "day"}, // still Wednesday's fare day (TfL 04:30 cut-over)
		{day(13, 4, 30), "", "3.00", "3.00", ""},    // Thursday's fare day begins
		{day(13, 5, 0), "senior", "3.00", "1.00", "senior_day"},
		{day(13, 6, 0), "senior", "3.00", "0.00", "senior_day"},
	}
	for i, s := range steps {
		ch, err := c.Apply(s.at, s.category, "card", fares.Money{Amount: eur(s.fare), Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		if got := fares.FormatAmount(ch.Charged.Amount, "EUR"); got != s.want || ch.CappedBy != s.cappedBy {
			t.Errorf("step %d: charged %s capped by %q, want %s by %q", i, got, ch.CappedBy, s.want, s.cappedBy)
		}
	}
	// Another medium is not capped.
	ch, _ := c.Apply(day(12, 15, 0), "", "app", fares.Money{Amount: eur("3.00"), Currency: "EUR"})
	if ch.Charged.Amount != eur("3.00") {
		t.Errorf("app journey charged %d, want uncapped", ch.Charged.Amount)
	}
}

// TestCapCountInFull: what earlier days charged counts whole toward the
// week, also above this feed's daily cap (a day priced under an earlier
// feed version's caps, or in another category): Monday's and Tuesday's
// 7.00 leave 6.00 of the week's 20.00 on Wednesday, not 10.00.
func TestCapCountInFull(t *testing.T) {
	f := mustFeed(t, map[string]string{"fare_caps.txt": capsFile})
	c := f.NewCapper()
	for _, d := range []int{10, 11} {
		if err := c.Count(day(d, 12, 0), "", "card", fares.Money{Amount: eur("7.00"), Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	var charged int64
	for _, d := range []int{12, 13} {
		for _, h := range []int{8, 18} {
			ch, err := c.Apply(day(d, h, 0), "", "card", fares.Money{Amount: eur("3.00"), Currency: "EUR"})
			if err != nil {
				t.Fatal(err)
			}
			charged += ch.Charged.Amount
		}
	}
	if charged != eur("6.00") {
		t.Errorf("Wednesday and Thursday charged %s, want 6.00 (20.00 less the 14.00 counted)", fares.FormatAmount(charged, "EUR"))
	}
}

func TestCapCalendarWeek(t *testing.T) {
	f := mustFeed(t, map[string]string{"fare_caps.txt": capsFile})
	c := f.NewCapper()
	var charged [8]int64 // per day, Monday 10 .. Monday 17
	for d := 10; d <= 17; d++ {
		for _, h := range []int{8, 18} {
			ch, err := c.Apply(day(d, h, 0), "", "card", fares.Money{Amount: eur("3.00"), Currency: "EUR"})
			if err != nil {
				t.Fatal(err)
			}
			charged[d-10] += ch.Charged.Amount
		}
	}
	want := [8]int64{500, 500, 500, 500, 0, 0, 0, 500} // 20.00 reached on Thursday; the next Monday is a new week
	if charged != want {
		t.Errorf("daily charges %v, want %v", charged, want)
	}
}

func TestCapRollingWeek(t *testing.T) {
	f := mustFeed(t, map[string]string{"fare_caps.txt": "fare_cap_id,cap_period,amount,currency\nroll,2,10.00,EUR"})
	c := f.NewCapper()
	three := fares.Money{Amount: eur("3.00"), Currency: "EUR"}
	steps := []struct {
		at   time.Time
		want string
	}{
		{day(12, 10, 0), "3.00"}, // the window opens Wednesday 10:00
		{day(13, 10, 0), "3.00"},
		{day(14, 10, 0), "3.00"},
		{day(15, 10, 0), "1.00"},
		{day(19, 9, 59), "0.00"}, // next Wednesday, still inside
		{day(19, 10, 0), "3.00"}, // seven days later: a new window
	}
	for i, s := range steps {
		ch, err := c.Apply(s.at, "", "card", three)
		if err != nil {
			t.Fatal(err)
		}
		if got := fares.FormatAmount(ch.Charged.Amount, "EUR"); got != s.want {
			t.Errorf("step %d: charged %s, want %s", i, got, s.want)
		}
	}
	if _, err := c.Apply(day(18, 10, 0), "", "card", three); !errors.Is(err, fares.ErrOutOfOrder) {
		t.Errorf("out-of-order journey: err %v, want ErrOutOfOrder", err)
	}
}

// TestFareDayFollowsTheInstant: fare days are in time order and each
// instant lies in its fare day's bounds, whatever the zone's clock changes
// and wherever the cut-over falls: in the hour the clocks repeat, in the
// hour they skip, at midnight, in zones east and west of UTC. Each clock
// change of 2026 is walked over in 5-minute steps. An outside test saw a
// 02:30 cut-over in Berlin's repeated hour put a ride's exit (02:20 winter
// time) a fare day before its entry (02:40 summer time), and then a
// midnight cut-over the Azores skip in March put 23:30 outside its own day.
func TestFareDayFollowsTheInstant(t *testing.T) {
	zones := []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Atlantic/Azores", "America/Santiago", "America/Havana", "America/Scoresbysund", "UTC"}
	starts := []string{"00:00:00", "00:30:00", "01:00:00", "02:00:00", "02:30:00", "03:00:00", "04:00:00", "23:30:00"}
	for _, zone := range zones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		// The year's clock changes, and one ordinary day.
		changes := []time.Time{time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)}
		for at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); at.Year() == 2026; at = at.Add(time.Hour) {
			if _, a := at.In(loc).Zone(); func() bool { _, b := at.Add(time.Hour).In(loc).Zone(); return a != b }() {
				changes = append(changes, at)
			}
		}
		for _, start := range starts {
			caps := "fare_cap_id,rider_category_id,fare_media_id,cap_period,amount,currency,day_start_time\nd,,,0,20.00,EUR," + start + "\n"
			f := mustFeed(t, map[string]string{"fare_caps.txt": caps, "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\nMET,M,https://m.example," + zone + "\nBUS,B,https://b.example," + zone + "\n"})
			for _, change := range changes {
				from := change.Add(-36 * time.Hour)
				prev := f.FareDay(from)
				for at := from; at.Before(change.Add(36 * time.Hour)); at = at.Add(5 * time.Minute) {
					d := f.FareDay(at)
					if d < prev {
						t.Fatalf("%s, cut-over %s: %s is in fare day %s, before the fare day %s of 5 minutes earlier", zone, start, at.In(loc).Format(time.RFC3339), d, prev)
					}
					if b, e := f.FareDayBegins(d), f.FareDayBegins(d+1); at.Before(b) || !at.Before(e) {
						t.Fatalf("%s, cut-over %s: %s is in fare day %s, which runs from %s to %s", zone, start, at.In(loc).Format(time.RFC3339), d, b.In(loc).Format(time.RFC3339), e.In(loc).Format(time.RFC3339))
					}
					prev = d
				}
			}
		}
	}
}
