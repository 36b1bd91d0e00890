package fares

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Leg is one ride of a journey: boarding and alighting, as the fare
// validation events (tap in / tap out, or board / alight) saw them.
type Leg struct {
	// RouteID identifies the route ridden. Its network (route_networks.txt
	// or routes.network_id) is the leg's network.
	RouteID string
	// NetworkID is used when RouteID is empty (a station gate knows the
	// network, not the route). When both are given they must agree.
	NetworkID string
	// AgencyID is the agency that carried a leg without a route (the
	// operator of the station gate or stop validator that took it): its
	// share of the fare goes to that agency. With a route the route's
	// agency carries the leg and AgencyID is not used; with neither, the
	// feed's first agency (see Apportion).
	AgencyID string
	// FromStop and ToStop are stops.stop_id values; either may be empty
	// when unknown (a flat-fare bus validation has no exit).
	FromStop, ToStop string
	// Start and End are the departure and arrival fare validation events.
	Start, End time.Time
	// Incomplete marks a leg with a missing validation: a tap-in without
	// tap-out (ToStop is ignored), or a tap-out without tap-in (FromStop
	// empty). It is priced at the maximum fare and takes part in no join or
	// transfer (see the package doc).
	Incomplete bool
	// Within bounds an incomplete leg's missing validation in time: a
	// tap-out came at most Within after a tap-in alone, a tap-in at most
	// Within before a tap-out alone (TapPolicy.MaxLegDuration; Journeys
	// sets it). A rule with a timeframe on the missing side counts toward
	// the maximum fare only where that timeframe meets the window. Zero:
	// any time.
	Within time.Duration
}

// Journey is what Price prices: a passenger's legs in time order, with the
// rider category and fare medium presented.
type Journey struct {
	Legs []Leg
	// RiderCategory is a rider_categories.rider_category_id; empty means the
	// feed's default category.
	RiderCategory string
	// FareMedia is a fare_media.fare_media_id; empty matches only products
	// whose fare_media_id is empty.
	FareMedia string
}

// Fare is the price of a journey. When Known is false the fare is unknown
// (a leg matched no rule, or no product is sold for the rider category and
// medium): Total is then zero and must not be charged; Reason says why.
type Fare struct {
	Known     bool
	Total     Money
	Reason    string
	Legs      []FareLeg
	Transfers []Transfer
}

// FareLeg is a fare leg: one leg, or several legs joined into an effective
// fare leg by fare_leg_join_rules.txt, with the rule and product matched.
type FareLeg struct {
	FirstLeg, LastLeg int // indexes into Journey.Legs, inclusive
	Known             bool
	Reason            string // why the leg has no fare, when !Known
	LegGroupID        string
	FareProductID     string
	RulePriority      int
	Price             Money // the product's price for the rider and medium
	// Charged reports whether Price counts toward the total; transfers of
	// type 0 and 2 waive the to-leg (and type 2 the first from-leg).
	Charged bool
	// MaximumFare is set for an incomplete leg priced at the maximum fare.
	MaximumFare bool
}

// Transfer is a fare_transfer_rules.txt row applied between two
// consecutive fare legs.
type Transfer struct {
	FromFareLeg, ToFareLeg       int
	FromLegGroupID, ToLegGroupID string
	Type                         TransferType
	FareProductID                string // empty: a free transfer
	Price                        Money
	// Count is the transfer's position in a run of consecutive transfers
	// between the same leg group (1 for the first).
	Count int
}

// Errors for journeys that cannot be priced at all. An unknown fare is not
// an error; it is a Fare with Known false.
var (
	ErrNoLegs         = errors.New("journey has no legs")
	ErrUnknownRoute   = errors.New("unknown route")
	ErrUnknownNetwork = errors.New("unknown network")
	// ErrNetworkNotRoute: a leg names a network its route is not in.
	ErrNetworkNotRoute = errors.New("network not the route's")
	ErrUnknownAgency   = errors.New("unknown agency")
	ErrUnknownStop     = errors.New("unknown stop")
	ErrUnknownCategory = errors.New("unknown rider category")
	ErrUnknownMedium   = errors.New("unknown fare medium")
	ErrLegTimes        = errors.New("leg times out of order")
)

// resolved is a leg with its IDs interned.
type resolved struct {
	network    int32
	agency     int32
	from, to   int32 // stop index, -1 unknown
	start, end time.Time
	incomplete bool
	within     time.Duration // Leg.Within
}

// fareLegState is the per-fare-leg scratch of Price.
type fareLegState struct {
	group      int32
	start, end time.Time
}

