// Package farecase reads fare test-case files (the cases.json format of
// shared/testdata/gtfs) and checks a fares.Feed against them. It also
// converts journeys and fares to and from the JSON used by the
// `faregate fares quote` command.
package farecase

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/faregate/faregate/clearing/fares"
)

// File is a cases.json file.
type File struct {
	Feed     string `json:"feed"`
	Timezone string `json:"timezone"`
	Cases    []Case `json:"cases"`
}

// Case is one journey with its expected fare. A nil ExpectedTotal means
// the fare is expected to be unknown.
type Case struct {
	ID                string             `json:"id"`
	Source            string             `json:"source,omitempty"`
	Legs              []Leg              `json:"legs"`
	RiderCategory     *string            `json:"rider_category"`
	FareMedia         *string            `json:"fare_media"`
	ExpectedTotal     *string            `json:"expected_total"`
	Currency          string             `json:"currency"`
	ExpectedFareLegs  []ExpectedFareLeg  `json:"expected_fare_legs,omitempty"`
	ExpectedTransfers []ExpectedTransfer `json:"expected_transfers,omitempty"`
	RequiresExtension string             `json:"requires_extension,omitempty"`
}

// Leg is a leg as written in a case or a quote request.
type Leg struct {
	RouteID   string    `json:"route_id"`
	TripID    string    `json:"trip_id,omitempty"`
	NetworkID *string   `json:"network_id"`
	FromStop  *string   `json:"from_stop"`
	ToStop    *string   `json:"to_stop"`
	StartTime time.Time `json:"start_time"`
	EndTime   time.Time `json:"end_time"`
	// Incomplete marks a tap-in that never tapped out (a quote request
	// only): the leg is priced as live clearing prices it, at the maximum
	// fare of its fare leg rule, when it has one.
	Incomplete bool `json:"incomplete,omitempty"`
	// AgencyID is the agency (operator) whose gate took a leg without a
	// route (a quote request only): its share of the fare goes there, as
	// live clearing gives it to the terminal's operator.
	AgencyID string `json:"agency_id,omitempty"`
}

// ExpectedFareLeg is the optional per-fare-leg detail of a case.
type ExpectedFareLeg struct {
	Legs             []int   `json:"legs"`
	LegGroupID       *string `json:"leg_group_id"`
	RulePriority     *int    `json:"rule_priority"`
	ProductForCase   string  `json:"product_for_case"`
	FareProductID    string  `json:"fare_product_id"`
	Amount           *string `json:"amount"`
	AmountNotCharged *string `json:"amount_not_charged"`
}

// ExpectedTransfer is the optional per-transfer detail of a case.
type ExpectedTransfer struct {
	FromFareLeg      int     `json:"from_fare_leg"`
	ToFareLeg        int     `json:"to_fare_leg"`
	FromLegGroupID   string  `json:"from_leg_group_id"`
	ToLegGroupID     string  `json:"to_leg_group_id"`
	FareTransferType int     `json:"fare_transfer_type"`
	FareProductID    string  `json:"fare_product_id"`
	Amount           *string `json:"amount"`
}

// ReadFile reads a cases.json file.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	// Case files carry notes of their own ("amount_format", a case's
	// "derivation"): members beyond the format's are let through here.
	if err := decodeOne(bytes.NewReader(data), &f, false); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(f.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases: want an object with a non-empty \"cases\" list", path)
	}
	return &f, nil
}

