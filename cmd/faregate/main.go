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

// withRoleCmds adds the admin's and operators' commands to `faregate ledger`.
func withRoleCmds(ledgerCmd *cobra.Command) *cobra.Command {
	ledgerCmd.AddCommand(newLedgerRoleCmds()...)
	return ledgerCmd
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
		withRoleCmds(newLedgerCmd()),
		newNATSCmd(),
	)
	return root
}
