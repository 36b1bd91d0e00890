package fares

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"
)

// The enrolled-category check: whether a rider enrolled in a rider
// category is priced wherever a rider in no category is (UnpricedFor).

// CategoryCheckWork is the work one UnpricedFor does at most when its
// caller states none: engine probes (the rule the engine picks for one
// leg, for a rider in no category and, where that finds a fare, for the
// category; one, and one for each eight rules the engine looks at), each
// timeframe a day's services are looked up for, each area set compared. A probe takes 0.1 to 0.3 µs, so a check stays within a few
// seconds: an operator's feed with thousands of timeframes asked for more
// than a hundred million and gigabytes of memory (an outside test saw
// clearing die of it).
const CategoryCheckWork = 20_000_000

// MaxCategoryCheckDays bounds the fare days one UnpricedFor looks at: 20
// years and their leap days, the longest clearing lets an enrolment run
// (clearing.MaxEnrolmentYears).
const MaxCategoryCheckDays = 20*366 + 2

// ErrCategoryCheckTooLarge is UnpricedFor's error for a check that would
// need more work than it is allowed, or more fare days than
// MaxCategoryCheckDays.
var ErrCategoryCheckTooLarge = errors.New("the enrolled-category check is too large")

// PricesCategory reports whether a rider enrolled in category, paying by
// medium, can be priced wherever a rider in no category paying by it can,
// on fare days first through last (UnpricedFor, within
// CategoryCheckWork; a check too large is false). A feed that keeps the
// category but sells it nothing, or nothing on some network, at some
// hours or only on another fare medium, prices such a rider's journeys
// there as unknown: free (an outside recheck saw a concession metro ride
// charged 0 by a feed that still sold concession fares on the bus).
func (f *Feed) PricesCategory(category, medium string, first, last Date) bool {
	why, err := f.UnpricedFor(context.Background(), category, medium, first, last, 0)
	return why == "" && err == nil
}

