package journeys

import (
	"slices"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// Explanation is a fare day as the fare engine prices it now: its journeys
// with the taps each leg was built from, the products, transfers, caps and
// shares of each, and what the day books in all. It is what the settlement
// API shows a rider's day with; computing it changes nothing.
type Explanation struct {
	// Journeys are the day's priced journeys in time order.
	Journeys []ExplainedJourney
	// Pending is the entry still waiting for its exit (Summary.Pending),
	// nil when there is none. How it is priced meanwhile is the Book's
	// rule: it may also be an incomplete journey in Journeys.
	Pending *Tap
	Summary Summary
	// Charged and Booked are what the repricing books for the day: its
	// total and the split by agency (sorted by agency, zero entries
	// dropped), as Add would book them.
	Charged int64
	Booked  []Booking
	// Matches reports whether Charged and Booked are what the day has
	// booked. They differ when the day was priced with another feed version
	// (Day.FeedVersion, FeedVersion) or when an earlier day of the week was
	// repriced after it (the weekly caps it was priced with changed).
	Matches bool
	// FeedVersion is the version of the feed the explanation was computed
	// with (the Book's).
	FeedVersion string
}

// ExplainedJourney is one priced journey of a fare day: the engine's
// settlement (legs, fare legs with their products, transfers, the uncapped
// fare, the capped charge and the shares by agency) and, for each of its
// legs, the taps it came from.
type ExplainedJourney struct {
	fares.Settlement
	// Legs has one entry per leg of Settlement.Journey.Legs, in order.
	Legs []LegTaps
}

// LegTaps are the taps one leg was built from: Entry is the tap-in or
// validation that began it, Exit the tap-out that ended it. An incomplete
// leg lacks one of them; a validation has no Exit.
type LegTaps struct {
	Entry, Exit *Tap
}

// Explain prices d as Add and Close do, from its taps and the week's
// earlier days (weekly caps), without booking anything: d is not changed.
// It returns an error only where Add would (a tap the feed no longer
// knows, for instance after a feed change).
func (b *Book) Explain(d *Day, earlier []WeekDay) (*Explanation, error) {
	settlements, sum, err := b.priceWith(d, earlier, nil)
	if err != nil {
		return nil, err
	}
	ex := &Explanation{Summary: sum, FeedVersion: b.FeedVersion, Journeys: make([]ExplainedJourney, 0, len(settlements))}
	if n := len(d.Taps); sum.Pending > 0 && n > 0 && d.Taps[n-1].Kind == fares.TapIn {
		p := d.Taps[n-1]
		ex.Pending = &p
	}
	byAgency := map[string]int64{}
	used := make([]bool, len(d.Taps))
	// find takes the first tap not yet given to a leg of one of kinds, at
	// the instant and stop a leg names: BuildJourneys copied both from it.
	find := func(at time.Time, stop string, kinds ...fares.TapKind) *Tap {
		for i := range d.Taps {
			t := &d.Taps[i]
			if !used[i] && t.Time.Equal(at) && t.Stop == stop && slices.Contains(kinds, t.Kind) {
				used[i] = true
				cp := *t
				return &cp
			}
		}
		return nil
	}
	for _, s := range settlements {
		j := ExplainedJourney{Settlement: s, Legs: make([]LegTaps, len(s.Journey.Legs))}
		for i, l := range s.Journey.Legs {
			lt := &j.Legs[i]
			switch {
			case l.Incomplete && l.FromStop == "":
				// An exit without its entry.
				lt.Exit = find(l.Start, l.ToStop, fares.TapOut)
			case l.Incomplete:
				lt.Entry = find(l.Start, l.FromStop, fares.TapIn)
			default:
				lt.Entry = find(l.Start, l.FromStop, fares.TapIn, fares.Validation)
				if lt.Entry != nil && lt.Entry.Kind == fares.TapIn {
					lt.Exit = find(l.End, l.ToStop, fares.TapOut)
				}
			}
		}
		ex.Charged += s.Charge.Charged.Amount
		for _, sh := range s.Shares {
			byAgency[sh.AgencyID] += sh.Amount.Amount
		}
		ex.Journeys = append(ex.Journeys, j)
	}
	for _, a := range sortedKeys(byAgency) {
		if v := byAgency[a]; v != 0 {
			ex.Booked = append(ex.Booked, Booking{Agency: a, Amount: v})
		}
	}
	ex.Matches = ex.Charged == d.Charged && slices.Equal(ex.Booked, d.Booked)
	return ex, nil
}

// UnknownFare says why the journey that holds event's tap in d has no
// fare (fares.Fare.Reason), or returns "" when its fare is known or no
// journey of d holds the tap. Post books such a journey leg by leg where
// the feed knows a fare for any leg, else at zero (see
// fares.Settlement.Fallback), and counts it in Summary.Unknown; this
// names the tap's own journey for review.
func (b *Book) UnknownFare(d *Day, earlier []WeekDay, event fare.EventID) (string, error) {
	if nb := b.ForDay(d.Date); nb != b {
		return nb.UnknownFare(d, earlier, event)
	}
	ex, err := b.Explain(d, earlier)
	if err != nil {
		return "", err
	}
	for _, j := range ex.Journeys {
		for _, l := range j.Legs {
			if (l.Entry != nil && l.Entry.Event == event) || (l.Exit != nil && l.Exit.Event == event) {
				switch {
				case j.Fare.Known:
					return "", nil
				case j.Fallback:
					return "fare unknown: " + j.Fare.Reason + "; charged leg by leg (a leg's own fare, else its entry's maximum fare)", nil
				}
				return "fare unknown: " + j.Fare.Reason, nil
			}
		}
	}
	return "", nil
}
