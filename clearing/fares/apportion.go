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
	agencies, weights, err := f.apportionWeights(j)
	if err != nil {
		return nil, err
	}
	return splitShares(agencies, weights, amount), nil
}

// apportionWeights are the agencies of j's legs, in order of first
// appearance, and their weights for Apportion.
func (f *Feed) apportionWeights(j Journey) ([]string, []int64, error) {
	if len(j.Legs) == 0 {
		return nil, nil, ErrNoLegs
	}
	if agency, ok, err := f.soleAgency(j); err != nil || ok {
		// One agency takes it all, whatever the weights: no leg needs
		// pricing alone (most journeys, and the hot path's common case).
		return []string{agency}, []int64{1}, err
	}
	var agencies []string
	var weights []int64
	var alone Fare
	one := Journey{Legs: make([]Leg, 1), RiderCategory: j.RiderCategory, FareMedia: j.FareMedia}
	var legAgency [8]int32
	agencyOf := legAgency[:0]
	anyWeight := false
	for i := range j.Legs {
		r, err := f.resolve(&j.Legs[i])
		if err != nil {
			return nil, nil, err
		}
		agency := f.agencyIDs[r.agency] // legs without a route: the first agency
		k := slices.Index(agencies, agency)
		if k < 0 {
			k = len(agencies)
			agencies = append(agencies, agency)
			weights = append(weights, 0)
		}
		agencyOf = append(agencyOf, int32(k))
		one.Legs[0] = j.Legs[i]
		if err := f.PriceInto(&alone, &one); err != nil {
			return nil, nil, err
		}
		if alone.Known && alone.Total.Amount > 0 {
			weights[k] += alone.Total.Amount
			anyWeight = true
		}
	}
	if !anyWeight {
		for _, k := range agencyOf {
			weights[k]++
		}
	}
	return agencies, weights, nil
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

// SplitAmount splits total into parts proportional to weights (which must
// not be negative and must not all be zero) by the largest-remainder
// method: each part is floor(total*w/W), and the units left over go one
// each to the largest remainders, ties to the lower index. The parts always
// sum to total; a negative total is split as its absolute value, negated.
// With all weights zero, the whole total goes to the first part.
func SplitAmount(total int64, weights []int64) []int64 {
	parts := make([]int64, len(weights))
	if len(weights) == 0 {
		return parts
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
		return parts
	}
	rems := make([]uint64, len(weights))
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
	return parts
}

// soleAgency reports whether every leg of j is operated by one agency, and
// which.
func (f *Feed) soleAgency(j Journey) (string, bool, error) {
	first := int32(-1)
	for i := range j.Legs {
		r, err := f.resolve(&j.Legs[i])
		if err != nil {
			return "", false, err
		}
		switch {
		case first < 0:
			first = r.agency
		case r.agency != first:
			return "", false, nil
		}
	}
	return f.agencyIDs[first], true, nil
}
