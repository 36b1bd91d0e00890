package fares

import (
	"cmp"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"slices"
	"time"
)

// TapKind is the kind of a fare validation.
type TapKind int8

// The validation kinds Faregate's terminals report.
const (
	// TapIn is an entry validation at a gate or on boarding (check-in).
	TapIn TapKind = iota
	// TapOut is an exit validation (check-out).
	TapOut
	// Validation is a single validation with no exit expected (a flat-fare
	// bus reader): it makes a leg from its stop with no arrival stop.
	Validation
)

// Tap is one fare validation of a passenger.
type Tap struct {
	Kind TapKind
	Time time.Time
	// StopID is where the validation happened (stops.stop_id); may be
	// empty for on-board readers that do not know the stop.
	StopID string
	// RouteID is the route of an on-board reader; empty at station gates.
	RouteID string
	// NetworkID is the network of a station gate, used when RouteID is
	// empty.
	NetworkID string
	// AgencyID is the agency (operator) whose reader took the validation:
	// the leg's agency when RouteID is empty (see Leg.AgencyID).
	AgencyID string
}

// TapPolicy tunes how taps become legs and journeys.
type TapPolicy struct {
	// MaxLegDuration is the longest time between a tap-in and its tap-out;
	// a tap-out later than that does not close the tap-in. Zero means
	// DefaultMaxLegDuration. It is also each incomplete leg's Within.
	MaxLegDuration time.Duration
	// MaxTransferGap is the longest wait between the end of one leg and
	// the start of the next within one journey. Zero means the feed's
	// longest fare_transfer_rules duration_limit, or 3 hours when some
	// rule has no limit or there are no transfer rules.
	MaxTransferGap time.Duration
	// RepeatWindow: a tap like the rider's tap just before it (the same
	// kind, stop, route, network and agency) within this long of it is the
	// card read again (held on the reader, presented
	// twice as the gate opened) and is ignored: one tap, one fare. Zero
	// means DefaultRepeatWindow; negative, none.
	RepeatWindow time.Duration
}

// DefaultMaxLegDuration is TapPolicy.MaxLegDuration's default.
const DefaultMaxLegDuration = 4 * time.Hour

// DefaultRepeatWindow is TapPolicy.RepeatWindow's default: a minute, far
// shorter than any ride or transfer, far longer than a double read.
const DefaultRepeatWindow = time.Minute

func (f *Feed) policyDefaults(p TapPolicy) TapPolicy {
	if p.RepeatWindow == 0 {
		p.RepeatWindow = DefaultRepeatWindow
	}
	if p.MaxLegDuration <= 0 {
		p.MaxLegDuration = DefaultMaxLegDuration
	}
	if p.MaxTransferGap <= 0 {
		p.MaxTransferGap = 3 * time.Hour
		if f.maxTransferLimit > 0 {
			p.MaxTransferGap = time.Duration(f.maxTransferLimit) * time.Second
		}
	}
	return p
}

// BuildJourneys turns one passenger's taps into journeys (sorted by time
// first, stably, if they are not in order):
//
//   - a TapIn followed by a TapOut within MaxLegDuration is a leg from the
//     tap-in's stop to the tap-out's stop; the route or network is the
//     tap-in's, else the tap-out's. Unless both taps name networks (a
//     route's is its network) that differ and no chain of
//     fare_leg_join_rules.txt rows leads from the tap-in's to the
//     tap-out's: a tap-out on a network a rider cannot reach within one
//     fare leg ends no leg begun on another (a rider tapping in on a cheap
//     line and out at the airport line's gate would otherwise ride a leg
//     no rule prices, free: an outside test);
//   - a TapIn followed by another TapIn or a Validation, by a TapOut too
//     late or on another network, or by nothing, is an incomplete leg
//     (tap-in without tap-out): Price charges it the maximum fare;
//   - a TapOut with no open TapIn is an incomplete leg with no entry,
//     also charged the maximum fare;
//   - a Validation is a leg from its stop with no arrival stop, starting
//     and ending at the validation;
//   - a tap that repeats the tap just before it (the same kind, stop,
//     route, network and agency within TapPolicy.RepeatWindow, a minute by
//     default) is the card read again and is left out: one tap (Repeats).
//
// Consecutive complete legs form one journey while each starts within
// MaxTransferGap of the previous one's end; an incomplete leg is a journey
// of its own. Journeys carry the given rider category and fare medium.
// Call it once the passenger's taps are final (e.g. at the fare day's
// close): an open tap-in at the end is treated as incomplete.
func (f *Feed) BuildJourneys(taps []Tap, category, medium string, p TapPolicy) []Journey {
	js, _ := f.buildJourneys(nil, nil, taps, category, medium, p, nil)
	return js
}

