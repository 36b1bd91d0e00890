package fares_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
)

func TestBuildJourneysAndSettle(t *testing.T) {
	f := mustFeed(t, nil)
	type want struct {
		legs       int
		total      string
		incomplete bool
	}
	tests := []struct {
		name string
		taps []fares.Tap
		want []want
	}{
		{"gate in and out", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapOut, Time: at(10, 20), StopID: "S3", NetworkID: "metro"},
		}, []want{{1, "3.00", false}}},
		{"taps out of order are sorted", []fares.Tap{
			{Kind: fares.TapOut, Time: at(10, 20), StopID: "S3", NetworkID: "metro"},
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
		}, []want{{1, "3.00", false}}},
		// Maximum fare from S1 at 10:00: metro_1z 2.00 or metro_2z 3.00 (the
		// peak rule's timeframe does not match): 3.00.
		{"tap-in without tap-out: maximum fare", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapIn, Time: at(12, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapOut, Time: at(12, 10), StopID: "S2", NetworkID: "metro"},
		}, []want{{1, "3.00", true}, {1, "2.00", false}}},
		{"maximum fare at peak", []fares.Tap{
			{Kind: fares.TapIn, Time: at(8, 0), StopID: "S1", NetworkID: "metro"},
		}, []want{{1, "4.00", true}}},
		// The exit's maximum fare: its entry, after 11:00 here, may have
		// been at NY, five hours west, in its 07:00-09:00 peak
		// (TestMaximumFareWindow).
		{"tap-out too late: maximum fare twice", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapOut, Time: at(15, 0), StopID: "S2", NetworkID: "metro"},
		}, []want{{1, "3.00", true}, {1, "4.00", true}}},
		// A tap-out on another network ends no leg begun on this one: the
		// entry is a tap-in without tap-out, the exit one without a tap-in,
		// each at its network's maximum fare (an outside test rode free
		// tapping in on a cheap line and out at the airport's gate: the
		// leg no rule priced charged nothing).
		{"tap-out on another network: two incomplete legs", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapOut, Time: at(10, 20), StopID: "S3", RouteID: "T1"},
		}, []want{{1, "3.00", true}, {1, "0.90", true}}},
		{"tap-out on another network named by the gate", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", RouteID: "M1"},
			{Kind: fares.TapOut, Time: at(10, 20), StopID: "S3", NetworkID: "tram"},
		}, []want{{1, "3.00", true}, {1, "0.90", true}}},
		// The same network, one gate naming it, the other a route in it.
		{"tap-out on the same network by its route", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapOut, Time: at(10, 20), StopID: "S3", RouteID: "M1"},
		}, []want{{1, "3.00", false}}},
		{"bus validations within the transfer window", []fares.Tap{
			{Kind: fares.Validation, Time: at(10, 0), RouteID: "B1"},
			{Kind: fares.Validation, Time: at(10, 30), RouteID: "B2"},
		}, []want{{2, "2.00", false}}},
		{"bus validations far apart", []fares.Tap{
			{Kind: fares.Validation, Time: at(10, 0), RouteID: "B1"},
			{Kind: fares.Validation, Time: at(14, 0), RouteID: "B2"},
		}, []want{{1, "2.00", false}, {1, "2.00", false}}},
		// Within the transfer window but joined by no transfer (the
		// metro-to-tram transfer's product is sold to seniors only): two
		// fares, each its own journey.
		{"metro then a tram no transfer joins", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapOut, Time: at(10, 20), StopID: "S3", NetworkID: "metro"},
			{Kind: fares.Validation, Time: at(10, 30), RouteID: "T1"},
		}, []want{{1, "3.00", false}, {1, "0.90", false}}},
		// A leg the feed has no fare for (a metro validation matches no
		// zone rule) is unknown on its own: the bus ride before it, which
		// no transfer joins to it, keeps its fare.
		{"a bus ride then a leg with no fare", []fares.Tap{
			{Kind: fares.Validation, Time: at(10, 0), RouteID: "B1"},
			{Kind: fares.Validation, Time: at(10, 30), StopID: "NY", NetworkID: "metro"},
		}, []want{{1, "2.00", false}, {1, "unknown", false}}},
		{"metro then bus across agencies", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapOut, Time: at(10, 20), StopID: "S3", NetworkID: "metro"},
			{Kind: fares.Validation, Time: at(10, 30), RouteID: "B1"},
		}, []want{{2, "3.50", false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.Settle(tc.taps, "", "card", fares.TapPolicy{}, f.NewCapper())
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d journeys, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				s := got[i]
				total := "unknown"
				if s.Fare.Known {
					total = fares.FormatAmount(s.Fare.Total.Amount, "EUR")
				}
				if len(s.Journey.Legs) != w.legs || total != w.total || s.Journey.Legs[0].Incomplete != w.incomplete {
					t.Errorf("journey %d: %d legs, total %s, incomplete %v; want %+v", i, len(s.Journey.Legs), total, s.Journey.Legs[0].Incomplete, w)
				}
				var sum int64
				for _, sh := range s.Shares {
					sum += sh.Amount.Amount
				}
				if sum != s.Charge.Charged.Amount {
					t.Errorf("journey %d: shares %v sum to %d, want %d", i, s.Shares, sum, s.Charge.Charged.Amount)
				}
			}
		})
	}
}

