package main

import "github.com/spf13/cobra"

// newFaresCmd is replaced by the fare engine work (issue 4).
func newFaresCmd() *cobra.Command {
	return &cobra.Command{Use: "fares", Short: "Price journeys from a GTFS Fares v2 feed"}
}
