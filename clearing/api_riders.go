package clearing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/journeys"
	"github.com/faregate/faregate/fare"
)

// The rider view of the settlement API: a rider's fare days as live
// pricing booked them (riderbook.go), each explained by the fare engine
// (journeys.Book.Explain): journeys and their legs, the products, transfers
// and caps, the charge of each journey and its shares by operator.
//
// A rider is named by its journal account passenger/<media>/0x<32 hex>
// (RiderAccount) and served at /v1/riders/<media>/0x<32 hex>. Only
// auditors see riders: an operator never sees a rider's view (403).

// RiderPayment is one attempt to collect a rider's charges from the
// rider's payment account (post-paid: the fare day's total once it is
// over), as the settlement API's rider view shows it.
type RiderPayment struct {
	// FareDay is the last fare day the payment is for (a retry or a
	// payment through the API may settle several).
	FareDay fares.Date
	// Amount is what was asked of the payment account.
	Amount fare.Amount
	// Approved is the acquirer's answer; Reason says why it declined.
	Approved bool
	Reason   string
	// Reference is the acquirer's reference of the attempt.
	Reference string
	// Overcharged is what the acquirer approved beyond Amount (for it to
	// refund).
	Overcharged fare.Amount
	// Attempt counts the attempts for the fare day (1 for the first);
	// Trigger says why it was made (e.g. day-close, retry, api).
	Attempt int
	Trigger string
	// By names the API token that asked for it (trigger "api").
	By string
	At time.Time
}

// RiderDebt is what a rider owes after declined payments.
type RiderDebt struct {
	// Owed is the sum of the declined payments not yet recovered.
	Owed fare.Amount
	// Since is when the oldest unpaid fare day was declined (zero: no debt).
	Since time.Time
	// Denied reports whether the rider's medium is on the deny list for it.
	Denied bool
	// Attempts counts the steps of the retry schedule used up since the
	// debt began, the first decline being step 1: a step whose day passed
	// while no retry could be made (clearing down) is used up too, so it
	// may exceed Charges. NextRetry is the next scheduled attempt (zero:
	// none).
	Attempts  int
	NextRetry time.Time
	// Charges counts clearing's own charges since the debt began (the
	// declined one that began it and its retries; not those asked for
	// through the API).
	Charges int
}

// RiderPaymentSource is where the rider view gets a rider's payments and
// debt from. Post-paid payments and debt (clearing/payments*.go) implement
// it on *Clearing; until *Clearing has that method, the rider view shows no
// payments and no debt, and says so (payments_status).
type RiderPaymentSource interface {
	// RiderPayments returns the payment attempts of a rider (its journal
	// account, passenger/<media>/0x...), oldest first, and its debt.
	RiderPayments(rider string) ([]RiderPayment, RiderDebt, error)
}

// riderPayments asks clearing's RiderPaymentSource, if it has one; ok is
// false while none is wired in.
func (a *API) riderPayments(rider string) (ps []RiderPayment, debt RiderDebt, ok bool, err error) {
	src, ok := any(a.c).(RiderPaymentSource)
	if !ok {
		return nil, RiderDebt{}, false, nil
	}
	ps, debt, err = src.RiderPayments(rider)
	return ps, debt, true, err
}

// noAcquirer is the payments status when clearing bills nobody.
const noAcquirer = "clearing has no acquirer configured: riders are not billed, their charges stay in their accounts"

// noAcquirerNow is the payments status when clearing bills nobody now but
// billed the rider while it had an acquirer.
const noAcquirerNow = "clearing has no acquirer configured now: the payments listed were taken while it had one; riders are not billed from now on, their new charges stay in their accounts"

// paymentsStatus is a rider view's payments_status ("" when clearing bills
// riders): a store reopened without its acquirer (a kept simulation) lists
// what it billed before, and says so (an outside test read "not billed"
// beside the payments as a contradiction).
func paymentsStatus(wired, acquirer bool, payments int) string {
	switch {
	case !wired:
		return paymentsPending
	case acquirer:
		return ""
	case payments > 0:
		return noAcquirerNow
	default:
		return noAcquirer
	}
}

const paymentsPending = "post-paid payments are not wired in yet: no payment and no debt is recorded for any rider"