// JourneyOf says which journey BuildJourneys puts each tap in: the index,
// in the journeys it would return, of taps[i]'s journey. The taps must be
// in time order (nil otherwise).
func (f *Feed) JourneyOf(taps []Tap, p TapPolicy) []int {
	if !slices.IsSortedFunc(taps, byTime) {
		return nil
	}
	of := make([]int, len(taps))
	f.buildJourneys(nil, nil, taps, "", "", p, of)
	return of
}

// buildJourneys is BuildJourneys appending the journeys to js and their
// legs to legs (which it returns, for reuse): every journey's Legs is a
// run of it, capped so that appending to one cannot overwrite the next.
// A journey has at least one leg and a leg comes from at least one tap, so
// legs never needs more than len(taps).
//
// With of (len(taps), taps in time order), of[i] is set to the index in js
// of the journey taps[i] goes in (see JourneyOf).
func (f *Feed) buildJourneys(js []Journey, legs []Leg, taps []Tap, category, medium string, p TapPolicy, of []int) ([]Journey, []Leg) {
	p = f.policyDefaults(p)
	if !slices.IsSortedFunc(taps, byTime) {
		taps = slices.Clone(taps)
		slices.SortStableFunc(taps, byTime)
	}
	legs = slices.Grow(legs[:0], len(taps))
	cur := 0 // legs[cur:] are the journey being built
	flush := func() {
		if n := len(legs); n > cur {
			js = append(js, Journey{Legs: legs[cur:n:n], RiderCategory: category, FareMedia: medium})
			cur = n
		}
	}
	// add puts l in the journey being built (or one of its own) and
	// returns that journey's index in js.
	add := func(l Leg) int {
		if l.Incomplete {
			flush()
			legs = append(legs, l)
			j := len(js)
			flush()
			return j
		}
		if len(legs) > cur && l.Start.Sub(legs[len(legs)-1].End) > p.MaxTransferGap {
			flush()
		}
		legs = append(legs, l)
		return len(js)
	}
	var open *Tap
	openAt := 0 // open's index in taps
	// The last tap taken (index in taps, -1: none), and the repeats
	// skipped (each with the tap it repeats): a repeat goes in that tap's
	// journey.
	last := -1
	var repeats [][2]int
	closeOpen := func() {
		if open != nil {
			j := add(Leg{RouteID: open.RouteID, NetworkID: open.NetworkID, AgencyID: open.AgencyID, FromStop: open.StopID, Start: open.Time, End: open.Time, Incomplete: true, Within: p.MaxLegDuration})
			if of != nil {
				of[openAt] = j
			}
			open = nil
		}
	}
	for i := range taps {
		t := &taps[i]
		if last >= 0 && p.RepeatWindow > 0 && repeatOf(&taps[last], t, p.RepeatWindow) {
			repeats = append(repeats, [2]int{i, last})
			continue
		}
		last = i
		switch t.Kind {
		case TapIn:
			closeOpen()
			open, openAt = t, i
		case TapOut:
			if open != nil && t.Time.Sub(open.Time) <= p.MaxLegDuration && f.sameNetwork(open, t) {
				l := Leg{RouteID: open.RouteID, NetworkID: open.NetworkID, AgencyID: open.AgencyID, FromStop: open.StopID, ToStop: t.StopID, Start: open.Time, End: t.Time}
				if l.RouteID == "" && l.NetworkID == "" {
					l.RouteID, l.NetworkID = t.RouteID, t.NetworkID
				}
				if l.AgencyID == "" {
					l.AgencyID = t.AgencyID
				}
				j := add(l)
				if of != nil {
					of[openAt], of[i] = j, j
				}
				open = nil
				continue
			}
			closeOpen()
			j := add(Leg{RouteID: t.RouteID, NetworkID: t.NetworkID, AgencyID: t.AgencyID, ToStop: t.StopID, Start: t.Time, End: t.Time, Incomplete: true, Within: p.MaxLegDuration})
			if of != nil {
				of[i] = j
			}
		case Validation:
			closeOpen()
			j := add(Leg{RouteID: t.RouteID, NetworkID: t.NetworkID, AgencyID: t.AgencyID, FromStop: t.StopID, Start: t.Time, End: t.Time})
			if of != nil {
				of[i] = j
			}
		}
	}
	closeOpen()
	flush()
	if of != nil {
		for _, r := range repeats {
			of[r[0]] = of[r[1]]
		}
	}
	return js, legs
}

