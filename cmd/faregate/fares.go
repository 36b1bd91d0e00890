package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/farecase"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
)

// Money in the command line's output, as in the settlement API and
// report.json: minor units, the decimal amount and the currency. JSON
// output uses clearing.Money ({"minor": 400, "decimal": "4.00",
// "currency": "EUR"}); text output uses moneyText ("400 (4.00 EUR)").
// Hashes, keys and addresses are 0x hex everywhere.

// moneyText formats m for text output: "400 (4.00 EUR)".
func moneyText(m clearing.Money) string {
	return fmt.Sprintf("%d (%s %s)", m.Minor, m.Decimal, m.Currency)
}

// moneyTextOf formats v minor units of currency as moneyText does.
func moneyTextOf(v fare.Amount, currency string) string {
	return moneyText(clearing.MoneyOf(v, currency))
}

// moneyWord rewrites an amount farecase prints ("16.00 EUR") as moneyText;
// anything else ("unknown", an error) is returned unchanged.
func moneyWord(s string) string {
	dec, cur, ok := strings.Cut(s, " ")
	if !ok || strings.Contains(cur, " ") {
		return s
	}
	v, err := fare.ParseAmount(dec, cur)
	if err != nil {
		return s
	}
	return moneyTextOf(v, cur)
}

// newFaresCmd is `faregate fares`: the GTFS Fares v2 engine's check and
// quote tools.
func newFaresCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fares",
		Short: "Price journeys from a GTFS Fares v2 feed",
	}
	cmd.AddCommand(newFaresCheckCmd(), newFaresQuoteCmd())
	return cmd
}

// feedWarnings prints the feed loader's warnings (a feed in a folder of
// its zip, rows not as wide as their header, text not UTF-8) to w: a
// command that prices from the feed still tells what it made of it.
func feedWarnings(w io.Writer) gtfs.Option {
	return gtfs.WithWarnings(func(warn gtfs.Warning) { fmt.Fprintf(w, "warning: GTFS feed: %s\n", warn) })
}

// errCasesFailed makes `fares check` exit non-zero after its report.
var errCasesFailed = errors.New("some fare cases failed")