// Price prices a journey. It returns an error only for a journey it cannot
// read (unknown IDs, no legs, times out of order); an unknown fare is a
// Fare with Known false.
func (f *Feed) Price(j Journey) (Fare, error) {
	var fare Fare
	err := f.PriceInto(&fare, &j)
	return fare, err
}

// PriceInto is Price writing into dst, reusing dst's slices: with a dst
// kept across calls, pricing a journey of up to 8 legs does not allocate.
func (f *Feed) PriceInto(dst *Fare, j *Journey) error {
	resetFare(dst, f.currency)
	var rbuf [8]resolved
	rl, cat, media, err := f.resolveJourney(rbuf[:0], j)
	if err != nil {
		return err
	}
	f.priceResolved(dst, rl, cat, media)
	return nil
}

func resetFare(dst *Fare, currency string) {
	dst.Known, dst.Total, dst.Reason = false, Money{Currency: currency}, ""
	dst.Legs, dst.Transfers = dst.Legs[:0], dst.Transfers[:0]
}

// resolveJourney interns j's rider category, fare medium and legs,
// appending the legs to rl (which must be empty), with PriceInto's errors.
func (f *Feed) resolveJourney(rl []resolved, j *Journey) ([]resolved, int32, int32, error) {
	if len(j.Legs) == 0 {
		return rl, 0, 0, ErrNoLegs
	}
	cat, media, err := f.rider(j.RiderCategory, j.FareMedia)
	if err != nil {
		return rl, 0, 0, err
	}
	for i := range j.Legs {
		r, err := f.resolve(&j.Legs[i])
		if err != nil {
			return rl, 0, 0, fmt.Errorf("leg %d: %w", i, err)
		}
		if i > 0 && r.start.Before(rl[i-1].start) {
			return rl, 0, 0, fmt.Errorf("leg %d: %w: starts before leg %d", i, ErrLegTimes, i-1)
		}
		rl = append(rl, r)
	}
	return rl, cat, media, nil
}

// priceResolved is PriceInto for legs already resolved, for the interned
// rider category and medium; dst is reset first.
func (f *Feed) priceResolved(dst *Fare, rl []resolved, cat, media int32) {
	resetFare(dst, f.currency)
	// Effective fare legs and their rules.
	var sbuf [8]fareLegState
	st := sbuf[:0]
	for i := 0; i < len(rl); {
		k := i
		for k+1 < len(rl) && f.joins(&rl[k], &rl[k+1]) {
			k++
		}
		fl, group := f.matchFareLeg(rl[i:k+1], cat, media)
		fl.FirstLeg, fl.LastLeg = i, k
		dst.Legs = append(dst.Legs, fl)
		st = append(st, fareLegState{group: group, start: rl[i].start, end: rl[k].end})
		i = k + 1
	}

	// Transfers, chain by chain.
	known := true
	runFrom, runTo, runStart, runCount := int32(-1), int32(-1), 0, 0
	chainStart := 0
	for k := range dst.Legs {
		if !dst.Legs[k].Known {
			known = false
		}
		dst.Legs[k].Charged = true
		if k == 0 {
			continue
		}
		prev, cur := &dst.Legs[k-1], &dst.Legs[k]
		gA, gB := st[k-1].group, st[k].group
		if !prev.Known || !cur.Known || gA < 0 || gB < 0 || prev.MaximumFare || cur.MaximumFare {
			runFrom, chainStart = -1, k
			continue
		}
		inRun := runFrom == gA && runTo == gB
		count, first := 1, k-1
		if inRun {
			count, first = runCount+1, runStart
		}
		// What the to-leg adds under each rule depends on the rule's type
		// (its own fare or not, the from-leg's waived or not): the cost
		// the choice compares.
		waived := int64(0)
		if chainStart == k-1 && prev.Charged {
			waived = prev.Price.Amount
		}
		ti, price, ok := f.matchTransfer(gA, gB, count, &st[first], &st[k], cat, media, waived, cur.Price.Amount)
		if !ok {
			runFrom, chainStart = -1, k
			continue
		}
		tr := &f.transferRules[ti]
		if !inRun {
			runFrom, runTo, runStart, runCount = gA, gB, k-1, 0
		}
		runCount++
		switch tr.kind {
		case FromLegPlusTransfer:
			cur.Charged = false
		case FromLegPlusTransferPlusToLeg:
			cur.Charged = true
		case TransferOnly:
			cur.Charged = false
			if chainStart == k-1 {
				prev.Charged = false
			}
		}
		t := Transfer{
			FromFareLeg: k - 1, ToFareLeg: k,
			FromLegGroupID: f.groupIDs[gA], ToLegGroupID: f.groupIDs[gB],
			Type: tr.kind, Price: price, Count: count,
		}
		if tr.product >= 0 {
			t.FareProductID = f.productIDs[tr.product]
		}
		dst.Transfers = append(dst.Transfers, t)
	}

	if !known {
		for _, l := range dst.Legs {
			if !l.Known {
				dst.Reason = fmt.Sprintf("legs %d-%d: %s", l.FirstLeg, l.LastLeg, l.Reason)
				break
			}
		}
		return
	}
	cur := ""
	var total int64
	add := func(m Money) bool {
		if cur == "" {
			cur = m.Currency
		} else if m.Currency != cur {
			dst.Reason = fmt.Sprintf("mixed currencies %s and %s", cur, m.Currency)
			return false
		}
		total += m.Amount
		return true
	}
	for _, l := range dst.Legs {
		if l.Charged && !add(l.Price) {
			return
		}
	}
	for _, t := range dst.Transfers {
		if t.FareProductID != "" && !add(t.Price) {
			return
		}
	}
	if cur == "" {
		cur = f.currency
	}
	// Transfer discounts larger than the legs they follow make a journey
	// free, never a payment to the rider.
	dst.Known, dst.Total = true, Money{Amount: max(total, 0), Currency: cur}
}