// sameNetwork says whether tap-out out can end the leg tap-in in began
// (see BuildJourneys): not when both name a network (a route's network,
// else the tap's), different ones, that no chain of fare_leg_join_rules.txt
// rows leads from the tap-in's to the tap-out's. Routes and agencies do
// not split a leg: fare_leg_rules.txt matches neither, and a gated network
// of several lines or operators prices entry to exit as one leg. What the
// feed does not know names nothing here; pricing says what is unknown.
func (f *Feed) sameNetwork(in, out *Tap) bool {
	ni, no := f.tapNetwork(in), f.tapNetwork(out)
	return ni < 0 || no < 0 || ni == no || f.joinsNetworks(ni, no)
}

// tapNetwork is the network (index, -1: none) a tap's route is in, else
// the one it names.
func (f *Feed) tapNetwork(t *Tap) int32 {
	if t.RouteID != "" {
		if ri, ok := f.routes[t.RouteID]; ok {
			return ri.network
		}
		return -1
	}
	if n, ok := f.networkIdx[t.NetworkID]; ok && t.NetworkID != "" {
		return n
	}
	return -1
}

// joinsNetworks says whether a chain of fare_leg_join_rules.txt rows leads
// from network a to network b: a rider may pass from one to the other
// without a tap, within one fare leg.
func (f *Feed) joinsNetworks(a, b int32) bool {
	seen := []int32{a}
	for i := 0; i < len(seen); i++ {
		for j := range f.joinRules {
			jr := &f.joinRules[j]
			if jr.fromNetwork != seen[i] || slices.Contains(seen, jr.toNetwork) {
				continue
			}
			if jr.toNetwork == b {
				return true
			}
			seen = append(seen, jr.toNetwork)
		}
	}
	return false
}

// Repeats says which of taps (in time order) are repeat reads that
// BuildJourneys leaves out (TapPolicy.RepeatWindow): a tap like the one
// taken just before it (no other tap between), within the window.
func (f *Feed) Repeats(taps []Tap, p TapPolicy) []bool {
	p = f.policyDefaults(p)
	out := make([]bool, len(taps))
	if p.RepeatWindow <= 0 {
		return out
	}
	last := -1
	for i := range taps {
		if last >= 0 && repeatOf(&taps[last], &taps[i], p.RepeatWindow) {
			out[i] = true
			continue
		}
		last = i
	}
	return out
}

// repeatOf reports whether t repeats prev: the same kind, stop, route,
// network and agency, within window after it.
func repeatOf(prev, t *Tap, window time.Duration) bool {
	return t.Kind == prev.Kind && t.StopID == prev.StopID && t.RouteID == prev.RouteID && t.NetworkID == prev.NetworkID &&
		t.AgencyID == prev.AgencyID && t.Time.Sub(prev.Time) <= window
}

func byTime(a, b Tap) int { return a.Time.Compare(b.Time) }

// Settlement is one journey as clearing books it.
type Settlement struct {
	Journey Journey
	// Fare is the uncapped price. When Fare.Known is false the journey is
	// held for review and charged leg by leg where the feed knows a fare
	// for any of its legs (Fallback), and nothing (Charge and Shares zero)
	// where it knows none.
	Fare   Fare
	Charge Charge
	// Shares split Charge.Charged between the agencies (see Apportion).
	Shares []Share
	// Fallback reports a journey of unknown fare charged leg by leg: each
	// leg at its own fare where a rule prices it alone (legs that
	// fare_leg_join_rules.txt join into a fare leg no rule prices), else
	// at the maximum fare of its entry, as a tap-in without tap-out at its
	// network, stop and time; a leg with neither adds nothing. The sum is
	// capped like any journey and apportioned by the legs' amounts. An
	// exit that completes a leg no rule prices (a ride to a stop the rules
	// of its entry's network never reach) thus credits back nothing of the
	// entry's maximum fare: an unknown fare is the rider's to dispute, not
	// a free ride.
	Fallback bool
}

