package journeys

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// Journeys across the fare day's cut-over (the package doc states the
// rule): Post applies it as taps arrive, in any order; Assign applies it
// to a rider's whole set of taps at once; Linked says which adjacent days
// a move may have tied together.

// ErrNotBooked is returned by Remove for an event the day does not hold.
var ErrNotBooked = errors.New("tap not booked in the fare day")

// maxLeg is the longest time between an entry and its exit: the policy's,
// or fares' default of 4 hours.
// MaxLeg is the longest a leg may take (the policy's, 4 h by default): an
// exit within it of an entry before the cut-over books in the entry's day.
func (b *Book) MaxLeg() time.Duration { return b.maxLeg() }

func (b *Book) maxLeg() time.Duration {
	if b.Policy.MaxLegDuration > 0 {
		return b.Policy.MaxLegDuration
	}
	return 4 * time.Hour
}

// crossing returns how many of the first taps of fare day date (nextOwn,
// the taps of its own fare day in order) the cut-over rule books in the
// day before, whose own taps are own (in order) and whose rider travels in
// category with medium. They are the taps of the journey the day before's
// last tap is in (as the fare engine builds journeys, fares.Feed.JourneyOf,
// from the taps within the maximum leg duration either side of the
// cut-over) that still belong to it after the cut-over: the exit of a leg
// begun before it, and each following leg the journey's price joins to the
// one before by a transfer (fare_transfer_rules.txt) or a join rule. A leg
// after the cut-over that is a new fare, not a transfer, begins the new
// day; so does everything after it.
func (b *Book) crossing(own, nextOwn []Tap, date fares.Date, category, medium string) int {
	if len(own) == 0 || len(nextOwn) == 0 {
		return 0
	}
	bk := b.ForDay(date - 1) // the journey is priced in the day it began
	cut := bk.Feed.FareDayBegins(date)
	w := bk.maxLeg()
	lo, hi := cut.Add(-w), cut.Add(w)
	if own[len(own)-1].Time.Before(lo) || !nextOwn[0].Time.Before(hi) {
		return 0
	}
	from, _ := slices.BinarySearchFunc(own, lo, func(t Tap, at time.Time) int { return t.Time.Compare(at) })
	to, _ := slices.BinarySearchFunc(nextOwn, hi, func(t Tap, at time.Time) int { return t.Time.Compare(at) })
	var buf [16]fares.Tap
	taps := buf[:0]
	for _, t := range own[from:] {
		taps = append(taps, engineTap(t))
	}
	for _, t := range nextOwn[:to] {
		taps = append(taps, engineTap(t))
	}
	of := bk.Feed.JourneyOf(taps, bk.Policy)
	if of == nil {
		return 0 // not in time order: never, the days' taps are sorted
	}
	last := len(own) - from - 1
	j := of[last]
	end := last + 1 // one past the journey's last tap
	for end < len(taps) && of[end] == j {
		end++
	}
	if end == last+1 {
		return 0 // the journey ends before the cut-over
	}
	start := last
	for start > 0 && of[start-1] == j {
		start--
	}
	jt := taps[start:end]
	js := bk.Feed.BuildJourneys(jt, category, bk.Feed.MediumFor(medium), bk.Policy)
	if len(js) != 1 {
		return 0 // the journey's own taps make one journey: never
	}
	// The fare leg of each leg, and the fare legs a transfer leads to;
	// an unknown fare has neither: only a leg begun before the cut-over
	// crosses then.
	legs := js[0].Legs
	fareLeg := make([]int, len(legs))
	transferTo := map[int]bool{}
	if fare, err := bk.Feed.Price(js[0]); err == nil && fare.Known {
		for k, fl := range fare.Legs {
			for l := fl.FirstLeg; l <= fl.LastLeg && l < len(legs); l++ {
				fareLeg[l] = k
			}
		}
		for _, t := range fare.Transfers {
			transferTo[t.ToFareLeg] = true
		}
	} else {
		for l := range fareLeg {
			fareLeg[l] = -1 - l // no two legs share one
		}
	}
	// Walk the legs with their taps (an entry and its exit, or one tap,
	// each with the repeat reads after it, which go where it goes): pos is
	// the next tap of jt, nextAt where the next day's taps begin.
	rep := bk.Feed.Repeats(jt, bk.Policy)
	skip := func(pos int) int {
		for pos < len(jt) && rep[pos] {
			pos++
		}
		return pos
	}
	pos, nextAt, k := skip(0), len(own)-from-start, 0
	for l, leg := range legs {
		if pos >= len(jt) {
			break // never: the journey's legs come from its taps
		}
		if !leg.Start.Before(cut) && (l == 0 || (fareLeg[l] != fareLeg[l-1] && !transferTo[fareLeg[l]])) {
			break // a new fare: the new day's
		}
		entry := jt[pos].Kind == fares.TapIn
		pos = skip(pos + 1)
		if entry && pos < len(jt) {
			pos = skip(pos + 1) // its exit
		}
		if pos > nextAt {
			k = pos - nextAt
		}
	}
	return k
}

