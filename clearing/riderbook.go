package clearing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/journeys"
	"github.com/faregate/faregate/fare"
)

// Live pricing: with a GTFS Fares v2 feed, every accepted tap is booked in
// its rider's fare day (clearing/journeys) inside the same synced
// transaction as the event, and the day's repriced difference is what the
// event posts, split between the operators whose legs it covers. Without a
// feed each accepted entry or validation posts its operator's flat fare.
//
// Store keys (beside those in store.go):
//
//	j<rider>\x00<fare day u32>     the rider's fare day (journeys.Day, binary)
//	J<rider>\x00<week start u32>   which days of that calendar week the rider has
//
// A week record is what the weekly caps need to find: the rider's days of
// the week, whose day records say what each charged. It is derived state,
// written only when the set changes (a day opens), not every time a day's
// charge does. Two versions are read:
//
//	v1: n u8 | n × (date i32 | charged i64)   (the charges are not read:
//	    the day records hold them, and a v1 record's copies go stale)
//	v2: 0xf2 | days u8                        (bit i: week start + i)
//
// A rider has a day only if its week record lists it (every day written
// since the week records began was listed in the same transaction), so a
// day the record does not list is not looked for in the store.
const (
	pRiderDay  = 'j'
	pRiderWeek = 'J'
)

// weekRecordDays is the first byte of a version 2 week record.
const weekRecordDays = 0xf2

// decodeWeekRecord returns the days (bit i: start + i) a stored week record
// of the week beginning start lists.
func decodeWeekRecord(v []byte, start fares.Date) (uint8, error) {
	if len(v) == 2 && v[0] == weekRecordDays {
		if v[1] >= 1<<7 {
			return 0, fmt.Errorf("rider week record: days 0x%02x: %w", v[1], errCorruptRecord)
		}
		return v[1], nil
	}
	if len(v) < 1 || len(v) != 1+12*int(v[0]) {
		return 0, fmt.Errorf("rider week record of %d bytes: %w", len(v), errCorruptRecord)
	}
	var bits uint8
	for i := range int(v[0]) {
		off := fares.Date(int32(binary.BigEndian.Uint32(v[1+12*i:]))) - start
		if off < 0 || off > 6 {
			return 0, fmt.Errorf("rider week record of %s lists fare day %s: %w", start, start+off, errCorruptRecord)
		}
		bits |= 1 << off
	}
	return bits, nil
}

// weekDays is the days (bit i: start + i) of a week as the batch holds it.
func weekDays(w []journeys.WeekDay, start fares.Date) (uint8, error) {
	var bits uint8
	for _, d := range w {
		off := d.Date - start
		if off < 0 || off > 6 {
			return 0, fmt.Errorf("rider week of %s holds fare day %s", start, d.Date)
		}
		bits |= 1 << off
	}
	return bits, nil
}

// weekKeyOf is the week key of a day key (riderKey(pRiderDay, ...)).
func weekKeyOf(dayKey string, date fares.Date) string {
	return riderKey(pRiderWeek, dayKey[1:len(dayKey)-5], weekStart(date))
}

// TerminalLeg is what a terminal's taps need beside their stop to form a
// leg: the network of a station gate, the route of an on-board validator.
type TerminalLeg struct {
	Terminal string `json:"terminal"`
	Network  string `json:"network,omitempty"`
	Route    string `json:"route,omitempty"`
}

// Pricing prices taps from a feed; set it with Store.SetPricing before
// events are applied.
type Pricing struct {
	Book *journeys.Book
	// Legs says, per terminal id, what its taps ride; StopLegs, by
	// StopLegKey, what a gate without a leg of its own rides at its
	// operator's stop (Registry.LegsByStop): one registered on the ledger
	// while clearing runs rides what the stop's other gates ride.
	Legs, StopLegs map[string]TerminalLeg
	// Category returns the rider category a rider is enrolled in at a
	// time (the feed's default when not enrolled). A fare day is priced
	// for the category enrolled when the fare day begins, whatever order
	// its taps arrive in; nil prices everyone at the feed's default
	// category. What a tap line claims is never used.
	Category func(txn *badger.Txn, rider string, at time.Time) (string, error)
}

// category is the rider category of a rider's fare day.
func (p *Pricing) category(txn *badger.Txn, rider string, date fares.Date) (string, error) {
	if p.Category == nil {
		return p.Book.ForDay(date).Feed.DefaultRiderCategory(), nil
	}
	c, err := p.Category(txn, rider, p.Book.Feed.FareDayBegins(date))
	if err != nil {
		return "", fmt.Errorf("rider category of %s: %w", rider, err)
	}
	return c, nil
}

