package clearing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

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
	days  map[string]*journeys.Day
	weeks map[string][]journeys.WeekDay
	seen  map[string]journeys.Summary // last summary per day, for the stats
}

func newRiderBatch() *riderBatch {
	return &riderBatch{days: map[string]*journeys.Day{}, weeks: map[string][]journeys.WeekDay{}, seen: map[string]journeys.Summary{}}
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
	day, err := rb.day(txn, dk, date, e.Media, p.Book.Feed.DefaultRiderCategory())
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

func (rb *riderBatch) day(txn *badger.Txn, key string, date fares.Date, m fare.MediaKind, category string) (*journeys.Day, error) {
	if d, ok := rb.days[key]; ok {
		return d, nil
	}
	d := &journeys.Day{Date: date, Category: category, Medium: mediumID(m)}
	item, err := txn.Get([]byte(key))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
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
	for _, s := range rb.seen {
		st.Journeys += s.Journeys
		st.Incomplete += s.Incomplete
		st.Capped += s.Capped
	}
	return nil
}