// engineTap is the fare engine's view of a tap.
func engineTap(t Tap) fares.Tap {
	return fares.Tap{Kind: t.Kind, Time: t.Time, StopID: t.Stop, RouteID: t.Route, NetworkID: t.Network, AgencyID: t.Agency}
}

// mayCross reports whether a tap of the fare day after d may be booked in
// d by the cut-over rule: before the next cut-over plus the maximum leg
// duration.
func (b *Book) mayCross(d *Day, tap Tap) bool {
	next := b.Feed.FareDayBegins(d.Date + 1)
	return !tap.Time.Before(next) && tap.Time.Before(next.Add(b.maxLeg()))
}

// split returns d's taps of its own fare day and those crossed from the
// next one (at the end: they are later than every tap of d's own day).
func (b *Book) split(d *Day) (own, crossed []Tap) {
	next := b.Feed.FareDayBegins(d.Date + 1)
	i, _ := slices.BinarySearchFunc(d.Taps, next, func(t Tap, at time.Time) int { return t.Time.Compare(at) })
	return d.Taps[:i], d.Taps[i:]
}

func hasEvent(d *Day, ev fare.EventID) bool {
	return slices.ContainsFunc(d.Taps, func(t Tap) bool { return t.Event == ev })
}

// Remove takes the tap of event ev out of d and reprices the day; earlier
// are the week's earlier days. The returned Delta is usually a credit. An
// event the day does not hold is ErrNotBooked; on a repricing error the
// day stays as it was.
func (b *Book) Remove(d *Day, ev fare.EventID, earlier []WeekDay) (Tap, Delta, Summary, error) {
	i := slices.IndexFunc(d.Taps, func(t Tap) bool { return t.Event == ev })
	if i < 0 {
		return Tap{}, Delta{}, Summary{}, fmt.Errorf("event %s, fare day %s: %w", ev, d.Date, ErrNotBooked)
	}
	tap := d.Taps[i]
	before := d.Taps
	d.Taps = append(d.Taps[:i:i], d.Taps[i+1:]...) // capped: the old array is never written (see inserted)
	delta, sum, err := b.reprice(d, earlier)
	if err != nil {
		d.Taps = before
	}
	return tap, delta, sum, err
}

// rebalance books in prev the taps of next's fare day that the cut-over
// rule gives prev (crossing) and every other tap of next's fare day in
// next. It reports whether it moved a tap; the days' slices are replaced,
// never edited in place.
func (b *Book) rebalance(prev, next *Day) bool {
	if next.Date != prev.Date+1 {
		return false
	}
	own, crossed := b.split(prev)
	nextOwn := next.Taps
	if len(crossed) > 0 {
		nextOwn = slices.Clone(next.Taps)
		for _, t := range crossed {
			i, _ := slices.BinarySearchFunc(nextOwn, t, tapOrder)
			nextOwn = slices.Insert(nextOwn, i, t)
		}
	}
	k := b.crossing(own, nextOwn, next.Date, prev.Category, prev.Medium)
	if k == len(crossed) && slices.EqualFunc(crossed, nextOwn[:k], func(a, c Tap) bool { return a.Event == c.Event }) {
		return false // as booked
	}
	prev.Taps = append(slices.Clone(own), nextOwn[:k]...)
	next.Taps = slices.Clone(nextOwn[k:])
	return true
}

