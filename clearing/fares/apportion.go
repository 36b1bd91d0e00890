package fares

import (
	"errors"
	"math/bits"
	"slices"
)

// Share is the part of a journey's price that goes to one agency.
type Share struct {
	AgencyID string
	Amount   Money
}

// ErrFareUnknown is returned when an unknown fare is apportioned.
var ErrFareUnknown = errors.New("fare is unknown")

// Apportion splits amount, the price charged for journey j, between the
// agencies operating its legs, in proportion to what each leg would cost
// alone: every leg is priced as a one-leg journey for the same rider,
// medium and times, and an agency's weight is the sum over its legs. Legs
// whose standalone fare is unknown or negative weigh zero; when all weigh
// zero every leg weighs one. The split is in integer minor units by the
// largest-remainder method (ties to the agency met first), so the shares
// always add up to amount exactly. Shares are in order of first
// appearance; agencies with a zero share are included.
func (f *Feed) Apportion(j Journey, amount Money) ([]Share, error) {
	agencies, weights, err := f.apportionWeights(&j)
	if err != nil {
		return nil, err
	}
	return splitShares(agencies, weights, amount), nil
}

// apportionWeights are the agencies of j's legs, in order of first
// appearance, and their weights for Apportion.
// The slices may be shared with the Feed and other callers: they must not
// be modified.
func (f *Feed) apportionWeights(j *Journey) ([]string, []int64, error) {
	if len(j.Legs) == 0 {
		return nil, nil, ErrNoLegs
	}
	if agency, ok, err := f.soleAgency(j); err != nil {
		return nil, nil, err
	} else if ok {
		// One agency takes it all, whatever the weights: no leg needs
		// pricing alone (most journeys, and the hot path's common case).
		// The agency's entry of the feed's list and a shared weight of
		// one: memos keep these, for every journey.
		return f.agencyIDs[agency : agency+1 : agency+1], soleWeight, nil
	}
	var w legWeights
	var alone Fare
	one := Journey{Legs: make([]Leg, 1), RiderCategory: j.RiderCategory, FareMedia: j.FareMedia}
	for i := range j.Legs {
		r, err := f.resolve(&j.Legs[i])
		if err != nil {
			return nil, nil, err
		}
		one.Legs[0] = j.Legs[i]
		if err := f.PriceInto(&alone, &one); err != nil {
			return nil, nil, err
		}
		w.add(f.agencyIDs[r.agency], alone.Known, alone.Total.Amount)
	}
	agencies, weights := w.result()
	return agencies, weights, nil
}

// resolvedWeights are apportionWeights for a journey whose legs rl were
// priced (so that nothing about them can fail), pricing legs alone in
// alone.
func (f *Feed) resolvedWeights(rl []resolved, cat, media int32, alone *Fare) ([]string, []int64) {
	first := rl[0].agency
	sole := true
	for i := range rl {
		if rl[i].agency != first {
			sole = false
			break
		}
	}
	if sole {
		return f.agencyIDs[first : first+1 : first+1], soleWeight
	}
	w := legWeights{agencies: make([]string, 0, len(rl)), weights: make([]int64, 0, len(rl))}
	for i := range rl {
		f.priceResolved(alone, rl[i:i+1], cat, media)
		w.add(f.agencyIDs[rl[i].agency], alone.Known, alone.Total.Amount)
	}
	return w.result()
}

// legWeights adds up a journey's legs by agency as Apportion weighs them:
// a leg weighs its fare alone (nothing when unknown or not positive), and
// where no leg weighs anything each leg weighs one.
type legWeights struct {
	agencies []string
	weights  []int64
	// Each leg's index into agencies: the first eight in an array, so
	// that the hot path's short journeys allocate nothing for them.
	legs [8]int32
	more []int32
	n    int
	any  bool
}

// add counts a leg of agency (the route's, else the leg's AgencyID, else
// the feed's first agency) whose fare alone is amount when known.
func (w *legWeights) add(agency string, known bool, amount int64) {
	k := slices.Index(w.agencies, agency)
	if k < 0 {
		k = len(w.agencies)
		w.agencies = append(w.agencies, agency)
		w.weights = append(w.weights, 0)
	}
	if w.n < len(w.legs) {
		w.legs[w.n] = int32(k)
	} else {
		w.more = append(w.more, int32(k))
	}
	w.n++
	if known && amount > 0 {
		w.weights[k] += amount
		w.any = true
	}
}