// decodeOne decodes exactly one JSON value from r into v, refusing
// anything after it and, when strict, a member v has no field for (a
// misspelt "ridercategory" would otherwise price the default category and
// say nothing).
func decodeOne(r io.Reader, v any, strict bool) error {
	dec := json.NewDecoder(r)
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var pe *time.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("time %q: want RFC 3339 with its zone, such as 2025-03-12T10:00:00-07:00", pe.Value)
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("more than one JSON value: want one object")
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Journey converts the case's legs, category and medium to a fares.Journey.
func (c *Case) Journey() fares.Journey {
	j := fares.Journey{RiderCategory: deref(c.RiderCategory), FareMedia: deref(c.FareMedia)}
	for _, l := range c.Legs {
		// A network given with a route is checked against the route's.
		leg := fares.Leg{RouteID: l.RouteID, NetworkID: deref(l.NetworkID), FromStop: deref(l.FromStop), ToStop: deref(l.ToStop), Start: l.StartTime, End: l.EndTime, Incomplete: l.Incomplete}
		if l.RouteID == "" {
			leg.AgencyID = l.AgencyID
		}
		if leg.Incomplete {
			// Its missing validation within the longest leg, as clearing
			// pairs taps (fares.TapPolicy).
			leg.Within = fares.DefaultMaxLegDuration
		}
		j.Legs = append(j.Legs, leg)
	}
	return j
}

// Result is the outcome of one case.
type Result struct {
	ID     string
	Pass   bool
	Got    string // the total, "unknown" or an error
	Want   string
	Issues []string // mismatches; empty when Pass
	// Extension names the non-adopted extension the case needed, if any.
	Extension string
}

// String formats the result as one line.
func (r Result) String() string {
	var b strings.Builder
	if r.Pass {
		fmt.Fprintf(&b, "PASS %s: %s", r.ID, r.Got)
	} else {
		fmt.Fprintf(&b, "FAIL %s: got %s, want %s", r.ID, r.Got, r.Want)
		if len(r.Issues) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(r.Issues, "; "))
		}
	}
	if r.Extension != "" {
		fmt.Fprintf(&b, " [extension: %s]", r.Extension)
	}
	return b.String()
}