// Days is where Post finds and keeps one rider's fare days and what each
// day of a calendar week charged (the weekly caps).
type Days interface {
	// Day returns the rider's fare day of date. With create false it
	// returns nil (and no error) when the rider has no such day; with
	// create true it makes a new empty one (its date, category and
	// medium set), kept by the caller.
	Day(date fares.Date, create bool) (*Day, error)
	// Week returns what the days of date's calendar week charged: Post
	// passes it to the repricing of date's day as its earlier days.
	Week(date fares.Date) ([]WeekDay, error)
	// Charged records what date's fare day charges after a repricing.
	Charged(date fares.Date, charged int64)
}

// Repriced is one fare day Post repriced and what changed.
type Repriced struct {
	Date    fares.Date
	Delta   Delta
	Summary Summary
}

// Posted is what Post did with a tap.
type Posted struct {
	// Date is the fare day the tap is booked in: its own, or the previous
	// one for an exit crossing the cut-over.
	Date fares.Date
	// Days are the fare days repriced, earliest first (the day holding
	// the tap, with a zero delta, for a tap already booked).
	Days []Repriced
	// Delta is the sum of the days' deltas: what the tap's event posts.
	Delta Delta
}

// Post books tap in the rider's fare days by the cut-over rule: in its own
// fare day, or as an exit crossing the cut-over in the previous one, moving
// an exit already booked between the two days when the tap changes where it
// belongs. Each fare day it changes is repriced, earliest first (a later
// day's weekly caps count the earlier day's new charge), and the event
// posts the sum of their deltas. A tap whose event is already booked
// changes nothing. A tap at a stop, route or network the feed does not
// know is booked like any other, in a journey of its own whose fare is
// unknown (fares.Feed.Settle). On an error (a repricing fails: a rider
// category or fare medium the feed lacks, say) every day stays as it was.
func (b *Book) Post(days Days, tap Tap) (Posted, error) {
	own := b.Feed.FareDay(tap.Time)
	d, err := days.Day(own, true)
	if err != nil {
		return Posted{}, err
	}
	w := b.maxLeg()
	// The previous day matters only for a tap soon after the cut-over: it
	// may cross itself, or change what crosses. Whatever its place among
	// the day's taps: repeat reads (fares.Feed.Repeats) go where the tap
	// they repeat goes, so a tap third in the day can complete the journey
	// that crosses (an outside recheck saw a transfer lost in some arrival
	// orders, when the day's first two taps were an entry and its repeat).
	var prev *Day
	if tap.Time.Before(b.Feed.FareDayBegins(own).Add(w)) {
		if prev, err = days.Day(own-1, false); err != nil {
			return Posted{}, err
		}
	}
	for _, x := range []*Day{d, prev} {
		if x != nil && hasEvent(x, tap.Event) {
			week, err := days.Week(x.Date)
			if err != nil {
				return Posted{}, err
			}
			s, err := b.summary(x, week)
			return Posted{Date: x.Date, Days: []Repriced{{Date: x.Date, Summary: s}}}, err
		}
	}
	// The next day matters only for a tap shortly before the next
	// cut-over: what crosses from the next day depends on the journey of
	// the day's last tap, which it may join (after repeat reads too).
	var next *Day
	nextCut := b.Feed.FareDayBegins(own + 1)
	if !tap.Time.Before(nextCut.Add(-w)) {
		if next, err = days.Day(own+1, false); err != nil {
			return Posted{}, err
		}
	}
	// Each changed day as it was: rebalance replaces the days' slices, so
	// a copy of a Day taken before is its original. (A Post changes a day
	// or two, and a late tap the week's later days: a short slice, kept
	// in date order, beats maps.)
	var buf [4]changedDay
	changed := append(buf[:0], changedDay{d, *d})
	var prevWas, nextWas Day
	if prev != nil {
		prevWas = *prev
	}
	if next != nil {
		nextWas = *next
	}
	if len(d.Taps) >= MaxTaps {
		return Posted{}, fmt.Errorf("tap of event %s: fare day %s holds %d taps: %w", tap.Event, d.Date, len(d.Taps), ErrDayFull)
	}
	i, _ := slices.BinarySearchFunc(d.Taps, tap, tapOrder)
	d.Taps = inserted(d.Taps, i, tap)
	if prev != nil && b.rebalance(prev, d) {
		changed = slices.Insert(changed, 0, changedDay{prev, prevWas})
	}
	if next != nil && b.rebalance(d, next) {
		changed = append(changed, changedDay{next, nextWas})
	}
	return b.repriceDays(days, tap, changed)
}

