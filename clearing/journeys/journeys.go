// Package journeys is clearing's fare book for one rider: the taps of each
// fare day, what the rider was charged for them and how that was split
// between operators.
//
// Every tap reprices the rider's whole fare day from all its taps with the
// fare engine (journeys, transfers, caps, apportionment), and what clearing
// posts is the difference from what was booked before. The books therefore
// depend only on the set of taps, never on the order in which they arrived
// or how often: a crash, a redelivery or a late tap gives the same charges.
// A later discount (a transfer completed, a cap reached, an exit that
// arrives after the maximum fare was charged) is a negative difference: a
// new crediting posting, never an edit.
//
// An entry waiting for its exit is priced at once as an incomplete leg, at
// the feed's maximum fare (the Oyster model): its exit, whenever it
// arrives, completes the leg and credits the difference. An entry never
// exited therefore stays at the maximum fare, and no clock decides when a
// journey can no longer be completed: the charge depends on the taps alone,
// so every replay agrees.
//
// A tap is booked in the fare day of its own time, except the taps of a
// journey begun before the cut-over that still belong to it after: the
// exit of a leg begun before it (when the last tap of fare day D-1 is an
// entry and the first of D its exit, within the maximum leg duration,
// TapPolicy.MaxLegDuration, 4 hours by default), and each later leg the
// journey's price joins to the one before by a transfer rule or a join
// rule (bus 03:40, metro 04:05 to 04:25 within the bus-to-metro transfer's
// limit is one journey of D-1, with its discount). These are booked in
// D-1 and the journey is priced and capped in the day it began; a leg
// after the cut-over that is a new fare begins D. The rule looks at the
// taps within the maximum leg duration either side of the cut-over and
// depends on them alone: taps that arrived first, booked in D (an exit at
// the maximum fare for an exit without entry), move to D-1 when a tap
// arriving later ties them to its journey (D is repriced without them, a
// credit, and D-1 with them, and that tap's event posts both
// differences), and move back when a tap arriving later unties them.
// Book.Post applies the rule as taps arrive; Book.Assign groups a rider's
// whole set of taps by it, as the independent repricing does.
//
// The package does no I/O: clearing keeps each encoded Day in its store and
// applies the returned Delta in the same transaction as the event.
package journeys

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// Tap is one validation of a rider, as clearing's fare book keeps it.
type Tap struct {
	// Event is the fare event the tap came from: a tap is booked once.
	Event fare.EventID
	Kind  fares.TapKind
	Time  time.Time
	// Stop is the GTFS stop; Route (an on-board validator's) or Network (a
	// station gate's) name what the leg rides, from the terminal registry.
	Stop, Route, Network string
	// Agency is the operator whose terminal took the tap: who carried a
	// leg that has no route (fares.Leg.AgencyID).
	Agency string
}

// Booking is an amount of a day booked to one agency (operator), in minor
// units of the feed's currency.
type Booking struct {
	Agency string
	Amount int64
}

// Day is one rider's fare day: its taps and what was booked for them.
type Day struct {
	Date fares.Date
	// Category and Medium are the rider category and medium the day is
	// priced for (the enrolled category, never what a tap claims; the
	// medium as Faregate names it, "card" or "face", which the feed maps
	// to a fare_media_id: fares.Feed.MediumFor).
	Category, Medium string
	// Taps are in time order (then event id), each event once.
	Taps []Tap
	// Closed is set once the fare day is over and billed; pricing does not
	// depend on it (a late tap still reprices the day).
	Closed bool
	// Charged is the day's total charged so far; Booked splits it by agency
	// (sorted by agency, zero entries dropped).
	Charged int64
	Booked  []Booking
	// FeedVersion is the feed version the day was last priced with.
	FeedVersion string
	// RollingIn are the rolling-week cap windows open when the day begins
	// (the previous day's RollingOut; Book.Post sets it), RollingOut those
	// still open when it ends, after its journeys (reprice sets it). Both
	// are empty for a feed without rolling-week caps.
	RollingIn, RollingOut []fares.RollingWindow

	// memo remembers the day's journeys' fares between repricings (not
	// stored: rebuilt after a restart); memoFeed is the feed it holds
	// fares of.
	memo     *fares.JourneyMemo
	memoFeed *fares.Feed
}

// Delta is what one repricing changes: debit the rider Total, credit each
// agency its Amount (negative amounts are credits back to the rider). The
// agencies' amounts sum to Total.
type Delta struct {
	Total    int64
	ByAgency []Booking
}