// Run prices the case on feed and compares the result with what the case
// expects: the total and currency, and, where the case gives them, the
// fare legs (grouping, leg group, product, amount, whether charged) and
// the transfers.
func (c *Case) Run(feed *fares.Feed) Result {
	r := Result{ID: c.ID, Want: "unknown", Extension: c.RequiresExtension}
	if c.ExpectedTotal != nil {
		r.Want = *c.ExpectedTotal + " " + c.Currency
	}
	fare, err := feed.Price(c.Journey())
	if err != nil {
		r.Got = "error: " + err.Error()
		return r
	}
	r.Got = "unknown"
	if fare.Known {
		r.Got = fares.FormatAmount(fare.Total.Amount, fare.Total.Currency) + " " + fare.Total.Currency
	} else if fare.Reason != "" {
		r.Got = "unknown (" + fare.Reason + ")"
	}
	issue := func(format string, args ...any) { r.Issues = append(r.Issues, fmt.Sprintf(format, args...)) }
	amount := func(s string, cur string) int64 {
		v, err := fares.ParseAmount(s, cur)
		if err != nil {
			issue("case amount %q: %v", s, err)
		}
		return v
	}
	switch {
	case c.ExpectedTotal == nil && fare.Known:
		issue("fare should be unknown")
	case c.ExpectedTotal != nil && !fare.Known:
		issue("fare is unknown")
	case c.ExpectedTotal != nil:
		if fare.Total.Currency != c.Currency {
			issue("currency %s, want %s", fare.Total.Currency, c.Currency)
		}
		if want := amount(*c.ExpectedTotal, c.Currency); fare.Total.Amount != want {
			issue("total %s, want %s", fares.FormatAmount(fare.Total.Amount, c.Currency), *c.ExpectedTotal)
		}
	}
	if c.ExpectedFareLegs != nil && fare.Known {
		if len(fare.Legs) != len(c.ExpectedFareLegs) {
			issue("%d fare legs, want %d", len(fare.Legs), len(c.ExpectedFareLegs))
		} else {
			for i, want := range c.ExpectedFareLegs {
				got := fare.Legs[i]
				var legs []int
				for k := got.FirstLeg; k <= got.LastLeg; k++ {
					legs = append(legs, k)
				}
				if want.Legs != nil && !slices.Equal(legs, want.Legs) {
					issue("fare leg %d covers legs %v, want %v", i, legs, want.Legs)
				}
				if want.LegGroupID != nil && got.LegGroupID != *want.LegGroupID {
					issue("fare leg %d leg group %q, want %q", i, got.LegGroupID, *want.LegGroupID)
				}
				if want.RulePriority != nil && got.RulePriority != *want.RulePriority {
					issue("fare leg %d rule priority %d, want %d", i, got.RulePriority, *want.RulePriority)
				}
				product := want.ProductForCase
				if product == "" {
					product = want.FareProductID
				}
				if product != "" && got.FareProductID != product {
					issue("fare leg %d product %q, want %q", i, got.FareProductID, product)
				}
				if want.Amount != nil && (!got.Charged || got.Price.Amount != amount(*want.Amount, got.Price.Currency)) {
					issue("fare leg %d charged=%v %s, want charged %s", i, got.Charged, fares.FormatAmount(got.Price.Amount, got.Price.Currency), *want.Amount)
				}
				if want.AmountNotCharged != nil && (got.Charged || got.Price.Amount != amount(*want.AmountNotCharged, got.Price.Currency)) {
					issue("fare leg %d charged=%v %s, want not charged %s", i, got.Charged, fares.FormatAmount(got.Price.Amount, got.Price.Currency), *want.AmountNotCharged)
				}
			}
		}
	}
	if c.ExpectedTransfers != nil && fare.Known {
		if len(fare.Transfers) != len(c.ExpectedTransfers) {
			issue("%d transfers, want %d", len(fare.Transfers), len(c.ExpectedTransfers))
		} else {
			for i, want := range c.ExpectedTransfers {
				got := fare.Transfers[i]
				if got.FromFareLeg != want.FromFareLeg || got.ToFareLeg != want.ToFareLeg ||
					got.FromLegGroupID != want.FromLegGroupID || got.ToLegGroupID != want.ToLegGroupID ||
					int(got.Type) != want.FareTransferType || got.FareProductID != want.FareProductID {
					issue("transfer %d is %d->%d %s->%s type %d product %q, want %d->%d %s->%s type %d product %q", i,
						got.FromFareLeg, got.ToFareLeg, got.FromLegGroupID, got.ToLegGroupID, got.Type, got.FareProductID,
						want.FromFareLeg, want.ToFareLeg, want.FromLegGroupID, want.ToLegGroupID, want.FareTransferType, want.FareProductID)
				}
				if want.Amount != nil && got.Price.Amount != amount(*want.Amount, c.Currency) {
					issue("transfer %d amount %s, want %s", i, fares.FormatAmount(got.Price.Amount, c.Currency), *want.Amount)
				}
			}
		}
	}
	r.Pass = len(r.Issues) == 0
	return r
}

// Quote is the JSON shape of `faregate fares quote` output.
type Quote struct {
	Total     *string         `json:"total"`
	Currency  string          `json:"currency"`
	Reason    string          `json:"reason,omitempty"`
	Legs      []QuoteLeg      `json:"legs"`
	Transfers []QuoteTransfer `json:"transfers"`
}

// QuoteLeg is a fare leg in a Quote.
type QuoteLeg struct {
	Legs          []int   `json:"legs"`
	LegGroupID    string  `json:"leg_group_id,omitempty"`
	FareProductID string  `json:"fare_product_id,omitempty"`
	RulePriority  int     `json:"rule_priority"`
	Amount        *string `json:"amount"`
	Charged       bool    `json:"charged"`
	MaximumFare   bool    `json:"maximum_fare,omitempty"`
	Reason        string  `json:"reason,omitempty"`
}

