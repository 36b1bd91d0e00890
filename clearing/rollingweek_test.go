package clearing

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/journeys"
	"github.com/faregate/faregate/fare"
)

// rollingCityFeed writes the city feed with a rolling-week cap beside its
// daily and calendar-week ones, lower than the calendar week's so that it
// binds, and returns its directory.
func rollingCityFeed(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "feed")
	if err := os.CopyFS(dir, os.DirFS("journeys/testdata/city")); err != nil {
		t.Fatal(err)
	}
	caps := `fare_cap_id,rider_category_id,fare_media_id,cap_period,amount,currency,day_start_time
daily-adult,adult,,0,8.00,EUR,04:00:00
weekly-adult,adult,,1,30.00,EUR,04:00:00
rolling-adult,adult,,2,20.00,EUR,04:00:00
`
	if err := os.WriteFile(filepath.Join(dir, "fare_caps.txt"), []byte(caps), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRollingWeekLive: riders travelling four weeks under a rolling-week
// cap, their taps applied through the store in a shuffled order (late taps
// of days long past), first in large batches priced on every core, then,
// after a restart, in small ones priced serially: each rider is charged
// exactly what the fare engine charges for the whole month priced in time
// order with one Capper, and the fare audit's independent repricing
// agrees day by day.
func TestRollingWeekLive(t *testing.T) {
	f := newPricedFixtureOf(t, t.TempDir(), rollingCityFeed(t))
	defer func() { f.st.Close() }()
	if !f.pricing.Book.Feed.HasCap(fares.CapRollingWeek) {
		t.Fatal("the feed has no rolling-week cap")
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	type tapPlan struct {
		term string
		dir  fare.Direction
		card string
		at   time.Time
	}
	rng := rand.New(rand.NewPCG(8, 9))
	var plan []tapPlan
	cards := []string{}
	for r := range 30 {
		card := "rolling-" + string(rune('a'+r%26)) + string(rune('a'+r/26))
		cards = append(cards, card)
		for day := range 28 {
			if rng.IntN(3) == 0 {
				continue // not travelling that day
			}
			at := time.Date(2026, 11, 30+day, 6+rng.IntN(4), rng.IntN(60), 0, 0, berlin)
			for range 1 + rng.IntN(4) {
				if rng.IntN(3) == 0 {
					plan = append(plan, tapPlan{"bus-s01-g1", fare.Validate, card, at})
				} else {
					plan = append(plan, tapPlan{"metro-s01-g1", fare.Entry, card, at.Add(5 * time.Minute)},
						tapPlan{"metro-s04-g1", fare.Exit, card, at.Add(40 * time.Minute)})
				}
				at = at.Add(time.Duration(90+rng.IntN(300)) * time.Minute)
			}
		}
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	cands := make([]candidate, len(plan))
	for i, p := range plan {
		cands[i] = f.tap(t, p.term, p.dir, p.card, p.at)
	}
	third := len(cands) / 3
	serial := 0
	for i := 0; i < third; i += 100 {
		res := f.apply(t, cands[i:min(i+100, third)]...)
		serial += res.pricing.Serial
	}
	// A shuffled month has many late taps whose windows carry on beyond
	// what the read-ahead read; in order, almost every tap is priced
	// ahead on the workers.
	t.Logf("%d of %d taps of the parallel batches finished serially", serial, third)
	f.st.Close()
	f.open(t)
	for i := third; i < len(cands); i += 7 {
		f.apply(t, cands[i:min(i+7, len(cands))]...)
	}

	// What each rider's events posted, and the engine's price of the month.
	book := f.pricing.Book
	posted := map[string]fare.Amount{}
	taps := map[string][]journeys.Tap{}
	for _, c := range cands {
		rec, err := f.st.Event(c.ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, po := range rec.Postings {
			posted[c.rider] += po.Amount
		}
		taps[c.rider] = append(taps[c.rider], eventTap(f.pricing, &c.ev.Event))
	}
	rollingCapped := 0
	for _, card := range cards {
		rider := f.rider(card)
		assigned := book.Assign(taps[rider], func(fares.Date) string { return "" }, "card")
		capper := book.Feed.NewCapper()
		var want int64
		for _, date := range slices.Sorted(func(yield func(fares.Date) bool) {
			for d := range assigned {
				if !yield(d) {
					return
				}
			}
		}) {
			var ftaps []fares.Tap
			for _, tp := range assigned[date] {
				ftaps = append(ftaps, fares.Tap{Kind: tp.Kind, Time: tp.Time, StopID: tp.Stop, RouteID: tp.Route, NetworkID: tp.Network, AgencyID: tp.Agency})
			}
			ss, err := book.Feed.Settle(ftaps, book.Feed.DefaultRiderCategory(), mediumID(fare.Card), book.Policy, capper)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range ss {
				want += s.Charge.Charged.Amount
				if s.Charge.CappedBy == "rolling-adult" {
					rollingCapped++
				}
			}
		}
		if int64(posted[rider]) != want {
			t.Errorf("card %s: charged %d, the engine over the month %d", card, posted[rider], want)
		}
	}
	if rollingCapped < 30 {
		t.Fatalf("only %d journeys limited by the rolling-week cap", rollingCapped)
	}
	fa, err := f.st.AuditFares(f.pricing, func(m fare.MediaKind, tok string) string { return RiderAccount(f.riderKey, m, tok) })
	if err != nil || fa.Count != 0 || fa.Posted != fa.Recomputed || fa.Posted == 0 {
		t.Fatalf("fare audit %+v, %v", fa, err)
	}
	t.Logf("%d taps, %d journeys limited by the rolling-week cap, %d charged", len(plan), rollingCapped, fa.Posted)
}
