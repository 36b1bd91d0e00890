// Command faregate is Faregate's single binary: the clearing house, the
// turnstile terminal agent, the city simulator, the fare engine and the face
// tools are its subcommands.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "faregate:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "faregate",
		Short:         "Open fare clearing and biometric passenger verification for transit",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newClearingCmd(),
		newTerminalCmd(),
		newSimulateCmd(),
		newFaceCmd(),
		newFaresCmd(),
		newLedgerCmd(),
	)
	return root
}
