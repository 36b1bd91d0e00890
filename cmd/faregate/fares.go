package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing/fares/farecase"
	"github.com/faregate/faregate/clearing/fares/gtfs"
)

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

// errCasesFailed makes `fares check` exit non-zero after its report.
var errCasesFailed = errors.New("some fare cases failed")

func newFaresCheckCmd() *cobra.Command {
	var feedPath, casesPath string
	cmd := &cobra.Command{
		Use:   "check --feed DIR --cases FILE",
		Short: "Price every journey of a cases.json file and compare with the expected fares",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			feed, err := gtfs.LoadPath(feedPath)
			if err != nil {
				return fmt.Errorf("load feed %s: %w", feedPath, err)
			}
			file, err := farecase.ReadFile(casesPath)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			passed, failed := 0, 0
			for i := range file.Cases {
				r := file.Cases[i].Run(feed)
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
{"total": "16.00", "currency": "EUR", "legs": [...], "transfers": [...]}.
"total" is null when the fare is unknown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			feed, err := gtfs.LoadPath(feedPath)
			if err != nil {
				return fmt.Errorf("load feed %s: %w", feedPath, err)
			}
			j, err := farecase.ReadJourney(cmd.InOrStdin())
			if err != nil {
				return err
			}
			fare, err := feed.Price(j)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			return enc.Encode(farecase.NewQuote(fare))
		},
	}
	cmd.Flags().StringVar(&feedPath, "feed", "", "GTFS feed directory or zip file")
	cmd.MarkFlagRequired("feed")
	return cmd
}