// Summary describes a repriced day.
type Summary struct {
	Journeys   int // journeys priced (an incomplete leg is a journey)
	Incomplete int // of them, entries or exits without their pair, at the maximum fare
	Pending    int // entries waiting for their exit: charged the maximum fare until it arrives
	Capped     int // journeys a fare cap reduced
	// MultiOperator counts journeys whose charge was split between
	// several operators (legs of several agencies, each with a share).
	MultiOperator int
	Unknown       int // journeys whose fare the feed does not know, to review: charged leg by leg where it knows a leg's (fares.Settlement.Fallback), else nothing
}

// RulesVersion numbers the rules by which a Book charges a rider's taps
// for a given feed. It is raised with every intended change of what is
// charged (each regeneration of the differential goldens that changes
// charges), so that a store can say which rules priced its events and an
// audit can tell a day priced under earlier rules from a mismatch:
//
//   - 1: until this number was kept;
//   - 2: a tap-out on a network no join rule reaches from its tap-in's
//     network ends no leg (both are incomplete, each at its maximum fare);
//   - 3: a journey of unknown fare is charged leg by leg where the feed
//     knows a fare for any leg: its own alone, else its entry's maximum
//     fare (fares.Settlement.Fallback).
const RulesVersion = 3

// Book prices riders' days from one feed.
type Book struct {
	Feed        *fares.Feed
	FeedVersion string
	// Currency is the feed's (and the registry's) currency.
	Currency string
	Policy   fares.TapPolicy
	// Next, if set, is a later feed version that takes over from fare day
	// NextFrom on: days from then are priced with it (and record its
	// version), earlier days with this one, whenever their taps arrive.
	// The two feeds must share the time zone and the fare day's cut-over.
	Next     *Book
	NextFrom fares.Date
}

// ForDay is the book that prices fare day d: Next from NextFrom on.
func (b *Book) ForDay(d fares.Date) *Book {
	if b.Next != nil && d >= b.NextFrom {
		return b.Next.ForDay(d)
	}
	return b
}

// WeekDay is what an earlier day of the same week was charged: the weekly
// caps count it.
type WeekDay struct {
	Date    fares.Date
	Charged int64
}

// ErrWrongDay is returned for a tap of another fare day than the Day's.
var ErrWrongDay = errors.New("tap of another fare day")

// ErrDayFull is returned for a tap a rider's fare day has no room for: it
// holds MaxTaps taps already, or the tap would make the day more than its
// record holds. The tap is not booked (clearing applies it unpriced): one
// card tapping all day long must not make a day no record can hold, which
// stopped clearing for every rider (an outside review).
var ErrDayFull = errors.New("the rider's fare day is full: no more taps are booked in it")

// Add books tap in d (a tap whose event is already there changes nothing)
// and reprices the day; earlier are the week's earlier days (weekly caps).
// The tap must be of d's fare day, or an exit of the next fare day that
// the cut-over rule books in d (Assign says which): Add does not apply
// the rule itself, Post does.
func (b *Book) Add(d *Day, tap Tap, earlier []WeekDay) (Delta, Summary, error) {
	if got := b.Feed.FareDay(tap.Time); got != d.Date && !(got == d.Date+1 && b.mayCross(d, tap)) {
		return Delta{}, Summary{}, fmt.Errorf("tap of event %s on fare day %s, book of %s: %w", tap.Event, got, d.Date, ErrWrongDay)
	}
	i, found := slices.BinarySearchFunc(d.Taps, tap, tapOrder)
	if found || hasEvent(d, tap.Event) {
		s, err := b.summary(d, earlier)
		return Delta{}, s, err
	}
	if len(d.Taps) >= MaxTaps {
		return Delta{}, Summary{}, fmt.Errorf("tap of event %s: fare day %s holds %d taps: %w", tap.Event, d.Date, len(d.Taps), ErrDayFull)
	}
	before := d.Taps
	d.Taps = inserted(d.Taps, i, tap)
	delta, sum, err := b.reprice(d, earlier)
	if err != nil {
		d.Taps = before // the day stays as it was booked
		return delta, sum, err
	}
	if !d.fits() {
		// Priced as it was: the day's other fields follow its taps.
		d.Taps = before
		if _, _, err := b.reprice(d, earlier); err != nil {
			return Delta{}, Summary{}, err
		}
		return Delta{}, Summary{}, fmt.Errorf("tap of event %s: fare day %s would hold %d taps, %d bookings, %d+%d rolling cap windows: %w",
			tap.Event, d.Date, len(d.Taps)+1, len(d.Booked), len(d.RollingIn), len(d.RollingOut), ErrDayFull)
	}
	return delta, sum, err
}