// changedDay is a fare day a Post changes and the day as it was.
type changedDay struct {
	x   *Day
	was Day
}

// repriceDays reprices the changed days (in date order) earliest first and
// sums their deltas; on an error every day is restored. A day whose charge
// changed is counted by the weekly caps of the later days of its week:
// those the rider has are repriced too, so a late tap (or a moved exit)
// never leaves the week above its cap.
func (b *Book) repriceDays(days Days, tap Tap, changed []changedDay) (Posted, error) {
	var out Posted
	out.Days = make([]Repriced, 0, len(changed))
	var sums [4]Booking
	byAgency := agencySums(sums[:0])
	restore := func() {
		for _, c := range changed {
			if c.x.Charged != c.was.Charged {
				days.Charged(c.was.Date, c.was.Charged)
			}
			*c.x = c.was
		}
	}
	queued := func(date fares.Date) (int, bool) {
		return slices.BinarySearchFunc(changed, date, func(c changedDay, d fares.Date) int { return cmp.Compare(c.was.Date, d) })
	}
	rolling := b.HasRolling()
	for i := 0; i < len(changed); i++ {
		x, was := changed[i].x, changed[i].was
		date := was.Date
		if hasEvent(x, tap.Event) {
			out.Date = date
		}
		if rolling {
			// The day starts from the rolling windows its rider's
			// previous day left open (repriced already, when changed).
			prev, err := nearestDay(days, date, -1)
			if err != nil {
				restore()
				return Posted{}, err
			}
			var in []fares.RollingWindow
			if prev != nil {
				in = prev.RollingOut
			}
			if !sameRolling(in, x.RollingIn) {
				x.RollingIn = in
			}
		}
		week, err := days.Week(date)
		if err != nil {
			restore()
			return Posted{}, err
		}
		delta, sum, err := b.reprice(x, week)
		if err != nil {
			restore()
			return Posted{}, err
		}
		days.Charged(date, x.Charged)
		if rolling && !sameRolling(x.RollingOut, was.RollingOut) {
			// The rider's next day starts from these windows: reprice it
			// (and it, if its own change, the day after).
			next, err := nearestDay(days, date, 1)
			if err != nil {
				restore()
				return Posted{}, err
			}
			if next != nil {
				if j, found := queued(next.Date); !found {
					changed = slices.Insert(changed, j, changedDay{next, *next})
				}
			}
		}
		if x.Charged != was.Charged {
			later, err := days.Week(date)
			if err != nil {
				restore()
				return Posted{}, err
			}
			for _, w := range later {
				j, found := queued(w.Date)
				if w.Date <= date || found {
					continue
				}
				y, err := days.Day(w.Date, false)
				if err != nil {
					restore()
					return Posted{}, err
				}
				if y == nil {
					continue
				}
				changed = slices.Insert(changed, j, changedDay{y, *y})
			}
		}
		out.Days = append(out.Days, Repriced{Date: date, Delta: delta, Summary: sum})
		out.Delta.Total += delta.Total
		for _, a := range delta.ByAgency {
			byAgency = byAgency.add(a.Agency, a.Amount)
		}
	}
	for _, c := range changed {
		if !c.x.fits() {
			// A day no record could hold (an exit moved into a full day):
			// the tap is not booked.
			x := *c.x
			restore()
			return Posted{}, fmt.Errorf("tap of event %s: fare day %s would hold %d taps, %d bookings, %d+%d rolling cap windows: %w",
				tap.Event, x.Date, len(x.Taps), len(x.Booked), len(x.RollingIn), len(x.RollingOut), ErrDayFull)
		}
	}
	n := 0
	for _, a := range byAgency {
		if a.Amount != 0 {
			n++
		}
	}
	if n > 0 {
		out.Delta.ByAgency = make([]Booking, 0, n)
		for _, a := range byAgency {
			if a.Amount != 0 {
				out.Delta.ByAgency = append(out.Delta.ByAgency, a)
			}
		}
	}
	return out, nil
}

