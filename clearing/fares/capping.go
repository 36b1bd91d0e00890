package fares

import (
	"errors"
	"fmt"
	"time"
)

// Capper applies the feed's fare caps (fare_caps.txt) to one passenger's
// stream of journeys. It remembers what the passenger was charged in each
// capping window. A Capper is not safe for concurrent use; clearing keeps
// one per passenger account (or rebuilds it from the day's charges).
type Capper struct {
	feed *Feed
	// spent is what each daily or calendar-week window charged. A
	// passenger's repricing touches a few windows: a slice, searched from
	// its most recent entry, beats a map.
	spent   []windowSpent
	rolling []rollingWindow // per cap, for CapRollingWeek

	// The rider category and medium Apply last interned: a passenger's
	// journeys all name the same ones.
	category, medium string
	cat, media       int32
	interned         bool
}

type capWindow struct {
	cap   int32
	start int64 // Date of the window's first fare day
}

type windowSpent struct {
	w     capWindow
	spent int64
}

// spentIn returns the index of w in c.spent, -1 if it has none.
func (c *Capper) spentIn(w capWindow) int {
	for i := len(c.spent) - 1; i >= 0; i-- {
		if c.spent[i].w == w {
			return i
		}
	}
	return -1
}

type rollingWindow struct {
	start time.Time
	spent int64
	open  bool
}

// ErrOutOfOrder is returned when a rolling-week cap sees a journey earlier
// than the start of its current window: rolling windows need journeys in
// time order.
var ErrOutOfOrder = errors.New("journey before the current rolling cap window")

// NewCapper returns a Capper with nothing charged yet.
func (f *Feed) NewCapper() *Capper {
	return &Capper{feed: f, rolling: make([]rollingWindow, len(f.caps))}
}

// Reset forgets every charge, as if the Capper were new: one Capper can
// then serve one passenger after another without allocating.
func (c *Capper) Reset() {
	c.spent = c.spent[:0]
	clear(c.rolling)
}

// rider interns category and medium, remembering the last pair.
func (c *Capper) rider(category, medium string) (int32, int32, error) {
	if c.interned && category == c.category && medium == c.medium {
		return c.cat, c.media, nil
	}
	cat, media, err := c.feed.rider(category, medium)
	if err != nil {
		return cat, media, err
	}
	c.category, c.medium, c.cat, c.media, c.interned = category, medium, cat, media, true
	return cat, media, nil
}

// Charge is the outcome of capping one journey's fare.
type Charge struct {
	Fare    Money // the uncapped fare
	Charged Money // what the passenger pays: Fare reduced by the caps
	// CappedBy is the fare_cap_id that limited the charge; empty when the
	// full fare is charged.
	CappedBy string
}

// fareDay returns the fare day of t: the day d with dayBegins(d) <= t <
// dayBegins(d+1). Near a clock change the local time of day is not in
// time order (an outside test saw a ride that began at 02:40 summer time
// and ended at 02:20 winter time split across two fare days with a 02:30
// cut-over), so there the instant decides.
func fareDay(t time.Time, loc *time.Location, dayStart int32) Date {
	day, tod := civil(t, loc)
	return fareDayOf(t, day, tod, loc, dayStart)
}

// fareDayOf is fareDay for t whose local day and time of day are known.
func fareDayOf(t time.Time, day Date, tod int32, loc *time.Location, dayStart int32) Date {
	// Clocks change by at most two hours: three hours from the cut-over,
	// either side of midnight, the time of day is on the same side of it
	// as the instant.
	d := tod - dayStart
	if d < 0 {
		d = -d
	}
	if min(d, 86400-d) > 3*3600 {
		if tod < dayStart {
			day--
		}
		return day
	}
	// Near it, the instants decide: the day's own beginning may fall after
	// t (a cut-over the clocks repeat, east of UTC), and the next day's
	// before it (a midnight cut-over the clocks skip, which time.Date puts
	// an hour early west of UTC: the Azores in March; an outside test).
	switch {
	case t.Before(dayBegins(day, loc, dayStart)):
		day--
	case !t.Before(dayBegins(day+1, loc, dayStart)):
		day++
	}
	return day
}