// PricingStats count what live pricing did in one applied batch.
type PricingStats struct {
	Priced     int         // taps booked in a rider's day
	Unpriced   int         // accepted taps the feed could not price: applied, to review (their journey charged leg by leg where the feed knows a leg's fare, else nothing)
	Journeys   int         // journeys in the days repriced (a day counts once per batch)
	Incomplete int         // of them, entries or exits without their pair
	Capped     int         // of them, reduced by a fare cap
	Charged    fare.Amount // net charged to riders
	LastError  string      // why the last unpriced tap was not priced
	// Serial counts taps a parallel batch finished serially (they needed
	// a fare day its read-ahead did not read).
	Serial int
}

// SetPricing turns live pricing on (nil: flat fares).
func (s *Store) SetPricing(p *Pricing) { s.pricing.Store(p) }

// riderBatch caches the rider days and weeks one applied batch touches;
// flush writes them back in the batch's transaction.
type riderBatch struct {
	cache *riderCache // read through; nil without a cache
	days  map[string]*journeys.Day
	weeks map[string][]journeys.WeekDay
	seen  map[string]journeys.Summary // last summary per day, for the stats
	// stored are the days read from the cache or the store: written back
	// even when a crossing exit moved their only tap away. was holds each
	// one as it was read: flush writes only the days that changed.
	stored map[string]bool
	was    map[string]journeys.Day
	// base is, per week read, the days its stored record lists: flush
	// writes the record only when the batch's days differ.
	base map[string]uint8
	// peek are stored days read while deriving a week, not yet the
	// batch's (day takes them from there).
	peek map[string]*journeys.Day
	// opened are the days this batch created: they join the index of
	// days to bill (payments.go), with their rider's medium.
	opened map[string]openedDay
	// encoded are day records the pricing workers encoded (ridepricing.go).
	encoded map[string]encodedDay
	// billedBefore: the collector may have billed the days before it
	// (Store.billedBefore as the batch began). A late tap that changes
	// what such a day charges puts it back in the index of days to bill,
	// or its charge would wait for the rider's next day (and never be
	// asked for if none came).
	billedBefore fares.Date
}

type openedDay struct {
	rider string
	date  fares.Date
	media fare.MediaKind
	token string
}

// newRiderBatch makes a batch's rider state for about riders riders (a
// size hint: the maps then do not grow by rehashing as the batch is priced).
func newRiderBatch(cache *riderCache, riders int) *riderBatch {
	return &riderBatch{cache: cache, days: make(map[string]*journeys.Day, riders), weeks: make(map[string][]journeys.WeekDay, riders),
		seen: make(map[string]journeys.Summary, riders), stored: make(map[string]bool, riders), was: make(map[string]journeys.Day, riders),
		base: make(map[string]uint8, riders), peek: map[string]*journeys.Day{}, opened: map[string]openedDay{}, encoded: make(map[string]encodedDay, riders)}
}

func riderKey(prefix byte, rider string, date fares.Date) string {
	k := make([]byte, 0, 2+len(rider)+4)
	k = append(k, prefix)
	k = append(k, rider...)
	k = append(k, 0)
	return string(binary.BigEndian.AppendUint32(k, uint32(date)))
}

func weekStart(d fares.Date) fares.Date { return journeys.WeekStart(d) }

// mediumID is the GTFS fare_media_id of a medium.
func mediumID(m fare.MediaKind) string { return m.String() }

// price books e in its rider's fare days and returns the event's
// postings. A tap the feed cannot price (at a place it does not know, or
// in a journey no rule prices) is booked in a journey of unknown fare,
// applied with a zero posting and counted: the gate accepted it and it
// must not block the stream, and its journey waits for review.
//
// The tap is booked by the cut-over rule (journeys.Book.Post): in its own
// fare day, or, an exit completing a journey begun before the cut-over, in
// the previous one; an exit already booked may move between the two days,
// and the event then posts the sum of both days' differences.
func (p *Pricing) price(txn *batchTxn, rb *riderBatch, e *fare.Event, rider string, st *PricingStats) ([]Posting, string, error) {
	days := &riderDays{p: p, txn: txn, rb: rb, rider: rider, e: e}
	return p.book(days, func() error { return days.err }, e, rider, st, rb.seen)
}

