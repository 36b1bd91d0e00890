package journeys

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/faregate/faregate/clearing/fares"
)

// TestDifferentialRidersOrderIndependent: every differential rider's taps, posted in 20
// random arrival orders, leave the same fare days (what each charges, and
// its taps) as posted in time order: a gate offline for hours, or a
// redelivery, changes nothing a rider pays. (An outside recheck found riders
// whose transfer across the cut-over was lost in some orders, when repeat
// reads pushed the tap completing a journey to the day's third place; 4
// of these riders were order-dependent then.)
func TestDifferentialRidersOrderIndependent(t *testing.T) {
	feeds := diffFeeds(t)
	bad := 0
	final := func(f *diffFeed, cat, medium string, taps []Tap, order []int) string {
		r := &diffRider{cat: cat, medium: medium, days: map[fares.Date]*Day{}, weeks: map[fares.Date][]WeekDay{}}
		for _, k := range order {
			f.book.Post(r, taps[k])
		}
		s := ""
		for _, date := range sortedDates(r.days) {
			s += fmt.Sprintf("%s:%d/%d ", date, r.days[date].Charged, len(r.days[date].Taps))
		}
		return s
	}
	for i := range feeds {
		f := &feeds[i]
		for n := range diffRiders {
			rng := rand.New(rand.NewPCG(uint64(n), uint64(len(f.name))<<8|uint64(f.name[0])))
			var id byte
			taps := diffTaps(rng, f, &id)
			cat, medium := f.cats[rng.IntN(len(f.cats))], f.media[rng.IntN(len(f.media))]
			sorted := make([]int, len(taps))
			for k := range sorted {
				sorted[k] = k
			}
			slices.SortFunc(sorted, func(a, b int) int { return tapOrder(taps[a], taps[b]) })
			want := final(f, cat, medium, taps, sorted)
			for range 20 { // random arrival orders
				if got := final(f, cat, medium, taps, rng.Perm(len(taps))); got != want {
					bad++
					t.Errorf("%s rider %d: in one arrival order %s, in time order %s", f.name, n, got, want)
					break
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d riders pay by the order their taps arrive in", bad)
	}
}