// UnpricedFor names a leg a rider in no category paying by medium (a
// Faregate medium, "card" or "face": MediumFor) is priced for and a rider
// enrolled in category paying by it is not, on fare days first through
// last; "" when there is none. A category the feed does not name is every
// leg's, and is named as such. A fare day runs from its cut-over
// (FareDayStart) to the next day's: the early hours of the calendar day
// after last are its last day's (an outside test saw a 01:00 ride there
// never tried, and priced 0), those of first's calendar day the day
// before's. Legs are dated, as the engine dates them, in their first
// stop's zone (stop_timezone): the window's local days in each.
//
// The engine itself is asked (the rule it picks, rule_priority, empty
// fields as wildcards or not, timeframes on their service days, area
// sets), for every leg the feed can tell apart: each network and none,
// each pair of its stops' area sets (and, with area sets and join rules,
// each set a journey's joined legs may touch between them, and a
// combination no set names), starting and ending where the timeframes
// fare leg rules name tell them apart (each pair, where rules name an end
// timeframe, ending that day or the next), on one day of each pattern of
// their services the days show. Earlier checks by comparing rules missed
// feeds outside rechecks found: a concession rule of a lower priority, a
// catch-all that without rule_priority matches only unlisted areas, an
// adult catch-all with finer concession rules, a concession timeframe
// narrower than the adult one; and one week looked at missed a service
// starting later.
//
// The check does at most work (CategoryCheckWork when 0 or less), counted
// before it is done, so that a feed or window that needs more is refused
// at once with ErrCategoryCheckTooLarge naming why; the count is the
// feed's and the window's alone (never what an earlier call left in the
// memo). Answers are kept per category, medium and pattern of days. ctx
// ends a wait for another check of the feed, or the check itself.
func (f *Feed) UnpricedFor(ctx context.Context, category, medium string, first, last Date, work int64) (string, error) {
	if work <= 0 {
		work = CategoryCheckWork
	}
	c, ok := f.categoryIdx[category]
	if !ok {
		return fmt.Sprintf("rider category %q is not in rider_categories.txt", category), nil
	}
	if c == f.defaultCategory { // the engine's answers are the default's own
		return "", nil
	}
	media := int32(-1)
	if m, ok := f.mediaIdx[f.MediumFor(medium)]; ok {
		media = m
	}
	soldAny, soldOn := false, false
	for p := range f.productRows {
		for _, row := range f.productRows[p] {
			if row.category < 0 || row.category == c {
				soldAny = true
				soldOn = soldOn || row.media < 0 || row.media == media
			}
		}
	}
	if !soldAny {
		return fmt.Sprintf("no fare product is sold to rider category %q", category), nil
	}
	last = max(last, first)
	if days := int64(last) - int64(first) + 1; days > MaxCategoryCheckDays {
		return "", fmt.Errorf("%w: rider category %q over fare days %s to %s: %d days, at most %d", ErrCategoryCheckTooLarge, category, first, last, days, MaxCategoryCheckDays)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	k := f.check
	select {
	case k.lock <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-k.lock }()
	w := &checkWork{ctx: ctx, limit: work}
	base, err := k.baseFor(f, w)
	if err != nil {
		return "", f.tooLarge(err, category, first, last, base, 0)
	}
	if base.weight == 0 { // no leg is priced for a rider in no category
		return "", nil
	}
	// The window's tries, in day order, in each zone its stops keep time
	// in: the engine dates a leg by its first stop's zone (stop_timezone),
	// so a stop west of the agency starts the window on the calendar day
	// before (an outside recheck saw a New York stop's 22:30 ride on the
	// day before a Berlin window's first never tried, and priced 0), one
	// east ends it on the day after. In each zone: the local day holding
	// the window's beginning from then, whole days, and the day holding
	// its end up to then. Each day's patterns count whether kept or not:
	// the work counted is the window's, whatever was asked before.
	begin, end := f.FareDayBegins(first), f.FareDayBegins(last+1)
	type span struct {
		d0, d1 Date
		t0, t1 int32
	}
	spans := make([]span, len(base.zones))
	lo, hi, days := Date(math.MaxInt32), Date(math.MinInt32), int64(0)
	for z, loc := range base.zones {
		d0, t0 := civil(begin, loc)
		d1, t1 := civil(end, loc)
		spans[z] = span{d0, d1, t0, t1}
		lo, hi, days = min(lo, d0), max(hi, d1), days+int64(d1-d0)+1
	}
	if err := w.spend(days * (int64(len(base.refTFs)) + 1)); err != nil {
		return "", f.tooLarge(err, category, first, last, base, 0)
	}
	k.cover(f, base, lo, hi+1)
	if k.gen++; k.gen == 0 {
		clear(k.mark)
		k.gen = 1
	}
	// Every kind of day of the window and its cost first, then the
	// engine's probes: a window too large is refused before any is made.
	type met struct {
		t int32
		x Date
	}
	var kinds []met
	for z, sp := range spans {
		for x := sp.d0; x <= sp.d1; x++ {
			lo, hi := int32(0), int32(86400)
			if x == sp.d0 {
				lo = sp.t0
			}
			if x == sp.d1 {
				hi = sp.t1
			}
			if lo >= hi {
				continue
			}
			key := tryKey{zone: int32(z), p0: k.patOf(x), p1: -1, lo: lo, hi: hi}
			if base.endTF {
				key.p1 = k.patOf(x + 1)
			}
			t := k.tryOf(key, x)
			if k.mark[t] == k.gen {
				continue
			}
			k.mark[t] = k.gen
			kinds = append(kinds, met{t, x})
			cost, err := k.costOf(f, base, t, w)
			if err == nil {
				err = w.spend(cost)
			}
			if err != nil {
				return "", f.tooLarge(err, category, first, last, base, len(kinds))
			}
		}
	}
	for _, m := range kinds {
		rk := resultKey{category: c, media: media, try: m.t}
		gap, ok := k.results[rk]
		if !ok {
			var err error
			if gap, err = f.probeTry(base, &k.tries[m.t], c, media, w); err != nil {
				return "", err
			}
			k.results[rk] = gap
		}
		if !gap.found {
			continue
		}
		paying, on := "paying by "+medium, "paying by "+medium
		switch medium {
		case "card":
			on = "on the card"
		case "":
			paying, on = "of no fare medium", "of no fare medium"
		}
		if !soldOn {
			return fmt.Sprintf("no fare product is sold to rider category %q %s", category, on), nil
		}
		when := clockOf(gap.start)
		switch {
		case gap.nextDay:
			when += " to " + clockOf(gap.end) + " the next day"
		case gap.end != gap.start:
			when += " to " + clockOf(gap.end)
		}
		if z := k.tries[m.t].key.zone; z > 0 {
			when += " " + base.zones[z].String() + " time"
		}
		return fmt.Sprintf("a leg %s from %s to %s at %s on %s is priced for a rider in no category %s (fare_leg_rules.txt line %d) and not for rider category %q %s",
			f.networkName(gap.network), f.areasName(base.sets[gap.from]), f.areasName(base.sets[gap.to]), when, m.x, paying, f.legRules[gap.rule].line, category, on), nil
	}
	return "", nil
}

// tooLarge words a check's error: a check over its work names what made
// it large.
func (f *Feed) tooLarge(err error, category string, first, last Date, base *checkBase, tries int) error {
	if !errors.Is(err, ErrCategoryCheckTooLarge) {
		return err
	}
	what := "the feed's legs"
	if base != nil {
		what = fmt.Sprintf("%d networks and %d combinations of areas, %d instants of a day where the timeframes rules name begin or end, %d kinds of day in the window so far",
			len(base.nets), len(base.sets)*len(base.sets), len(base.edges), tries)
	}
	return fmt.Errorf("%w: rider category %q over fare days %s to %s needs more than %d probes of the fare engine (%s): too many timeframes, areas or patterns of service days to check",
		ErrCategoryCheckTooLarge, category, first, last, checkLimitOf(err), what)
}

// checkWork counts a check's work against its limit, and looks at its
// context now and then.
type checkWork struct {
	ctx          context.Context
	limit, spent int64
	tick         int64
}

// errOverWork carries the limit a check went over.
type errOverWork struct{ limit int64 }

func (e errOverWork) Error() string { return fmt.Sprintf("more than %d", e.limit) }
func (e errOverWork) Unwrap() error { return ErrCategoryCheckTooLarge }

func checkLimitOf(err error) int64 {
	var o errOverWork
	if errors.As(err, &o) {
		return o.limit
	}
	return 0
}

// spend counts n units of work: an error once over the limit.
func (w *checkWork) spend(n int64) error {
	w.spent += n
	if w.spent > w.limit {
		return errOverWork{w.limit}
	}
	return w.poll(n)
}

// poll looks at the context every 64k units of work done.
func (w *checkWork) poll(n int64) error {
	if w.tick += n; w.tick >= 1<<16 {
		w.tick = 0
		return w.ctx.Err()
	}
	return nil
}

// categoryCheck is a feed's memo for UnpricedFor.
type categoryCheck struct {
	lock chan struct{} // held while the memo is used: a context can give up waiting

	base *checkBase
	// baseOver is a limit building base went over (0: none): a check
	// allowed no more fails at once.
	baseOver int64

	// Calendar dates from lo on: the pattern of the services of the
	// timeframes rules name.
	lo     Date
	pat    []int32
	patIDs map[string]int32

	tryIDs  map[tryKey]int32
	tries   []checkTry
	results map[resultKey]legGap
	mark    []uint32 // by try: gen when met in the window being looked at
	gen     uint32
}

func newCategoryCheck() *categoryCheck {
	return &categoryCheck{lock: make(chan struct{}, 1), patIDs: map[string]int32{}, tryIDs: map[tryKey]int32{}, results: map[resultKey]legGap{}}
}

// tryKey is a kind of day the check tries: legs starting from lo to hi
// (seconds after midnight) on a day whose timeframes' services run as
// pattern p0, the next day's as p1 (-1 where no rule names an end
// timeframe), from stops keeping time in zone.
type tryKey struct {
	zone, p0, p1, lo, hi int32 // zone: an index of checkBase.zones
}

type checkTry struct {
	key  tryKey
	day  Date  // a day of its kind, the first met
	cost int64 // the work of trying it (costOf); -1 not known yet
}

type resultKey struct {
	category, media, try int32
}

// legGap is a leg priced for a rider in no category and not for the
// category (found).
type legGap struct {
	found             bool
	nextDay           bool
	network, from, to int32 // to, from: indexes of checkBase.sets
	start, end, rule  int32
}

// checkBase is what the check needs of the feed, whatever the days: the
// legs it tells apart.
type checkBase struct {
	nets   []int32   // each network, and -1 for none
	sets   [][]int32 // each stop's areas, areas no rule names as one
	edges  []int32   // where a timeframe rules name begins or ends, and midnight
	fromTF []int32   // timeframe groups rules name as the start's
	toTF   []int32   // ... as the end's
	refTFs []timeframe
	endTF  bool
	// joined: with area sets and join rules a fare leg's legs may touch
	// more areas than its ends'.
	joined     bool
	setKeys    map[string]bool // the area sets, as setKey
	fromListed []bool          // by sets: anyListed
	toListed   []bool
	// live holds, bit (n*len(sets)+a)*len(sets)+b, the legs of network
	// nets[n] from sets[a] to sets[b] some rule matches at some time:
	// only they are tried. weight is the work of trying them all once.
	live   []uint64
	weight int64
	cost   int64 // the work building it took
	// zones are the time zones stops keep (the agency's first), and
	// setZones, by sets, the bit (at most 63) of each zone a stop with
	// those areas keeps: a leg is dated in its first stop's zone.
	zones    []*time.Location
	setZones []uint64
}

// baseFor returns the feed's checkBase, built at most once.
func (k *categoryCheck) baseFor(f *Feed, w *checkWork) (*checkBase, error) {
	if k.base != nil {
		return k.base, w.spend(k.base.cost)
	}
	if k.baseOver >= w.limit {
		return nil, errOverWork{w.limit}
	}
	b, err := f.buildCheckBase(w)
	if err != nil {
		if errors.Is(err, ErrCategoryCheckTooLarge) {
			k.baseOver = w.limit
		}
		return nil, err
	}
	k.base = b
	return b, nil
}

func (f *Feed) buildCheckBase(w *checkWork) (*checkBase, error) {
	start := w.spent
	b := &checkBase{nets: []int32{-1}}
	for n := range f.networkIDs {
		b.nets = append(b.nets, int32(n))
	}
	// Areas no rule names are told apart from none only by whether some
	// are there: one stands for all (a stop's other areas never match an
	// area set, and make no from or to area listed).
	named := make([]bool, len(f.areaIDs))
	for i := range f.legRules {
		r := &f.legRules[i]
		for _, a := range []int32{r.fromArea, r.toArea} {
			if a >= 0 {
				named[a] = true
			}
		}
	}
	for _, set := range f.areaSets {
		for _, a := range set {
			named[a] = true
		}
	}
	other := int32(-1)
	for a := range named {
		if !named[a] {
			other = int32(a)
			break
		}
	}
	seen := map[string]int{}
	b.zones = []*time.Location{f.loc}
	addSet := func(areas []int32, loc *time.Location) {
		var p []int32
		for _, a := range areas {
			if !named[a] {
				a = other
			}
			p = insertSorted(p, a)
		}
		k := setKey(p)
		i, ok := seen[k]
		if !ok {
			i = len(b.sets)
			seen[k] = i
			b.sets = append(b.sets, p)
			b.setZones = append(b.setZones, 0)
		}
		z := slices.IndexFunc(b.zones, func(l *time.Location) bool { return l.String() == loc.String() })
		if z < 0 {
			z = len(b.zones)
			b.zones = append(b.zones, loc)
		}
		b.setZones[i] |= zoneBit(z)
	}
	for i := range f.stops {
		addSet(f.stops[i].areas, f.stops[i].loc)
	}
	if len(f.stops) == 0 { // a fare-only feed: each area alone, or none
		addSet(nil, f.loc)
		for a := range f.areaIDs {
			addSet([]int32{int32(a)}, f.loc)
		}
	}
	for _, s := range b.sets {
		b.fromListed = append(b.fromListed, anyListed(s, f.listedFromArea))
		b.toListed = append(b.toListed, anyListed(s, f.listedToArea))
	}
	// The timeframes rules name: only they tell legs apart.
	for i := range f.legRules {
		r := &f.legRules[i]
		if r.fromTF >= 0 && !slices.Contains(b.fromTF, r.fromTF) {
			b.fromTF = append(b.fromTF, r.fromTF)
		}
		if r.toTF >= 0 && !slices.Contains(b.toTF, r.toTF) {
			b.toTF = append(b.toTF, r.toTF)
		}
	}
	b.endTF = len(b.toTF) > 0
	var groups []int32
	for _, g := range slices.Concat(b.fromTF, b.toTF) {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
			b.refTFs = append(b.refTFs, f.tfGroups[g]...)
		}
	}
	b.edges = f.timeframeEdgesOf(groups)
	b.joined = f.hasAreaSets && len(f.joinRules) > 0
	b.setKeys = map[string]bool{}
	for _, s := range f.areaSets {
		b.setKeys[setKey(s)] = true
	}
	// Which legs some rule matches at some time, and the work of trying
	// them: counted as it is done, so a feed with too many is refused
	// before its memory is taken.
	S := len(b.sets)
	if int64(len(b.nets))*int64(S)*int64(S) > w.limit-w.spent {
		return nil, errOverWork{w.limit}
	}
	b.live = make([]uint64, (len(b.nets)*S*S+63)/64)
	var touch [][]int32
	for a := range b.sets {
		for bb := range b.sets {
			if err := w.spend(b.touchCost()); err != nil {
				return nil, err
			}
			touch = f.touchings(b, touch[:0], int32(a), int32(bb))
			for n, net := range b.nets {
				q := b.query(net, int32(a), int32(bb), nil)
				per := probeCost(f.rulesWalked(&q))
				if err := w.spend(int64(len(touch)) * per); err != nil {
					return nil, err
				}
				for _, t := range touch {
					q := b.query(net, int32(a), int32(bb), t)
					q.anyTime = true
					if _, _, matched, _ := f.pickRule(&q, f.defaultCategory, -1); matched {
						i := (n*S+a)*S + bb
						b.live[i/64] |= 1 << (i % 64)
						b.weight += int64(len(touch))*per + b.touchCost()
						break
					}
				}
			}
		}
	}
	b.cost = w.spent - start
	return b, nil
}