// Settle is what clearing calls for a passenger: it builds journeys from
// the taps (BuildJourneys), prices each (Price) and splits it where no
// transfer or join rule joins a leg to the one before (each such chain is
// a fare, a settlement, of its own: priced, capped at its own start, and
// unknown on its own when the feed has no fare for it), applies the passenger's
// fare caps in journey order (capper, which may be nil for no capping) and
// splits each charge between agencies (Apportion). A leg naming a stop,
// route, network or agency the feed does not know is a settlement of its
// own with an unknown fare (Fare.Reason names the place), and the known
// legs either side of it are journeys of their own. Every journey is priced
// before any is capped, so an error from pricing (an unknown rider category
// or fare medium, legs out of order) leaves the capper untouched; a capping
// error (ErrOutOfOrder) may come after earlier journeys were recorded.
func (f *Feed) Settle(taps []Tap, category, medium string, p TapPolicy, capper *Capper) ([]Settlement, error) {
	return f.SettleMemo(taps, category, medium, p, capper, nil)
}

// SettleMemo is Settle remembering each journey's uncapped fare and
// apportionment weights in memo (nil: none): repricing a passenger's day
// after one more tap then prices only the journeys that changed. The
// charges and shares are the same as Settle's; with a memo, each
// settlement's Fare carries only Known and Total.
func (f *Feed) SettleMemo(taps []Tap, category, medium string, p TapPolicy, capper *Capper, memo *JourneyMemo) ([]Settlement, error) {
	return f.settle(nil, taps, category, medium, p, capper, memo)
}

// Scratch is working memory for SettleInto, so that settling one
// passenger after another does not allocate once it has grown to their
// size. It is not safe for concurrent use: keep one per goroutine (a
// sync.Pool of them, say). The zero value is ready to use.
type Scratch struct {
	journeys []Journey
	legs     []Leg
	out      []Settlement
	entries  []memoEntry
	shares   []Share
	fare     Fare // a memo's miss: it keeps only Known and Total
	alone    Fare // a leg priced alone for apportionment
	parts    []int64
	rems     []uint64
}

// SettleInto is SettleMemo working in sc: the settlements it returns, with
// their journeys' legs and their shares, live in sc and are valid only
// until sc's next use. Charges and shares are SettleMemo's; as there, a
// settlement's Fare carries only Known and Total when memo is not nil.
func (f *Feed) SettleInto(sc *Scratch, taps []Tap, category, medium string, p TapPolicy, capper *Capper, memo *JourneyMemo) ([]Settlement, error) {
	return f.settle(sc, taps, category, medium, p, capper, memo)
}

// settle is SettleMemo, in sc's memory when sc is not nil.
func (f *Feed) settle(sc *Scratch, taps []Tap, category, medium string, p TapPolicy, capper *Capper, memo *JourneyMemo) ([]Settlement, error) {
	var (
		journeys []Journey
		out      []Settlement
		weights  []memoEntry
	)
	if sc != nil {
		sc.journeys, sc.legs = f.buildJourneys(sc.journeys[:0], sc.legs, taps, category, medium, p, nil)
		journeys = sc.journeys
		out = slices.Grow(sc.out[:0], len(journeys))
		weights = slices.Grow(sc.entries[:0], len(journeys))
		sc.shares = sc.shares[:0]
	} else {
		journeys, _ = f.buildJourneys(nil, make([]Leg, 0, len(taps)), taps, category, medium, p, nil)
		out = make([]Settlement, 0, len(journeys))
		weights = make([]memoEntry, 0, len(journeys))
	}
	memo.begin()
	defer memo.end()
	for i := range journeys {
		var err error
		out, weights, err = f.settleJourney(out, weights, journeys[i], sc, memo)
		if err != nil && isUnknownPlace(err) && len(journeys[i].Legs) > 1 {
			// A leg at a place the feed does not know (a station opened
			// before the feed was updated) is a journey of its own, its
			// fare unknown: no transfer can be priced through it, so the
			// known legs either side are fares of their own too.
			out, weights, err = f.settleAroundUnknown(out, weights, journeys[i], sc, memo)
		}
		if err != nil {
			return nil, err
		}
	}
	if sc != nil {
		sc.out, sc.entries = out, weights
	}
	byStart := func(a, b Settlement) int {
		return cmp.Compare(a.Journey.Legs[0].Start.UnixNano(), b.Journey.Legs[0].Start.UnixNano())
	}
	if !slices.IsSortedFunc(out, byStart) { // journeys come in order but for incomplete legs
		order := make([]int, len(out))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return byStart(out[a], out[b]) })
		sorted := make([]Settlement, len(out))
		sortedW := make([]memoEntry, len(out))
		for i, k := range order {
			sorted[i], sortedW[i] = out[k], weights[k]
		}
		out, weights = sorted, sortedW
	}
	for i := range out {
		s := &out[i]
		fare, ok := s.chargeable(&weights[i])
		s.Charge = Charge{Fare: fare, Charged: fare}
		if !ok {
			continue
		}
		if capper != nil {
			ch, err := capper.Apply(s.Journey.Legs[0].Start, category, medium, fare)
			if err != nil {
				return nil, err
			}
			s.Charge = ch
		}
		if sc != nil {
			s.Shares = sc.splitShares(weights[i].agencies, weights[i].weights, s.Charge.Charged)
		} else {
			s.Shares = splitShares(weights[i].agencies, weights[i].weights, s.Charge.Charged)
		}
	}
	return out, nil
}