// rider interns the rider category and fare medium; an empty category is
// the feed's default one (perProductDefault with several), an empty medium
// is -1.
func (f *Feed) rider(category, medium string) (cat, media int32, err error) {
	cat, media = f.defaultCategory, -1
	if category != "" {
		c, ok := f.categoryIdx[category]
		if !ok {
			return 0, 0, fmt.Errorf("%w %q", ErrUnknownCategory, category)
		}
		cat = c
	}
	if medium != "" {
		m, ok := f.mediaIdx[medium]
		if !ok {
			return 0, 0, fmt.Errorf("%w %q", ErrUnknownMedium, medium)
		}
		media = m
	}
	return cat, media, nil
}

func (f *Feed) resolve(l *Leg) (resolved, error) {
	r := resolved{network: -1, from: -1, to: -1, start: l.Start, end: l.End, incomplete: l.Incomplete, within: l.Within}
	if l.RouteID != "" {
		ri, ok := f.routes[l.RouteID]
		if !ok {
			return r, fmt.Errorf("%w %q", ErrUnknownRoute, l.RouteID)
		}
		r.network, r.agency = ri.network, ri.agency
		if l.NetworkID != "" && (ri.network < 0 || f.networkIDs[ri.network] != l.NetworkID) {
			in := "in no network"
			if ri.network >= 0 {
				in = fmt.Sprintf("in network %q", f.networkIDs[ri.network])
			}
			return r, fmt.Errorf("%w: route %q is %s, the leg names %q", ErrNetworkNotRoute, l.RouteID, in, l.NetworkID)
		}
	} else {
		if l.NetworkID != "" {
			n, ok := f.networkIdx[l.NetworkID]
			if !ok {
				return r, fmt.Errorf("%w %q", ErrUnknownNetwork, l.NetworkID)
			}
			r.network = n
		}
		if l.AgencyID != "" {
			a, ok := f.agencyIdx[l.AgencyID]
			if !ok {
				return r, fmt.Errorf("%w %q", ErrUnknownAgency, l.AgencyID)
			}
			r.agency = a
		}
	}
	if l.FromStop != "" {
		s, ok := f.stopIdx[l.FromStop]
		if !ok {
			return r, fmt.Errorf("%w %q", ErrUnknownStop, l.FromStop)
		}
		r.from = s
	}
	// An incomplete leg's exit counts only when it is all that is known
	// (a tap-out without a tap-in): its maximum fare is the dearest its
	// arrival could give.
	if l.ToStop != "" && (!l.Incomplete || l.FromStop == "") {
		s, ok := f.stopIdx[l.ToStop]
		if !ok {
			return r, fmt.Errorf("%w %q", ErrUnknownStop, l.ToStop)
		}
		r.to = s
	}
	if !l.Incomplete && !l.End.IsZero() && l.End.Before(l.Start) {
		return r, fmt.Errorf("%w: ends before it starts", ErrLegTimes)
	}
	if r.end.IsZero() {
		r.end = r.start
	}
	return r, nil
}