// dayBegins is the instant fare day d begins: d's local date at dayStart
// seconds, as time.Date places it (in an hour the clocks skip or repeat,
// one of the instants around it: which one depends on the zone).
func dayBegins(d Date, loc *time.Location, dayStart int32) time.Time {
	y, m, dd := time.Unix(int64(d)*86400, 0).UTC().Date()
	return time.Date(y, m, dd, int(dayStart/3600), int(dayStart%3600/60), int(dayStart%60), 0, loc)
}

// Apply caps a fare of a journey that started at `at` for the rider and
// records the charge. Caps apply when their rider category and medium are
// empty or equal to the journey's, and their currency is the fare's. The
// charge is the fare, or what is left under the tightest cap when that is
// less (a partial charge at the threshold). A journey counts in the window
// in which it starts. Daily and calendar-week windows accept journeys in
// any order; rolling weeks need them in time order (ErrOutOfOrder).
func (c *Capper) Apply(at time.Time, category, medium string, fare Money) (Charge, error) {
	return c.apply(at, category, medium, fare, true)
}

// Count records an amount charged before, at `at`, whole in the daily and
// calendar-week windows, but not in rolling-week windows: a fare book that
// prices one fare day at a time counts the week's earlier days with Count
// and opens the rolling windows as they stood when the day began with
// OpenRolling. What was charged is counted as charged, not capped again:
// a day priced under another feed version's caps, or in another rider
// category, counts in full toward this week's caps.
func (c *Capper) Count(at time.Time, category, medium string, amount Money) error {
	_, err := c.apply(at, category, medium, amount, false)
	return err
}

func (c *Capper) apply(at time.Time, category, medium string, fare Money, rolling bool) (Charge, error) {
	ch := Charge{Fare: fare, Charged: fare}
	cat, media, err := c.rider(category, medium)
	if err != nil {
		return ch, err
	}
	f := c.feed
	remaining := int64(-1)
	var buf [8]capWindow
	applied := buf[:0] // start is unused for rolling caps
	// The local day and time of at, once for every cap: each shifts the
	// day by its own day_start_time (fareDay).
	civilDay, tod := Date(0), int32(0)
	if len(f.caps) > 0 {
		civilDay, tod = civil(at, f.loc)
	}
	for i := range f.caps {
		cp := &f.caps[i]
		if (cp.category >= 0 && cp.category != cat && !(cat == perProductDefault && c.feed.isDefault[cp.category])) ||
			(cp.media >= 0 && cp.media != media) || cp.price.Currency != fare.Currency {
			continue
		}
		var left int64
		switch cp.period {
		case CapRollingWeek:
			if !rolling {
				continue
			}
			w := &c.rolling[i]
			if w.open && at.Before(w.start) {
				return ch, fmt.Errorf("fare cap %q: %w (%s < %s)", cp.id, ErrOutOfOrder, at, w.start)
			}
			if w.open && at.Sub(w.start) >= 7*24*time.Hour {
				w.open = false
			}
			if !w.open {
				left = cp.price.Amount
			} else {
				left = cp.price.Amount - w.spent
			}
		default:
			day := fareDayOf(at, civilDay, tod, f.loc, cp.dayStart)
			if cp.period == CapCalendarWeek {
				day -= Date((int(day.Weekday()) + 6) % 7) // back to Monday
			}
			k := capWindow{int32(i), int64(day)}
			left = cp.price.Amount
			if j := c.spentIn(k); j >= 0 {
				left -= c.spent[j].spent
			}
			applied = append(applied, k)
		}
		if cp.period == CapRollingWeek {
			applied = append(applied, capWindow{cap: int32(i)})
		}
		left = max(left, 0)
		if remaining < 0 || left < remaining {
			remaining = left
			if left < fare.Amount {
				ch.CappedBy = cp.id
			}
		}
	}
	if remaining >= 0 && fare.Amount > remaining && rolling { // Count (rolling false) counts in full
		ch.Charged.Amount = remaining
	} else {
		ch.CappedBy = ""
	}
	if ch.Charged.Amount <= 0 {
		return ch, nil
	}
	for _, k := range applied {
		if f.caps[k.cap].period == CapRollingWeek {
			w := &c.rolling[k.cap]
			if !w.open {
				*w = rollingWindow{start: at, open: true}
			}
			w.spent += ch.Charged.Amount
			continue
		}
		if j := c.spentIn(k); j >= 0 {
			c.spent[j].spent += ch.Charged.Amount
		} else {
			c.spent = append(c.spent, windowSpent{k, ch.Charged.Amount})
		}
	}
	return ch, nil
}