// settleJourney appends j's settlements and their memo entries: one, or
// one per transfer chain where legs within the transfer window are joined
// by no transfer or join rule (each chain is priced, capped at its own
// start and, if the feed has no fare for it, left unknown on its own).
func (f *Feed) settleJourney(out []Settlement, weights []memoEntry, j Journey, sc *Scratch, memo *JourneyMemo) ([]Settlement, []memoEntry, error) {
	e, fr, err := memo.lookup(f, &j, sc)
	if err != nil {
		return out, weights, err
	}
	if len(e.starts) == 0 {
		return append(out, Settlement{Journey: j, Fare: fr}), append(weights, e), nil
	}
	legs, from := j.Legs, 0
	for c := 0; c <= len(e.starts); c++ {
		to := len(legs)
		if c < len(e.starts) {
			to = int(e.starts[c])
		}
		chain := j
		chain.Legs = legs[from:to:to]
		ce, cf, err := memo.lookup(f, &chain, sc)
		if err != nil {
			return out, weights, err
		}
		weights = append(weights, ce)
		out = append(out, Settlement{Journey: chain, Fare: cf})
		from = to
	}
	return out, weights, nil
}

// SettleJourney is what Settle charges for one journey given as legs (as
// `faregate fares quote` reads one), before caps: each transfer chain of
// it a settlement, a chain of unknown fare charged leg by leg (Fallback).
// A leg at a place the feed does not know is an error, as for Price.
func (f *Feed) SettleJourney(j Journey) ([]Settlement, error) {
	out, weights, err := f.settleJourney(nil, nil, j, nil, nil)
	if err != nil {
		return nil, err
	}
	for i := range out {
		s := &out[i]
		amount, ok := s.chargeable(&weights[i])
		s.Charge = Charge{Fare: amount, Charged: amount}
		if ok {
			s.Shares = splitShares(weights[i].agencies, weights[i].weights, amount)
		}
	}
	return out, nil
}

// chargeable is what s is charged before caps, w being its memo entry:
// its fare, or for a fare unknown what it is charged leg by leg (setting
// Fallback). It reports false, with zero, for a fare unknown on every leg:
// nothing is charged nor shared.
func (s *Settlement) chargeable(w *memoEntry) (Money, bool) {
	switch {
	case s.Fare.Known:
		return s.Fare.Total, true
	case w.fallback:
		s.Fallback = true
		return Money{Amount: w.fallbackTotal, Currency: w.currency}, true
	}
	return Money{Currency: s.Fare.Total.Currency}, false
}

// settleAroundUnknown settles a journey some of whose legs name a place
// (stop, route, network or agency) the feed does not know: each such leg
// alone, with an unknown fare, and each run of known legs between them as
// a journey of its own.
func (f *Feed) settleAroundUnknown(out []Settlement, weights []memoEntry, j Journey, sc *Scratch, memo *JourneyMemo) ([]Settlement, []memoEntry, error) {
	legs, from := j.Legs, 0
	part := func(to int) error {
		if to == from {
			return nil
		}
		p := j
		p.Legs = legs[from:to:to]
		var err error
		out, weights, err = f.settleJourney(out, weights, p, sc, memo)
		from = to
		return err
	}
	for k := range legs {
		if _, err := f.resolve(&legs[k]); err == nil {
			continue
		}
		if err := part(k); err != nil {
			return out, weights, err
		}
		if err := part(k + 1); err != nil {
			return out, weights, err
		}
	}
	return out, weights, part(len(legs))
}