// joins reports whether fare_leg_join_rules.txt joins a and b into one
// effective fare leg.
func (f *Feed) joins(a, b *resolved) bool {
	if a.incomplete || b.incomplete || a.network < 0 || b.network < 0 {
		return false
	}
	for i := range f.joinRules {
		jr := &f.joinRules[i]
		if jr.fromNetwork != a.network || jr.toNetwork != b.network {
			continue
		}
		if jr.fromStop >= 0 {
			if a.to < 0 || b.from < 0 {
				continue
			}
			if (a.to == jr.fromStop || f.stops[a.to].station == jr.fromStop) &&
				(b.from == jr.toStop || f.stops[b.from].station == jr.toStop) {
				return true
			}
			continue
		}
		if a.to >= 0 && b.from >= 0 && f.stops[a.to].station == f.stops[b.from].station {
			return true
		}
	}
	return false
}

// civil returns the local calendar day and wall-clock seconds of t in loc.
// It is what t.In(loc).Date() and Clock() give (the time package derives
// both from the seconds since the epoch shifted by the zone's offset,
// ignoring leap seconds), without converting to a calendar date and back:
// one zone lookup and a floor division.
func civil(t time.Time, loc *time.Location) (Date, int32) {
	_, off := t.In(loc).Zone()
	s := t.Unix() + int64(off)
	day := s / 86400
	if s%86400 < 0 {
		day--
	}
	return Date(day), int32(s - day*86400)
}

// inTimeframe reports whether a fare event on day at tod falls in a
// timeframe of group g: start inclusive, end exclusive.
func (f *Feed) inTimeframe(g int32, day Date, tod int32) bool {
	for _, tf := range f.tfGroups[g] {
		if tod >= tf.start && tod < tf.end && f.services[tf.service].active(day) {
			return true
		}
	}
	return false
}

// productPrice returns the price of product p for the rider: the most
// specific row wins, (category, medium) before (any, medium) and
// (category, unknown medium), which rank alike (the cheaper wins), before
// (any, unknown medium). (A row for any category on the rider's medium
// outranked the rider's own category's row: a child paying by card was
// charged the adult card fare, an outside test.)
func (f *Feed) productPrice(p, cat, media int32) (Money, bool) {
	if cat == perProductDefault {
		cat = f.productDefault[p]
	}
	best, price := 0, Money{}
	for _, r := range f.productRows[p] {
		score := 1
		switch {
		case r.media < 0:
		case r.media == media:
			score++
		default:
			continue
		}
		switch {
		case r.category < 0:
		case r.category == cat:
			score++
		default:
			continue
		}
		if score > best || (score == best && r.price.Amount < price.Amount) {
			best, price = score, r.price
		}
	}
	return price, best > 0
}

func contains(sorted []int32, v int32) bool {
	for _, x := range sorted {
		if x == v {
			return true
		}
		if x > v {
			return false
		}
	}
	return false
}

func anyListed(areas []int32, listed []bool) bool {
	for _, a := range areas {
		if listed[a] {
			return true
		}
	}
	return false
}

// legQuery is what fare_leg_rules.txt is matched against.
type legQuery struct {
	network              int32
	from, to             []int32
	fromListed, toListed bool
	startDay, endDay     Date
	startTod, endTod     int32
	touched              []int32
	maximum              bool
	fromUnknown          bool // maximum fare with no entry validation
	toUnknown            bool // maximum fare with no exit validation
	// anyTime matches timeframes whatever the leg's times: the legs some
	// rule prices at some time (the enrolled-category check).
	anyTime bool
	// windowed: the missing validation's time on an incomplete leg lies
	// from unknownFrom to unknownTo, in Unix seconds (Leg.Within). Seconds,
	// not times: a time's zone pointer would make the query's buffers
	// escape to the heap.
	windowed               bool
	unknownFrom, unknownTo int64
}

// maxCandidate is a rule matching an incomplete leg, for its maximum fare.
type maxCandidate struct {
	rule     int32
	priority int32
	price    Money
	// sold: the rule's product is sold to the rider (price is its price);
	// a rule that is not still shadows the rules below it.
	sold bool
}