// FareDayStart is when fare days begin, as seconds after local midnight:
// the day_start_time of the feed's daily and calendar-week caps (the
// earliest, if they differ), else of its rolling-week caps, 0 without caps.
func (f *Feed) FareDayStart() int32 { return f.dayStart }

func (f *Feed) fareDayStart() int32 {
	// A rolling week runs from a journey, not from a time of day: its
	// day_start_time (often left empty, so midnight) must not move the fare
	// day away from the daily caps' cut-over, or their windows would
	// straddle two fare days and be exceeded (an outside review charged
	// 11.60 under an 8.00 daily cap).
	start, rollingStart := int32(-1), int32(-1)
	for _, c := range f.caps {
		switch {
		case c.period == CapRollingWeek:
			if rollingStart < 0 || c.dayStart < rollingStart {
				rollingStart = c.dayStart
			}
		case start < 0 || c.dayStart < start:
			start = c.dayStart
		}
	}
	if start < 0 {
		start = rollingStart
	}
	return max(start, 0)
}

// FareDay is the fare day t belongs to: its local calendar day in the feed's
// timezone, a day earlier before FareDayStart (a 02:00 ride counts in the
// evening's day); near a clock change, the day whose FareDayBegins came
// last.
func (f *Feed) FareDay(t time.Time) Date { return fareDay(t, f.loc, f.dayStart) }

// FareDayBegins is the instant fare day d begins.
func (f *Feed) FareDayBegins(d Date) time.Time { return dayBegins(d, f.loc, f.dayStart) }

// HasCap reports whether the feed has a fare cap of period p.
func (f *Feed) HasCap(p CapPeriod) bool {
	for _, c := range f.caps {
		if c.period == p {
			return true
		}
	}
	return false
}

// RollingWindow is a rolling-week fare cap's open window: from Start (the
// start of the journey that opened it) for seven days, Spent charged in it.
type RollingWindow struct {
	CapID string // fare_cap_id
	Start time.Time
	Spent int64 // minor units of the cap's currency
}

// HasRolling reports whether the Capper's feed has rolling-week caps.
func (c *Capper) HasRolling() bool { return len(c.rolling) > 0 && c.feed.HasCap(CapRollingWeek) }

// RollingWindows appends to dst the rolling-week windows still open at
// `at` (those that began less than seven days before it), in the order of
// the feed's caps: the state a fare book carries from one fare day to the
// next (OpenRolling).
func (c *Capper) RollingWindows(dst []RollingWindow, at time.Time) []RollingWindow {
	for i := range c.rolling {
		w := &c.rolling[i]
		if w.open && at.Sub(w.start) < 7*24*time.Hour {
			dst = append(dst, RollingWindow{CapID: c.feed.caps[i].id, Start: w.start, Spent: w.spent})
		}
	}
	return dst
}

// OpenRolling opens rolling-week windows as RollingWindows gave them
// (another Capper's, possibly of an earlier feed version): a window of a
// cap this feed does not have, or whose cap is not a rolling-week one, is
// left out.
func (c *Capper) OpenRolling(ws []RollingWindow) {
	for _, w := range ws {
		for i := range c.feed.caps {
			if cp := &c.feed.caps[i]; cp.id == w.CapID && cp.period == CapRollingWeek {
				c.rolling[i] = rollingWindow{start: w.Start, spent: w.Spent, open: true}
				break
			}
		}
	}
}
