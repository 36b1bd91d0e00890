package clearing_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/clearing/journeys"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// The city feed (journeys/testdata/city, what `faregate simulate` writes):
// metro gates in three zones, flat bus and tram fares, 0.60 off a change of
// operator within 90 minutes, daily cap 8.00 and calendar-week cap 30.00
// for adults, fare days from 04:00 Europe/Berlin.
const cityFeedDir = "journeys/testdata/city"

// fareCityGates are the terminals of the priced tests: a gate at each metro
// station (network metro) and validators on buses and trams (their route).
var fareCityGates = []struct{ id, op, stop, network, route string }{
	{"metro-s01-g1", "metro", "metro-s01", "metro", "metro-L1"},
	{"metro-s02-g1", "metro", "metro-s02", "metro", "metro-L1"},
	{"metro-s03-g1", "metro", "metro-s03", "metro", "metro-L1"},
	{"metro-s04-g1", "metro", "metro-s04", "metro", "metro-L1"},
	{"bus-s01-g1", "bus", "bus-s01", "bus", "bus-L1"},
	{"bus-s02-g1", "bus", "bus-s02", "bus", "bus-L1"},
	{"tram-s01-g1", "tram", "tram-s01", "tram", "tram-L1"},
	{"tram-s02-g1", "tram", "tram-s02", "tram", "tram-L1"},
	// A station gate that knows its network and not the route; tram is
	// not the feed's first agency.
	{"tram-s03-g1", "tram", "tram-s03", "tram", ""},
}

// fareCityRegistry is the registry of fareCityGates, with their legs.
func fareCityRegistry(t testing.TB) (*clearing.Registry, map[string]ed25519.PrivateKey) {
	t.Helper()
	reg := &clearing.Registry{Currency: "EUR", Operators: []clearing.OperatorConfig{
		{ID: "metro", Name: "Metro", FlatFare: 250}, {ID: "bus", Name: "Bus", FlatFare: 180}, {ID: "tram", Name: "Tram", FlatFare: 200}}}
	keys := map[string]ed25519.PrivateKey{}
	for _, g := range fareCityGates {
		seed := make([]byte, ed25519.SeedSize)
		copy(seed, "fare city "+g.id)
		keys[g.id] = ed25519.NewKeyFromSeed(seed)
		reg.Terminals = append(reg.Terminals, provenTerminal(keys[g.id], g.id, g.op, g.stop))
		reg.Legs = append(reg.Legs, clearing.TerminalLeg{Terminal: g.id, Network: g.network, Route: g.route})
	}
	if err := reg.Validate(); err != nil {
		t.Fatal(err)
	}
	return reg, keys
}

// decAt is a local time in Berlin on a day of December 2026 (Wednesday the
// 2nd, Sunday the 6th, Monday the 7th).
func decAt(day, hh, mm int) time.Time {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err)
	}
	return time.Date(2026, 12, day, hh, mm, 0, 0, berlin)
}

// fareTap is one tap of a rider at a gate of the fare city.
type fareTap struct {
	stop string // the gate is <stop>-g1
	dir  fare.Direction
	at   time.Time
	card string
}

// tapAndWait taps at a running terminal and waits until clearing has
// confirmed it (the terminal's outbox is empty again): the tap is applied
// and priced before the next one is made.
func tapAndWait(t *testing.T, term *runningTerminal, card string, dir fare.Direction, at time.Time) fare.Event {
	t.Helper()
	ev, err := term.Tap(context.Background(), terminal.Tap{Gate: "g1", Direction: dir, Media: fare.Card, Token: card, RiderCategory: "adult", Time: at})
	if err != nil {
		t.Fatalf("tap at %s: %v", term.ID(), err)
	}
	if ev.Decision != fare.Accepted {
		t.Fatalf("tap at %s: %s (%s)", term.ID(), ev.Decision, ev.Reason)
	}
	waitFor(t, "tap at "+term.ID()+" confirmed", 30*time.Second, func() bool { return term.Pending() == 0 })
	return ev
}

// pricedCity is clearing pricing live from the city feed, in this
// process, on a fresh embedded chain, with a running terminal at every
// gate of fareCityGates.
type pricedCity struct {
	dir   string
	reg   *clearing.Registry
	cl    *running
	terms map[string]*runningTerminal
}

