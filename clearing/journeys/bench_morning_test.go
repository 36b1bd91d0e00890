package journeys

import (
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
)

// morningDays is the Days of one rider whose evening fare day before and
// morning fare day both come decoded from the hot cache.
type morningDays struct {
	cached map[fares.Date]*Day
	cur    map[fares.Date]*Day
	week   []WeekDay
}

func (h *morningDays) Day(date fares.Date, create bool) (*Day, error) {
	if d := h.cur[date]; d != nil {
		return d, nil
	}
	c := h.cached[date]
	if c == nil {
		return nil, nil
	}
	cp := *c
	h.cur[date] = &cp
	return &cp, nil
}

func (h *morningDays) Week(fares.Date) ([]WeekDay, error) { return h.week, nil }

func (h *morningDays) Charged(date fares.Date, charged int64) {}

// BenchmarkPostMorning is BenchmarkPostHot for a tap of the morning peak,
// within the maximum leg duration after the 04:00 cut-over, by a rider who
// travelled the evening before: Post also consults the day before (the
// cut-over rule), whatever the tap's place in its day.
func BenchmarkPostMorning(b *testing.B) {
	book := testBook(b)
	eve := newDay(book, at(2, 17, 30), "adult")
	for _, tap := range []Tap{metroIn("metro-s04", at(2, 17, 30)), metroOut("metro-s01", at(2, 17, 55)), validate("bus", "bus-s01", at(2, 18, 10))} {
		if _, _, err := book.Add(eve, tap, nil); err != nil {
			b.Fatal(err)
		}
	}
	morning := newDay(book, at(3, 7, 40), "adult")
	for _, tap := range []Tap{validate("bus", "bus-s01", at(3, 7, 10)), metroIn("metro-s01", at(3, 7, 30))} {
		if _, _, err := book.Add(morning, tap, nil); err != nil {
			b.Fatal(err)
		}
	}
	next := metroOut("metro-s04", at(3, 7, 55))
	for i := 0; b.Loop(); i++ {
		next.Time = at(3, 7, 55).Add(time.Duration(i%600) * time.Second)
		h := &morningDays{cached: map[fares.Date]*Day{eve.Date: eve, morning.Date: morning}, cur: map[fares.Date]*Day{}}
		if _, err := book.Post(h, next); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "taps/s")
}