// RiderPaymentView is a RiderPayment in the API.
type RiderPaymentView struct {
	FareDay   string `json:"fare_day"`
	Amount    Money  `json:"amount"`
	Outcome   string `json:"outcome"` // approved or declined
	Reason    string `json:"reason,omitempty"`
	Reference string `json:"reference,omitempty"`
	Attempt   int    `json:"attempt"`
	Trigger   string `json:"trigger,omitempty"`
	By        string `json:"by,omitempty"` // the API token that asked for it (trigger "api")
	At        string `json:"at"`
	// Overcharged is what the acquirer approved beyond the amount asked,
	// which is what was posted: the acquirer's to refund.
	Overcharged *Money `json:"overcharged,omitempty"`
}

// RiderDebtView is a RiderDebt in the API.
type RiderDebtView struct {
	Owed      Money  `json:"owed"`
	Since     string `json:"since,omitempty"`
	Denied    bool   `json:"denied"`
	Attempts  int    `json:"attempts"`
	Charges   int    `json:"charges"`
	NextRetry string `json:"next_retry,omitempty"`
}

func (a *API) paymentView(p RiderPayment) RiderPaymentView {
	v := RiderPaymentView{FareDay: p.FareDay.String(), Amount: a.money(p.Amount), Outcome: "declined", Reason: p.Reason,
		Reference: p.Reference, Attempt: p.Attempt, Trigger: p.Trigger, By: p.By, At: a.localTime(p.At)}
	if p.Approved {
		v.Outcome = "approved"
	}
	if p.Overcharged > 0 {
		m := a.money(p.Overcharged)
		v.Overcharged = &m
	}
	return v
}

func (a *API) debtView(d RiderDebt) RiderDebtView {
	v := RiderDebtView{Owed: a.money(d.Owed), Denied: d.Denied, Attempts: d.Attempts, Charges: d.Charges}
	if !d.Since.IsZero() {
		v.Since = a.localTime(d.Since)
	}
	if !d.NextRetry.IsZero() {
		v.NextRetry = a.localTime(d.NextRetry)
	}
	return v
}

// RiderView is a rider's overview: what the journal and the fare days say
// the rider was charged, and the payments and debt.
type RiderView struct {
	// Rider is the rider's journal account, passenger/<media>/0x<32 hex>.
	Rider string `json:"rider"`
	// Account is the journal account: debits are charges, credits the
	// discounts credited back (and, with post-paid payments, payments).
	Account BalanceView `json:"account"`
	// Charged is what the rider was charged in all: the account's debits
	// less its credits, not counting the payments credited to it.
	Charged Money `json:"charged"`
	// FareDays counts the rider's fare days; FirstDay and LastDay bound
	// them (YYYY-MM-DD). DaysCharged is their charges summed, Operators
	// what they booked to each operator: both equal the journal's under
	// live pricing.
	FareDays    int         `json:"fare_days"`
	FirstDay    string      `json:"first_day,omitempty"`
	LastDay     string      `json:"last_day,omitempty"`
	DaysCharged Money       `json:"days_charged"`
	Operators   []ShareView `json:"operators"`
	// Pricing says how the rider's taps are priced now.
	Pricing string `json:"pricing"`
	// Days is the path of the rider's fare days.
	Days string `json:"days"`
	// Payments and Debt come from post-paid payments (RiderPaymentSource);
	// PaymentsStatus says when there is none yet.
	Payments       []RiderPaymentView `json:"payments"`
	Debt           RiderDebtView      `json:"debt"`
	PaymentsStatus string             `json:"payments_status,omitempty"`
}

// ShareView is an amount booked to one operator.
type ShareView struct {
	Operator string `json:"operator"`
	Amount   Money  `json:"amount"`
}