// matchFareLeg matches an effective fare leg (one or more joined legs)
// against fare_leg_rules.txt and picks its product for the rider.
func (f *Feed) matchFareLeg(legs []resolved, cat, media int32) (FareLeg, int32) {
	first, last := &legs[0], &legs[len(legs)-1]
	q := legQuery{network: first.network, maximum: first.incomplete,
		fromUnknown: first.incomplete && first.from < 0, toUnknown: first.incomplete && last.to < 0}
	for i := range legs {
		if legs[i].network != q.network {
			q.network = -1 // legs of different networks: only empty network_id matches
		}
	}
	if first.from >= 0 {
		q.from = f.stops[first.from].areas
		q.startDay, q.startTod = civil(first.start, f.stops[first.from].loc)
	} else {
		q.startDay, q.startTod = civil(first.start, f.loc)
	}
	if last.to >= 0 {
		q.to = f.stops[last.to].areas
		q.endDay, q.endTod = civil(last.end, f.stops[last.to].loc)
	} else {
		q.endDay, q.endTod = civil(last.end, f.loc)
	}
	q.fromListed = anyListed(q.from, f.listedFromArea)
	q.toListed = anyListed(q.to, f.listedToArea)
	if w := first.within; w > 0 {
		switch {
		case q.toUnknown:
			q.windowed, q.unknownFrom, q.unknownTo = true, first.start.Unix(), first.start.Add(w).Unix()
		case q.fromUnknown:
			q.windowed, q.unknownFrom, q.unknownTo = true, last.end.Add(-w).Unix(), last.end.Unix()
		}
	}
	var tbuf [16]int32
	if f.hasAreaSets {
		q.touched = tbuf[:0]
		for i := range legs {
			for _, s := range [2]int32{legs[i].from, legs[i].to} {
				if s < 0 {
					continue
				}
				for _, a := range f.stops[s].areas {
					q.touched = insertSorted(q.touched, a)
				}
			}
		}
	}

	fl := FareLeg{}
	bestRule, best, matched, found := f.pickRule(&q, cat, media)
	switch {
	case !matched:
		fl.Reason = "no fare_leg_rules.txt row matches"
		return fl, -1
	case !found:
		fl.Reason = "no fare product for this rider category and fare medium"
		return fl, -1
	}
	r := &f.legRules[bestRule]
	fl.Known, fl.Price, fl.RulePriority = true, best, int(r.priority)
	fl.FareProductID = f.productIDs[r.product]
	fl.MaximumFare = q.maximum
	if r.group >= 0 {
		fl.LegGroupID = f.groupIDs[r.group]
	}
	return fl, r.group
}

// ruleKeys appends to nets, froms and tos the keys of the rule buckets
// (rulesFor) pickRule walks for q, not a maximum: with rule_priority an
// empty field is a wildcard, so the leg's own values and -1 are looked up;
// without it an empty field matches only when no rule lists any of the
// leg's values.
func (f *Feed) ruleKeys(q *legQuery, nets, froms, tos []int32) ([]int32, []int32, []int32) {
	if f.rulePriority {
		if q.network >= 0 {
			nets = append(nets, q.network)
		}
		nets = append(nets, -1)
	} else if q.network >= 0 && f.listedNetwork[q.network] {
		nets = append(nets, q.network)
	} else {
		nets = append(nets, -1)
	}
	if f.rulePriority || q.fromListed {
		froms = append(froms, q.from...)
	}
	if f.rulePriority || !q.fromListed {
		froms = append(froms, -1)
	}
	if f.rulePriority || q.toListed {
		tos = append(tos, q.to...)
	}
	if f.rulePriority || !q.toListed {
		tos = append(tos, -1)
	}
	return nets, froms, tos
}

// rulesWalked is how many rules pickRule looks at for q, not a maximum:
// the enrolled-category check counts them as its work, since one leg of a
// feed with many catch-all rules walks them all.
func (f *Feed) rulesWalked(q *legQuery) int64 {
	var nets [2]int32
	var froms, tos [4]int32
	netKeys, fromKeys, toKeys := f.ruleKeys(q, nets[:0], froms[:0], tos[:0])
	var n int64
	for _, nk := range netKeys {
		for _, a := range fromKeys {
			for _, b := range toKeys {
				n += int64(len(f.rulesFor(nk, a, b)))
			}
		}
	}
	return n
}

