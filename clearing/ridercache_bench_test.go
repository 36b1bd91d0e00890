package clearing

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/clearing/journeys"
	"github.com/faregate/faregate/fare"
)

// BenchmarkRiderStateMemory measures what live pricing keeps per rider:
// the decoded fare day (with its journey memo) and week in the hot cache,
// and the encoded day and week in the store, for riders who made a
// typical day (bus to metro in the morning, metro and bus back in the
// evening: 5 taps, 2 journeys). It reports megabytes per million riders.
func BenchmarkRiderStateMemory(b *testing.B) {
	feed, err := gtfs.LoadPath("journeys/testdata/city")
	if err != nil {
		b.Fatal(err)
	}
	book := &journeys.Book{Feed: feed, FeedVersion: "city", Currency: "EUR"}
	const riders = 50_000
	at := time.Date(2026, 12, 2, 7, 30, 0, 0, feed.Location())
	date := feed.FareDay(at)
	var seq byte
	tap := func(kind int, stop, network string, t time.Time) journeys.Tap {
		seq++
		tp := journeys.Tap{Event: fare.NewEventID(t), Time: t, Stop: stop, Network: network, Route: network + "-L1"}
		tp.Event[15] = seq
		switch kind {
		case 0:
			tp.Kind = 0 // entry
		case 1:
			tp.Kind = 1 // exit
		default:
			tp.Kind = 2 // validation
		}
		return tp
	}
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cache := newRiderCache(2 * riders)
		var stored int
		for i := range riders {
			rb := newRiderBatch(cache, 0)
			rider := fmt.Sprintf("passenger/card/0x%032x", i)
			d := &journeys.Day{Date: date, Category: "adult", Medium: "card"}
			var week []journeys.WeekDay
			for _, tp := range []journeys.Tap{
				tap(2, "bus-s01", "bus", at),
				tap(0, "metro-s01", "metro", at.Add(10*time.Minute)),
				tap(1, "metro-s03", "metro", at.Add(30*time.Minute)),
				tap(0, "metro-s03", "metro", at.Add(9*time.Hour)),
				tap(1, "metro-s01", "metro", at.Add(9*time.Hour+20*time.Minute)),
			} {
				if _, _, err := book.Add(d, tp, week); err != nil {
					b.Fatal(err)
				}
			}
			week = setWeekDay(week, date, d.Charged)
			dk, wk := riderKey(pRiderDay, rider, date), riderKey(pRiderWeek, rider, weekStart(date))
			rb.days[dk], rb.weeks[wk] = d, week
			cache.install(rb)
			enc, err := d.MarshalBinary()
			if err != nil {
				b.Fatal(err)
			}
			// The week record lists the week's days (see pRiderWeek).
			stored += len(dk) + len(enc) + len(wk) + 2
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if cache.len() != riders {
			b.Fatalf("cache holds %d days, want %d", cache.len(), riders)
		}
		perRider := float64(after.HeapAlloc-before.HeapAlloc) / riders
		b.ReportMetric(perRider*1e6/(1<<20), "cache-MB/Mriders")
		b.ReportMetric(float64(stored)/riders*1e6/(1<<20), "store-MB/Mriders")
		runtime.KeepAlive(cache)
	}
}