// FareDayView is one fare day of a rider: what was booked and, explained
// by the fare engine, how.
type FareDayView struct {
	Date string `json:"date"`
	// Begins and Ends bound the fare day (RFC 3339, agency timezone): it
	// cuts over at the caps' day_start_time, not at midnight.
	Begins string `json:"begins,omitempty"`
	Ends   string `json:"ends,omitempty"`
	// RiderCategory and FareMedium are what the day is priced for:
	// FareMedium is the feed's fare_media_id the rider's card or face
	// pays as (a card as the feed's medium named card, else its first
	// transit card), empty when the feed has none: then only products
	// that name no medium price the day.
	RiderCategory string `json:"rider_category"`
	FareMedium    string `json:"fare_medium"`
	// Closed is set once the fare day is over and billed to the rider's
	// payment account (up to the billing's billed_through). A late exit
	// may still correct it, as a new posting.
	Closed bool `json:"closed"`
	// FeedVersion is the feed version the day was last priced with.
	FeedVersion string `json:"feed_version"`
	// Charged is what the day charged the rider in all; Operators splits it.
	Charged   Money       `json:"charged"`
	Operators []ShareView `json:"operators"`
	Taps      int         `json:"taps"`
	// Journeys, PendingEntry, CapsHit and Summary are the fare engine's
	// account of the day (see DayExplanation). PendingEntry is an entry
	// still waiting for its exit; how it is charged meanwhile is the
	// engine's rule (summary.pending), and it may also be listed as an
	// incomplete journey.
	Journeys     []JourneyView `json:"journeys"`
	PendingEntry *TapView      `json:"pending_entry,omitempty"`
	CapsHit      []string      `json:"caps_hit"`
	// RollingWindows are the rolling-week cap windows (fare_caps.txt
	// cap_period 2) the day's journeys counted in: open when it began or
	// when it ended, with what the rider spent in each by the day's end
	// (by its start, for a window that closed during the day) and when it
	// closes; empty without such caps.
	RollingWindows []RollingWindowView `json:"rolling_windows"`
	Summary        *DaySummary         `json:"summary,omitempty"`
	Explanation    DayExplanation      `json:"explanation"`
	// Payments are the payment attempts whose last fare day is this one.
	Payments []RiderPaymentView `json:"payments"`
}

// RollingWindowView is one rolling-week cap window.
type RollingWindowView struct {
	FareCapID string `json:"fare_cap_id"`
	Opened    string `json:"opened"` // the start of the journey that opened it (RFC 3339, agency zone)
	Closes    string `json:"closes"` // seven days later
	Spent     Money  `json:"spent"`
}

// DayExplanation says how a day's journeys were obtained: by repricing the
// stored day with the feed clearing runs now. Matches is false when that
// does not give what the day booked (it was priced with another feed
// version, or an earlier day of its week changed after it); the booked
// amounts (charged, operators) are then the ones that count.
type DayExplanation struct {
	FeedVersion string `json:"feed_version,omitempty"`
	Matches     bool   `json:"matches"`
	Note        string `json:"note,omitempty"`
}

// DaySummary counts a day's journeys.
type DaySummary struct {
	Journeys   int `json:"journeys"`
	Incomplete int `json:"incomplete"` // at the maximum fare: an entry or exit without its pair
	Pending    int `json:"pending"`    // entries waiting for their exit
	Capped     int `json:"capped"`
	Unknown    int `json:"unknown"` // the feed knows no fare, to review: charged leg by leg where it knows a leg's (charged_leg_by_leg), else nothing
}

// JourneyView is one journey of a fare day.
type JourneyView struct {
	Start string    `json:"start"`
	End   string    `json:"end"`
	Legs  []LegView `json:"legs"`
	// FareLegs are the fare legs with the products matched; Transfers the
	// transfer rules applied between them.
	FareLegs  []FareLegView  `json:"fare_legs"`
	Transfers []TransferView `json:"transfers"`
	// Fare is the uncapped price (FareKnown false: the feed knows none,
	// Reason says why). A journey of unknown fare is charged leg by leg
	// where the feed knows a fare for any leg (ChargedLegByLeg: a leg's own
	// fare alone, else its entry's maximum fare; fares.Settlement.Fallback),
	// else nothing.
	Fare            Money  `json:"fare"`
	FareKnown       bool   `json:"fare_known"`
	Reason          string `json:"reason,omitempty"`
	ChargedLegByLeg bool   `json:"charged_leg_by_leg,omitempty"`
	// Charged is what the rider pays for the journey after the caps;
	// CappedBy names the fare_cap_id that limited it.
	Charged  Money  `json:"charged"`
	CappedBy string `json:"capped_by,omitempty"`
	// Shares split Charged between the operators whose legs it covers.
	Shares []ShareView `json:"shares"`
}

