package journeys

import (
	"slices"
	"testing"

	"github.com/faregate/faregate/clearing/fares"
)

// TestExplain: a booked day explained gives what it booked, journey by
// journey, with each leg's taps, the transfer, the cap and the pending
// entry, and changes nothing; a day explained against other week charges
// says it no longer matches.
func TestExplain(t *testing.T) {
	b := testBook(t)
	busTap := validate("bus", "bus-s01", at(2, 11, 0))
	in1, out1 := metroIn("metro-s01", at(2, 11, 30)), metroOut("metro-s02", at(2, 11, 45))
	exitOnly := metroOut("metro-s04", at(2, 13, 0))
	// Friday: the week's earlier days charged 29.00 of the 30.00 weekly cap.
	friBus, friIn, friOut := validate("bus", "bus-s01", at(4, 11, 0)), metroIn("metro-s01", at(4, 11, 30)), metroOut("metro-s02", at(4, 11, 45))
	week := []WeekDay{{fares.DateOf(2026, 11, 30), 800}, {fares.DateOf(2026, 12, 1), 800}, {fares.DateOf(2026, 12, 2), 800}, {fares.DateOf(2026, 12, 3), 500}}
	tests := []struct {
		name      string
		taps      []Tap
		earlier   []WeekDay
		explainAt []WeekDay // earlier days when explaining (default: earlier)
		journeys  int       // -1: not checked (how a waiting entry is priced is the Book's rule)
		legs      [][]LegTaps
		transfers []int // per journey
		cappedBy  []string
		pending   *Tap
		matches   bool
	}{
		{
			name: "bus to metro: two legs, one transfer, both operators", taps: []Tap{busTap, in1, out1},
			journeys: 1, legs: [][]LegTaps{{{Entry: &busTap}, {Entry: &in1, Exit: &out1}}}, transfers: []int{1}, cappedBy: []string{""}, matches: true,
		},
		{
			name: "an exit without entry and an entry waiting for its exit", taps: []Tap{exitOnly, metroIn("metro-s01", at(2, 14, 0))},
			journeys: -1, legs: [][]LegTaps{{{Exit: &exitOnly}}}, transfers: []int{0}, cappedBy: []string{""}, matches: true,
			pending: &Tap{Stop: "metro-s01", Kind: fares.TapIn},
		},
		{
			name: "weekly cap reached", taps: []Tap{friBus, friIn, friOut},
			earlier: week, journeys: 1, legs: [][]LegTaps{{{Entry: &friBus}, {Entry: &friIn, Exit: &friOut}}},
			transfers: []int{1}, cappedBy: []string{"weekly-adult"}, matches: true,
		},
		{
			name: "week changed since the day was priced", taps: []Tap{friBus, friIn, friOut},
			explainAt: week, journeys: 1, legs: [][]LegTaps{{{Entry: &friBus}, {Entry: &friIn, Exit: &friOut}}},
			transfers: []int{1}, cappedBy: []string{"weekly-adult"}, matches: false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDay(b, tc.taps[0].Time, "adult")
			for _, tap := range tc.taps {
				if _, _, err := b.Add(d, tap, tc.earlier); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := d.MarshalBinary()
			earlier := tc.earlier
			if tc.explainAt != nil {
				earlier = tc.explainAt
			}
			ex, err := b.Explain(d, earlier)
			if err != nil {
				t.Fatal(err)
			}
			if after, _ := d.MarshalBinary(); !slices.Equal(before, after) {
				t.Fatal("Explain changed the day")
			}
			if len(ex.Journeys) != ex.Summary.Journeys || (tc.journeys >= 0 && len(ex.Journeys) != tc.journeys) || len(ex.Journeys) < len(tc.legs) {
				t.Fatalf("%d journeys (summary %+v), want %d", len(ex.Journeys), ex.Summary, tc.journeys)
			}
			if ex.Matches != tc.matches {
				t.Errorf("matches %v, want %v: explained %d %v, booked %d %v", ex.Matches, tc.matches, ex.Charged, ex.Booked, d.Charged, d.Booked)
			}
			if tc.matches && (ex.Charged != d.Charged || !slices.Equal(ex.Booked, d.Booked)) {
				t.Errorf("explained %d %v, booked %d %v", ex.Charged, ex.Booked, d.Charged, d.Booked)
			}
			if ex.FeedVersion != "city-test" {
				t.Errorf("feed version %q", ex.FeedVersion)
			}
			for i, j := range ex.Journeys {
				var shares int64
				for _, s := range j.Shares {
					shares += s.Amount.Amount
				}
				if shares != j.Charge.Charged.Amount {
					t.Errorf("journey %d: shares %v sum to %d, charged %d", i, j.Shares, shares, j.Charge.Charged.Amount)
				}
				if i >= len(tc.legs) {
					// A waiting entry priced as an incomplete journey.
					if tc.pending == nil || len(j.Legs) != 1 || !sameTap(j.Legs[0].Entry, ex.Pending) || !j.Journey.Legs[0].Incomplete {
						t.Errorf("journey %d: %+v, want none or the waiting entry", i, j)
					}
					continue
				}
				if len(j.Legs) != len(j.Journey.Legs) || len(j.Legs) != len(tc.legs[i]) {
					t.Fatalf("journey %d: %d leg taps for %d legs, want %d", i, len(j.Legs), len(j.Journey.Legs), len(tc.legs[i]))
				}
				for k, lt := range j.Legs {
					want := tc.legs[i][k]
					if !sameTap(lt.Entry, want.Entry) || !sameTap(lt.Exit, want.Exit) {
						t.Errorf("journey %d leg %d: taps %+v, want %+v", i, k, lt, want)
					}
				}
				if len(j.Fare.Transfers) != tc.transfers[i] {
					t.Errorf("journey %d: transfers %+v, want %d", i, j.Fare.Transfers, tc.transfers[i])
				}
				if j.Charge.CappedBy != tc.cappedBy[i] {
					t.Errorf("journey %d: capped by %q, want %q", i, j.Charge.CappedBy, tc.cappedBy[i])
				}
			}
			switch {
			case tc.pending == nil && ex.Pending != nil:
				t.Errorf("pending %+v, want none", ex.Pending)
			case tc.pending != nil && (ex.Pending == nil || ex.Pending.Stop != tc.pending.Stop || ex.Pending.Kind != tc.pending.Kind):
				t.Errorf("pending %+v, want the entry at %s", ex.Pending, tc.pending.Stop)
			}
		})
	}
}

func sameTap(got, want *Tap) bool {
	if got == nil || want == nil {
		return got == want
	}
	return got.Event == want.Event
}