// QuoteTransfer is a transfer in a Quote.
type QuoteTransfer struct {
	FromFareLeg      int    `json:"from_fare_leg"`
	ToFareLeg        int    `json:"to_fare_leg"`
	FromLegGroupID   string `json:"from_leg_group_id"`
	ToLegGroupID     string `json:"to_leg_group_id"`
	FareTransferType int    `json:"fare_transfer_type"`
	FareProductID    string `json:"fare_product_id,omitempty"`
	Amount           string `json:"amount"`
	Count            int    `json:"transfer_count"`
}

// NewQuote converts a priced fare to its JSON shape.
func NewQuote(fare fares.Fare) Quote {
	q := Quote{Currency: fare.Total.Currency, Reason: fare.Reason, Legs: []QuoteLeg{}, Transfers: []QuoteTransfer{}}
	if fare.Known {
		s := fares.FormatAmount(fare.Total.Amount, fare.Total.Currency)
		q.Total = &s
	}
	for _, l := range fare.Legs {
		ql := QuoteLeg{LegGroupID: l.LegGroupID, FareProductID: l.FareProductID, RulePriority: l.RulePriority,
			Charged: l.Known && l.Charged, MaximumFare: l.MaximumFare, Reason: l.Reason}
		for k := l.FirstLeg; k <= l.LastLeg; k++ {
			ql.Legs = append(ql.Legs, k)
		}
		if l.Known {
			s := fares.FormatAmount(l.Price.Amount, l.Price.Currency)
			ql.Amount = &s
		}
		q.Legs = append(q.Legs, ql)
	}
	for _, t := range fare.Transfers {
		q.Transfers = append(q.Transfers, QuoteTransfer{
			FromFareLeg: t.FromFareLeg, ToFareLeg: t.ToFareLeg, FromLegGroupID: t.FromLegGroupID, ToLegGroupID: t.ToLegGroupID,
			FareTransferType: int(t.Type), FareProductID: t.FareProductID,
			Amount: fares.FormatAmount(t.Price.Amount, fare.Total.Currency), Count: t.Count,
		})
	}
	return q
}

// ReadJourney reads one journey (an object with legs, rider_category and
// fare_media, as in a case) from r.
func ReadJourney(r io.Reader) (fares.Journey, error) {
	// A case's own members are taken (a case may be quoted as it is) and
	// its expectations not read; any other member is refused by name.
	var q struct {
		Legs          []Leg   `json:"legs"`
		RiderCategory *string `json:"rider_category"`
		FareMedia     *string `json:"fare_media"`

		ID                json.RawMessage `json:"id"`
		Source            json.RawMessage `json:"source"`
		Currency          json.RawMessage `json:"currency"`
		RequiresExtension json.RawMessage `json:"requires_extension"`
		Derivation        json.RawMessage `json:"derivation"`
		ExpectedTotal     json.RawMessage `json:"expected_total"`
		ExpectedFareLegs  json.RawMessage `json:"expected_fare_legs"`
		ExpectedTransfers json.RawMessage `json:"expected_transfers"`
	}
	if err := decodeOne(r, &q, true); err != nil {
		return fares.Journey{}, fmt.Errorf("journey JSON: %w", err)
	}
	c := Case{Legs: q.Legs, RiderCategory: q.RiderCategory, FareMedia: q.FareMedia}
	if len(c.Legs) == 0 {
		return fares.Journey{}, fmt.Errorf("journey JSON: no legs")
	}
	for i, l := range c.Legs {
		if !l.StartTime.IsZero() {
			continue
		}
		if l.Incomplete && l.FromStop == nil && l.ToStop != nil && !l.EndTime.IsZero() {
			// An exit that never tapped in: its time is the only one
			// known, as live clearing prices it (an outside review was
			// asked for a start the rider never made).
			c.Legs[i].StartTime = l.EndTime
			continue
		}
		return fares.Journey{}, fmt.Errorf("journey JSON: leg %d: no start_time: want RFC 3339 with its zone, such as 2025-03-12T10:00:00-07:00 (only an exit that never tapped in, \"incomplete\": true with a \"to_stop\" and no \"from_stop\", gives its end_time alone)", i)
	}
	return c.Journey(), nil
}