// fallback prices a journey of unknown fare leg by leg (see
// Settlement.Fallback), in alone: each leg alone as it was ridden, else
// its entry as a tap-in without tap-out at the maximum fare. It returns
// the total and the legs' agencies with their amounts as apportionment
// weights, and reports whether the feed knows a fare for any leg (and all
// in one currency).
func (f *Feed) fallback(rl []resolved, cat, media int32, alone *Fare) (total int64, currency string, agencies []string, weights []int64, ok bool) {
	var w legWeights
	for i := range rl {
		f.priceResolved(alone, rl[i:i+1], cat, media)
		if !alone.Known && rl[i].from >= 0 && !rl[i].incomplete {
			entry := rl[i]
			entry.incomplete, entry.to, entry.end = true, -1, entry.start
			f.priceResolved(alone, []resolved{entry}, cat, media)
		}
		w.add(f.agencyIDs[rl[i].agency], alone.Known, alone.Total.Amount)
		if !alone.Known {
			continue // this leg adds nothing
		}
		switch {
		case !ok:
			currency, ok = alone.Total.Currency, true
		case alone.Total.Currency != currency:
			return 0, "", nil, nil, false // mixed currencies: no fare
		}
		total += alone.Total.Amount
	}
	agencies, weights = w.result()
	return total, currency, agencies, weights, ok
}

// isUnknownPlace reports whether err is a leg naming a stop, route, network
// or agency the feed does not know (or a network its route is not in).
func isUnknownPlace(err error) bool {
	return errors.Is(err, ErrUnknownStop) || errors.Is(err, ErrUnknownRoute) || errors.Is(err, ErrUnknownNetwork) ||
		errors.Is(err, ErrNetworkNotRoute) || errors.Is(err, ErrUnknownAgency)
}

// JourneyMemo remembers journeys' fares and apportionment weights for
// SettleMemo, keyed by a 64-bit hash of everything that prices a journey
// (its legs, rider category and medium; a collision within one rider's
// day is beyond any practical chance). It keeps of a fare only whether it
// is known and its total, what charging needs: settlements it serves
// carry those, not the fare legs and transfers (price without a memo for
// those). After each SettleMemo it keeps only the journeys that call
// used. It belongs to one Feed and is not safe for concurrent use.
type JourneyMemo struct {
	m     []memoEntry // a day's few journeys: a slice beats a map
	epoch uint32
}

type memoEntry struct {
	h        uint64
	epoch    uint32
	known    bool
	total    int64
	currency string
	agencies []string
	weights  []int64
	// starts are the legs from which on the journey is a new fare: each
	// begins a transfer chain the legs before it are joined to by no
	// transfer or join rule (chainStarts); nil for one chain.
	starts []int32
	// fallback and fallbackTotal are, for a journey of one chain whose
	// fare is unknown, what it is charged leg by leg where the feed knows
	// a fare for any leg (Feed.fallback); agencies and weights then
	// apportion that.
	fallback      bool
	fallbackTotal int64
}

// chainStarts returns the legs of a priced journey that begin its transfer
// chains after the first: those of each fare leg no transfer leads to (a
// leg joined to the one before by fare_leg_join_rules.txt shares its fare
// leg). Settle prices and caps each chain as a journey of its own.
func chainStarts(fare *Fare) []int32 {
	var starts []int32
	for k := 1; k < len(fare.Legs); k++ {
		if !slices.ContainsFunc(fare.Transfers, func(t Transfer) bool { return t.ToFareLeg == k }) {
			starts = append(starts, int32(fare.Legs[k].FirstLeg))
		}
	}
	return starts
}

var memoSeed = maphash.MakeSeed()

// NewJourneyMemo returns an empty memo.
func NewJourneyMemo() *JourneyMemo { return &JourneyMemo{} }

// fare is the entry's fare as settlements carry it.
func (e *memoEntry) fare() Fare {
	return Fare{Known: e.known, Total: Money{Amount: e.total, Currency: e.currency}}
}