// LegView is one ride of a journey.
type LegView struct {
	// Operator is the operator of the terminal that took the leg's entry
	// (or its exit, when the entry is missing).
	Operator   string   `json:"operator,omitempty"`
	Route      string   `json:"route,omitempty"`
	Network    string   `json:"network,omitempty"`
	FromStop   string   `json:"from_stop,omitempty"`
	ToStop     string   `json:"to_stop,omitempty"`
	Start      string   `json:"start"`
	End        string   `json:"end"`
	Incomplete bool     `json:"incomplete"`
	Entry      *TapView `json:"entry,omitempty"`
	Exit       *TapView `json:"exit,omitempty"`
}

// TapView is one tap of a rider: the applied event it came from (see
// /v1/events/{event}).
type TapView struct {
	Event    string `json:"event"`
	Kind     string `json:"kind"` // entry, exit or validation
	Terminal string `json:"terminal,omitempty"`
	Operator string `json:"operator,omitempty"`
	Stop     string `json:"stop"`
	Time     string `json:"time"`
}

// FareLegView is a fare leg: legs First..Last (indexes into the journey's
// legs) priced with one product.
type FareLegView struct {
	First       int    `json:"first_leg"`
	Last        int    `json:"last_leg"`
	LegGroup    string `json:"leg_group,omitempty"`
	Product     string `json:"fare_product,omitempty"`
	Price       Money  `json:"price"`
	Charged     bool   `json:"charged"` // false: a transfer waives it
	MaximumFare bool   `json:"maximum_fare"`
	Known       bool   `json:"known"`
	Reason      string `json:"reason,omitempty"`
}

// TransferView is a fare_transfer_rules.txt row applied between two fare
// legs.
type TransferView struct {
	FromFareLeg  int    `json:"from_fare_leg"`
	ToFareLeg    int    `json:"to_fare_leg"`
	FromLegGroup string `json:"from_leg_group"`
	ToLegGroup   string `json:"to_leg_group"`
	// Type is fare_transfer_type (0, 1, 2); Charges says what it charges.
	Type    int    `json:"fare_transfer_type"`
	Charges string `json:"charges"`
	Product string `json:"fare_product,omitempty"`
	Price   Money  `json:"price"`
	Count   int    `json:"transfer_count"`
}

var transferCharges = map[fares.TransferType]string{
	fares.FromLegPlusTransfer:          "from-leg + transfer",
	fares.FromLegPlusTransferPlusToLeg: "from-leg + transfer + to-leg",
	fares.TransferOnly:                 "transfer only",
}

// getOnly answers 405 to any method but GET (and HEAD): the settlement API
// is read-only.
func getOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s %s: method not allowed (allowed: GET, HEAD)", r.Method, r.URL.Path))
			return
		}
		h(w, r)
	}
}

// localTime formats t in RFC 3339 in the feed's agency timezone (UTC
// without a feed), with its fraction of a second where it has one, as
// encoding/json shows a time.Time: a tap's time in a statement or a rider
// view is then the one its event shows.
func (a *API) localTime(t time.Time) string {
	return a.zoned(t).Format(time.RFC3339Nano)
}

// zoned is t in the feed's agency timezone (UTC without a feed): every time
// the settlement API shows about fares, taps, batches and payments is in
// the zone the fares are reckoned in. A zero time stays zero (omitted).
func (a *API) zoned(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	loc := time.UTC
	if p := a.c.store.pricing.Load(); p != nil && p.Book != nil && p.Book.Feed.Location() != nil {
		loc = p.Book.Feed.Location()
	}
	return t.In(loc)
}

// feedMoney is a fare engine amount in the API.
func (a *API) feedMoney(m fares.Money) Money {
	cur := m.Currency
	if cur == "" {
		cur = a.c.cfg.Registry.Currency
	}
	return MoneyOf(fare.Amount(m.Amount), cur)
}