// probeCost is the work of asking the engine about a leg whose rule
// buckets hold rules rules: a probe's own 0.1 to 0.3 µs, and about 15 ns
// a rule it looks at. An outside recheck saw a feed of 300 catch-all rules
// (walked by every leg) and 600 areas checked within the work counted in
// probes alone, taking 64 s.
func probeCost(rules int64) int64 { return 1 + rules/8 }

// zoneBit is zone z's bit in checkBase.setZones: zones past the 63rd
// share the last.
func zoneBit(z int) uint64 { return 1 << min(z, 63) }

// touchCost is the work of finding the area sets a leg may touch.
func (b *checkBase) touchCost() int64 {
	if !b.joined {
		return 0
	}
	return int64(len(b.setKeys)) + int64(len(b.sets)) + 1
}

// query is a leg of network net from sets[a] to sets[bb] touching touched.
func (b *checkBase) query(net, a, bb int32, touched []int32) legQuery {
	return legQuery{network: net, from: b.sets[a], to: b.sets[bb], fromListed: b.fromListed[a], toListed: b.toListed[bb], touched: touched}
}

// touchings appends to dst the areas a fare leg from sets[a] to sets[bb]
// may touch, one of each kind the rules tell apart: its ends' (nil without
// area sets); with joined legs also each area set holding them, and a
// combination no set names (an outside test saw a joined journey over
// three areas no set held never tried, and a child ride it for 0).
func (f *Feed) touchings(b *checkBase, dst [][]int32, a, bb int32) [][]int32 {
	if !f.hasAreaSets {
		return append(dst, nil)
	}
	ends := slices.Clone(b.sets[a])
	for _, x := range b.sets[bb] {
		ends = insertSorted(ends, x)
	}
	dst = append(dst, ends)
	if !b.joined {
		return dst
	}
	for _, set := range f.areaSets {
		if !slices.Equal(set, ends) && !slices.ContainsFunc(ends, func(x int32) bool { return !slices.Contains(set, x) }) {
			dst = append(dst, set)
		}
	}
	if !b.setKeys[setKey(ends)] {
		return dst // the ends' areas are a combination no set names
	}
	// Some stop's areas added to the ends' make a combination no set
	// names: a journey joining a leg there touches it.
	for _, s := range b.sets {
		u := slices.Clone(ends)
		for _, x := range s {
			u = insertSorted(u, x)
		}
		if !b.setKeys[setKey(u)] {
			return append(dst, u)
		}
	}
	return dst
}

