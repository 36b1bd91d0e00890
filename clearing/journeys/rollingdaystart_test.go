package journeys

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
)

// TestRollingCapKeepsTheFareDay: a rolling-week cap's day_start_time (left
// empty, so midnight, or any other) does not move the fare day away from
// the daily and calendar-week caps' 04:00 cut-over. Before, the fare day
// began at the earliest of all caps' starts: rides between midnight and
// 04:00 opened a new fare day inside the daily cap's window (11.60 under
// an 8.00 cap), and each Monday's charges fell in the week before's
// Sunday (38.00 under a 30.00 weekly cap) (an outside review).
func TestRollingCapKeepsTheFareDay(t *testing.T) {
	const header = "fare_cap_id,rider_category_id,fare_media_id,cap_period,amount,currency,day_start_time\n"
	for _, rollingStart := range []string{"", "00:00:00", "04:00:00", "06:00:00"} {
		t.Run(fmt.Sprintf("rolling from %q", rollingStart), func(t *testing.T) {
			caps := header + "daily-adult,adult,,0,8.00,EUR,04:00:00\nweekly-adult,adult,,1,30.00,EUR,04:00:00\n" +
				"rolling-adult,adult,,2,100.00,EUR," + rollingStart + "\n"
			feed := cityWithCaps(t, caps)
			if got := feed.FareDayStart(); got != 4*3600 {
				t.Fatalf("FareDayStart %d s, want 14400 (the daily and weekly caps' 04:00)", got)
			}
			// One daily-cap window: Wednesday 04:00 to Thursday 04:00.
			r := newRider(&Book{Feed: feed, FeedVersion: "v", Currency: "EUR"})
			var day int64
			for _, tm := range []time.Time{at(2, 11, 0), at(2, 13, 0), at(2, 15, 0), at(2, 21, 0), at(2, 23, 0), at(3, 1, 0), at(3, 2, 30)} {
				d, delta, _ := r.add(t, validate("bus", "bus-s01", tm))
				if d.Date != feed.FareDay(at(2, 12, 0)) {
					t.Errorf("a ride at %s booked in fare day %s, want Wednesday's", tm.Format(time.RFC3339), d.Date)
				}
				day += delta.Total
			}
			if day != 800 {
				t.Errorf("charged %d between Wednesday and Thursday 04:00, want the daily cap's 800", day)
			}
			// A calendar week, Monday 7 to Sunday 13 December, daytime rides only.
			r = newRider(&Book{Feed: feed, FeedVersion: "v", Currency: "EUR"})
			var week int64
			for d := 7; d <= 13; d++ {
				for _, h := range []int{11, 13, 15, 21, 23} {
					_, delta, _ := r.add(t, validate("bus", "bus-s01", at(d, h, 0)))
					week += delta.Total
				}
			}
			if week != 3000 {
				t.Errorf("charged %d from Monday to Sunday, want the weekly cap's 3000", week)
			}
		})
	}
	// A feed with rolling caps only keeps their start as its fare day's.
	feed := cityWithCaps(t, header+"rolling-adult,adult,,2,100.00,EUR,03:00:00\n")
	if got := feed.FareDayStart(); got != 3*3600 {
		t.Errorf("rolling caps only: FareDayStart %d s, want 10800", got)
	}
}

// cityWithCaps is the city feed (testdata/city) with fare_caps.txt
// replaced by caps.
func cityWithCaps(t *testing.T, caps string) *fares.Feed {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/city")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fare_caps.txt"), []byte(caps), 0o644); err != nil {
		t.Fatal(err)
	}
	feed, err := gtfs.LoadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	return feed
}