// book posts e's tap through days (the store through the batch, or what
// a parallel batch read ahead) and returns the event's postings, counting
// it in st and its repriced days' summaries in seen. failed says whether
// days could not give what the booking asked for (a store error, a day not
// read ahead): that is returned, nothing booked; a tap the feed cannot
// price is applied with a zero posting and counted, never an error, and
// unpriced says why (the event record keeps it for the operator to see).
func (p *Pricing) book(days journeys.Days, failed func() error, e *fare.Event, rider string, st *PricingStats, seen map[string]journeys.Summary) (postings []Posting, unpriced string, err error) {
	zero := []Posting{{Operator: e.Operator, Amount: 0}}
	if e.Decision != fare.Accepted {
		return zero, "", nil
	}
	posted, err := p.Book.Post(days, eventTap(p, e))
	if ferr := failed(); ferr != nil {
		return nil, "", ferr // not the tap's fault
	}
	if err != nil {
		st.Unpriced++
		st.LastError = err.Error()
		return zero, err.Error(), nil
	}
	unknown := false
	for _, r := range posted.Days {
		seen[riderKey(pRiderDay, rider, r.Date)] = r.Summary
		unknown = unknown || (r.Date == posted.Date && r.Summary.Unknown > 0)
	}
	if unknown {
		// Rare: the day has a journey the feed has no fare for (a leg no
		// rule matches, a product not sold to the rider). If it is this
		// tap's, the tap is said to be unpriced: its journey is booked leg
		// by leg where the feed knows a leg's fare, else at zero.
		if unpriced, err = p.unknownFare(days, posted.Date, e.ID); failed() != nil {
			return nil, "", failed()
		}
		if err != nil {
			unpriced, err = err.Error(), nil
		}
	}
	if unpriced != "" {
		st.Unpriced++
		st.LastError = unpriced
	} else {
		st.Priced++
	}
	st.Charged += fare.Amount(posted.Delta.Total)
	if len(posted.Delta.ByAgency) == 0 {
		return zero, unpriced, nil
	}
	out := make([]Posting, len(posted.Delta.ByAgency), len(posted.Delta.ByAgency)+1)
	own := false
	for i, b := range posted.Delta.ByAgency {
		out[i] = Posting{Operator: b.Agency, Amount: fare.Amount(b.Amount)}
		own = own || b.Agency == e.Operator
	}
	if !own {
		// The event moved only other operators' money: it still posts
		// (nothing) to its own terminal's operator, whose statement lists
		// its gates' events (zero_share_events, unpriced_events).
		out = append(out, Posting{Operator: e.Operator, Amount: 0})
	}
	return out, unpriced, nil
}

// unknownFare says why the journey holding event in the rider's fare day
// of date has no fare, or "" (journeys.Book.UnknownFare).
func (p *Pricing) unknownFare(days journeys.Days, date fares.Date, event fare.EventID) (string, error) {
	d, err := days.Day(date, false)
	if err != nil || d == nil {
		return "", err
	}
	week, err := days.Week(date)
	if err != nil {
		return "", err
	}
	return p.Book.UnknownFare(d, week, event)
}

// eventTap is the fare book's tap of an accepted event.
func eventTap(p *Pricing, e *fare.Event) journeys.Tap {
	leg, ok := p.Legs[e.Terminal]
	if !ok {
		leg = p.StopLegs[StopLegKey(e.Operator, e.Stop)]
	}
	tap := journeys.Tap{Event: e.ID, Time: e.DeviceTime, Stop: e.Stop, Route: leg.Route, Network: leg.Network, Agency: e.Operator, Kind: fares.Validation}
	switch e.Direction {
	case fare.Entry:
		tap.Kind = fares.TapIn
	case fare.Exit:
		tap.Kind = fares.TapOut
	}
	return tap
}

// riderDays are one rider's fare days and weeks as journeys.Book.Post
// sees them, read through the batch; err keeps the first store error
// (Post only learns that a day could not be read).
type riderDays struct {
	p     *Pricing
	txn   *batchTxn
	rb    *riderBatch
	rider string
	e     *fare.Event
	err   error
}

func (r *riderDays) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return err
}