func setKey(areas []int32) string { return fmt.Sprint(areas) }

// timeframeEdgesOf returns the instants of a day where timeframes of groups
// begin or end, and midnight, as seconds after midnight, in order.
func (f *Feed) timeframeEdgesOf(groups []int32) []int32 {
	edges := []int32{0}
	for _, g := range groups {
		for _, tf := range f.tfGroups[g] {
			for _, s := range []int32{tf.start, tf.end} {
				if s > 0 && s < 86400 && !slices.Contains(edges, s) {
					edges = append(edges, s)
				}
			}
		}
	}
	slices.Sort(edges)
	return edges
}

// cover makes the memo's dates hold first through last.
func (k *categoryCheck) cover(f *Feed, b *checkBase, first, last Date) {
	hi := k.lo + Date(len(k.pat))
	if len(k.pat) > 0 && first >= k.lo && last < hi {
		return
	}
	lo, end := first, last+1
	if len(k.pat) > 0 && int64(max(hi, end))-int64(min(k.lo, lo)) <= 4*MaxCategoryCheckDays {
		lo, end = min(k.lo, lo), max(hi, end) // grown; else begun again
	}
	pat := make([]int32, end-lo)
	for i := range pat {
		d := lo + Date(i)
		if j := int(d - k.lo); len(k.pat) > 0 && d >= k.lo && d < hi {
			pat[i] = k.pat[j]
			continue
		}
		pat[i] = f.dayPattern(k, b, d)
	}
	k.lo, k.pat = lo, pat
}