func startPricedCity(t *testing.T) *pricedCity {
	t.Helper()
	return startPricedCityWith(t, func(string, *terminal.Config) {})
}

// startPricedCityWith is startPricedCity with each gate's configuration
// edited by edit.
func startPricedCityWith(t *testing.T, edit func(id string, c *terminal.Config)) *pricedCity {
	t.Helper()
	dir := t.TempDir()
	reg, keys := fareCityRegistry(t)
	feed, err := gtfs.LoadPath(cityFeedDir)
	if err != nil {
		t.Fatal(err)
	}
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour,
		Feed: feed, FeedVersion: "city-test",
		// The cases are dated in December 2026 on the wall clock.
		MaxDeviceTimeAhead: 60 * 24 * time.Hour})
	t.Cleanup(func() { cl.stop(t) })
	c := &pricedCity{dir: dir, reg: reg, cl: cl, terms: map[string]*runningTerminal{}}
	for _, g := range fareCityGates {
		rt := startTerminalWith(t, dir, cl.NATSURL(), reg, keys, g.id, func(c *terminal.Config) { edit(g.id, c) })
		c.terms[g.id] = rt
		t.Cleanup(func() { rt.stop(t) })
	}
	return c
}

// tap taps at stop's gate, waits until it is applied and returns its
// record, checking that its postings sum to the fare it charged.
func (c *pricedCity) tap(t *testing.T, card, stop string, dir fare.Direction, at time.Time) clearing.EventRecord {
	t.Helper()
	term := c.terms[stop+"-g1"]
	if term == nil {
		t.Fatalf("no gate at %s", stop)
	}
	ev := tapAndWait(t, term, card, dir, at)
	rec, err := c.cl.Store().Event(ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	var sum fare.Amount
	for _, p := range rec.PostingsOf(ev.Operator) {
		sum += p.Amount
	}
	if sum != rec.Fare {
		t.Errorf("event %s at %s: postings %v sum to %d, fare %d", ev.ID, stop, rec.Postings, sum, rec.Fare)
	}
	return rec
}

func (c *pricedCity) riderCharged(t *testing.T, card string) fare.Amount {
	t.Helper()
	b, err := c.cl.Store().Balance(c.cl.RiderAccount(fare.Card, card))
	if err != nil {
		t.Fatal(err)
	}
	return -b.Net()
}

// postingsByOperator is a record's postings as operator -> amount, zero
// postings left out.
func postingsByOperator(rec clearing.EventRecord, own string) map[string]fare.Amount {
	m := map[string]fare.Amount{}
	for _, p := range rec.PostingsOf(own) {
		if p.Amount != 0 {
			m[p.Operator] += p.Amount
		}
	}
	return m
}

func fmtPostings(m map[string]fare.Amount) string {
	var parts []string
	for op, v := range m {
		parts = append(parts, fmt.Sprintf("%s:%d", op, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// liveStep is one tap of a live boundary case and what its event must
// post: fare in all, and by operator when ops is set.
type liveStep struct {
	stop string
	dir  fare.Direction
	at   time.Time
	fare fare.Amount
	ops  map[string]fare.Amount
}

func liveIn(stop string, at time.Time) liveStep { return liveStep{stop: stop, dir: fare.Entry, at: at} }
func liveOut(stop string, at time.Time, f fare.Amount) liveStep {
	return liveStep{stop: stop, dir: fare.Exit, at: at, fare: f}
}
func liveRide(stop string, at time.Time, f fare.Amount) liveStep {
	return liveStep{stop: stop, dir: fare.Validate, at: at, fare: f}
}
func (s liveStep) split(kv ...any) liveStep {
	s.ops = map[string]fare.Amount{}
	for i := 0; i < len(kv); i += 2 {
		s.ops[kv[i].(string)] = fare.Amount(kv[i+1].(int))
	}
	return s
}

// TestLivePricingBoundaries taps riders through real terminals, NATS,
// clearing pricing live from the city feed in its apply transaction, and
// the embedded chain, across the boundaries of the fare rules: the 04:00
// fare-day cut-over (either side a different day, each capped on its own),
// the Sunday to Monday calendar-week boundary (the weekly cap resets), the
// daily cap reached during a journey (that journey charged up to the cap,
// a later one nothing), and the maximum fare an entry is charged at once
// (from its zone and time, as an incomplete leg: capped like any journey,
// no transfer), settled by its exit, also when the exit arrives after the
// rider's next tap. Every event's postings sum to its fare; then the
// period is sealed and committed, every batch's nets are the sums of its
// events' postings, the operators' revenue is what the riders were
// charged, the journal balances and the independent repricing
// (AuditFares) agrees.
//
// Fares: an entry off-peak at a zone 1 or zone 3 gate is charged 4.50 (the
// dearest ride from there), at peak (weekdays 07:00-10:00) 5.00; the exit
// then settles the leg at its fare.
func TestLivePricingBoundaries(t *testing.T) {
	c := startPricedCity(t)
	cases := []struct {
		name    string
		card    string
		steps   []liveStep
		charged fare.Amount
	}{
		{"fare-day cut-over at 04:00: either side are different days, each capped separately", "card-cutover", []liveStep{
			liveIn("metro-s01", decAt(2, 20, 0)).withFare(450), liveOut("metro-s04", decAt(2, 20, 20), 0), // zone 1 to 3: 4.50
			liveIn("metro-s04", decAt(2, 21, 0)).withFare(350), liveOut("metro-s01", decAt(2, 21, 20), 0), // Wednesday's 8.00 reached at the entry
			liveRide("tram-s01", decAt(3, 3, 30), 0),   // Thursday 03:30: still Wednesday's fare day, capped
			liveRide("bus-s01", decAt(3, 3, 59), 0),    // 03:59: still Wednesday's
			liveRide("bus-s02", decAt(3, 4, 0), 180),   // 04:00: Thursday's fare day, charged again
			liveRide("tram-s02", decAt(3, 4, 30), 140), // tram after bus within 90 minutes: 2.00 - 0.60
			liveIn("metro-s01", decAt(3, 11, 0)).withFare(450), liveOut("metro-s04", decAt(3, 11, 20), 0),
			liveIn("metro-s04", decAt(3, 12, 0)).withFare(30).split("metro", 30), liveOut("metro-s01", decAt(3, 12, 20), 0), // Thursday's 8.00 reached at the entry
			liveRide("bus-s01", decAt(3, 13, 0), 0),
		}, 1600},
		// Bus to metro within 90 minutes is a transfer: the metro leg
		// after the cut-over belongs to the journey begun on Wednesday and
		// is priced there with its discount (1.80 + 2.50 - 0.60), as the
		// engine prices the three taps together. Its entry is Thursday's
		// maximum fare until the exit makes the leg a transfer: the exit
		// posts Wednesday's +1.90 and Thursday's -4.50.
		{"a transfer after the cut-over: one journey of the day it began in", "card-transfer", []liveStep{
			liveRide("bus-s01", decAt(3, 3, 40), 180),
			liveIn("metro-s01", decAt(3, 4, 5)).withFare(450),
			liveOut("metro-s02", decAt(3, 4, 25), -260),
		}, 370},
		{"week boundary Sunday to Monday: the calendar-week cap resets", "card-week", []liveStep{
			liveIn("metro-s01", decAt(3, 11, 0)).withFare(450), liveOut("metro-s04", decAt(3, 11, 20), 0), liveIn("metro-s04", decAt(3, 12, 0)).withFare(350), liveOut("metro-s01", decAt(3, 12, 20), 0),
			liveIn("metro-s01", decAt(4, 11, 0)).withFare(450), liveOut("metro-s04", decAt(4, 11, 20), 0), liveIn("metro-s04", decAt(4, 12, 0)).withFare(350), liveOut("metro-s01", decAt(4, 12, 20), 0),
			liveIn("metro-s01", decAt(5, 11, 0)).withFare(450), liveOut("metro-s04", decAt(5, 11, 20), 0), liveIn("metro-s04", decAt(5, 12, 0)).withFare(350), liveOut("metro-s01", decAt(5, 12, 20), 0),
			// Sunday: 6.00 left of the week's 30.00; the second entry
			// takes the 1.50 left.
			liveIn("metro-s01", decAt(6, 11, 0)).withFare(450), liveOut("metro-s04", decAt(6, 11, 20), 0), liveIn("metro-s04", decAt(6, 12, 0)).withFare(150), liveOut("metro-s01", decAt(6, 12, 20), 0),
			liveRide("bus-s01", decAt(6, 20, 0), 0),
			liveRide("tram-s01", decAt(7, 3, 30), 0), // Monday 03:30 is Sunday's fare day: the old week, capped
			// Monday from 04:00: a new fare day and a new calendar week.
			liveRide("bus-s02", decAt(7, 5, 30), 180).split("bus", 180),                                 // two hours after the tram: no transfer
			liveIn("metro-s01", decAt(7, 8, 0)).withFare(500), liveOut("metro-s04", decAt(7, 8, 20), 0), // peak
			liveIn("metro-s04", decAt(7, 9, 0)).withFare(120), liveOut("metro-s01", decAt(7, 9, 20), 0), // the daily cap, not the weekly
		}, 3000 + 800},
		{"a late tap under the weekly cap reprices the later days of its week: posted on its event, audited with them", "card-late", []liveStep{
			liveIn("metro-s01", decAt(7, 11, 0)).withFare(450), liveOut("metro-s04", decAt(7, 11, 20), 0), liveIn("metro-s04", decAt(7, 12, 0)).withFare(350), liveOut("metro-s01", decAt(7, 12, 20), 0),
			liveIn("metro-s01", decAt(8, 11, 0)).withFare(450), liveOut("metro-s04", decAt(8, 11, 20), 0), liveIn("metro-s04", decAt(8, 12, 0)).withFare(350), liveOut("metro-s01", decAt(8, 12, 20), 0),
			liveRide("bus-s01", decAt(9, 14, 0), 180),
			liveIn("metro-s01", decAt(10, 11, 0)).withFare(450), liveOut("metro-s04", decAt(10, 11, 20), 0), liveIn("metro-s04", decAt(10, 12, 0)).withFare(350), liveOut("metro-s01", decAt(10, 12, 20), 0),
			// Friday: 25.80 so far, 4.20 left of the week's 30.00.
			liveIn("metro-s01", decAt(11, 11, 0)).withFare(420), liveOut("metro-s04", decAt(11, 11, 20), 0),
			// Wednesday's second bus ride arrives after Friday's taps: 1.80
			// more on Wednesday, 1.80 less on Friday (the week is capped),
			// so its event posts nothing in all but moves 1.80 from the
			// metro to the bus.
			liveRide("bus-s02", decAt(9, 16, 0), 0).split("bus", 180, "metro", -180),
		}, 3000},
		{"daily cap reached on a journey's first leg: the rest of that journey and later ones cost nothing", "card-cap1", []liveStep{
			liveIn("metro-s01", decAt(2, 11, 0)).withFare(450), liveOut("metro-s04", decAt(2, 11, 20), 0),
			// 4.50 + 4.50 is over the cap: 3.50 for the entry until its
			// exit settles the leg at 2.50.
			liveIn("metro-s01", decAt(2, 12, 0)).withFare(350), liveOut("metro-s02", decAt(2, 12, 15), -100),
			liveRide("bus-s01", decAt(2, 14, 0), 100).split("bus", 100), // 1.80, 1.00 left under the cap
			liveIn("metro-s01", decAt(2, 14, 30)).withFare(0),           // the cap is reached: the maximum fare costs nothing
			// The journey is now bus + metro, still charged 1.00, split
			// 180:450 between them: the bus gives back 0.71.
			liveOut("metro-s04", decAt(2, 14, 45), 0).split("bus", -71, "metro", 71),
			liveRide("tram-s01", decAt(2, 16, 30), 0),
			liveIn("metro-s02", decAt(2, 18, 0)).withFare(0), liveOut("metro-s04", decAt(2, 18, 20), 0),
		}, 800},
		{"daily cap reached on a journey's second leg: that leg charged only up to the cap", "card-cap2", []liveStep{
			liveIn("metro-s01", decAt(2, 11, 0)).withFare(450), liveOut("metro-s02", decAt(2, 11, 10), -200),
			liveIn("metro-s02", decAt(2, 12, 0)).withFare(450), liveOut("metro-s01", decAt(2, 12, 10), -200),
			liveRide("bus-s01", decAt(2, 14, 0), 180),
			// The entry alone: 4.50, 1.20 left under the cap.
			liveIn("metro-s01", decAt(2, 14, 30)).withFare(120).split("metro", 120),
			// Its exit makes the journey bus + metro: 1.80 + 4.50 - 0.60
			// = 5.70, 3.00 left for it, so 8.00 still; the 3.00 split
			// 180:450: the bus gives 0.94 back to the metro.
			liveOut("metro-s04", decAt(2, 14, 45), 0).split("bus", -94, "metro", 94),
			liveRide("bus-s02", decAt(2, 16, 30), 0),
		}, 800},
		{"entry charged the maximum fare at once, still after the rider's next entry, settled by its late exit", "card-maxfare", []liveStep{
			liveIn("metro-s01", decAt(2, 11, 0)).withFare(450),                     // the maximum fare from zone 1 off-peak
			liveIn("metro-s02", decAt(2, 13, 0)).withFare(350).split("metro", 350), // the next one's, 3.50 left under the cap
			liveOut("metro-s02", decAt(2, 11, 25), -100).split("metro", -100),      // the 11:00 leg settled at 2.50: 7.00
			liveOut("metro-s04", decAt(2, 13, 20), 0),                              // zone 1 to 3: 4.50, as charged
		}, 700},
		{"entry followed by a bus ride: maximum fare and no transfer, then the transfer once the exit arrives", "card-maxbus", []liveStep{
			liveIn("metro-s01", decAt(2, 11, 0)).withFare(450),
			liveRide("bus-s01", decAt(2, 11, 40), 180).split("bus", 180), // an incomplete leg joins nothing: full bus fare
			// 2.50 + 1.80 - 0.60 = 3.70, split 250:180 (metro 2.15, bus 1.55).
			liveOut("metro-s02", decAt(2, 11, 25), -260).split("bus", -25, "metro", -235),
		}, 370},
	}
	riders := map[string]fare.Amount{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var sum fare.Amount
			for i, s := range tc.steps {
				rec := c.tap(t, tc.card, s.stop, s.dir, s.at)
				rt, _ := c.reg.TerminalKey(s.stop + "-g1")
				own := rt.Operator
				if rec.Fare != s.fare {
					t.Errorf("step %d (%s %s at %s): posted %d, want %d (%v)", i, s.dir, s.stop, s.at, rec.Fare, s.fare, rec.Postings)
				}
				if s.ops != nil && fmtPostings(postingsByOperator(rec, own)) != fmtPostings(s.ops) {
					t.Errorf("step %d (%s %s at %s): postings %s, want %s", i, s.dir, s.stop, s.at, fmtPostings(postingsByOperator(rec, own)), fmtPostings(s.ops))
				}
				sum += rec.Fare
			}
			if got := c.riderCharged(t, tc.card); got != tc.charged || got != sum {
				t.Errorf("rider charged %d, events posted %d, want %d", got, sum, tc.charged)
			}
			riders[tc.card] = tc.charged
		})
	}
	checkPricedBooks(t, c.cl, riders)
}

// withFare sets what a step's event must post.
func (s liveStep) withFare(f fare.Amount) liveStep { s.fare = f; return s }

// checkPricedBooks seals and commits everything clearing holds and checks
// the books of live pricing: every applied event's postings sum to its
// fare; every batch's nets are the sums of its events' postings; the
// operators' balances are the sums of all postings, and together what the
// riders (card -> charged) were charged; the journal balances; the
// independent repricing from the stored events agrees with every rider day.
func checkPricedBooks(t *testing.T, cl *running, riders map[string]fare.Amount) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.Settle(ctx); err != nil {
		t.Fatalf("settle: %v", err)
	}
	st := cl.Store()
	ids, err := st.AppliedEventIDs()
	if err != nil {
		t.Fatal(err)
	}
	byIndex := map[uint64]map[string]fare.Amount{}
	operators := map[string]fare.Amount{}
	var charged fare.Amount
	for _, id := range ids {
		rec, err := st.Event(id)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := fare.Decode(rec.Raw)
		if err != nil {
			t.Fatal(err)
		}
		var sum fare.Amount
		byIndex[rec.ApplyIndex] = map[string]fare.Amount{}
		for _, p := range rec.PostingsOf(sig.Operator) {
			sum += p.Amount
			byIndex[rec.ApplyIndex][p.Operator] += p.Amount
			operators[p.Operator] += p.Amount
		}
		if sum != rec.Fare {
			t.Errorf("event %s (%s seq %d): postings %v sum to %d, fare %d", id, sig.Terminal, sig.Sequence, rec.Postings, sum, rec.Fare)
		}
		charged += rec.Fare
	}
	batches, err := st.Batches(1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) == 0 {
		t.Fatal("no batch sealed")
	}
	var batched uint64
	fromBatches := map[string]fare.Amount{}
	for _, b := range batches {
		want := map[string]fare.Amount{}
		for i := b.StartIndex; i < b.EndIndex; i++ {
			for op, v := range byIndex[i] {
				want[op] += v
			}
		}
		got := map[string]fare.Amount{}
		for _, a := range b.Amounts {
			got[a.Operator] += fare.Amount(a.Net)
			fromBatches[a.Operator] += fare.Amount(a.Net)
		}
		if fmtPostings(nonZero(got)) != fmtPostings(nonZero(want)) {
			t.Errorf("batch %d nets %s, its events' postings %s", b.ID, fmtPostings(got), fmtPostings(want))
		}
		if _, err := st.Commit(b.ID); err != nil {
			t.Errorf("batch %d not committed: %v", b.ID, err)
		}
		batched += b.EventCount
	}
	if batched != uint64(len(ids)) {
		t.Errorf("batches hold %d events, %d applied", batched, len(ids))
	}
	var revenue, riderTotal fare.Amount
	for op, v := range operators {
		b, err := st.Balance(clearing.OperatorAccount(op))
		if err != nil {
			t.Fatal(err)
		}
		if b.Net() != v || fromBatches[op] != v {
			t.Errorf("operator %s: balance %d, postings %d, batch nets %d", op, b.Net(), v, fromBatches[op])
		}
		revenue += v
	}
	for card, want := range riders {
		b, err := st.Balance(cl.RiderAccount(fare.Card, card))
		if err != nil {
			t.Fatal(err)
		}
		if -b.Net() != want {
			t.Errorf("rider %s charged %d, want %d", card, -b.Net(), want)
		}
		riderTotal += want
	}
	if revenue != charged || revenue != riderTotal {
		t.Errorf("operators' revenue %d, events charged %d, riders charged %d", revenue, charged, riderTotal)
	}
	j, err := st.AuditJournal()
	if err != nil || j.Imbalance != 0 || len(j.Mismatches) != 0 {
		t.Errorf("journal: %+v, %v", j, err)
	}
	fa, err := cl.AuditFares()
	if err != nil {
		t.Fatal(err)
	}
	if fa == nil || fa.Count != 0 || fa.Posted != charged || fa.Recomputed != charged {
		t.Errorf("fare audit: %+v, want no mismatch and %d posted and recomputed", fa, charged)
	}
	// Clearing's first start recorded that it priced everything under
	// this build's rules.
	if fa != nil && (fa.RulesSince == nil || *fa.RulesSince != 0 || fa.RulesVersion != journeys.RulesVersion || fa.EarlierRulesCount != 0) {
		t.Errorf("fare audit: pricing rules %d since %v, %d days under earlier rules; want rules %d since apply index 0, none earlier",
			fa.RulesVersion, fa.RulesSince, fa.EarlierRulesCount, journeys.RulesVersion)
	}
}

func nonZero(m map[string]fare.Amount) map[string]fare.Amount {
	out := map[string]fare.Amount{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// TestLiveJourneyAcrossCutOver: a metro journey entered at 03:50 and
// exited at 04:10 is one journey of the fare day it starts in (the fare
// engine counts a journey "in the window in which its first leg starts"):
// it must cost its fare, 2.50 (zone 1 to zone 1, off-peak), charged to
// Wednesday's fare day, not the maximum fare for an exit without entry on
// Thursday with the entry left waiting for an exit in Wednesday's day;
// whatever order the taps arrive in. In order, the entry is charged the
// maximum fare from zone 1 off-peak (4.50) and the exit, booked in
// Wednesday's day, settles it (-2.00). Exit first, the exit is booked on
// Thursday as an exit without entry (4.50, the dearest metro fare
// off-peak: its entry was within 4 hours before, off-peak); the entry then
// moves it to Wednesday: Wednesday +2.50, Thursday -4.50, one posting of
// -2.00.
func TestLiveJourneyAcrossCutOver(t *testing.T) {
	c := startPricedCity(t)
	type step struct {
		stop string
		dir  fare.Direction
		at   time.Time
		fare fare.Amount
	}
	for _, tc := range []struct {
		card  string
		steps []step
	}{
		{"card-night", []step{{"metro-s01", fare.Entry, decAt(3, 3, 50), 450}, {"metro-s02", fare.Exit, decAt(3, 4, 10), -200}}},
		{"card-night-exit-first", []step{{"metro-s02", fare.Exit, decAt(3, 4, 10), 450}, {"metro-s01", fare.Entry, decAt(3, 3, 50), -200}}},
	} {
		var posted []fare.Amount
		for _, s := range tc.steps {
			rec := c.tap(t, tc.card, s.stop, s.dir, s.at)
			posted = append(posted, rec.Fare)
			if rec.Fare != s.fare {
				t.Errorf("%s: %s at %s posted %d, want %d (%v)", tc.card, s.dir, s.at, rec.Fare, s.fare, rec.Postings)
			}
		}
		if got := c.riderCharged(t, tc.card); got != 250 {
			t.Errorf("%s charged %d for a 2.50 journey across the 04:00 cut-over (events posted %v)", tc.card, got, posted)
		}
	}
	checkPricedBooks(t, c.cl, map[string]fare.Amount{"card-night": 250, "card-night-exit-first": 250})
}

// TestGateClocksMinutesApart: two gates whose clocks are minutes apart
// (one 3 minutes fast, one a minute slow) stamp a short ride's entry and
// exit on clearing's clock, so the ride costs what the same ride between
// gates with right clocks costs. Before, the exit was dated four minutes
// before the entry, and the rider was charged the maximum fare twice, an
// exit without entry and an entry without exit (an outside test).
func TestGateClocksMinutesApart(t *testing.T) {
	skew := map[string]time.Duration{"metro-s01-g1": 3 * time.Minute, "metro-s02-g1": -time.Minute}
	var s02Stepped atomic.Bool // metro-s02-g1's clock set right
	c := startPricedCityWith(t, func(id string, cfg *terminal.Config) {
		if d, ok := skew[id]; ok {
			cfg.Now = func() time.Time {
				if id == "metro-s02-g1" && s02Stepped.Load() {
					return time.Now()
				}
				return time.Now().Add(d)
			}
		}
	})
	for id, d := range skew {
		g := c.terms[id]
		waitFor(t, id+" following clearing's clock", 10*time.Second, func() bool { return g.ClockCorrection() != 0 })
		if corr := g.ClockCorrection(); (corr - d).Abs() > time.Second {
			t.Fatalf("%s, %s off, corrects its taps by %s", id, d, corr)
		}
	}
	if corr := c.terms["metro-s03-g1"].ClockCorrection(); corr != 0 {
		t.Errorf("a gate with the right clock corrects its taps by %s", corr)
	}
	// The ride takes about a second by the wall; the gates time the taps.
	from := time.Now()
	entry := tapAndWait(t, c.terms["metro-s01-g1"], "card-skew", fare.Entry, time.Time{})
	exit := tapAndWait(t, c.terms["metro-s02-g1"], "card-skew", fare.Exit, time.Time{})
	to := time.Now()
	for _, ev := range []fare.Event{entry, exit} {
		if ev.DeviceTime.Before(from.Add(-time.Second)) || ev.DeviceTime.After(to.Add(time.Second)) {
			t.Errorf("the %s at %s is dated %s, want between %s and %s (clearing's clock)", ev.Direction, ev.Terminal, ev.DeviceTime, from, to)
		}
	}
	if !entry.DeviceTime.Before(exit.DeviceTime) {
		t.Fatalf("the exit (%s) is dated before the entry (%s)", exit.DeviceTime, entry.DeviceTime)
	}
	// The same ride between gates with right clocks.
	c.tap(t, "card-right", "metro-s01", fare.Entry, entry.DeviceTime)
	c.tap(t, "card-right", "metro-s02", fare.Exit, exit.DeviceTime)
	want := c.riderCharged(t, "card-right")
	if got := c.riderCharged(t, "card-skew"); want <= 0 || got != want {
		t.Fatalf("a ride between gates minutes apart charged %d, the same ride between right clocks %d", got, want)
	}

	// The slow gate's clock is set right (NTP steps it): its next taps,
	// before clearing answers it again, are still on clearing's clock, not
	// its new time less the old correction (an outside recheck saw such a
	// ride charged two maximum fares).
	s02Stepped.Store(true)
	from = time.Now()
	entry = tapAndWait(t, c.terms["metro-s02-g1"], "card-stepped", fare.Entry, time.Time{})
	exit = tapAndWait(t, c.terms["metro-s03-g1"], "card-stepped", fare.Exit, time.Time{})
	to = time.Now()
	for _, ev := range []fare.Event{entry, exit} {
		if ev.DeviceTime.Before(from.Add(-time.Second)) || ev.DeviceTime.After(to.Add(time.Second)) {
			t.Errorf("after the step, the %s at %s is dated %s, want between %s and %s", ev.Direction, ev.Terminal, ev.DeviceTime, from, to)
		}
	}
	c.tap(t, "card-right-2", "metro-s02", fare.Entry, entry.DeviceTime)
	c.tap(t, "card-right-2", "metro-s03", fare.Exit, exit.DeviceTime)
	want = c.riderCharged(t, "card-right-2")
	if got := c.riderCharged(t, "card-stepped"); want <= 0 || got != want {
		t.Fatalf("a ride from a gate whose clock was just set right charged %d, the same ride between right clocks %d", got, want)
	}
	// Its next answer shows its clock right: it stamps its own again.
	waitFor(t, "metro-s02-g1 back on its own clock", 10*time.Second, func() bool { return c.terms["metro-s02-g1"].ClockCorrection().Abs() < time.Second })
}

// TestStationGateLegGoesToItsOperator: a leg taken at a gate registered
// with its network and no route is carried, and paid, by the gate's
// operator: alone, and as part of a journey with another operator's leg
// (an outside review found every such leg credited to the feed's first
// agency, metro, whichever operator's gate took it).
func TestStationGateLegGoesToItsOperator(t *testing.T) {
	c := startPricedCity(t)
	rec := c.tap(t, "card-st", "tram-s03", fare.Validate, decAt(2, 10, 0))
	if got := postingsByOperator(rec, "tram"); rec.Fare <= 0 || len(got) != 1 || got["tram"] != rec.Fare {
		t.Fatalf("tram validation at a network-only gate: fare %d posted %s, want all to tram", rec.Fare, fmtPostings(got))
	}
	// A bus leg, then the tram gate within the transfer window: both
	// operators share the journey, and the rider's charge is all of it.
	c.tap(t, "card-st2", "bus-s01", fare.Validate, decAt(2, 11, 0))
	c.tap(t, "card-st2", "tram-s03", fare.Validate, decAt(2, 11, 20))
	var tram, metro fare.Amount
	for _, op := range []string{"tram", "metro"} {
		b, err := c.cl.Store().Balance(clearing.OperatorAccount(op))
		if err != nil && !errors.Is(err, clearing.ErrNotFound) {
			t.Fatal(err)
		}
		if op == "tram" {
			tram = b.Net()
		} else {
			metro = b.Net()
		}
	}
	if metro != 0 || tram <= rec.Fare {
		t.Fatalf("operator nets: tram %d, metro %d; want metro, whose gates took nothing, 0 and tram more than its first fare %d", tram, metro, rec.Fare)
	}
}