func (r *riderDays) Day(date fares.Date, create bool) (*journeys.Day, error) {
	key := riderKey(pRiderDay, r.rider, date)
	var category func() (string, error)
	if create {
		category = func() (string, error) {
			r.rb.opened[key] = openedDay{rider: r.rider, date: date, media: r.e.Media, token: r.e.MediaToken}
			return r.p.category(r.txn.txn, r.rider, date)
		}
	}
	d, err := r.rb.day(r.txn, key, date, r.e.Media, category)
	if err != nil {
		return nil, r.fail(err)
	}
	return d, nil
}

func (r *riderDays) Week(date fares.Date) ([]journeys.WeekDay, error) {
	w, err := r.rb.week(r.txn, riderKey(pRiderWeek, r.rider, weekStart(date)))
	if err != nil {
		return nil, r.fail(err)
	}
	return w, nil
}

func (r *riderDays) Charged(date fares.Date, charged int64) {
	wk := riderKey(pRiderWeek, r.rider, weekStart(date))
	w, err := r.rb.week(r.txn, wk) // read already, unless the store fails
	if err != nil {
		r.fail(err)
		return
	}
	r.rb.weeks[wk] = setWeekDay(w, date, charged)
}

// day returns the rider day under key, read through the batch, the cache
// and the store; a day the rider does not have is made by category (which
// returns the day's rider category), or is nil when category is nil. The
// store is asked only for a day its week lists (see pRiderWeek).
func (rb *riderBatch) day(txn *batchTxn, key string, date fares.Date, m fare.MediaKind, category func() (string, error)) (*journeys.Day, error) {
	if d, ok := rb.days[key]; ok {
		return d, nil
	}
	if d, ok := rb.cache.day(key); ok {
		rb.keep(key, d)
		return d, nil
	}
	w, err := rb.week(txn, weekKeyOf(key, date))
	if err != nil {
		return nil, err
	}
	if d, ok := rb.peek[key]; ok {
		delete(rb.peek, key)
		rb.keep(key, d)
		return d, nil
	}
	d := &journeys.Day{Date: date, Medium: mediumID(m)}
	err = badger.ErrKeyNotFound
	if listed(w, date) {
		err = txn.get([]byte(key), d.UnmarshalBinary)
	}
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		if category == nil {
			return nil, nil
		}
		if d.Category, err = category(); err != nil {
			return nil, err
		}
		rb.days[key] = d
	case err != nil:
		return nil, fmt.Errorf("rider day %s: %w", date, err)
	default:
		rb.keep(key, d)
	}
	return d, nil
}

// keep takes a stored day into the batch.
func (rb *riderBatch) keep(key string, d *journeys.Day) {
	rb.days[key], rb.stored[key], rb.was[key] = d, true, *d
}

func listed(w []journeys.WeekDay, date fares.Date) bool {
	for _, d := range w {
		if d.Date == date {
			return true
		}
	}
	return false
}

// week returns the rider week under key (what each of its days charged),
// read through the batch and the cache, else derived from the store: the
// days its record lists, each as its day record charges (a listed day the
// rider does not have charges 0).
func (rb *riderBatch) week(txn *batchTxn, key string) ([]journeys.WeekDay, error) {
	if w, ok := rb.weeks[key]; ok {
		return w, nil
	}
	if rb.base == nil { // a reader's batch (riderDays in api_riders.go)
		rb.base, rb.peek = map[string]uint8{}, map[string]*journeys.Day{}
	}
	start := fares.Date(int32(binary.BigEndian.Uint32([]byte(key[len(key)-4:]))))
	if w, ok := rb.cache.week(key); ok {
		bits, err := weekDays(w, start)
		if err != nil {
			return nil, err
		}
		rb.weeks[key], rb.base[key] = w, bits
		return w, nil
	}
	var bits uint8
	err := txn.get([]byte(key), func(v []byte) (err error) { bits, err = decodeWeekRecord(v, start); return err })
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("rider week: %w", err)
	}
	var w []journeys.WeekDay
	rider := key[1 : len(key)-5]
	for i := range fares.Date(7) {
		if bits&(1<<i) == 0 {
			continue
		}
		date := start + i
		charged, err := rb.charged(txn, riderKey(pRiderDay, rider, date), date)
		if err != nil {
			return nil, err
		}
		w = append(w, journeys.WeekDay{Date: date, Charged: charged})
	}
	rb.weeks[key], rb.base[key] = w, bits
	return w, nil
}