// Assign groups one rider's taps into the fare days the cut-over rule
// books them in, each day's taps in order (events once): what Post gives
// for the same taps in any arrival order.
func (b *Book) Assign(taps []Tap, category func(fares.Date) string, medium string) map[fares.Date][]Tap {
	out := map[fares.Date][]Tap{}
	seen := map[fare.EventID]bool{}
	for _, t := range taps {
		if seen[t.Event] {
			continue
		}
		seen[t.Event] = true
		date := b.Feed.FareDay(t.Time)
		out[date] = append(out[date], t)
	}
	// Boundaries earliest first, as Post keeps them: each on what the
	// earlier day keeps of its own fare day (its first taps may have
	// crossed to the day before it) and the later day's own taps.
	dates := make([]fares.Date, 0, len(out))
	for date, ts := range out {
		slices.SortFunc(ts, tapOrder)
		dates = append(dates, date)
	}
	slices.Sort(dates)
	for _, date := range dates {
		prev, ts := out[date-1], out[date]
		k := b.crossing(prev, ts, date, category(date-1), medium)
		if k == 0 {
			continue
		}
		out[date-1] = append(prev, ts[:k]...) // later than every tap of date-1
		if k == len(ts) {
			delete(out, date)
		} else {
			out[date] = slices.Clone(ts[k:])
		}
	}
	return out
}

// Linked reports whether taps of adjacent fare days (prev's and next's,
// each of its own fare day) may have moved across their cut-over in some
// arrival order: next has a tap within the maximum leg duration after the
// cut-over and prev one within it before. Only such days can have posted a
// delta for each other's taps; a check of what was posted against a
// repricing must take them together.
func (b *Book) Linked(prev, next []Tap) bool {
	w := b.maxLeg()
	for _, x := range next {
		cut := b.Feed.FareDayBegins(b.Feed.FareDay(x.Time))
		if !x.Time.Before(cut.Add(w)) {
			continue
		}
		for _, e := range prev {
			if e.Time.Before(cut) && !e.Time.Before(cut.Add(-w)) {
				return true
			}
		}
	}
	return false
}

// RollingReach is how many fare days apart two days of a rider can be and
// still share a rolling-week window: seven days, and one more for a
// daylight-saving change that shortens a day. Post looks this far back for
// the windows a day starts from, and this far ahead for the day its own
// windows carry on to.
const RollingReach = 8

// nearestDay returns the rider's nearest day with taps before (dir -1) or
// after (dir 1) date, within RollingReach fare days; nil if there is none.
// The week listings say which days the rider has, so only those are read.
func nearestDay(days Days, date fares.Date, dir int) (*Day, error) {
	var week []WeekDay
	weekOf := fares.Date(-1 << 31)
	for k := 1; k <= RollingReach; k++ {
		x := date + fares.Date(dir*k)
		if ws := WeekStart(x); ws != weekOf {
			w, err := days.Week(x)
			if err != nil {
				return nil, err
			}
			week, weekOf = w, ws
		}
		if !slices.ContainsFunc(week, func(w WeekDay) bool { return w.Date == x }) {
			continue
		}
		y, err := days.Day(x, false)
		if err != nil {
			return nil, err
		}
		if y != nil && len(y.Taps) > 0 {
			return y, nil
		}
	}
	return nil, nil
}

// WeekStart is the Monday of d's calendar week: the days a rider's week
// (Days.Week) holds.
func WeekStart(d fares.Date) fares.Date { return d - fares.Date((int(d.Weekday())+6)%7) }

// sameRolling reports whether two days' rolling windows are the same
// (instants compared as instants, whatever their zone).
func sameRolling(a, b []fares.RollingWindow) bool {
	return slices.EqualFunc(a, b, func(x, y fares.RollingWindow) bool {
		return x.CapID == y.CapID && x.Start.Equal(y.Start) && x.Spent == y.Spent
	})
}

// HasRolling reports whether the book, or a next version of it, has
// rolling-week fare caps: their windows then run from day to day.
func (b *Book) HasRolling() bool {
	for x := b; x != nil; x = x.Next {
		if x.Feed.HasCap(fares.CapRollingWeek) {
			return true
		}
	}
	return false
}