func newFaresCheckCmd() *cobra.Command {
	var feedPath, casesPath string
	cmd := &cobra.Command{
		Use:   "check --feed DIR --cases FILE",
		Short: "Price every journey of a cases.json file and compare with the expected fares",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The cases first: a mistyped path is said at once, naming the
			// flag, before a large feed is loaded (an outside test).
			if err := checkInputFile("--cases", casesPath, maxRegistrySize); err != nil {
				return err
			}
			file, err := farecase.ReadFile(casesPath)
			if err != nil {
				return fmt.Errorf("--cases: %w", err)
			}
			feed, err := gtfs.LoadPath(feedPath, feedWarnings(cmd.ErrOrStderr()))
			if err != nil {
				return fmt.Errorf("load feed %s: %w", feedPath, err)
			}
			out := cmd.OutOrStdout()
			passed, failed := 0, 0
			for i := range file.Cases {
				r := file.Cases[i].Run(feed)
				r.Got, r.Want = moneyWord(r.Got), moneyWord(r.Want)
				fmt.Fprintln(out, r)
				if r.Pass {
					passed++
				} else {
					failed++
				}
			}
			fmt.Fprintf(out, "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return errCasesFailed
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&feedPath, "feed", "", "GTFS feed directory or zip file")
	cmd.Flags().StringVar(&casesPath, "cases", "", "cases.json file")
	cmd.MarkFlagRequired("feed")
	cmd.MarkFlagRequired("cases")
	return cmd
}

func newFaresQuoteCmd() *cobra.Command {
	var feedPath string
	cmd := &cobra.Command{
		Use:   "quote --feed DIR < journey.json",
		Short: "Price one journey read as JSON from standard input",
		Long: `Reads one journey, a JSON object with "legs", "rider_category" and
"fare_media" in the format of a cases.json case, and prints its fare:
{"total": {"minor": 1600, "decimal": "16.00", "currency": "EUR"}, "currency": "EUR",
"legs": [...], "transfers": [...]}, each leg's and transfer's "amount" in the
same form. "total" (and a leg's "amount") is null when the fare is unknown;
"charged_by_clearing" then says what live clearing charges for the legs all
the same, before caps: the fares of their transfer chains that are known,
and a chain of unknown fare leg by leg (a leg's own fare alone, else its
entry's maximum fare); absent when those are in more than one currency
(clearing, which settles in one, refuses such a feed).
A leg with "incomplete": true is an entry that never tapped out (or, with
a "to_stop" and no "from_stop", an exit that never tapped in, which
may give its "end_time" alone): it is
priced as clearing prices it live, at the maximum fare from what is known
of it (the leg then says "maximum_fare": true). A "network_id" given with
a "route_id" must be the route's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			feed, err := gtfs.LoadPath(feedPath, feedWarnings(cmd.ErrOrStderr()))
			if err != nil {
				return fmt.Errorf("load feed %s: %w", feedPath, err)
			}
			if feed.LegRules() == 0 {
				// Every leg would quote "charged 0" in no currency, for a
				// feed clearing refuses (an outside review).
				return fmt.Errorf("load feed %s: fare_leg_rules.txt is missing or empty: the feed prices no leg (clearing refuses such a feed)", feedPath)
			}
			j, err := farecase.ReadJourney(cmd.InOrStdin())
			if err != nil {
				return err
			}
			price, err := feed.Price(j)
			if err != nil {
				return err
			}
			q := newQuoteOutput(price)
			if !price.Known {
				// What live clearing charges for it all the same (an
				// outside test found the quote silent on it).
				ss, err := feed.SettleJourney(j)
				if err != nil {
					return err
				}
				// Said only for legs priced in one currency: live
				// clearing settles in one and refuses a feed that prices
				// in another.
				currencies := map[string]bool{}
				for _, l := range q.Legs {
					if l.Amount != nil {
						currencies[l.Amount.Currency] = true
					}
				}
				for _, t := range q.Transfers {
					currencies[t.Amount.Currency] = true
				}
				var sum int64
				currency := price.Total.Currency
				for _, s := range ss {
					sum += s.Charge.Charged.Amount
					currency = s.Charge.Charged.Currency
					currencies[currency] = true
				}
				if len(currencies) <= 1 {
					m := clearing.MoneyOf(fare.Amount(sum), currency)
					q.Charged = &m
				}
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			return enc.Encode(q)
		},
	}
	cmd.Flags().StringVar(&feedPath, "feed", "", "GTFS feed directory or zip file")
	cmd.MarkFlagRequired("feed")
	return cmd
}

// quoteOutput is what `fares quote` prints: farecase.Quote's fields, with
// every amount as money.
type quoteOutput struct {
	// Total is null when the fare is unknown; Charged is then what live
	// clearing charges for the legs all the same, before caps: the fares
	// of their chains that are known, and a chain of unknown fare leg by
	// leg (a leg's own fare alone, else its entry's maximum fare;
	// fares.Settlement.Fallback).
	Total     *clearing.Money `json:"total"`
	Charged   *clearing.Money `json:"charged_by_clearing,omitempty"`
	Currency  string          `json:"currency"`
	Reason    string          `json:"reason,omitempty"`
	Legs      []quoteLeg      `json:"legs"`
	Transfers []quoteTransfer `json:"transfers"`
}

// quoteLeg is a fare leg in a quoteOutput.
type quoteLeg struct {
	Legs          []int  `json:"legs"`
	LegGroupID    string `json:"leg_group_id,omitempty"`
	FareProductID string `json:"fare_product_id,omitempty"`
	RulePriority  int    `json:"rule_priority"`
	// Amount is null when the leg has no known fare.
	Amount      *clearing.Money `json:"amount"`
	Charged     bool            `json:"charged"`
	MaximumFare bool            `json:"maximum_fare,omitempty"`
	Reason      string          `json:"reason,omitempty"`
}

// quoteTransfer is a transfer in a quoteOutput.
type quoteTransfer struct {
	FromFareLeg      int            `json:"from_fare_leg"`
	ToFareLeg        int            `json:"to_fare_leg"`
	FromLegGroupID   string         `json:"from_leg_group_id"`
	ToLegGroupID     string         `json:"to_leg_group_id"`
	FareTransferType int            `json:"fare_transfer_type"`
	FareProductID    string         `json:"fare_product_id,omitempty"`
	Amount           clearing.Money `json:"amount"`
	Count            int            `json:"transfer_count"`
}

func newQuoteOutput(f fares.Fare) quoteOutput {
	money := func(m fares.Money) *clearing.Money {
		v := clearing.MoneyOf(fare.Amount(m.Amount), m.Currency)
		return &v
	}
	q := quoteOutput{Currency: f.Total.Currency, Reason: f.Reason, Legs: []quoteLeg{}, Transfers: []quoteTransfer{}}
	if f.Known {
		q.Total = money(f.Total)
	}
	for _, l := range f.Legs {
		ql := quoteLeg{LegGroupID: l.LegGroupID, FareProductID: l.FareProductID, RulePriority: l.RulePriority,
			Charged: l.Known && l.Charged, MaximumFare: l.MaximumFare, Reason: l.Reason}
		for k := l.FirstLeg; k <= l.LastLeg; k++ {
			ql.Legs = append(ql.Legs, k)
		}
		if l.Known {
			ql.Amount = money(l.Price)
		}
		q.Legs = append(q.Legs, ql)
	}
	for _, t := range f.Transfers {
		q.Transfers = append(q.Transfers, quoteTransfer{
			FromFareLeg: t.FromFareLeg, ToFareLeg: t.ToFareLeg, FromLegGroupID: t.FromLegGroupID, ToLegGroupID: t.ToLegGroupID,
			FareTransferType: int(t.Type), FareProductID: t.FareProductID,
			Amount: *money(fares.Money{Amount: t.Price.Amount, Currency: f.Total.Currency}), Count: t.Count,
		})
	}
	return q
}