func (k *categoryCheck) patOf(d Date) int32 { return k.pat[d-k.lo] }

// dayPattern interns which services of the timeframes rules name run on d.
func (f *Feed) dayPattern(k *categoryCheck, b *checkBase, d Date) int32 {
	p := make([]byte, (len(b.refTFs)+7)/8)
	for i, tf := range b.refTFs {
		if f.services[tf.service].active(d) {
			p[i/8] |= 1 << (i % 8)
		}
	}
	id, ok := k.patIDs[string(p)]
	if !ok {
		id = int32(len(k.patIDs))
		k.patIDs[string(p)] = id
	}
	return id
}

// tryOf interns a kind of day.
func (k *categoryCheck) tryOf(key tryKey, day Date) int32 {
	if t, ok := k.tryIDs[key]; ok {
		return t
	}
	t := int32(len(k.tries))
	k.tryIDs[key] = t
	k.tries = append(k.tries, checkTry{key: key, day: day, cost: -1})
	k.mark = append(k.mark, 0)
	return t
}

// costOf is the work of trying kind of day t: its spans, times the work
// of trying each leg, and of finding them.
func (k *categoryCheck) costOf(f *Feed, b *checkBase, t int32, w *checkWork) (int64, error) {
	tr := &k.tries[t]
	if tr.cost >= 0 {
		return tr.cost, nil
	}
	find := planCost(b)
	if find > w.limit-w.spent { // not even the spans can be found
		return find, nil
	}
	p := f.planSpans(b, tr)
	tr.cost = 2*find + p.scan + p.spans*b.weight
	return tr.cost, nil
}