// riderParam reads the rider of a /v1/riders/{media}/{pseudonym} path and
// returns its journal account.
func riderParam(r *http.Request) (string, error) {
	media, pseudo := r.PathValue("media"), r.PathValue("pseudonym")
	if media != fare.Card.String() && media != fare.Face.String() {
		return "", fmt.Errorf("rider media %q: want card or face (a rider passenger/<media>/0x<32 hex> is served at /v1/riders/<media>/0x<32 hex>)", media)
	}
	hexPart, ok := strings.CutPrefix(pseudo, "0x")
	if !ok || len(hexPart) != 32 || strings.Trim(strings.ToLower(hexPart), "0123456789abcdef") != "" {
		return "", fmt.Errorf("rider pseudonym %q: want 0x and 32 hex digits (as in passenger/%s/0x...)", pseudo, media)
	}
	return "passenger/" + media + "/0x" + strings.ToLower(hexPart), nil
}

// dateParam parses a YYYY-MM-DD fare day.
func dateParam(name, s string) (fares.Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a date YYYY-MM-DD", name, s)
	}
	return fares.DateOf(t.Year(), t.Month(), t.Day()), nil
}

// storedDay is one stored fare day of a rider with what the earlier days of
// its week charged (the weekly caps it was priced with).
type storedDay struct {
	day  journeys.Day
	week []journeys.WeekDay
}

// riderDayPrefix is the store prefix of a rider's fare days.
func riderDayPrefix(rider string) []byte {
	return append([]byte{pRiderDay}, append([]byte(rider), 0)...)
}

// riderDays returns the rider's stored fare days from `from` through `to`
// (inclusive), at most limit, oldest first, each with its week.
func (s *Store) riderDays(rider string, from, to fares.Date, limit int) ([]storedDay, error) {
	// Keys hold the day unsigned: no fare day is stored before 1970, and a
	// negative one would seek past them all.
	from = max(from, 0)
	var out []storedDay
	prefix := riderDayPrefix(rider)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(limit, 100), Prefix: prefix})
		defer it.Close()
		for it.Seek([]byte(riderKey(pRiderDay, rider, from))); it.Valid() && len(out) < limit; it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+4 {
				return fmt.Errorf("rider %s: fare day key of %d bytes: %w", rider, len(k), errCorruptRecord)
			}
			if fares.Date(int32(binary.BigEndian.Uint32(k[len(prefix):]))) > to {
				break
			}
			var sd storedDay
			if err := it.Item().Value(sd.day.UnmarshalBinary); err != nil {
				return fmt.Errorf("rider %s: %w", rider, err)
			}
			// riderBatch.week reads (and checks) a stored week record.
			rb := &riderBatch{weeks: map[string][]journeys.WeekDay{}}
			w, err := rb.week(newBatchTxn(txn, nil, 0), riderKey(pRiderWeek, rider, weekStart(sd.day.Date)))
			if err != nil {
				return fmt.Errorf("rider %s: week of %s: %w", rider, sd.day.Date, err)
			}
			sd.week = w
			out = append(out, sd)
		}
		return nil
	})
	return out, err
}

// riderTotals sums a rider's stored fare days: how many, the first and
// last, what they charged and booked to each operator.
func (s *Store) riderTotals(rider string) (n int, first, last fares.Date, charged int64, byOp map[string]int64, err error) {
	byOp = map[string]int64{}
	prefix := riderDayPrefix(rider)
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var d journeys.Day
			if err := it.Item().Value(d.UnmarshalBinary); err != nil {
				return fmt.Errorf("rider %s: %w", rider, err)
			}
			if n == 0 {
				first = d.Date
			}
			n++
			last = d.Date
			charged += d.Charged
			for _, b := range d.Booked {
				byOp[b.Agency] += b.Amount
			}
		}
		return nil
	})
	return n, first, last, charged, byOp, err
}

func (a *API) shares(byOp map[string]int64) []ShareView {
	out := []ShareView{}
	for _, op := range sortedOperators(byOp) {
		out = append(out, ShareView{Operator: op, Amount: a.money(fare.Amount(byOp[op]))})
	}
	return out
}