// result returns the agencies and their weights.
func (w *legWeights) result() ([]string, []int64) {
	if !w.any {
		for _, k := range w.legs[:min(w.n, len(w.legs))] {
			w.weights[k]++
		}
		for _, k := range w.more {
			w.weights[k]++
		}
	}
	return w.agencies, w.weights
}

func splitShares(agencies []string, weights []int64, amount Money) []Share {
	if len(agencies) == 1 {
		return []Share{{AgencyID: agencies[0], Amount: amount}}
	}
	shares := make([]Share, len(agencies))
	for k, v := range SplitAmount(amount.Amount, weights) {
		shares[k] = Share{AgencyID: agencies[k], Amount: Money{Amount: v, Currency: amount.Currency}}
	}
	return shares
}

// splitShares is the package's splitShares in sc's memory: the shares are
// a run of sc.shares, capped so that appending to them cannot overwrite
// the next settlement's.
func (sc *Scratch) splitShares(agencies []string, weights []int64, amount Money) []Share {
	k := len(sc.shares)
	if len(agencies) == 1 {
		sc.shares = append(sc.shares, Share{AgencyID: agencies[0], Amount: amount})
		return sc.shares[k : k+1 : k+1]
	}
	sc.parts, sc.rems = splitAmount(sc.parts, sc.rems, amount.Amount, weights)
	for i, v := range sc.parts {
		sc.shares = append(sc.shares, Share{AgencyID: agencies[i], Amount: Money{Amount: v, Currency: amount.Currency}})
	}
	n := len(sc.shares)
	return sc.shares[k:n:n]
}

// SplitAmount splits total into parts proportional to weights (which must
// not be negative and must not all be zero) by the largest-remainder
// method: each part is floor(total*w/W), and the units left over go one
// each to the largest remainders, ties to the lower index. The parts always
// sum to total; a negative total is split as its absolute value, negated.
// With all weights zero, the whole total goes to the first part.
func SplitAmount(total int64, weights []int64) []int64 {
	parts, _ := splitAmount(nil, nil, total, weights)
	return parts
}

// splitAmount is SplitAmount writing the parts into parts and its
// remainders into rems, reusing their memory; it returns both.
func splitAmount(parts []int64, rems []uint64, total int64, weights []int64) ([]int64, []uint64) {
	if cap(parts) < len(weights) || parts == nil {
		parts = make([]int64, len(weights))
	} else {
		parts = parts[:len(weights)]
		clear(parts)
	}
	if len(weights) == 0 {
		return parts, rems
	}
	neg := total < 0
	t := uint64(total)
	if neg {
		t = uint64(-total)
	}
	var sum uint64
	for _, w := range weights {
		sum += uint64(max(w, 0))
	}
	if sum == 0 {
		parts[0] = total
		return parts, rems
	}
	if cap(rems) < len(weights) {
		rems = make([]uint64, len(weights))
	} else {
		rems = rems[:len(weights)]
		clear(rems)
	}
	var given uint64
	for i, w := range weights {
		hi, lo := bits.Mul64(t, uint64(max(w, 0)))
		q, r := bits.Div64(hi, lo, sum) // hi < sum because w <= sum
		parts[i], rems[i] = int64(q), r
		given += q
	}
	for left := t - given; left > 0; left-- {
		best := -1
		for i, r := range rems {
			if weights[i] > 0 && (best < 0 || r > rems[best]) {
				best = i
			}
		}
		parts[best]++
		rems[best] = 0
	}
	if neg {
		for i := range parts {
			parts[i] = -parts[i]
		}
	}
	return parts, rems
}

// soleWeight is the weight of a journey's only agency; never modified.
var soleWeight = []int64{1}

// soleAgency reports whether every leg of j is operated by one agency, and
// which (an index into agencyIDs).
func (f *Feed) soleAgency(j *Journey) (int32, bool, error) {
	first := int32(-1)
	for i := range j.Legs {
		r, err := f.resolve(&j.Legs[i])
		if err != nil {
			return 0, false, err
		}
		switch {
		case first < 0:
			first = r.agency
		case r.agency != first:
			return 0, false, nil
		}
	}
	return first, true, nil
}