// planCost is the work of finding a kind of day's spans.
func planCost(b *checkBase) int64 {
	return 3 * int64(len(b.edges)) * (int64(len(b.refTFs)) + 1)
}

// spanPlan is a kind of day's spans: the legs' starts and ends the rules
// tell apart, one of each pair of the timeframes (rules name) they fall
// in, a start's the earliest of its timeframes.
type spanPlan struct {
	starts   []int32 // time of day of each start
	startIdx []int32 // the edge it falls after
	// Where rules name an end timeframe: the edges' timeframes the same
	// day (prev: the last edge before with the same, -1 none), and one
	// edge of each the next day.
	prev        []int32
	next        []int32
	spans, scan int64 // the spans, and the edges walked to find them
}

func (f *Feed) planSpans(b *checkBase, tr *checkTry) spanPlan {
	var p spanPlan
	d, lo, hi := tr.day, tr.key.lo, tr.key.hi
	E := len(b.edges)
	sig := func(groups []int32, day Date, tod int32) string {
		k := make([]byte, (len(groups)+7)/8)
		for i, g := range groups {
			if f.inTimeframe(g, day, tod) {
				k[i/8] |= 1 << (i % 8)
			}
		}
		return string(k)
	}
	seen := map[string]bool{}
	for i, e := range b.edges {
		end := int32(86400)
		if i+1 < E {
			end = b.edges[i+1]
		}
		if e >= hi || end <= lo {
			continue
		}
		if s := sig(b.fromTF, d, e); !seen[s] {
			seen[s] = true
			p.starts = append(p.starts, max(e, lo))
			p.startIdx = append(p.startIdx, int32(i))
		}
	}
	if !b.endTF {
		p.spans = int64(len(p.starts))
		return p
	}
	p.prev = make([]int32, E)
	lastAt := map[string]int32{}
	suffix := make([]int64, E+1) // suffix[j]: the distinct end timeframes of edges j on
	sigs := make([]string, E)
	for j, e := range b.edges {
		sigs[j] = sig(b.toTF, d, e)
		p.prev[j] = -1
		if at, ok := lastAt[sigs[j]]; ok {
			p.prev[j] = at
		}
		lastAt[sigs[j]] = int32(j)
	}
	clear(seen)
	for j := E - 1; j >= 0; j-- {
		suffix[j] = suffix[j+1]
		if !seen[sigs[j]] {
			seen[sigs[j]] = true
			suffix[j]++
		}
	}
	clear(seen)
	for _, e := range b.edges {
		if s := sig(b.toTF, d+1, e); !seen[s] {
			seen[s] = true
			p.next = append(p.next, e)
		}
	}
	for _, i := range p.startIdx {
		p.spans += suffix[i] + int64(len(p.next))
		p.scan += int64(E) - int64(i)
	}
	return p
}