// lookup returns j's memo entry and fare, pricing j on a miss, in sc's
// memory when sc is not nil (a memo keeps only the fare's Known and Total;
// without a memo the fare is returned in full, in its own memory).
func (m *JourneyMemo) lookup(f *Feed, j *Journey, sc *Scratch) (memoEntry, Fare, error) {
	var h uint64
	if m != nil {
		h = journeyHash(j)
		for i := range m.m {
			if m.m[i].h == h {
				m.m[i].epoch = m.epoch
				return m.m[i], m.m[i].fare(), nil
			}
		}
	}
	fare, alone := new(Fare), new(Fare)
	if sc != nil {
		alone = &sc.alone
		if m != nil {
			fare = &sc.fare
		}
	}
	// Price and Apportion's weights from the legs resolved once: Price
	// fails for everything the weights could fail for.
	resetFare(fare, f.currency)
	var rbuf [8]resolved
	rl, cat, media, err := f.resolveJourney(rbuf[:0], j)
	switch {
	case err != nil && len(j.Legs) == 1 && isUnknownPlace(err):
		// A leg at a place the feed does not know has no fare: held for
		// review (the caller splits a longer journey so that each such
		// leg is alone). Where only its exit is unknown (a station opened
		// before the feed was updated), its entry's maximum fare is.
		fare.Reason = err.Error()
		rl = rl[:0]
		if l := j.Legs[0]; !l.Incomplete && l.FromStop != "" {
			// Its exit came at l.End: a timeframe rule for a later exit
			// never counts.
			l.Incomplete, l.Within = true, max(l.End.Sub(l.Start), time.Nanosecond)
			if r, rerr := f.resolve(&l); rerr == nil {
				if cat, media, err = f.rider(j.RiderCategory, j.FareMedia); err != nil {
					return memoEntry{}, *fare, err
				}
				rl = append(rl, r)
			}
		}
	case err != nil:
		return memoEntry{}, *fare, err
	default:
		f.priceResolved(fare, rl, cat, media)
	}
	e := memoEntry{h: h, epoch: m.now(), known: fare.Known, total: fare.Total.Amount, currency: fare.Total.Currency}
	if len(j.Legs) > 1 && len(rl) > 0 {
		e.starts = chainStarts(fare)
	}
	switch {
	case fare.Known:
		e.agencies, e.weights = f.resolvedWeights(rl, cat, media, alone)
	case len(e.starts) == 0 && len(rl) > 0:
		// One chain of unknown fare (a longer journey's chains are looked
		// up one by one): charged leg by leg, apportioned by the legs'
		// amounts.
		if total, cur, agencies, weights, ok := f.fallback(rl, cat, media, alone); ok {
			e.fallback, e.fallbackTotal, e.currency, e.agencies, e.weights = true, total, cur, agencies, weights
		}
	}
	if m != nil {
		m.m = append(m.m, e)
		return e, e.fare(), nil
	}
	return e, *fare, nil
}

func (m *JourneyMemo) now() uint32 {
	if m == nil {
		return 0
	}
	return m.epoch
}

// begin starts a SettleMemo call; end drops what it did not use.
func (m *JourneyMemo) begin() {
	if m != nil {
		m.epoch++
	}
}

func (m *JourneyMemo) end() {
	if m == nil {
		return
	}
	m.m = slices.DeleteFunc(m.m, func(e memoEntry) bool { return e.epoch != m.epoch })
}

// journeyHash hashes everything that prices and apportions j, without
// allocating.
func journeyHash(j *Journey) uint64 {
	var h maphash.Hash
	h.SetSeed(memoSeed)
	str := func(s string) { h.WriteString(s); h.WriteByte(0) }
	var n [17]byte
	str(j.RiderCategory)
	str(j.FareMedia)
	for i := range j.Legs {
		l := &j.Legs[i]
		str(l.RouteID)
		str(l.NetworkID)
		str(l.AgencyID) // whose share a leg without a route is
		str(l.FromStop)
		str(l.ToStop)
		binary.BigEndian.PutUint64(n[:], uint64(l.Start.UnixNano()))
		binary.BigEndian.PutUint64(n[8:], uint64(l.End.UnixNano()))
		n[16] = 0
		if l.Incomplete {
			n[16] = 1
		}
		h.Write(n[:])
		if l.Incomplete {
			binary.BigEndian.PutUint64(n[:], uint64(l.Within))
			h.Write(n[:8])
		}
	}
	return h.Sum64()
}
