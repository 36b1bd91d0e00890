package simulator_test

import (
	"bytes"
	"encoding/csv"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/simulator"
)

// The test city: metro (250, gated), bus (180), tram (200), rail (320,
// gated), ferry (400); six stops each, so a gated operator's stops s01-s02
// are zone 1, s03-s04 zone 2, s05-s06 zone 3.
func testCityConfig() simulator.CityConfig {
	return simulator.CityConfig{Operators: 5, StopsPerOp: 6, GatesPerStop: 2, Passengers: 20, FaceShare: 0.3, ConcessionShare: 0.5, Seed: 7}
}

// Expected prices, from the feed's constants and NewCity's flat fares only.
const (
	metroFare fare.Amount = 250
	busFare   fare.Amount = 180
	tramFare  fare.Amount = 200
	railFare  fare.Amount = 320
	ferryFare fare.Amount = 400
)

// legFare is the expected adult or concession price of one leg.
func legFare(flat fare.Amount, zonesCrossed int, peak, concession bool) int64 {
	a := flat + fare.Amount(zonesCrossed)*simulator.ZoneStep
	if peak {
		a += simulator.PeakSurcharge
	}
	if concession {
		a /= 2
	}
	return int64(a)
}

func half(a fare.Amount) int64 { return int64(a / 2) }