// probeTry asks the engine for every leg of a kind of day: the first
// priced for a rider in no category paying by media and not for category
// c.
func (f *Feed) probeTry(b *checkBase, tr *checkTry, c, media int32, w *checkWork) (legGap, error) {
	p := f.planSpans(b, tr)
	d, zone := tr.day, zoneBit(int(tr.key.zone))
	S := len(b.sets)
	var touch [][]int32
	probe := func(start, end int32, nextDay bool) (legGap, error) {
		for wi, word := range b.live {
			for word != 0 {
				i := wi*64 + bits.TrailingZeros64(word)
				word &= word - 1
				n, a, bb := i/(S*S), i/S%S, i%S
				if b.setZones[a]&zone == 0 {
					continue // no stop there keeps this zone's time
				}
				touch = f.touchings(b, touch[:0], int32(a), int32(bb))
				if err := w.poll(int64(len(touch)) + b.touchCost()); err != nil {
					return legGap{}, err
				}
				for _, t := range touch {
					q := b.query(b.nets[n], int32(a), int32(bb), t)
					q.startDay, q.startTod, q.endDay, q.endTod = d, start, d, end
					if nextDay {
						q.endDay++
					}
					rule, _, _, found := f.pickRule(&q, f.defaultCategory, media)
					if !found {
						continue
					}
					if _, _, _, ok := f.pickRule(&q, c, media); ok {
						continue
					}
					return legGap{found: true, nextDay: nextDay, network: b.nets[n], from: int32(a), to: int32(bb), start: start, end: end, rule: rule}, nil
				}
			}
		}
		return legGap{}, nil
	}
	for si, s := range p.starts {
		i := p.startIdx[si]
		if !b.endTF {
			if g, err := probe(s, s, false); err != nil || g.found {
				return g, err
			}
			continue
		}
		for j := i; j < int32(len(b.edges)); j++ {
			if p.prev[j] >= i {
				continue // an end in the same timeframes was tried
			}
			e := b.edges[j]
			if j == i {
				e = s
			}
			if g, err := probe(s, e, false); err != nil || g.found {
				return g, err
			}
		}
		for _, e := range p.next {
			if g, err := probe(s, e, true); err != nil || g.found {
				return g, err
			}
		}
	}
	return legGap{}, nil
}