// pickRule picks the fare_leg_rules.txt rule pricing q for the rider
// (category cat, fare medium media) and its price: matched when some rule
// matches q, found when one of the highest priority among them sells to
// the rider.
func (f *Feed) pickRule(q *legQuery, cat, media int32) (bestRule int32, best Money, matched, found bool) {
	bestRule = -1
	top := int32(math.MinInt32)
	var cbuf [8]maxCandidate
	cands := cbuf[:0]
	consider := func(ri int32) {
		r := &f.legRules[ri]
		if !f.ruleMatches(r, q) {
			return
		}
		matched = true
		if q.maximum {
			// A rule not sold to the rider is a candidate too: one that
			// matches every completion wins them all at its priority, so
			// no completion is charged by a rule below it (an outside
			// review saw a child's entry charged a rule a complete leg
			// never reaches).
			p, sold := f.productPrice(r.product, cat, media)
			cands = append(cands, maxCandidate{rule: ri, priority: r.priority, price: p, sold: sold})
			return
		}
		if r.priority > top {
			top, found = r.priority, false
		}
		if r.priority < top {
			return
		}
		p, ok := f.productPrice(r.product, cat, media)
		if !ok {
			return
		}
		if !found || p.Amount < best.Amount || (p.Amount == best.Amount && r.line < f.legRules[bestRule].line) {
			best, bestRule, found = p, ri, true
		}
	}
	empty := len(f.networkIDs)
	if !q.maximum {
		var nets [2]int32
		var froms, tos [4]int32
		netKeys, fromKeys, toKeys := f.ruleKeys(q, nets[:0], froms[:0], tos[:0])
		for _, n := range netKeys {
			for _, a := range fromKeys {
				for _, b := range toKeys {
					for _, ri := range f.rulesFor(n, a, b) {
						consider(ri)
					}
				}
			}
		}
	} else if f.rulePriority {
		if q.network >= 0 {
			for _, ri := range f.rulesByNetwork[q.network] {
				consider(ri)
			}
		}
		for _, ri := range f.rulesByNetwork[empty] {
			consider(ri)
		}
	} else if q.network >= 0 && f.listedNetwork[q.network] {
		for _, ri := range f.rulesByNetwork[q.network] {
			consider(ri)
		}
	} else {
		for _, ri := range f.rulesByNetwork[empty] {
			consider(ri)
		}
	}
	if q.maximum {
		bestRule, best, found = f.maximumFare(cands, q)
	}
	return bestRule, best, matched, found
}