func berlin(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(simulator.FeedTimezone)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// cityFeed writes the city's feed to a temporary directory and loads it;
// the load must give no warning.
func cityFeed(t testing.TB, city *simulator.City) *fares.Feed {
	t.Helper()
	dir := t.TempDir()
	if err := simulator.WriteCityFeed(city, dir); err != nil {
		t.Fatalf("WriteCityFeed: %v", err)
	}
	var warnings []string
	feed, err := gtfs.LoadPath(dir, gtfs.WithWarnings(func(w gtfs.Warning) { warnings = append(warnings, w.String()) }))
	if err != nil {
		t.Fatalf("LoadPath: %v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("load warnings: %q", warnings)
	}
	return feed
}

// taps builds fares.Taps from the city's terminals: gate "g1" of a stop.
type taps struct {
	t    testing.TB
	city *simulator.City
}

func (b taps) lc(stop string) simulator.LegContext {
	lc, ok := b.city.LegContext(stop + "-g1")
	if !ok {
		b.t.Fatalf("no terminal %s-g1", stop)
	}
	return lc
}

func (b taps) in(stop string, at time.Time) fares.Tap  { return b.lc(stop).Tap(true, at) }
func (b taps) out(stop string, at time.Time) fares.Tap { return b.lc(stop).Tap(false, at) }

// ride is a gated ride from one stop to another, lasting 20 minutes.
func (b taps) ride(from, to string, at time.Time) []fares.Tap {
	return []fares.Tap{b.in(from, at), b.out(to, at.Add(20*time.Minute))}
}

func join(groups ...[]fares.Tap) []fares.Tap { return slices.Concat(groups...) }

func total(ss []fares.Settlement) int64 {
	var n int64
	for _, s := range ss {
		n += s.Charge.Charged.Amount
	}
	return n
}

// The price of one-journey tap sequences: zone pairs, peak and off-peak,
// weekends, timeframe edges, concessions, flat operators, both media.
func TestCityFeedLegFares(t *testing.T) {
	city := simulator.NewCity(testCityConfig())
	feed := cityFeed(t, city)
	loc := berlin(t)
	b := taps{t, city}
	wed := func(h, m, s int) time.Time { return time.Date(2025, 3, 12, h, m, s, 0, loc) }
	sat := func(h, m int) time.Time { return time.Date(2025, 3, 15, h, m, 0, 0, loc) }
	const (
		adult      = simulator.CategoryAdult
		concession = simulator.CategoryConcession
	)
	tests := []struct {
		name     string
		category string
		medium   fare.MediaKind
		taps     []fares.Tap
		want     int64
	}{
		{"metro z1-z1 off-peak", adult, fare.Card, b.ride("metro-s01", "metro-s02", wed(12, 0, 0)), legFare(metroFare, 0, false, false)},
		{"metro z1-z2 off-peak", adult, fare.Card, b.ride("metro-s01", "metro-s03", wed(12, 0, 0)), legFare(metroFare, 1, false, false)},
		{"metro z1-z3 off-peak", adult, fare.Card, b.ride("metro-s02", "metro-s06", wed(12, 0, 0)), legFare(metroFare, 2, false, false)},
		{"metro z3-z1 off-peak", adult, fare.Card, b.ride("metro-s05", "metro-s01", wed(12, 0, 0)), legFare(metroFare, 2, false, false)},
		{"metro z2-z3 off-peak", adult, fare.Card, b.ride("metro-s04", "metro-s05", wed(12, 0, 0)), legFare(metroFare, 1, false, false)},
		{"metro z2-z2 off-peak", adult, fare.Card, b.ride("metro-s03", "metro-s04", wed(12, 0, 0)), legFare(metroFare, 0, false, false)},
		{"metro z1-z3 peak", adult, fare.Card, b.ride("metro-s01", "metro-s06", wed(8, 30, 0)), legFare(metroFare, 2, true, false)},
		{"metro z1-z3 peak by face", adult, fare.Face, b.ride("metro-s01", "metro-s06", wed(8, 30, 0)), legFare(metroFare, 2, true, false)},
		{"metro peak starts 07:00", adult, fare.Card, b.ride("metro-s01", "metro-s03", wed(7, 0, 0)), legFare(metroFare, 1, true, false)},
		{"metro 06:59:59 is off-peak", adult, fare.Card, b.ride("metro-s01", "metro-s03", wed(6, 59, 59)), legFare(metroFare, 1, false, false)},
		{"metro 09:59:59 is peak", adult, fare.Card, b.ride("metro-s01", "metro-s03", wed(9, 59, 59)), legFare(metroFare, 1, true, false)},
		{"metro peak ends 10:00", adult, fare.Card, b.ride("metro-s01", "metro-s03", wed(10, 0, 0)), legFare(metroFare, 1, false, false)},
		{"metro evening peak 17:00", adult, fare.Card, b.ride("metro-s01", "metro-s03", wed(17, 0, 0)), legFare(metroFare, 1, true, false)},
		{"metro evening peak ends 20:00", adult, fare.Card, b.ride("metro-s01", "metro-s03", wed(20, 0, 0)), legFare(metroFare, 1, false, false)},
		{"departure time decides: peak in, off-peak out", adult, fare.Card, []fares.Tap{b.in("metro-s01", wed(9, 50, 0)), b.out("metro-s06", wed(10, 20, 0))}, legFare(metroFare, 2, true, false)},
		{"metro Saturday 08:30 is off-peak", adult, fare.Card, b.ride("metro-s01", "metro-s06", sat(8, 30)), legFare(metroFare, 2, false, false)},
		{"concession metro z1-z3 peak", concession, fare.Card, b.ride("metro-s01", "metro-s06", wed(8, 30, 0)), legFare(metroFare, 2, true, true)},
		{"concession metro z1-z2 off-peak by face", concession, fare.Face, b.ride("metro-s01", "metro-s03", wed(12, 0, 0)), legFare(metroFare, 1, false, true)},
		{"rail z1-z2 off-peak", adult, fare.Card, b.ride("rail-s01", "rail-s04", wed(12, 0, 0)), legFare(railFare, 1, false, false)},
		{"rail z3-z1 peak", adult, fare.Card, b.ride("rail-s06", "rail-s02", wed(18, 0, 0)), legFare(railFare, 2, true, false)},
		{"bus off-peak", adult, fare.Card, []fares.Tap{b.in("bus-s03", wed(12, 0, 0))}, legFare(busFare, 0, false, false)},
		{"bus peak", adult, fare.Card, []fares.Tap{b.in("bus-s03", wed(8, 0, 0))}, legFare(busFare, 0, true, false)},
		{"concession bus off-peak by face", concession, fare.Face, []fares.Tap{b.in("bus-s01", wed(12, 0, 0))}, legFare(busFare, 0, false, true)},
		{"concession bus peak", concession, fare.Card, []fares.Tap{b.in("bus-s01", wed(8, 0, 0))}, legFare(busFare, 0, true, true)},
		{"tram peak", adult, fare.Card, []fares.Tap{b.in("tram-s06", wed(17, 30, 0))}, legFare(tramFare, 0, true, false)},
		{"ferry off-peak", adult, fare.Card, []fares.Tap{b.in("ferry-s02", wed(14, 0, 0))}, legFare(ferryFare, 0, false, false)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ss, err := feed.Settle(tc.taps, tc.category, simulator.FareMediaID(tc.medium), fares.TapPolicy{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(ss) != 1 || !ss[0].Fare.Known {
				t.Fatalf("settlements %+v; want one journey with a known fare", ss)
			}
			if got := ss[0].Fare.Total.Amount; got != tc.want {
				t.Errorf("fare %d, want %d", got, tc.want)
			}
			if c := ss[0].Fare.Total.Currency; c != city.Currency {
				t.Errorf("currency %q, want %q", c, city.Currency)
			}
		})
	}
}

// Every ride of every operator, stop to stop: the engine's fare is the
// zone-pair price, peak dearer than off-peak by PeakSurcharge, concession
// at half, and FeedLegFare agrees.
func TestCityFeedPeakDearerConcessionCheaper(t *testing.T) {
	city := simulator.NewCity(testCityConfig())
	feed := cityFeed(t, city)
	loc := berlin(t)
	peakAt := time.Date(2025, 3, 12, 8, 30, 0, 0, loc)
	offAt := time.Date(2025, 3, 12, 12, 30, 0, 0, loc)
	price := func(op simulator.Operator, i, j int, at time.Time, cat string) int64 {
		t.Helper()
		leg := fares.Leg{RouteID: simulator.FeedRouteID(op), FromStop: op.Stops[i].ID, Start: at, End: at.Add(15 * time.Minute)}
		if op.TapOut {
			leg.ToStop = op.Stops[j].ID
		}
		f, err := feed.Price(fares.Journey{Legs: []fares.Leg{leg}, RiderCategory: cat, FareMedia: "card"})
		if err != nil || !f.Known {
			t.Fatalf("%s %d->%d: %+v, %v", op.ID, i, j, f, err)
		}
		return f.Total.Amount
	}
	for _, op := range city.Operators {
		for i := range op.Stops {
			for j := range op.Stops {
				crossed := 0
				if op.TapOut {
					crossed = max(i*3/6-j*3/6, j*3/6-i*3/6) // six stops, three zones
				}
				peak := price(op, i, j, peakAt, simulator.CategoryAdult)
				off := price(op, i, j, offAt, simulator.CategoryAdult)
				cPeak := price(op, i, j, peakAt, simulator.CategoryConcession)
				cOff := price(op, i, j, offAt, simulator.CategoryConcession)
				if want := legFare(op.FlatFare, crossed, false, false); off != want {
					t.Errorf("%s %d->%d off-peak %d, want %d", op.ID, i, j, off, want)
				}
				if peak <= off || peak-off != int64(simulator.PeakSurcharge) {
					t.Errorf("%s %d->%d peak %d, off-peak %d: want dearer by %d", op.ID, i, j, peak, off, simulator.PeakSurcharge)
				}
				if cPeak != peak/2 || cOff != off/2 || cOff >= off {
					t.Errorf("%s %d->%d concession %d/%d, adult %d/%d: want half", op.ID, i, j, cPeak, cOff, peak, off)
				}
				if got := simulator.FeedLegFare(op, crossed, true, simulator.CategoryConcession); int64(got) != cPeak {
					t.Errorf("%s %d->%d FeedLegFare %d, engine %d", op.ID, i, j, got, cPeak)
				}
				if !op.TapOut {
					break // a flat fare does not depend on the destination
				}
			}
		}
	}
}

// Cross-operator journeys: the transfer discount within the window (the
// limit inclusive), none past it, and the shares of the charge.
func TestCityFeedTransfers(t *testing.T) {
	city := simulator.NewCity(testCityConfig())
	feed := cityFeed(t, city)
	loc := berlin(t)
	b := taps{t, city}
	wed := func(h, m int) time.Time { return time.Date(2025, 3, 12, h, m, 0, 0, loc) }
	disc := int64(simulator.TransferDiscount)
	tests := []struct {
		name     string
		category string
		taps     []fares.Tap
		journeys int
		want     int64 // total charged
		// standalone leg fares by agency, for the expected shares of a
		// one-journey case; nil for several journeys.
		weights map[string]int64
	}{
		{"bus then metro z1-z3 peak, 30 min", simulator.CategoryAdult,
			join([]fares.Tap{b.in("bus-s01", wed(8, 0))}, b.ride("metro-s01", "metro-s06", wed(8, 30))), 1,
			legFare(busFare, 0, true, false) + legFare(metroFare, 2, true, false) - disc,
			map[string]int64{"bus": legFare(busFare, 0, true, false), "metro": legFare(metroFare, 2, true, false)}},
		{"bus then metro exactly at the 90 min limit", simulator.CategoryAdult,
			join([]fares.Tap{b.in("bus-s01", wed(8, 0))}, b.ride("metro-s01", "metro-s06", wed(9, 30))), 1,
			legFare(busFare, 0, true, false) + legFare(metroFare, 2, true, false) - disc,
			map[string]int64{"bus": legFare(busFare, 0, true, false), "metro": legFare(metroFare, 2, true, false)}},
		{"bus then metro 91 min later: two fares", simulator.CategoryAdult,
			join([]fares.Tap{b.in("bus-s01", wed(8, 0))}, b.ride("metro-s01", "metro-s06", wed(9, 31))), 2,
			legFare(busFare, 0, true, false) + legFare(metroFare, 2, true, false), nil},
		{"metro z1-z2 then bus, off-peak", simulator.CategoryAdult,
			join(b.ride("metro-s01", "metro-s03", wed(12, 0)), []fares.Tap{b.in("bus-s04", wed(12, 40))}), 1,
			legFare(metroFare, 1, false, false) + legFare(busFare, 0, false, false) - disc,
			map[string]int64{"metro": legFare(metroFare, 1, false, false), "bus": legFare(busFare, 0, false, false)}},
		{"concession bus then metro", simulator.CategoryConcession,
			join([]fares.Tap{b.in("bus-s01", wed(8, 0))}, b.ride("metro-s01", "metro-s06", wed(8, 30))), 1,
			legFare(busFare, 0, true, true) + legFare(metroFare, 2, true, true) - half(simulator.TransferDiscount),
			map[string]int64{"bus": legFare(busFare, 0, true, true), "metro": legFare(metroFare, 2, true, true)}},
		{"bus then rail: the gate's leg goes to rail", simulator.CategoryAdult,
			join([]fares.Tap{b.in("bus-s02", wed(12, 0))}, b.ride("rail-s01", "rail-s05", wed(12, 45))), 1,
			legFare(busFare, 0, false, false) + legFare(railFare, 2, false, false) - disc,
			map[string]int64{"bus": legFare(busFare, 0, false, false), "rail": legFare(railFare, 2, false, false)}},
		{"bus, tram, ferry: two transfers", simulator.CategoryAdult,
			[]fares.Tap{b.in("bus-s02", wed(12, 0)), b.in("tram-s01", wed(12, 30)), b.in("ferry-s01", wed(13, 0))}, 1,
			legFare(busFare, 0, false, false) + legFare(tramFare, 0, false, false) + legFare(ferryFare, 0, false, false) - 2*disc,
			map[string]int64{"bus": legFare(busFare, 0, false, false), "tram": legFare(tramFare, 0, false, false), "ferry": legFare(ferryFare, 0, false, false)}},
		// No transfer joins them: two fares, each its own journey.
		{"bus then bus: no same-operator discount", simulator.CategoryAdult,
			[]fares.Tap{b.in("bus-s02", wed(12, 0)), b.in("bus-s05", wed(12, 30))}, 2,
			2 * legFare(busFare, 0, false, false), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ss, err := feed.Settle(tc.taps, tc.category, "card", fares.TapPolicy{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(ss) != tc.journeys {
				t.Fatalf("%d journeys, want %d", len(ss), tc.journeys)
			}
			if got := total(ss); got != tc.want {
				t.Errorf("charged %d, want %d", got, tc.want)
			}
			var legsAlone int64
			for _, w := range tc.weights {
				legsAlone += w
			}
			if tc.weights != nil && len(tc.weights) > 1 && tc.want >= legsAlone {
				t.Errorf("journey %d not below its legs alone %d", tc.want, legsAlone)
			}
			for _, s := range ss {
				var sum int64
				for _, sh := range s.Shares {
					sum += sh.Amount.Amount
				}
				if sum != s.Charge.Charged.Amount {
					t.Errorf("shares %+v sum to %d, charge %d", s.Shares, sum, s.Charge.Charged.Amount)
				}
			}
			if tc.weights == nil {
				return
			}
			got := map[string]int64{}
			for _, sh := range ss[0].Shares {
				got[sh.AgencyID] = sh.Amount.Amount
			}
			if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(tc.weights))) {
				t.Fatalf("shares %v, want agencies %v", got, slices.Sorted(maps.Keys(tc.weights)))
			}
			var wsum int64
			for _, w := range tc.weights {
				wsum += w
			}
			for ag, w := range tc.weights {
				// Largest remainder: each share is floor or ceil of the
				// proportional amount, and every operator gets some.
				lo := tc.want * w / wsum
				if got[ag] <= 0 || got[ag] < lo || got[ag] > lo+1 {
					t.Errorf("%s share %d, want %d or %d (weights %v)", ag, got[ag], lo, lo+1, tc.weights)
				}
			}
		})
	}
}

// An entry without an exit is charged the maximum fare from its zone at its
// time; an exit without an entry the dearest fare into its zone at any time
// (the departure side, time included, is unknown).
func TestCityFeedMaximumFare(t *testing.T) {
	city := simulator.NewCity(testCityConfig())
	feed := cityFeed(t, city)
	loc := berlin(t)
	b := taps{t, city}
	wed := func(h, m int) time.Time { return time.Date(2025, 3, 12, h, m, 0, 0, loc) }
	tests := []struct {
		name     string
		category string
		tap      fares.Tap
		want     int64
	}{
		{"metro entry z1 off-peak", simulator.CategoryAdult, b.in("metro-s01", wed(12, 0)), legFare(metroFare, 2, false, false)},
		{"metro entry z2 off-peak: at most one zone crossed", simulator.CategoryAdult, b.in("metro-s03", wed(12, 0)), legFare(metroFare, 1, false, false)},
		{"metro entry z3 peak", simulator.CategoryAdult, b.in("metro-s06", wed(8, 0)), legFare(metroFare, 2, true, false)},
		{"concession metro entry z1 peak", simulator.CategoryConcession, b.in("metro-s02", wed(8, 0)), legFare(metroFare, 2, true, true)},
		{"rail entry z2 peak", simulator.CategoryAdult, b.in("rail-s04", wed(18, 0)), legFare(railFare, 1, true, false)},
		{"metro exit z2 without entry: at most one zone crossed, at any time", simulator.CategoryAdult, b.out("metro-s03", wed(12, 0)), legFare(metroFare, 1, true, false)},
		{"metro exit z3 without entry: two zones crossed, at any time", simulator.CategoryAdult, b.out("metro-s06", wed(12, 0)), legFare(metroFare, 2, true, false)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ss, err := feed.Settle([]fares.Tap{tc.tap}, tc.category, "face", fares.TapPolicy{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(ss) != 1 || len(ss[0].Journey.Legs) != 1 || !ss[0].Journey.Legs[0].Incomplete {
				t.Fatalf("settlements %+v; want one incomplete leg", ss)
			}
			f := ss[0].Fare
			if !f.Known || !f.Legs[0].MaximumFare || f.Total.Amount != tc.want {
				t.Errorf("fare %+v, want the maximum fare %d", f, tc.want)
			}
			if tc.tap.Kind != fares.TapIn {
				return
			}
			peak := simulator.IsPeak(tc.tap.Time, loc)
			if got, ok := city.MaximumFare(tc.tap.StopID, tc.category, peak); !ok || int64(got) != tc.want {
				t.Errorf("City.MaximumFare = %d, %v; want %d", got, ok, tc.want)
			}
		})
	}
	if _, ok := city.MaximumFare("nowhere", simulator.CategoryAdult, false); ok {
		t.Error("MaximumFare of an unknown stop reported ok")
	}
}

// capCheck replays the expected capping of a list of journeys: each is
// charged min(fare, what is left of the day's cap, what is left of the
// week's cap), the fare day starting at CapDayStart and the week on Monday.
type capCheck struct {
	daily, weekly int64
	day, week     map[string]int64
	loc           *time.Location
}

func newCapCheck(category string, loc *time.Location) *capCheck {
	c := &capCheck{daily: int64(simulator.DailyCap), weekly: int64(simulator.WeeklyCap), day: map[string]int64{}, week: map[string]int64{}, loc: loc}
	if category == simulator.CategoryConcession {
		c.daily, c.weekly = half(simulator.DailyCap), half(simulator.WeeklyCap)
	}
	return c
}

func (c *capCheck) charge(at time.Time, fare int64) int64 {
	fd := at.In(c.loc).Add(-simulator.CapDayStart)
	day := fd.Format("2006-01-02")
	monday := fd.AddDate(0, 0, -((int(fd.Weekday()) + 6) % 7)).Format("2006-01-02")
	ch := min(fare, c.daily-c.day[day], c.weekly-c.week[monday])
	ch = max(ch, 0)
	c.day[day] += ch
	c.week[monday] += ch
	return ch
}

type journey struct {
	taps []fares.Tap
	fare int64
}

func settleCapped(t *testing.T, feed *fares.Feed, category string, js []journey, loc *time.Location) {
	t.Helper()
	var all []fares.Tap
	for _, j := range js {
		all = append(all, j.taps...)
	}
	ss, err := feed.Settle(all, category, "card", fares.TapPolicy{}, feed.NewCapper())
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != len(js) {
		t.Fatalf("%d journeys, want %d", len(ss), len(js))
	}
	check := newCapCheck(category, loc)
	for i, s := range ss {
		want := check.charge(js[i].taps[0].Time, js[i].fare)
		if s.Fare.Total.Amount != js[i].fare || s.Charge.Charged.Amount != want {
			t.Errorf("journey %d at %s: fare %d charged %d (capped by %q), want fare %d charged %d",
				i, js[i].taps[0].Time.Format(time.DateTime), s.Fare.Total.Amount, s.Charge.Charged.Amount, s.Charge.CappedBy, js[i].fare, want)
		}
		var sum int64
		for _, sh := range s.Shares {
			sum += sh.Amount.Amount
		}
		if sum != s.Charge.Charged.Amount {
			t.Errorf("journey %d: shares sum to %d, charge %d", i, sum, s.Charge.Charged.Amount)
		}
	}
}

// A heavy rider's fare day is capped at the daily cap, the day running
// from CapDayStart to CapDayStart.
func TestCityFeedDailyCap(t *testing.T) {
	city := simulator.NewCity(testCityConfig())
	feed := cityFeed(t, city)
	loc := berlin(t)
	b := taps{t, city}
	at := func(d, h, m int) time.Time { return time.Date(2025, 3, d, h, m, 0, 0, loc) }
	for _, tc := range []struct {
		category   string
		concession bool
		cap        int64
	}{
		{simulator.CategoryAdult, false, int64(simulator.DailyCap)},
		{simulator.CategoryConcession, true, half(simulator.DailyCap)},
	} {
		t.Run(tc.category, func(t *testing.T) {
			c := tc.concession
			js := []journey{
				{b.ride("metro-s01", "metro-s06", at(12, 7, 30)), legFare(metroFare, 2, true, c)},
				{[]fares.Tap{b.in("bus-s01", at(12, 11, 0))}, legFare(busFare, 0, false, c)},
				{b.ride("metro-s01", "metro-s06", at(12, 13, 0)), legFare(metroFare, 2, false, c)}, // hits the cap
				{b.ride("metro-s06", "metro-s01", at(12, 17, 30)), legFare(metroFare, 2, true, c)},
				{[]fares.Tap{b.in("tram-s01", at(12, 21, 0))}, legFare(tramFare, 0, false, c)},
				{[]fares.Tap{b.in("bus-s02", at(13, 2, 0))}, legFare(busFare, 0, false, c)},  // still Wednesday's fare day
				{[]fares.Tap{b.in("bus-s02", at(13, 4, 30))}, legFare(busFare, 0, false, c)}, // Thursday's
			}
			settleCapped(t, feed, tc.category, js, loc)
			// The day's total is the cap exactly: the rider's fares add up
			// to more.
			var sumFares, charged int64
			capper := feed.NewCapper()
			for _, j := range js[:6] {
				sumFares += j.fare
				ss, err := feed.Settle(j.taps, tc.category, "card", fares.TapPolicy{}, capper)
				if err != nil {
					t.Fatal(err)
				}
				charged += total(ss)
			}
			if sumFares <= tc.cap || charged != tc.cap {
				t.Errorf("fares %d, charged %d; want fares above and charges equal to the cap %d", sumFares, charged, tc.cap)
			}
		})
	}
}

// The weekly cap holds across days: each day of a heavy week reaches the
// daily cap until the week's cap is reached; the next Monday starts anew.
func TestCityFeedWeeklyCap(t *testing.T) {
	city := simulator.NewCity(testCityConfig())
	feed := cityFeed(t, city)
	loc := berlin(t)
	b := taps{t, city}
	for _, tc := range []struct {
		category   string
		concession bool
		weekly     int64
	}{
		{simulator.CategoryAdult, false, int64(simulator.WeeklyCap)},
		{simulator.CategoryConcession, true, half(simulator.WeeklyCap)},
	} {
		t.Run(tc.category, func(t *testing.T) {
			var js []journey
			for d := 10; d <= 17; d++ { // Monday 10 March to Monday 17 March 2025
				weekday := d != 15 && d != 16
				for _, hm := range [][2]int{{7, 30}, {12, 0}, {17, 30}} {
					at := time.Date(2025, 3, d, hm[0], hm[1], 0, 0, loc)
					peak := weekday && hm[0] != 12
					js = append(js, journey{b.ride("metro-s01", "metro-s06", at), legFare(metroFare, 2, peak, tc.concession)})
				}
			}
			settleCapped(t, feed, tc.category, js, loc)
			ss, err := feed.Settle(join(func() [][]fares.Tap {
				var all [][]fares.Tap
				for _, j := range js {
					all = append(all, j.taps)
				}
				return all
			}()...), tc.category, "card", fares.TapPolicy{}, feed.NewCapper())
			if err != nil {
				t.Fatal(err)
			}
			var week, monday int64
			for i, s := range ss {
				if i < 21 {
					week += s.Charge.Charged.Amount
				} else {
					monday += s.Charge.Charged.Amount
				}
			}
			daily := int64(simulator.DailyCap)
			if tc.concession {
				daily = half(simulator.DailyCap)
			}
			if week != tc.weekly || monday != daily {
				t.Errorf("week charged %d, next Monday %d; want the weekly cap %d and the daily cap %d", week, monday, tc.weekly, daily)
			}
		})
	}
}

// The feed's files: the expected set, stop IDs exactly the city's, every
// terminal's leg context priced, and the same bytes on every write.
func TestCityFeedFiles(t *testing.T) {
	cfg := testCityConfig()
	city := simulator.NewCity(cfg)
	feed := cityFeed(t, city)
	dirs := [2]string{t.TempDir(), t.TempDir()}
	for i, c := range []*simulator.City{city, simulator.NewCity(cfg)} {
		if err := simulator.WriteCityFeed(c, dirs[i]); err != nil {
			t.Fatal(err)
		}
	}
	list := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	want := []string{"agency.txt", "areas.txt", "calendar.txt", "fare_caps.txt", "fare_leg_rules.txt", "fare_media.txt",
		"fare_products.txt", "fare_transfer_rules.txt", "networks.txt", "rider_categories.txt", "route_networks.txt",
		"routes.txt", "stop_areas.txt", "stop_times.txt", "stops.txt", "timeframes.txt", "trips.txt"}
	if got := list(dirs[0]); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	if got := list(dirs[1]); !slices.Equal(got, want) {
		t.Fatalf("second write: files %v, want %v", got, want)
	}
	for _, name := range want {
		a, err := os.ReadFile(filepath.Join(dirs[0], name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dirs[1], name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two writes", name)
		}
	}

	// stops.txt lists exactly the city's stops.
	rows, err := csv.NewReader(bytes.NewReader(must(os.ReadFile(filepath.Join(dirs[0], "stops.txt"))))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var gotStops, wantStops []string
	for _, r := range rows[1:] {
		gotStops = append(gotStops, r[0])
	}
	for _, op := range city.Operators {
		for _, st := range op.Stops {
			wantStops = append(wantStops, st.ID)
		}
	}
	if !slices.Equal(gotStops, wantStops) {
		t.Errorf("stops.txt ids %v, want %v", gotStops, wantStops)
	}

	// Every terminal's context forms a leg the feed prices.
	loc := berlin(t)
	at := time.Date(2025, 3, 12, 12, 0, 0, 0, loc)
	ctxs := city.LegContexts()
	if len(ctxs) != city.TerminalCount() {
		t.Fatalf("%d leg contexts, want %d", len(ctxs), city.TerminalCount())
	}
	for _, op := range city.Operators {
		for _, st := range op.Stops {
			for _, term := range st.Terminals {
				lc, ok := city.LegContext(term.ID)
				if !ok || lc != ctxs[term.ID] || lc.StopID != st.ID || lc.OperatorID != op.ID || lc.Gated != op.TapOut || (lc.AreaID != "") != op.TapOut {
					t.Fatalf("LegContext(%s) = %+v, %v; map has %+v", term.ID, lc, ok, ctxs[term.ID])
				}
				ts := []fares.Tap{lc.Tap(true, at)}
				if lc.Gated {
					ts = append(ts, lc.Tap(false, at.Add(10*time.Minute)))
				}
				ss, err := feed.Settle(ts, simulator.CategoryAdult, "card", fares.TapPolicy{}, nil)
				if err != nil || len(ss) != 1 || !ss[0].Fare.Known || ss[0].Shares[0].AgencyID != op.ID {
					t.Fatalf("terminal %s: %+v, %v; want a known fare credited to %s", term.ID, ss, err, op.ID)
				}
			}
		}
	}
	if _, ok := city.LegContext("no-such-terminal"); ok {
		t.Error("LegContext of an unknown terminal reported ok")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Cities the feed cannot describe are refused with a reason.
func TestCityFeedErrors(t *testing.T) {
	base := func() *simulator.City {
		return simulator.NewCity(simulator.CityConfig{Operators: 2, StopsPerOp: 2, GatesPerStop: 1, Seed: 1})
	}
	tests := []struct {
		name string
		edit func(c *simulator.City) *simulator.City
		want string
	}{
		{"nil city", func(*simulator.City) *simulator.City { return nil }, "nil city"},
		{"bad currency", func(c *simulator.City) *simulator.City { c.Currency = "XYZ"; return c }, `"XYZ"`},
		{"no operators", func(c *simulator.City) *simulator.City { c.Operators = nil; return c }, "no operators"},
		{"duplicate operator", func(c *simulator.City) *simulator.City { c.Operators[1].ID = "metro"; return c }, `operator 2: duplicate ID "metro"`},
		{"duplicate stop", func(c *simulator.City) *simulator.City { c.Operators[1].Stops[0].ID = "metro-s01"; return c }, `stop "metro-s01": already a stop of operator "metro"`},
		{"free operator", func(c *simulator.City) *simulator.City { c.Operators[0].FlatFare = 0; return c }, "FlatFare 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "feed")
			err := simulator.WriteCityFeed(tc.edit(base()), dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WriteCityFeed error %v, want it to contain %q", err, tc.want)
			}
			if _, statErr := os.Stat(dir); statErr == nil {
				t.Error("a refused city left a feed directory")
			}
		})
	}
}