// charged is what the rider day under key charges (0 if there is none),
// read through the batch, the cache and the store; a day read from the
// store is kept in peek for day.
func (rb *riderBatch) charged(txn *batchTxn, key string, date fares.Date) (int64, error) {
	if d, ok := rb.days[key]; ok {
		return d.Charged, nil
	}
	if d, ok := rb.peek[key]; ok {
		return d.Charged, nil
	}
	if d, ok := rb.cache.peek(key); ok {
		return d.Charged, nil
	}
	d := &journeys.Day{}
	err := txn.get([]byte(key), d.UnmarshalBinary)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("rider day %s: %w", date, err)
	}
	rb.peek[key] = d
	return d.Charged, nil
}

func setWeekDay(w []journeys.WeekDay, date fares.Date, charged int64) []journeys.WeekDay {
	i, found := slices.BinarySearchFunc(w, date, func(a journeys.WeekDay, d fares.Date) int { return int(a.Date) - int(d) })
	if found {
		w[i].Charged = charged
		return w
	}
	return slices.Insert(w, i, journeys.WeekDay{Date: date, Charged: charged})
}

// flush writes the batch's changed rider days, and the weeks whose days
// changed, into txn and adds the repriced days' summaries to st.
func (rb *riderBatch) flush(txn *batchTxn, st *PricingStats) error {
	for k, d := range rb.days {
		write, noDay := rb.dayWrite(k, d)
		if noDay {
			delete(rb.days, k)
			continue
		}
		if !write {
			continue
		}
		if !rb.stored[k] {
			// A new day: its week lists it. (Booking it charged it in the
			// week already, unless that failed and it has no taps.)
			wk := weekKeyOf(k, d.Date)
			w, err := rb.week(txn, wk)
			if err != nil {
				return err
			}
			if !listed(w, d.Date) {
				rb.weeks[wk] = setWeekDay(w, d.Date, d.Charged)
			}
		}
		var b []byte
		if e, ok := rb.encoded[k]; ok && sameRecord(d, &e.day) {
			b = e.b // encoded by a pricing worker, unchanged since
		} else {
			var err error
			if b, err = d.MarshalBinary(); err != nil {
				return err
			}
		}
		if err := txn.set([]byte(k), b); err != nil {
			return fmt.Errorf("store rider day: %w", err)
		}
		if was, ok := rb.was[k]; ok && d.Date < rb.billedBefore && d.Charged != was.Charged {
			if err := txn.set(openDayKey(d.Date, k[1:len(k)-5]), nil); err != nil {
				return fmt.Errorf("index rider day: %w", err)
			}
		}
	}
	for k, w := range rb.weeks {
		bits, err := weekDays(w, fares.Date(int32(binary.BigEndian.Uint32([]byte(k[len(k)-4:])))))
		if err != nil {
			return err
		}
		if base, ok := rb.base[k]; ok && base == bits {
			continue
		}
		if err := txn.set([]byte(k), []byte{weekRecordDays, bits}); err != nil {
			return fmt.Errorf("store rider week: %w", err)
		}
	}
	for k, o := range rb.opened {
		if _, ok := rb.days[k]; !ok {
			continue // its only tap was refused
		}
		if err := txn.setAll(openDayKey(o.date, o.rider), nil, riderMediumKey(o.rider), riderMediumValue(o.media, o.token)); err != nil {
			return fmt.Errorf("index rider day: %w", err)
		}
	}
	for _, s := range rb.seen {
		st.Journeys += s.Journeys
		st.Incomplete += s.Incomplete
		st.Capped += s.Capped
	}
	return nil
}

// dayWrite says what flush does with the batch's day k: noDay when there
// is no day yet (its only tap was refused, or crossed to the day before; a
// stored day whose only tap crossed is kept, empty and charging nothing),
// else write unless it was read and not changed.
func (rb *riderBatch) dayWrite(k string, d *journeys.Day) (write, noDay bool) {
	stored := rb.stored[k]
	if len(d.Taps) == 0 && !stored {
		return false, true
	}
	if was, ok := rb.was[k]; stored && ok && sameRecord(d, &was) {
		return false, false
	}
	return true, false
}

// sameRecord says whether d encodes as was does: the engine replaces a
// day's slices when it changes them, never edits them in place.
func sameRecord(d, was *journeys.Day) bool {
	return d.Date == was.Date && d.Category == was.Category && d.Medium == was.Medium && d.Closed == was.Closed &&
		d.Charged == was.Charged && d.FeedVersion == was.FeedVersion &&
		sameSlice(d.Taps, was.Taps) && sameSlice(d.Booked, was.Booked) &&
		sameSlice(d.RollingIn, was.RollingIn) && sameSlice(d.RollingOut, was.RollingOut)
}

