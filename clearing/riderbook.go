package clearing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
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
//	J<rider>\x00<week start u32>   what each day of that calendar week charged
const (
	pRiderDay  = 'j'
	pRiderWeek = 'J'
)

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
	// Legs says, per terminal id, what its taps ride.
	Legs map[string]TerminalLeg
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
		return p.Book.Feed.DefaultRiderCategory(), nil
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
	Unpriced   int         // accepted taps the feed could not price: applied, charged nothing, to review
	Journeys   int         // journeys in the days repriced (a day counts once per batch)
	Incomplete int         // of them, entries or exits without their pair
	Capped     int         // of them, reduced by a fare cap
	Charged    fare.Amount // net charged to riders
	LastError  string      // why the last unpriced tap was not priced
}

// SetPricing turns live pricing on (nil: flat fares).
func (s *Store) SetPricing(p *Pricing) { s.pricing = p }

// riderBatch caches the rider days and weeks one applied batch touches;
// flush writes them back in the batch's transaction.
type riderBatch struct {
	cache *riderCache // read through; nil without a cache
	days  map[string]*journeys.Day
	weeks map[string][]journeys.WeekDay
	seen  map[string]journeys.Summary // last summary per day, for the stats
	// opened are the days this batch created: they join the index of
	// days to bill (payments.go), with their rider's medium.
	opened map[string]openedDay
}

type openedDay struct {
	rider string
	date  fares.Date
	media fare.MediaKind
	token string
}

func newRiderBatch(cache *riderCache) *riderBatch {
	return &riderBatch{cache: cache, days: map[string]*journeys.Day{}, weeks: map[string][]journeys.WeekDay{}, seen: map[string]journeys.Summary{}, opened: map[string]openedDay{}}
}

func riderKey(prefix byte, rider string, date fares.Date) string {
	k := make([]byte, 0, 2+len(rider)+4)
	k = append(k, prefix)
	k = append(k, rider...)
	k = append(k, 0)
	return string(binary.BigEndian.AppendUint32(k, uint32(date)))
}

func weekStart(d fares.Date) fares.Date { return d - fares.Date((int(d.Weekday())+6)%7) }

// mediumID is the GTFS fare_media_id of a medium.
func mediumID(m fare.MediaKind) string { return m.String() }

// price books e in its rider's day and returns the event's postings. A tap
// the feed cannot price is applied with a zero posting and counted: the
// gate accepted it and it must not block the stream.
func (p *Pricing) price(txn *badger.Txn, rb *riderBatch, e *fare.Event, rider string, st *PricingStats) ([]Posting, error) {
	zero := []Posting{{Operator: e.Operator, Amount: 0}}
	if e.Decision != fare.Accepted {
		return zero, nil
	}
	leg := p.Legs[e.Terminal]
	tap := journeys.Tap{Event: e.ID, Time: e.DeviceTime, Stop: e.Stop, Route: leg.Route, Network: leg.Network}
	switch e.Direction {
	case fare.Entry:
		tap.Kind = fares.TapIn
	case fare.Exit:
		tap.Kind = fares.TapOut
	default:
		tap.Kind = fares.Validation
	}
	date := p.Book.Feed.FareDay(e.DeviceTime)
	dk := riderKey(pRiderDay, rider, date)
	wk := riderKey(pRiderWeek, rider, weekStart(date))
	day, err := rb.day(txn, dk, date, e.Media, func() (string, error) {
		rb.opened[dk] = openedDay{rider: rider, date: date, media: e.Media, token: e.MediaToken}
		return p.category(txn, rider, date)
	})
	if err != nil {
		return nil, err
	}
	week, err := rb.week(txn, wk)
	if err != nil {
		return nil, err
	}
	before := *day
	delta, sum, err := p.Book.Add(day, tap, week)
	if err != nil {
		*day = before
		st.Unpriced++
		st.LastError = err.Error()
		return zero, nil
	}
	st.Priced++
	st.Charged += fare.Amount(delta.Total)
	rb.seen[dk] = sum
	rb.weeks[wk] = setWeekDay(week, date, day.Charged)
	if len(delta.ByAgency) == 0 {
		return zero, nil
	}
	out := make([]Posting, len(delta.ByAgency))
	for i, b := range delta.ByAgency {
		out[i] = Posting{Operator: b.Agency, Amount: fare.Amount(b.Amount)}
	}
	return out, nil
}