// TestExitOnAnotherNetwork: which tap-out ends the open tap-in's leg. One
// on a network no fare_leg_join_rules.txt chain reaches from the tap-in's
// does not (a rider tapping in on a cheap line and out at the airport
// line's gate rode a leg no rule prices, free); one the join rules reach
// does (a gated system whose riders change networks behind the gates), and
// so does one on the same network by another route, or whose network the
// feed does not say (routes and agencies split no leg: fare_leg_rules.txt
// matches neither, an outside review of the first version of the check).
func TestExitOnAnotherNetwork(t *testing.T) {
	plain := mustFeed(t, nil)
	joined := mustFeed(t, map[string]string{"fare_leg_join_rules.txt": "from_network_id,to_network_id\nmetro,bus\nbus,tram"})
	in := fares.Tap{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"}
	for _, tc := range []struct {
		name string
		feed *fares.Feed
		out  fares.Tap
		legs int // journeys' legs: 1 one leg, 2 two incomplete ones
	}{
		{"another network, no join", plain, fares.Tap{StopID: "S3", RouteID: "T1"}, 2},
		{"another network named by the gate", plain, fares.Tap{StopID: "S3", NetworkID: "tram"}, 2},
		{"the same network by its route", plain, fares.Tap{StopID: "S3", RouteID: "M1"}, 1},
		{"another agency, no network", plain, fares.Tap{StopID: "S3", AgencyID: "BUS"}, 1},
		{"a route the feed lacks", plain, fares.Tap{StopID: "S3", RouteID: "X9"}, 1},
		{"a network joined to it", joined, fares.Tap{StopID: "S3", NetworkID: "bus"}, 1},
		{"a network joined through another", joined, fares.Tap{StopID: "S3", RouteID: "T1"}, 1},
		{"a join the other way only", mustFeed(t, map[string]string{"fare_leg_join_rules.txt": "from_network_id,to_network_id\ntram,metro"}), fares.Tap{StopID: "S3", RouteID: "T1"}, 2},
	} {
		out := tc.out
		out.Kind, out.Time = fares.TapOut, at(10, 20)
		js := tc.feed.BuildJourneys([]fares.Tap{in, out}, "", "card", fares.TapPolicy{})
		got := 0
		for _, j := range js {
			for _, l := range j.Legs {
				if l.Incomplete {
					got = 2
				} else if got == 0 {
					got = 1
				}
			}
		}
		if got != tc.legs || (tc.legs == 1 && len(js) != 1) || (tc.legs == 2 && len(js) != 2) {
			t.Errorf("%s: journeys %+v, want %d", tc.name, js, tc.legs)
		}
	}
}

// TestUnknownFareAtMaximum: a journey no rule prices is held for review
// and charged leg by leg: a leg at its entry's maximum fare, as if its
// exit had never come, so that an exit at a stop the rules of its entry's
// network never reach credits back nothing; where the feed has no
// maximum fare either, it is charged nothing. The known legs beside it
// keep their own fares. Legs a join rule makes one fare leg that no rule
// prices (legs of two networks match only a rule naming none) are each
// charged their own fare alone, and a leg with no fare at all adds
// nothing rather than the other legs' fares being lost with it (an
// outside review: the last tap-out made such a ride free).
func TestUnknownFareAtMaximum(t *testing.T) {
	f := mustFeed(t, map[string]string{"stops.txt": baseFeed["stops.txt"] + "\nS4,Four,,,"}) // in no area
	in := func(stop string, tm time.Time) fares.Tap {
		return fares.Tap{Kind: fares.TapIn, Time: tm, StopID: stop, RouteID: "M1"}
	}
	out := func(stop string, tm time.Time) fares.Tap {
		return fares.Tap{Kind: fares.TapOut, Time: tm, StopID: stop, RouteID: "M1"}
	}
	bus := fares.Tap{Kind: fares.Validation, Time: at(10, 30), StopID: "S2", RouteID: "B1"}
	joinRule := "from_network_id,to_network_id,from_stop_id,to_stop_id\nmetro,tram,S2,S1"
	peakTram := strings.NewReplacer("tram,tram,,,,tram_a,0", "tram,tram,,,peak,tram_a,0", "tram,tram,,,,tram_b,0", "tram,tram,,,peak,tram_b,0").
		Replace(baseFeed["fare_leg_rules.txt"])
	joined := []fares.Tap{
		{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro", AgencyID: "MET"},
		{Kind: fares.TapOut, Time: at(10, 10), StopID: "S2", NetworkID: "metro", AgencyID: "MET"},
		{Kind: fares.TapIn, Time: at(10, 15), StopID: "S1", NetworkID: "tram", AgencyID: "MET"},
		{Kind: fares.TapOut, Time: at(10, 25), StopID: "S3", NetworkID: "tram", AgencyID: "MET"},
	}
	type want struct {
		charged  int64
		fallback bool
		agency   string
	}
	for _, tc := range []struct {
		name string
		feed *fares.Feed
		taps []fares.Tap
		want []want
	}{
		// Metro from Z1 to no area: no rule; from S1 at 10:00 the dearest
		// product is the two-zone ticket. The bus after it is a fare of its
		// own: no transfer is priced through an unknown fare.
		{"a ride to a stop no rule reaches", f, []fares.Tap{in("S1", at(10, 0)), out("S4", at(10, 20)), bus},
			[]want{{eur("3.00"), true, "MET"}, {eur("2.00"), false, "BUS"}}},
		// From Z2 off-peak no rule matches even the entry alone.
		{"no maximum fare either", f, []fares.Tap{in("S3", at(10, 0)), out("S1", at(10, 20))}, []want{{0, false, ""}}},
		{"a known ride", f, []fares.Tap{in("S1", at(10, 0)), out("S3", at(10, 20))}, []want{{eur("3.00"), false, "MET"}}},
		// Metro Z1-Z1 alone 2.00, the tram alone 0.90 (the cheaper of its
		// two products).
		{"joined legs no rule prices", mustFeed(t, map[string]string{"fare_leg_join_rules.txt": joinRule}), joined,
			[]want{{eur("2.90"), true, "MET"}}},
		{"joined legs, the tram with no fare off-peak", mustFeed(t, map[string]string{"fare_leg_join_rules.txt": joinRule, "fare_leg_rules.txt": peakTram}), joined,
			[]want{{eur("2.00"), true, "MET"}}},
	} {
		for _, memo := range []*fares.JourneyMemo{nil, fares.NewJourneyMemo()} {
			ss, err := tc.feed.SettleMemo(tc.taps, "", "card", fares.TapPolicy{}, tc.feed.NewCapper(), memo)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if len(ss) != len(tc.want) {
				t.Fatalf("%s: %d settlements, want %d: %+v", tc.name, len(ss), len(tc.want), ss)
			}
			for i, w := range tc.want {
				s := ss[i]
				var paid int64
				for _, sh := range s.Shares {
					paid += sh.Amount.Amount
				}
				if s.Charge.Charged.Amount != w.charged || s.Fallback != w.fallback || paid != w.charged ||
					(w.agency != "" && (len(s.Shares) != 1 || s.Shares[0].AgencyID != w.agency)) {
					t.Errorf("%s (memo %v): journey %d charged %v (fallback %v), shares %+v; want %d (%v) to %s",
						tc.name, memo != nil, i, s.Charge.Charged, s.Fallback, s.Shares, w.charged, w.fallback, w.agency)
				}
				if s.Fallback && s.Fare.Known {
					t.Errorf("%s: journey %d charged by the fallback with a known fare %+v", tc.name, i, s.Fare)
				}
			}
		}
	}
}

func TestApportionRule(t *testing.T) {
	f := mustFeed(t, nil)
	// Metro Z1-Z2 alone 3.00 (MET), bus alone 2.00 (BUS); the journey costs
	// 3.00 + 0.50 upgrade = 3.50, split 3:2 = 2.10 / 1.40.
	j := fares.Journey{Legs: []fares.Leg{leg("M1", "S1", "S3", at(10, 0), 20), leg("B1", "", "", at(10, 30), 10)}, FareMedia: "card"}
	fare, err := f.Price(j)
	if err != nil || !fare.Known {
		t.Fatalf("price: %v %+v", err, fare)
	}
	shares, err := f.Apportion(j, fare.Total)
	if err != nil {
		t.Fatal(err)
	}
	if len(shares) != 2 || shares[0].AgencyID != "MET" || shares[0].Amount.Amount != 210 || shares[1].AgencyID != "BUS" || shares[1].Amount.Amount != 140 {
		t.Errorf("shares %+v, want MET 2.10, BUS 1.40", shares)
	}
	// A station gate knows the network, not the route: its leg goes to the
	// agency of the gate that took it, not to the feed's first agency.
	byNetwork := leg("", "", "", at(10, 30), 10)
	byNetwork.NetworkID, byNetwork.AgencyID = "bus", "BUS"
	jn := fares.Journey{Legs: []fares.Leg{j.Legs[0], byNetwork}, FareMedia: "card"}
	if fn, err := f.Price(jn); err != nil || fn.Total != fare.Total {
		t.Fatalf("the bus leg by network: %+v %v, want the same fare %v", fn, err, fare.Total)
	}
	if shares, err := f.Apportion(jn, fare.Total); err != nil || len(shares) != 2 || shares[1].AgencyID != "BUS" || shares[1].Amount.Amount != 140 {
		t.Errorf("the bus leg by network, taken by BUS's gate: shares %+v %v, want MET 2.10, BUS 1.40", shares, err)
	}
	byNetwork.AgencyID = "" // nobody said who carried it: the first agency
	jn.Legs[1] = byNetwork
	if shares, err := f.Apportion(jn, fare.Total); err != nil || len(shares) != 1 || shares[0].AgencyID != "MET" {
		t.Errorf("a leg with neither route nor agency: %+v %v, want all to the first agency", shares, err)
	}
	byNetwork.AgencyID = "FERRY"
	jn.Legs[1] = byNetwork
	if _, err := f.Price(jn); !errors.Is(err, fares.ErrUnknownAgency) {
		t.Errorf("an agency the feed lacks: %v, want ErrUnknownAgency", err)
	}
	// 1.00 split 1:1:1 gives 34/33/33: the leftover unit goes to the first.
	if got := fares.SplitAmount(100, []int64{1, 1, 1}); got[0] != 34 || got[1] != 33 || got[2] != 33 {
		t.Errorf("SplitAmount(100, 1:1:1) = %v", got)
	}
	_ = time.Second
}

// TestSettleIntoDoesNotAllocate: repricing a passenger's day whose
// journeys the memo holds, in a reused Scratch and Capper, allocates
// nothing (the fare book does this on every tap).
func TestSettleIntoDoesNotAllocate(t *testing.T) {
	f := mustFeed(t, map[string]string{"fare_caps.txt": capsFile})
	taps := []fares.Tap{
		{Kind: fares.Validation, Time: at(8, 0), StopID: "S1", RouteID: "B1"},
		{Kind: fares.TapIn, Time: at(8, 20), StopID: "S1", RouteID: "M1"},
		{Kind: fares.TapOut, Time: at(8, 40), StopID: "S3", RouteID: "M1"},
		{Kind: fares.TapIn, Time: at(17, 0), StopID: "S3", RouteID: "M1"},
		{Kind: fares.TapOut, Time: at(17, 30), StopID: "S1", RouteID: "M1"},
		{Kind: fares.TapIn, Time: at(19, 0), StopID: "S2", RouteID: "M1"},
	}
	var sc fares.Scratch
	memo, capper := fares.NewJourneyMemo(), f.NewCapper()
	settle := func() []fares.Settlement {
		capper.Reset()
		s, err := f.SettleInto(&sc, taps, "adult", "card", fares.TapPolicy{}, capper, memo)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	want, err := f.SettleMemo(taps, "adult", "card", fares.TapPolicy{}, f.NewCapper(), fares.NewJourneyMemo())
	if err != nil {
		t.Fatal(err)
	}
	if got := settle(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SettleInto %+v, SettleMemo %+v", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { settle() }); n != 0 {
		t.Errorf("%v allocations a repricing, want 0", n)
	}
}

// TestJourneyOf: JourneyOf puts each tap in the journey BuildJourneys
// makes of it (an entry and its exit in one, an incomplete leg in its own,
// validations apart by more than the transfer gap in different ones), and
// refuses taps out of time order.
func TestJourneyOf(t *testing.T) {
	f := mustFeed(t, nil)
	tests := []struct {
		name string
		taps []fares.Tap
		want []int
	}{
		{"in and out", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapOut, Time: at(10, 20), StopID: "S3", NetworkID: "metro"},
		}, []int{0, 0}},
		{"an entry without exit, then a leg", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapIn, Time: at(12, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapOut, Time: at(12, 10), StopID: "S2", NetworkID: "metro"},
		}, []int{0, 1, 1}},
		{"metro then bus", []fares.Tap{
			{Kind: fares.TapIn, Time: at(10, 0), StopID: "S1", NetworkID: "metro"},
			{Kind: fares.TapOut, Time: at(10, 20), StopID: "S3", NetworkID: "metro"},
			{Kind: fares.Validation, Time: at(10, 30), RouteID: "B1"},
		}, []int{0, 0, 0}},
		{"bus validations far apart, an exit without entry", []fares.Tap{
			{Kind: fares.Validation, Time: at(10, 0), RouteID: "B1"},
			{Kind: fares.Validation, Time: at(14, 0), RouteID: "B2"},
			{Kind: fares.TapOut, Time: at(14, 10), StopID: "S2", NetworkID: "metro"},
			{Kind: fares.TapIn, Time: at(15, 0), StopID: "S1", NetworkID: "metro"},
		}, []int{0, 1, 2, 3}},
	}
	for _, tc := range tests {
		got := f.JourneyOf(tc.taps, fares.TapPolicy{})
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		if n := len(f.BuildJourneys(tc.taps, "", "", fares.TapPolicy{})); n != tc.want[len(tc.want)-1]+1 {
			t.Errorf("%s: BuildJourneys makes %d journeys, JourneyOf %d", tc.name, n, tc.want[len(tc.want)-1]+1)
		}
	}
	late := []fares.Tap{{Kind: fares.Validation, Time: at(11, 0), RouteID: "B1"}, {Kind: fares.Validation, Time: at(10, 0), RouteID: "B1"}}
	if got := f.JourneyOf(late, fares.TapPolicy{}); got != nil {
		t.Errorf("taps out of order: %v, want nil", got)
	}
}