// inserted returns a new slice of taps with tap inserted at i: a Day's
// slices are replaced, never edited in place, as copies of a Day (such as
// clearing's rider cache hands out) share them.
func inserted(taps []Tap, i int, tap Tap) []Tap {
	out := make([]Tap, len(taps)+1)
	copy(out, taps[:i])
	out[i] = tap
	copy(out[i+1:], taps[i:])
	return out
}

// Close marks the fare day over (billed). It reprices the day, which
// changes nothing unless the feed changed: an entry without its exit has
// been at the maximum fare since it was booked.
func (b *Book) Close(d *Day, earlier []WeekDay) (Delta, Summary, error) {
	if d.Closed {
		s, err := b.summary(d, earlier)
		return Delta{}, s, err
	}
	d.Closed = true
	return b.reprice(d, earlier)
}

func tapOrder(a, b Tap) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	return cmp.Compare(string(a.Event[:]), string(b.Event[:]))
}

// scratch is one repricing's working memory. Clearing prices riders on
// several goroutines with one Book, so each repricing takes its own from
// scratchPool and puts it back when done with the settlements in it.
type scratch struct {
	taps       []fares.Tap
	settle     fares.Scratch
	capper     *fares.Capper
	capperFeed *fares.Feed
	byAgency   agencySums
	booked     []Booking
	rolling    []fares.RollingWindow
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// newCapper returns the scratch's Capper for f with nothing charged.
func (sc *scratch) newCapper(f *fares.Feed) *fares.Capper {
	if sc.capper == nil || sc.capperFeed != f {
		sc.capper, sc.capperFeed = f.NewCapper(), f
	} else {
		sc.capper.Reset()
	}
	return sc.capper
}

// reprice prices d from its taps and books the difference.
func (b *Book) reprice(d *Day, earlier []WeekDay) (Delta, Summary, error) {
	if nb := b.ForDay(d.Date); nb != b {
		return nb.reprice(d, earlier)
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	settlements, sum, err := b.priceWith(d, earlier, sc)
	if err != nil {
		return Delta{}, sum, err
	}
	if sc.capper.HasRolling() || len(d.RollingOut) > 0 {
		out := sc.capper.RollingWindows(sc.rolling[:0], b.Feed.FareDayBegins(d.Date+1))
		sc.rolling = out
		if !sameRolling(out, d.RollingOut) {
			d.RollingOut = slices.Clip(slices.Clone(out))
		}
	}
	var total int64
	// A day's agencies are few: a sorted slice beats a map here.
	byAgency := sc.byAgency[:0]
	for _, s := range settlements {
		total += s.Charge.Charged.Amount
		for _, sh := range s.Shares {
			byAgency = byAgency.add(sh.AgencyID, sh.Amount.Amount)
		}
	}
	delta := Delta{Total: total - d.Charged}
	for _, bk := range d.Booked {
		byAgency = byAgency.add(bk.Agency, -bk.Amount)
	}
	newBooked := sc.booked[:0]
	changes := 0
	for _, a := range byAgency {
		if a.Amount != 0 {
			changes++
		}
		if now := a.Amount + booked(d.Booked, a.Agency); now != 0 {
			newBooked = append(newBooked, Booking{Agency: a.Agency, Amount: now})
		}
	}
	if changes > 0 {
		delta.ByAgency = make([]Booking, 0, changes)
		for _, a := range byAgency {
			if a.Amount != 0 {
				delta.ByAgency = append(delta.ByAgency, a)
			}
		}
	}
	sc.byAgency, sc.booked = byAgency, newBooked
	// The day keeps its bookings' slice when they did not change (it is
	// never edited in place), else a new one.
	if d.Booked == nil || !slices.Equal(d.Booked, newBooked) {
		d.Booked = append(make([]Booking, 0, len(byAgency)), newBooked...)
	}
	d.Charged, d.FeedVersion = total, b.FeedVersion
	return delta, sum, nil
}

// summary reports on d as it stands without rebooking it.
func (b *Book) summary(d *Day, earlier []WeekDay) (Summary, error) {
	if nb := b.ForDay(d.Date); nb != b {
		return nb.summary(d, earlier)
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	_, s, err := b.priceWith(d, earlier, sc)
	return s, err
}

// priceWith runs the fare engine over the day: journeys from its taps (an
// open entry at the end waits for its exit until the day is closed), the
// week's earlier charges seeding the caps. With a scratch it prices through
// the day's memo and the settlements live in the scratch (valid until its
// next use); without one every settlement's fare is in full (fare legs,
// products, transfers) and the settlements are the caller's.
func (b *Book) priceWith(d *Day, earlier []WeekDay, sc *scratch) ([]fares.Settlement, Summary, error) {
	if nb := b.ForDay(d.Date); nb != b {
		return nb.priceWith(d, earlier, sc)
	}
	var sum Summary
	var taps []fares.Tap
	if sc != nil {
		taps = slices.Grow(sc.taps[:0], len(d.Taps))
	} else {
		taps = make([]fares.Tap, 0, len(d.Taps))
	}
	for _, t := range d.Taps {
		taps = append(taps, fares.Tap{Kind: t.Kind, Time: t.Time, StopID: t.Stop, RouteID: t.Route, NetworkID: t.Network, AgencyID: t.Agency})
	}
	if sc != nil {
		sc.taps = taps
	}
	if n := len(taps); n > 0 && !d.Closed && taps[n-1].Kind == fares.TapIn {
		// Charged the maximum fare now, as an incomplete leg: the exit
		// that corrects it may never come.
		sum.Pending = 1
	}
	var capper *fares.Capper
	if sc != nil {
		capper = sc.newCapper(b.Feed)
	} else {
		capper = b.Feed.NewCapper()
	}
	for _, w := range earlier {
		if w.Date >= d.Date || w.Charged <= 0 {
			continue
		}
		// Each earlier day counts once, as what it was charged.
		if err := capper.Count(b.Feed.FareDayBegins(w.Date).Add(time.Second), d.Category, b.Feed.MediumFor(d.Medium), fares.Money{Amount: w.Charged, Currency: b.Currency}); err != nil {
			return nil, sum, fmt.Errorf("weekly caps of fare day %s: %w", w.Date, err)
		}
	}
	// Rolling weeks run across fare days and calendar weeks: the day
	// starts from the windows open when it begins.
	capper.OpenRolling(d.RollingIn)
	var settlements []fares.Settlement
	var err error
	if sc != nil {
		if d.memo == nil || d.memoFeed != b.Feed {
			d.memo, d.memoFeed = fares.NewJourneyMemo(), b.Feed
		}
		settlements, err = b.Feed.SettleInto(&sc.settle, taps, d.Category, b.Feed.MediumFor(d.Medium), b.Policy, capper, d.memo)
	} else {
		// Every fare in full, for Explain.
		settlements, err = b.Feed.SettleMemo(taps, d.Category, b.Feed.MediumFor(d.Medium), b.Policy, capper, nil)
	}
	if err != nil {
		return nil, sum, fmt.Errorf("price fare day %s: %w", d.Date, err)
	}
	for _, s := range settlements {
		sum.Journeys++
		if len(s.Journey.Legs) == 1 && s.Journey.Legs[0].Incomplete {
			sum.Incomplete++
		}
		if !s.Fare.Known {
			sum.Unknown++
		}
		if s.Charge.CappedBy != "" {
			sum.Capped++
		}
		paid := 0
		for _, sh := range s.Shares {
			if sh.Amount.Amount != 0 {
				paid++
			}
		}
		if paid > 1 {
			sum.MultiOperator++
		}
	}
	return settlements, sum, nil
}

func booked(bs []Booking, agency string) int64 {
	for _, b := range bs {
		if b.Agency == agency {
			return b.Amount
		}
	}
	return 0
}

func sortedKeys(m map[string]int64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// agencySums adds amounts by agency, kept sorted by agency.
type agencySums []Booking

// add returns a with amount added to agency's sum (the slice is grown in
// place where it has room, as append does).
func (a agencySums) add(agency string, amount int64) agencySums {
	// A day has a few agencies: a scan beats a binary search.
	i := 0
	for ; i < len(a); i++ {
		if c := a[i].Agency; c == agency {
			a[i].Amount += amount
			return a
		} else if c > agency {
			break
		}
	}
	return slices.Insert(a, i, Booking{Agency: agency, Amount: amount})
}