func (rb *riderBatch) day(txn *badger.Txn, key string, date fares.Date, m fare.MediaKind, category func() (string, error)) (*journeys.Day, error) {
	if d, ok := rb.days[key]; ok {
		return d, nil
	}
	if d, ok := rb.cache.day(key); ok {
		rb.days[key] = d
		return d, nil
	}
	d := &journeys.Day{Date: date, Medium: mediumID(m)}
	item, err := txn.Get([]byte(key))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		if d.Category, err = category(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("rider day: %w", err)
	default:
		if err := item.Value(d.UnmarshalBinary); err != nil {
			return nil, fmt.Errorf("rider day %s: %w", date, err)
		}
	}
	rb.days[key] = d
	return d, nil
}

func (rb *riderBatch) week(txn *badger.Txn, key string) ([]journeys.WeekDay, error) {
	if w, ok := rb.weeks[key]; ok {
		return w, nil
	}
	if w, ok := rb.cache.week(key); ok {
		rb.weeks[key] = w
		return w, nil
	}
	var w []journeys.WeekDay
	item, err := txn.Get([]byte(key))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("rider week: %w", err)
	default:
		err := item.Value(func(v []byte) error {
			if len(v) < 1 || len(v) != 1+12*int(v[0]) {
				return fmt.Errorf("rider week record of %d bytes: %w", len(v), errCorruptRecord)
			}
			for i := range int(v[0]) {
				r := v[1+12*i:]
				w = append(w, journeys.WeekDay{Date: fares.Date(int32(binary.BigEndian.Uint32(r))), Charged: int64(binary.BigEndian.Uint64(r[4:]))})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	rb.weeks[key] = w
	return w, nil
}

func setWeekDay(w []journeys.WeekDay, date fares.Date, charged int64) []journeys.WeekDay {
	i, found := slices.BinarySearchFunc(w, date, func(a journeys.WeekDay, d fares.Date) int { return int(a.Date) - int(d) })
	if found {
		w[i].Charged = charged
		return w
	}
	return slices.Insert(w, i, journeys.WeekDay{Date: date, Charged: charged})
}

// flush writes the batch's rider days and weeks into txn and adds the
// repriced days' summaries to st.
func (rb *riderBatch) flush(txn *badger.Txn, st *PricingStats) error {
	for k, d := range rb.days {
		if len(d.Taps) == 0 {
			delete(rb.days, k) // its only tap was refused: no day yet
			continue
		}
		b, err := d.MarshalBinary()
		if err != nil {
			return err
		}
		if err := txn.Set([]byte(k), b); err != nil {
			return fmt.Errorf("store rider day: %w", err)
		}
	}
	for k, w := range rb.weeks {
		b := make([]byte, 1, 1+12*len(w))
		b[0] = byte(len(w))
		for _, d := range w {
			b = binary.BigEndian.AppendUint32(b, uint32(d.Date))
			b = binary.BigEndian.AppendUint64(b, uint64(d.Charged))
		}
		if err := txn.Set([]byte(k), b); err != nil {
			return fmt.Errorf("store rider week: %w", err)
		}
	}
	for k, o := range rb.opened {
		if _, ok := rb.days[k]; !ok {
			continue // its only tap was refused
		}
		if err := setAll(txn, openDayKey(o.date, o.rider), nil, riderMediumKey(o.rider), riderMediumValue(o.media, o.token)); err != nil {
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

// FareAudit is an independent repricing of every rider's taps from the
// stored events, compared with what the events posted.
type FareAudit struct {
	RiderDays  int `json:"rider_days"`
	Journeys   int `json:"journeys"`
	Incomplete int `json:"journeys_incomplete"`
	Capped     int `json:"journeys_capped"`
	// MultiOperator counts rider days whose charge was split between
	// several operators; RidersCapped the riders a fare cap reduced.
	MultiOperator int `json:"rider_days_multi_operator"`
	RidersCapped  int `json:"riders_capped"`
	// Posted is what the applied events posted to operators in all;
	// Recomputed what the fresh repricing says they should have.
	Posted     fare.Amount `json:"posted"`
	Recomputed fare.Amount `json:"recomputed"`
	// Mismatches names rider days whose posted charge or split differs
	// from the repricing (at most 20 listed); Count counts them all.
	Mismatches []string `json:"mismatches,omitempty"`
	Count      int      `json:"mismatch_count"`
}

// AuditFares reprices every rider's fare days from the stored events alone,
// with a fresh book over the same feed, independently of the live path's
// stored rider days, and compares the result, rider day by rider day and
// operator by operator, with what the events posted. rider maps a medium to
// its pseudonymous account (Clearing.RiderAccount).
func (s *Store) AuditFares(p *Pricing, rider func(fare.MediaKind, string) string) (*FareAudit, error) {
	type group struct {
		rider  string
		date   fares.Date
		medium fare.MediaKind
		taps   []journeys.Tap
		posted map[string]fare.Amount
	}
	groups := map[string]*group{}
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
			item, err := txn.Get(eventKey(a.id))
			if err != nil {
				return fmt.Errorf("event %s: %w", a.id, err)
			}
			var rec EventRecord
			if err := item.Value(rec.UnmarshalBinary); err != nil {
				return fmt.Errorf("event %s: %w", a.id, err)
			}
			sig, err := fare.Decode(rec.Raw)
			if err != nil {
				return fmt.Errorf("event %s: %w", a.id, err)
			}
			e := &sig.Event
			if e.Decision != fare.Accepted {
				continue
			}
			r := rider(e.Media, e.MediaToken)
			date := p.Book.Feed.FareDay(e.DeviceTime)
			k := riderKey(pRiderDay, r, date)
			g := groups[k]
			if g == nil {
				g = &group{rider: r, date: date, medium: e.Media, posted: map[string]fare.Amount{}}
				groups[k] = g
			}
			leg := p.Legs[e.Terminal]
			tap := journeys.Tap{Event: e.ID, Time: e.DeviceTime, Stop: e.Stop, Route: leg.Route, Network: leg.Network, Kind: fares.Validation}
			switch e.Direction {
			case fare.Entry:
				tap.Kind = fares.TapIn
			case fare.Exit:
				tap.Kind = fares.TapOut
			}
			g.taps = append(g.taps, tap)
			for _, po := range rec.PostingsOf(e.Operator) {
				g.posted[po.Operator] += po.Amount
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit fares: %w", err)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys) // rider, then date: a week's earlier days first
	book := *p.Book
	rep := &FareAudit{}
	weeks := map[string][]journeys.WeekDay{}
	capped := map[string]bool{}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	for _, k := range keys {
		g := groups[k]
		rep.RiderDays++
		cat, err := p.category(txn, g.rider, g.date)
		if err != nil {
			return nil, fmt.Errorf("audit fares: %w", err)
		}
		d := &journeys.Day{Date: g.date, Category: cat, Medium: mediumID(g.medium)}
		wk := riderKey(pRiderWeek, g.rider, weekStart(g.date))
		var sum journeys.Summary
		for _, t := range g.taps {
			if _, s, err := book.Add(d, t, weeks[wk]); err == nil {
				sum = s
			}
		}
		weeks[wk] = setWeekDay(weeks[wk], g.date, d.Charged)
		rep.Journeys += sum.Journeys
		rep.Incomplete += sum.Incomplete
		rep.Capped += sum.Capped
		if sum.Capped > 0 && !capped[g.rider] {
			capped[g.rider] = true
			rep.RidersCapped++
		}
		if len(d.Booked) > 1 {
			rep.MultiOperator++
		}
		want := map[string]fare.Amount{}
		for _, b := range d.Booked {
			want[b.Agency] = fare.Amount(b.Amount)
		}
		rep.Recomputed += fare.Amount(d.Charged)
		mismatch := false
		for op, v := range g.posted {
			rep.Posted += v
			if want[op] != v {
				mismatch = true
			}
		}
		for op, v := range want {
			if g.posted[op] != v {
				mismatch = true
			}
		}
		if mismatch {
			rep.Count++
			if len(rep.Mismatches) < 20 {
				rep.Mismatches = append(rep.Mismatches, fmt.Sprintf("rider %s fare day %s: posted %v, repricing says %v", g.rider, g.date, g.posted, want))
			}
		}
	}
	return rep, nil
}