func sortedOperators(m map[string]int64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (a *API) pricingNote() string {
	p := a.c.store.pricing.Load()
	if p == nil || p.Book == nil {
		return "flat fares: clearing runs without a fare feed, so no fare days are booked"
	}
	return fmt.Sprintf("live from the GTFS feed, version %s", p.Book.FeedVersion)
}

// rider serves GET /v1/riders/{media}/{pseudonym}.
func (a *API) rider(w http.ResponseWriter, r *http.Request) {
	rider, err := riderParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	bal, err := a.c.store.Balance(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	n, first, last, charged, byOp, err := a.c.store.riderTotals(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if n == 0 && bal.Debits == 0 && bal.Credits == 0 {
		writeError(w, http.StatusNotFound, fmt.Errorf("rider %s: no journal postings and no fare days (no such rider, or one who has not travelled): %w", rider, ErrNotFound))
		return
	}
	paid, err := a.c.store.paidBy(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	v := RiderView{
		Rider: rider, Account: a.balanceView(bal), Charged: a.money(bal.Debits - bal.Credits + paid),
		FareDays: n, DaysCharged: a.money(fare.Amount(charged)), Operators: a.shares(byOp),
		Pricing: a.pricingNote(), Days: "/v1/riders/" + strings.TrimPrefix(rider, "passenger/") + "/days",
		Payments: []RiderPaymentView{},
	}
	if n > 0 {
		v.FirstDay, v.LastDay = first.String(), last.String()
	}
	ps, debt, wired, err := a.riderPayments(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("payments of rider %s: %w", rider, err))
		return
	}
	v.PaymentsStatus = paymentsStatus(wired, a.c.cfg.Acquirer != nil, len(ps))
	for _, p := range ps {
		v.Payments = append(v.Payments, a.paymentView(p))
	}
	v.Debt = a.debtView(debt)
	writeJSON(w, http.StatusOK, v)
}

// riderDays serves GET /v1/riders/{media}/{pseudonym}/days?from=&to=&after=&limit=:
// the rider's fare days in date order, paged (next_after).
func (a *API) riderDays(w http.ResponseWriter, r *http.Request) {
	rider, err := riderParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	q := r.URL.Query()
	// from and to bound the days (inclusive); after, the cursor, is the
	// last day of the previous page.
	from, to := fares.Date(0), fares.Date(1<<31-1)
	for _, p := range []struct {
		name string
		dst  *fares.Date
	}{{"from", &from}, {"to", &to}} {
		if s := q.Get(p.name); s != "" {
			if *p.dst, err = dateParam(p.name, s); err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
		}
	}
	if from > to {
		writeError(w, http.StatusBadRequest, fmt.Errorf("from %s is after to %s", from, to))
		return
	}
	if s := q.Get("after"); s != "" {
		after, err := dateParam("after", s)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		from = max(from, after+1)
	}
	limit, err := intParam(q.Get("limit"), 31, 1, 366)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
		return
	}
	days, err := a.c.store.riderDays(rider, from, to, limit+1)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	more := len(days) > limit
	if more {
		days = days[:limit]
	}
	payments, err := a.paymentsByDay(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	out := make([]FareDayView, 0, len(days))
	for i := range days {
		v, err := a.fareDayView(&days[i], payments)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		out = append(out, v)
	}
	resp := map[string]any{"rider": rider, "days": out}
	if more {
		resp["next_after"] = days[len(days)-1].day.Date.String()
	}
	writeJSON(w, http.StatusOK, resp)
}

// riderDay serves GET /v1/riders/{media}/{pseudonym}/days/{date}.
func (a *API) riderDay(w http.ResponseWriter, r *http.Request) {
	rider, err := riderParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	date, err := dateParam("fare day", r.PathValue("date"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	days, err := a.c.store.riderDays(rider, date, date, 1)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if len(days) == 0 {
		writeError(w, http.StatusNotFound, fmt.Errorf("rider %s has no fare day %s: %w", rider, date, ErrNotFound))
		return
	}
	payments, err := a.paymentsByDay(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	v, err := a.fareDayView(&days[0], payments)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// dayBills are a rider's payments by fare day and the last fare day
// billed ("" if none).
type dayBills struct {
	byDay   map[fares.Date][]RiderPaymentView
	through string
}

func (a *API) paymentsByDay(rider string) (dayBills, error) {
	ps, _, _, err := a.riderPayments(rider)
	if err != nil {
		return dayBills{}, fmt.Errorf("payments of rider %s: %w", rider, err)
	}
	out := dayBills{byDay: map[fares.Date][]RiderPaymentView{}}
	for _, p := range ps {
		out.byDay[p.FareDay] = append(out.byDay[p.FareDay], a.paymentView(p))
	}
	b, err := a.c.store.Billing(rider)
	if err != nil {
		return dayBills{}, fmt.Errorf("billing of rider %s: %w", rider, err)
	}
	out.through = b.BilledThrough
	return out, nil
}

// fareDayView shows a stored day, explained by the fare engine when
// clearing runs with a feed.
func (a *API) fareDayView(sd *storedDay, bills dayBills) (FareDayView, error) {
	d := &sd.day
	date := d.Date.String()
	v := FareDayView{
		Date: date, RiderCategory: d.Category, FareMedium: d.Medium, FeedVersion: d.FeedVersion,
		Closed:  d.Closed || bills.through != "" && date <= bills.through, // ISO dates order as strings
		Charged: a.money(fare.Amount(d.Charged)), Operators: []ShareView{}, Taps: len(d.Taps),
		Journeys: []JourneyView{}, CapsHit: []string{}, Payments: bills.byDay[d.Date], RollingWindows: []RollingWindowView{},
	}
	if p := a.c.store.pricing.Load(); p != nil && p.Book != nil {
		// The medium the feed prices the day's taps as, not the kind of
		// tap (an outside test saw a card priced as compass_card shown as
		// card, with no way to explain its fares).
		v.FareMedium = p.Book.ForDay(d.Date).Feed.MediumFor(d.Medium)
	}
	// The windows the day's journeys counted in: those open when it
	// began (one may close during it) and those open when it ended, each
	// once, with what was spent in it by the day's end.
	for _, ws := range [][]fares.RollingWindow{d.RollingIn, d.RollingOut} {
		for _, w := range ws {
			i := slices.IndexFunc(v.RollingWindows, func(x RollingWindowView) bool {
				return x.FareCapID == w.CapID && x.Opened == a.localTime(w.Start)
			})
			rv := RollingWindowView{FareCapID: w.CapID, Opened: a.localTime(w.Start),
				Closes: a.localTime(w.Start.Add(7 * 24 * time.Hour)), Spent: a.money(fare.Amount(w.Spent))}
			if i < 0 {
				v.RollingWindows = append(v.RollingWindows, rv)
			} else {
				v.RollingWindows[i] = rv
			}
		}
	}
	if v.Payments == nil {
		v.Payments = []RiderPaymentView{}
	}
	for _, b := range d.Booked {
		v.Operators = append(v.Operators, ShareView{Operator: b.Agency, Amount: a.money(fare.Amount(b.Amount))})
	}
	p := a.c.store.pricing.Load()
	if p == nil || p.Book == nil {
		v.Explanation.Note = "clearing runs without a fare feed now: the day's journeys cannot be shown, its booked amounts stand"
		return v, nil
	}
	book := p.Book.ForDay(d.Date) // the version that prices the day
	v.Begins = a.localTime(book.Feed.FareDayBegins(d.Date))
	v.Ends = a.localTime(book.Feed.FareDayBegins(d.Date + 1))
	v.Explanation.FeedVersion = book.FeedVersion
	ex, err := book.Explain(d, sd.week)
	if err != nil {
		v.Explanation.Note = fmt.Sprintf("the feed clearing runs now cannot price this day (%v): its booked amounts stand", err)
		return v, nil
	}
	v.Explanation.Matches = ex.Matches
	switch {
	case ex.Matches:
	case d.FeedVersion != book.FeedVersion:
		v.Explanation.Note = fmt.Sprintf("the day was priced with feed %s and is explained with %s, which prices it at %s: the booked amounts stand",
			d.FeedVersion, book.FeedVersion, a.money(fare.Amount(ex.Charged)).Decimal)
	default:
		v.Explanation.Note = fmt.Sprintf("repriced now the day comes to %s: an earlier day of its week changed after it was priced (weekly caps), or the day was priced under earlier pricing rules than this build's (ledger audit says which); the booked amounts stand",
			a.money(fare.Amount(ex.Charged)).Decimal)
	}
	s := ex.Summary
	v.Summary = &DaySummary{Journeys: s.Journeys, Incomplete: s.Incomplete, Pending: s.Pending, Capped: s.Capped, Unknown: s.Unknown}
	events := map[fare.EventID]*fare.Event{}
	tapView := func(t *journeys.Tap) (*TapView, error) {
		if t == nil {
			return nil, nil
		}
		tv := &TapView{Event: t.Event.String(), Kind: tapKind(t.Kind), Stop: t.Stop, Time: a.localTime(t.Time)}
		e, ok := events[t.Event]
		if !ok {
			rec, err := a.c.store.Event(t.Event)
			switch {
			case errors.Is(err, ErrNotFound):
				// Booked but not applied is impossible (same transaction);
				// show the tap without its terminal rather than fail.
			case err != nil:
				return nil, err
			default:
				sig, err := fare.Decode(rec.Raw)
				if err != nil {
					return nil, fmt.Errorf("event %s: %w", t.Event, err)
				}
				e = &sig.Event
			}
			events[t.Event] = e
		}
		if e != nil {
			tv.Terminal, tv.Operator = e.Terminal, e.Operator
		}
		return tv, nil
	}
	caps := map[string]bool{}
	for _, j := range ex.Journeys {
		jv := JourneyView{
			Fare: a.feedMoney(j.Fare.Total), FareKnown: j.Fare.Known, Reason: j.Fare.Reason, ChargedLegByLeg: j.Fallback,
			Charged: a.feedMoney(j.Charge.Charged), CappedBy: j.Charge.CappedBy,
			Legs: []LegView{}, FareLegs: []FareLegView{}, Transfers: []TransferView{}, Shares: []ShareView{},
		}
		if legs := j.Journey.Legs; len(legs) > 0 {
			jv.Start, jv.End = a.localTime(legs[0].Start), a.localTime(legs[len(legs)-1].End)
		}
		if j.Charge.CappedBy != "" && !caps[j.Charge.CappedBy] {
			caps[j.Charge.CappedBy] = true
			v.CapsHit = append(v.CapsHit, j.Charge.CappedBy)
		}
		for i, l := range j.Journey.Legs {
			lv := LegView{Route: l.RouteID, Network: l.NetworkID, FromStop: l.FromStop, ToStop: l.ToStop,
				Start: a.localTime(l.Start), End: a.localTime(l.End), Incomplete: l.Incomplete}
			var err error
			if lv.Entry, err = tapView(j.Legs[i].Entry); err != nil {
				return v, err
			}
			if lv.Exit, err = tapView(j.Legs[i].Exit); err != nil {
				return v, err
			}
			switch {
			case lv.Entry != nil:
				lv.Operator = lv.Entry.Operator
			case lv.Exit != nil:
				lv.Operator = lv.Exit.Operator
			}
			jv.Legs = append(jv.Legs, lv)
		}
		for _, fl := range j.Fare.Legs {
			jv.FareLegs = append(jv.FareLegs, FareLegView{First: fl.FirstLeg, Last: fl.LastLeg, LegGroup: fl.LegGroupID, Product: fl.FareProductID,
				Price: a.feedMoney(fl.Price), Charged: fl.Charged, MaximumFare: fl.MaximumFare, Known: fl.Known, Reason: fl.Reason})
		}
		for _, tr := range j.Fare.Transfers {
			jv.Transfers = append(jv.Transfers, TransferView{FromFareLeg: tr.FromFareLeg, ToFareLeg: tr.ToFareLeg, FromLegGroup: tr.FromLegGroupID,
				ToLegGroup: tr.ToLegGroupID, Type: int(tr.Type), Charges: transferCharges[tr.Type], Product: tr.FareProductID, Price: a.feedMoney(tr.Price), Count: tr.Count})
		}
		for _, sh := range j.Shares {
			jv.Shares = append(jv.Shares, ShareView{Operator: sh.AgencyID, Amount: a.feedMoney(sh.Amount)})
		}
		v.Journeys = append(v.Journeys, jv)
	}
	v.PendingEntry, err = tapView(ex.Pending)
	return v, err
}

func tapKind(k fares.TapKind) string {
	switch k {
	case fares.TapIn:
		return "entry"
	case fares.TapOut:
		return "exit"
	case fares.Validation:
		return "validation"
	}
	return fmt.Sprintf("kind(%d)", k)
}