func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// RiderDayFeedVersions counts the stored rider days by the feed version
// they were last priced with.
func (s *Store) RiderDayFeedVersions() (map[string]int, error) {
	out := map[string]int{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pRiderDay}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var d journeys.Day
			if err := it.Item().Value(d.UnmarshalBinary); err != nil {
				return fmt.Errorf("rider day %x: %w", it.Item().Key(), err)
			}
			out[d.FeedVersion]++
		}
		return nil
	})
	return out, err
}

// FareAudit is an independent repricing of every rider's taps from the
// stored events, compared with what the events posted.
type FareAudit struct {
	RiderDays  int `json:"rider_days"`
	Journeys   int `json:"journeys"`
	Incomplete int `json:"journeys_incomplete"`
	Capped     int `json:"journeys_capped"`
	// MultiOperator counts journeys whose charge was split between
	// several operators, MultiOperatorDays the rider days; RidersCapped
	// the riders a fare cap reduced.
	MultiOperator     int `json:"journeys_multi_operator"`
	MultiOperatorDays int `json:"rider_days_multi_operator"`
	RidersCapped      int `json:"riders_capped"`
	// Posted is what the applied events posted to operators in all;
	// Recomputed what the fresh repricing says they should have.
	Posted     fare.Amount `json:"posted"`
	Recomputed fare.Amount `json:"recomputed"`
	// Mismatches names rider days whose posted charge or split differs
	// from the repricing (at most 20 listed); Count counts them all.
	Mismatches []string `json:"mismatches,omitempty"`
	Count      int      `json:"mismatch_count"`
	// RulesVersion is the pricing rules the repricing used
	// (journeys.RulesVersion). EarlierRules names rider days that differ
	// from it but whose last event was priced under earlier rules (the
	// store lists which rules priced which events): expected after an
	// upgrade that changed what is charged, so not counted in Count (at
	// most 20 listed); EarlierRulesCount counts them all.
	RulesVersion int `json:"rules_version"`
	// RulesSince is the first apply index the store priced under
	// RulesVersion (recorded at each start of clearing whose rules
	// differ from the last); absent where its latest events were priced
	// under other rules, or it records none (an earlier build's store).
	RulesSince        *uint64  `json:"rules_since,omitempty"`
	EarlierRules      []string `json:"earlier_rules,omitempty"`
	EarlierRulesCount int      `json:"earlier_rules_count"`
}