func insertSorted(s []int32, v int32) []int32 {
	i := 0
	for i < len(s) && s[i] < v {
		i++
	}
	if i < len(s) && s[i] == v {
		return s
	}
	s = append(s, 0)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

// maximumFare picks an incomplete leg's maximum fare from the rules that
// match what is known of it: the dearest price some completion of the leg
// could be charged. A completion is charged the cheapest rule sold to the
// rider among its highest-priority matching rules (pickRule). Its unknown
// stop is in one of the feed's area classes (f.areaClasses: areas and time
// zone): for each, a rule matching it counts unless a rule that matches
// there whenever it does (no timeframe on the unknown side, or the same)
// has a higher priority, sold to the rider or not, or the same priority
// and is sold cheaper. So a rule no stop can reach, or one every stop's
// completion beats (zone rules above a catch-all, a stop in two zones
// paying the cheaper), never counts. On
// the unknown side a rule with a timeframe counts where its timeframe
// meets the window the missing validation lies in (Leg.Within), and only
// a rule asking no timeframe there, or the same, beats it: an upper bound.
// No rule sold that counts: no maximum fare.
func (f *Feed) maximumFare(cands []maxCandidate, q *legQuery) (int32, Money, bool) {
	// Dearest first, so the first rule that counts is the answer; among
	// equal prices the lowest line, as a complete leg's tie is broken
	// (pickRule), not the order the rule buckets were walked in.
	slices.SortFunc(cands, func(a, b maxCandidate) int {
		if c := cmp.Compare(b.price.Amount, a.price.Amount); c != 0 {
			return c
		}
		return cmp.Compare(f.legRules[a.rule].line, f.legRules[b.rule].line)
	})
	classes := f.areaClasses
	var ubuf [16]int32
	for i, c := range cands {
		if !c.sold {
			continue
		}
		r := &f.legRules[c.rule]
		for _, class := range classes {
			areas := class.areas
			touched := ubuf[:0]
			if f.hasAreaSets {
				touched = unionSorted(touched, q.touched, areas)
			}
			if !f.matchesClass(r, q, areas, touched) || !f.unknownSideReachable(r, q, class.zone) {
				continue
			}
			beaten := false
			for j, h := range cands {
				if i == j || h.priority < c.priority || (h.priority == c.priority && (!h.sold || h.price.Amount >= c.price.Amount)) {
					continue
				}
				hr := &f.legRules[h.rule]
				if !f.sameTimesOrAll(hr, r, q) || !f.matchesClass(hr, q, areas, touched) {
					continue
				}
				beaten = true
				break
			}
			if !beaten {
				return c.rule, c.price, true
			}
		}
	}
	return -1, Money{}, false
}

// unknownSideReachable reports whether rule r's timeframe on an incomplete
// leg's unknown side (if it asks one) meets the window the missing
// validation lies in (Leg.Within), in zone, the unknown stop's: an entry
// at 06:30 is never charged a rule for exits from 16:00 when no leg lasts
// four hours. (The property test found an exit at a stop five hours west,
// priced in its own morning peak, missed when the window was taken in the
// feed's zone alone.)
func (f *Feed) unknownSideReachable(r *legRule, q *legQuery, zone *time.Location) bool {
	tf := int32(-1)
	switch {
	case q.toUnknown:
		tf = r.toTF
	case q.fromUnknown:
		tf = r.fromTF
	}
	return tf < 0 || !q.windowed || f.timeframeMeets(tf, q.unknownFrom, q.unknownTo, zone)
}

// timeframeMeets reports whether some second from a to b (Unix seconds,
// inclusive), in zone's local time, falls in a timeframe of group g. The window is taken
// a stretch of one UTC offset at a time: across a night the clocks go
// back, local time runs through an hour twice, and the wall-clock span
// from a's local time to b's missed timeframes in that hour (an outside
// re-check's entry at 02:40, exited at the second 02:10, was charged a
// maximum below that completion).
func (f *Feed) timeframeMeets(g int32, a, b int64, zone *time.Location) bool {
	for {
		_, end := time.Unix(a, 0).In(zone).ZoneBounds()
		if end.IsZero() || end.Unix() > b {
			return f.timeframeMeetsOneOffset(g, a, b, zone)
		}
		if f.timeframeMeetsOneOffset(g, a, end.Unix()-1, zone) {
			return true
		}
		a = end.Unix()
	}
}

// timeframeMeetsOneOffset is timeframeMeets for a window in which zone's
// UTC offset does not change, so local time runs on from a's to b's.
func (f *Feed) timeframeMeetsOneOffset(g int32, a, b int64, zone *time.Location) bool {
	d0, lo := civil(time.Unix(a, 0), zone)
	d1, hi := civil(time.Unix(b, 0), zone)
	for d := d0; d <= d1; d++ {
		from, to := int32(0), int32(86400)
		if d == d0 {
			from = lo
		}
		if d == d1 {
			to = hi
		}
		// Some second in [from, to] within [start, end).
		for _, t := range f.tfGroups[g] {
			if t.start <= to && t.end > from && f.services[t.service].active(d) {
				return true
			}
		}
	}
	return false
}

// areaClass is a set of areas a leg's stop can be in, with its time zone.
type areaClass struct {
	areas []int32
	zone  *time.Location
}

// makeAreaClasses makes f.areaClasses, once stop_areas.txt is read and
// the stops' zones are known.
func (f *Feed) makeAreaClasses() []areaClass {
	var classes []areaClass
	seen := map[string]bool{}
	add := func(areas []int32, zone *time.Location) {
		if zone == nil {
			zone = f.loc
		}
		if k := fmt.Sprint(areas, zone.String()); !seen[k] {
			seen[k] = true
			classes = append(classes, areaClass{areas, zone})
		}
	}
	for i := range f.stops {
		add(f.stops[i].areas, f.stops[i].loc)
	}
	if len(f.stops) == 0 {
		add(nil, nil)
		for a := range f.areaIDs {
			add([]int32{int32(a)}, nil)
		}
	}
	return classes
}

// matchesClass reports whether rule r, which matches what is known of an
// incomplete leg, matches a completion whose unknown stop is in areas
// (touched: the areas of the leg's stops then, for area sets), whatever
// its time there.
func (f *Feed) matchesClass(r *legRule, q *legQuery, areas, touched []int32) bool {
	if r.areaSet >= 0 && !slices.Equal(f.areaSets[r.areaSet], touched) {
		return false
	}
	switch {
	case q.toUnknown:
		if r.toArea >= 0 {
			return contains(areas, r.toArea)
		}
		return f.rulePriority || !anyListed(areas, f.listedToArea)
	case q.fromUnknown:
		if r.fromArea >= 0 {
			return contains(areas, r.fromArea)
		}
		return f.rulePriority || !anyListed(areas, f.listedFromArea)
	}
	return true
}

// sameTimesOrAll reports whether rule h matches, on an incomplete leg's
// unknown side, at every time rule r does: it asks no timeframe there, or
// r's.
func (f *Feed) sameTimesOrAll(h, r *legRule, q *legQuery) bool {
	switch {
	case q.toUnknown:
		return h.toTF < 0 || h.toTF == r.toTF
	case q.fromUnknown:
		return h.fromTF < 0 || h.fromTF == r.fromTF
	}
	return true
}

// unionSorted appends to dst the sorted union of sorted a and b.
func unionSorted(dst, a, b []int32) []int32 {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			dst = append(dst, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			dst = append(dst, b[j])
			j++
		default:
			dst = append(dst, a[i])
			i++
			j++
		}
	}
	return dst
}