// AuditFares reprices every rider's fare days from the stored events alone,
// with a fresh book over the same feed, independently of the live path's
// stored rider days, and compares the result, rider day by rider day and
// operator by operator, with what the events posted. rider maps a medium to
// its pseudonymous account (Clearing.RiderAccount).
//
// Each rider's taps are grouped into fare days by the cut-over rule at
// once, from the whole set (journeys.Book.Assign), not as they arrived. An
// event posts what its tap changed in the days it touched, and a tap
// arriving near a cut-over may have moved an exit between two days: days a
// move may have tied together (journeys.Book.Linked) are compared as one.
// So are the days from a late tap's (an event applied after one of a later
// fare day of the same rider) to the latest then: under a weekly cap its
// event posted what it changed in those later days.
func (s *Store) AuditFares(p *Pricing, rider func(fare.MediaKind, string) string) (*FareAudit, error) {
	type riderTaps struct {
		medium  fare.MediaKind
		taps    []journeys.Tap                        // the rider's accepted taps
		events  map[fares.Date]bool                   // own fare days of the rider's events
		posted  map[fares.Date]map[string]fare.Amount // by the event's own fare day
		applyAt map[fares.Date]uint64                 // the last apply index of the events of each own fare day
		latest  fares.Date                            // the latest own fare day applied so far
		// late are the days an event was applied to after a later day's:
		// its event posted what it changed in the later days (a weekly
		// cap), so each is compared with the days up to latest as one.
		late [][2]fares.Date
	}
	riders := map[string]*riderTaps{}
	book := *p.Book
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 500, Prefix: []byte{pApplied}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var a appliedEntry
			if err := it.Item().Value(func(v []byte) error {
				var err error
				a, err = parseApplied(v)
				return err
			}); err != nil {
				return err
			}
			rec, sig, err := appliedEvent(txn, a.id)
			if err != nil {
				return err
			}
			e := &sig.Event
			if e.Decision != fare.Accepted || strings.Contains(rec.Unpriced, journeys.ErrDayFull.Error()) {
				continue // a tap a full fare day did not book, posting nothing, is not booked here either
			}
			r := rider(e.Media, e.MediaToken)
			rt := riders[r]
			if rt == nil {
				rt = &riderTaps{medium: e.Media, events: map[fares.Date]bool{}, posted: map[fares.Date]map[string]fare.Amount{}, applyAt: map[fares.Date]uint64{}}
				riders[r] = rt
			}
			date := p.Book.Feed.FareDay(e.DeviceTime)
			if len(rt.events) > 0 && date < rt.latest {
				rt.late = append(rt.late, [2]fares.Date{date, rt.latest})
			}
			if len(rt.events) == 0 || date > rt.latest {
				rt.latest = date
			}
			rt.events[date] = true
			rt.applyAt[date] = max(rt.applyAt[date], rec.ApplyIndex)
			rt.taps = append(rt.taps, eventTap(p, e))
			if rt.posted[date] == nil {
				rt.posted[date] = map[string]fare.Amount{}
			}
			for _, po := range rec.PostingsOf(e.Operator) {
				rt.posted[date][po.Operator] += po.Amount
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit fares: %w", err)
	}
	names := make([]string, 0, len(riders))
	for r := range riders {
		names = append(names, r)
	}
	slices.Sort(names)
	rep := &FareAudit{RulesVersion: journeys.RulesVersion}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	rulesSince, err := pricingRulesSince(txn, journeys.RulesVersion)
	if err != nil {
		return nil, fmt.Errorf("audit fares: %w", err)
	}
	if rulesSince != math.MaxUint64 {
		rep.RulesSince = &rulesSince
	}
	rules, err := pricingRulesOf(txn)
	if err != nil {
		return nil, fmt.Errorf("audit fares: %w", err)
	}
	for _, r := range names {
		rt := riders[r]
		var catErr error
		assigned := book.Assign(rt.taps, func(date fares.Date) string {
			cat, err := p.category(txn, r, date)
			if err != nil && catErr == nil {
				catErr = err
			}
			return cat
		}, mediumID(rt.medium))
		if catErr != nil {
			return nil, fmt.Errorf("audit fares: %w", catErr)
		}
		own := map[fares.Date][]journeys.Tap{}
		for _, t := range rt.taps {
			date := book.Feed.FareDay(t.Time)
			own[date] = append(own[date], t)
		}
		// The rider's days: those the repricing books taps in, and those
		// whose taps all crossed to the day before.
		all := map[fares.Date]bool{}
		for date := range assigned {
			all[date] = true
		}
		for date := range rt.events {
			if len(own[date]) == 0 {
				all[date] = true
			}
		}
		dates := make([]fares.Date, 0, len(all))
		for date := range all {
			dates = append(dates, date)
		}
		slices.Sort(dates) // a week's earlier days first
		// unit names the first day of the run of linked days a day is
		// compared in (a union-find whose roots are the earliest days).
		unit := map[fares.Date]fares.Date{}
		var unitOf func(date fares.Date) fares.Date
		unitOf = func(date fares.Date) fares.Date {
			u, ok := unit[date]
			if !ok || u == date {
				return date
			}
			r := unitOf(u)
			unit[date] = r
			return r
		}
		link := func(a, b fares.Date) {
			ra, rb := unitOf(a), unitOf(b)
			if ra > rb {
				ra, rb = rb, ra
			}
			if ra != rb {
				unit[rb] = ra
			}
		}
		for _, date := range slices.Sorted(maps.Keys(rt.events)) {
			if rt.events[date-1] && book.Linked(own[date-1], own[date]) {
				link(date-1, date)
			}
		}
		for _, l := range rt.late {
			for d := l[0]; d < l[1]; d++ {
				link(d, d+1)
			}
		}
		want := map[fares.Date]map[string]fare.Amount{}
		posted := map[fares.Date]map[string]fare.Amount{}
		last := map[fares.Date]fares.Date{}
		// A day's postings add up to its price at its last event: a unit
		// whose last event was priced under earlier rules may differ.
		applyAt := map[fares.Date]uint64{}
		for date, m := range rt.posted {
			u := unitOf(date)
			applyAt[u] = max(applyAt[u], rt.applyAt[date])
			if posted[u] == nil {
				posted[u] = map[string]fare.Amount{}
			}
			for op, v := range m {
				posted[u][op] += v
				rep.Posted += v
			}
			last[u] = max(last[u], date)
		}
		weeks := map[fares.Date][]journeys.WeekDay{}
		capped := false
		// The rolling-week windows the rider's previous day with taps left
		// open: each day starts from them (none without rolling caps).
		var rolling []fares.RollingWindow
		for _, date := range dates {
			rep.RiderDays++
			cat, err := p.category(txn, r, date)
			if err != nil {
				return nil, fmt.Errorf("audit fares: %w", err)
			}
			d := &journeys.Day{Date: date, Category: cat, Medium: mediumID(rt.medium), RollingIn: rolling}
			wk := weekStart(date)
			var sum journeys.Summary
			for _, t := range assigned[date] {
				if _, s, err := book.Add(d, t, weeks[wk]); err == nil {
					sum = s
				}
			}
			weeks[wk] = setWeekDay(weeks[wk], date, d.Charged)
			if len(d.Taps) > 0 {
				rolling = d.RollingOut
			}
			rep.Journeys += sum.Journeys
			rep.Incomplete += sum.Incomplete
			rep.Capped += sum.Capped
			rep.MultiOperator += sum.MultiOperator
			capped = capped || sum.Capped > 0
			if len(d.Booked) > 1 {
				rep.MultiOperatorDays++
			}
			u := unitOf(date)
			if want[u] == nil {
				want[u] = map[string]fare.Amount{}
			}
			for _, b := range d.Booked {
				want[u][b.Agency] += fare.Amount(b.Amount)
			}
			last[u] = max(last[u], date)
			rep.Recomputed += fare.Amount(d.Charged)
		}
		if capped {
			rep.RidersCapped++
		}
		units := map[fares.Date]bool{}
		for u := range want {
			units[u] = true
		}
		for u := range posted {
			units[u] = true
		}
		for _, u := range slices.Sorted(maps.Keys(units)) {
			if sameAmounts(posted[u], want[u]) {
				continue
			}
			days := "fare day " + u.String()
			if last[u] != u {
				days = fmt.Sprintf("fare days %s to %s", u, last[u])
			}
			line := fmt.Sprintf("rider %s %s: posted %s; the feed's price %s", r, days,
				sharesText(posted[u], p.Book.Currency), sharesText(want[u], p.Book.Currency))
			// Priced under other rules than this build's: its own last
			// event, or an earlier day of the week before it, whose charge
			// seeded its weekly (or rolling) cap (a code review saw a
			// correctly priced Friday fail after an upgrade on Monday).
			other := ""
			if _, ok := posted[u]; ok && applyAt[u] < rulesSince {
				other = fmt.Sprintf("last event applied at index %d, %s", applyAt[u], rulesAt(rules, applyAt[u]))
			}
			for d, idx := range rt.applyAt {
				if other == "" && d < u && d >= u-7 && idx < rulesSince {
					other = fmt.Sprintf("its week's fare day %s last applied at index %d, %s, seeded its caps", d, idx, rulesAt(rules, idx))
				}
			}
			if other != "" {
				rep.EarlierRulesCount++
				if len(rep.EarlierRules) < 20 {
					rep.EarlierRules = append(rep.EarlierRules, fmt.Sprintf("%s (%s; this build prices by rules %d)", line, other, journeys.RulesVersion))
				}
				continue
			}
			rep.Count++
			if len(rep.Mismatches) < 20 {
				rep.Mismatches = append(rep.Mismatches, line)
			}
		}
	}
	return rep, nil
}

// sharesText shows amounts by operator as minor units and decimal:
// "bus 180 (1.80 EUR), metro 150 (1.50 EUR)", by operator.
func sharesText(m map[string]fare.Amount, currency string) string {
	if len(m) == 0 {
		return "nothing"
	}
	parts := make([]string, 0, len(m))
	for _, op := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d (%s %s)", op, m[op], fares.FormatAmount(int64(m[op]), currency), currency))
	}
	return strings.Join(parts, ", ")
}

// sameAmounts compares amounts by operator, a missing operator as zero.
func sameAmounts(a, b map[string]fare.Amount) bool {
	for op, v := range a {
		if b[op] != v {
			return false
		}
	}
	for op, v := range b {
		if a[op] != v {
			return false
		}
	}
	return true
}