// ruleMatches applies the GTFS matching semantics of one fare_leg_rules.txt
// row; the network was matched by the bucket the rule came from.
func (f *Feed) ruleMatches(r *legRule, q *legQuery) bool {
	// An unknown side (an incomplete leg's missing validation) is
	// unconstrained.
	if !q.fromUnknown {
		if r.fromArea >= 0 {
			if !contains(q.from, r.fromArea) {
				return false
			}
		} else if !f.rulePriority && q.fromListed {
			return false
		}
	}
	if !q.toUnknown {
		if r.toArea >= 0 {
			if !contains(q.to, r.toArea) {
				return false
			}
		} else if !f.rulePriority && q.toListed {
			return false
		}
	}
	if r.fromTF >= 0 && !q.fromUnknown && !q.anyTime && !f.inTimeframe(r.fromTF, q.startDay, q.startTod) {
		return false
	}
	if r.toTF >= 0 && !q.toUnknown && !q.anyTime && !f.inTimeframe(r.toTF, q.endDay, q.endTod) {
		return false
	}
	if r.areaSet >= 0 && !q.maximum {
		set := f.areaSets[r.areaSet]
		if len(set) != len(q.touched) {
			return false
		}
		for i := range set {
			if set[i] != q.touched[i] {
				return false
			}
		}
	}
	if r.areaSet >= 0 && q.maximum {
		// Some completion adds the unknown stop's areas: the set must hold
		// at least the known stop's (an outside test saw a set of other
		// areas raise the maximum fare).
		for _, a := range q.touched {
			if _, found := slices.BinarySearch(f.areaSets[r.areaSet], a); !found {
				return false
			}
		}
	}
	return true
}

// matchTransfer finds the fare_transfer_rules.txt row for a transfer from
// leg group a to b, the count-th consecutive one between these groups,
// measured from fare leg first to fare leg cur. Of several, the one with
// the smallest transfer_count at or above count, then the one that adds
// least to the journey: its product (type 0), its product and the to-leg's
// fare toFare (type 1), its product less the from-leg's fare it waives,
// waived (type 2; 0 past a chain's first transfer). (Comparing the
// products alone chose a 1.00 top-up over a 3.50 combined ticket for legs
// of 3.00 each, charging 4.00: an outside test.)
func (f *Feed) matchTransfer(a, b int32, count int, first, cur *fareLegState, cat, media int32, waived, toFare int64) (int32, Money, bool) {
	fromKey, toKey := int32(-1), int32(-1)
	if f.listedFromGroup[a] {
		fromKey = a
	}
	if f.listedToGroup[b] {
		toKey = b
	}
	rules := f.transfersByPair[pairKey(fromKey, toKey)]
	best, bestCount := int32(-1), int32(math.MaxInt32)
	var bestPrice Money
	var bestCost int64
	for _, ti := range rules {
		tr := &f.transferRules[ti]
		limit := int32(math.MaxInt32)
		if tr.count > 0 {
			if int32(count) > tr.count {
				continue
			}
			limit = tr.count
		}
		if tr.durationLimit > 0 {
			var d time.Duration
			switch tr.limitType {
			case DepartureToArrival:
				d = cur.end.Sub(first.start)
			case DepartureToDeparture:
				d = cur.start.Sub(first.start)
			case ArrivalToDeparture:
				d = cur.start.Sub(first.end)
			case ArrivalToArrival:
				d = cur.end.Sub(first.end)
			}
			if d > time.Duration(tr.durationLimit)*time.Second {
				continue
			}
		}
		var price Money
		if tr.product >= 0 {
			p, ok := f.productPrice(tr.product, cat, media)
			if !ok {
				continue
			}
			price = p
		}
		cost := price.Amount
		switch tr.kind {
		case FromLegPlusTransferPlusToLeg:
			cost += toFare
		case TransferOnly:
			cost -= waived
		}
		if best < 0 || limit < bestCount || (limit == bestCount && cost < bestCost) {
			best, bestCount, bestPrice, bestCost = ti, limit, price, cost
		}
	}
	return best, bestPrice, best >= 0
}

// CheckLeg reports whether the feed knows what l names (route, network,
// stops), as Price would, without pricing it.
func (f *Feed) CheckLeg(l *Leg) error {
	_, err := f.resolve(l)
	return err
}
