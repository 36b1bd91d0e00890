// Command faregate is Faregate's single binary: the clearing house, the
// turnstile terminal agent, the city simulator, the fare engine and the face
// tools are its subcommands.
//
// Exit status: 0 on success, 1 when a command ran and failed, 2 when the
// command line was wrong (unknown subcommand or flag, bad or missing flag
// value, wrong arguments) and nothing was started.
//
// Every flag can also be given through the environment as FAREGATE_<NAME>,
// the flag's name in capitals with dashes as underscores (--log-level is
// FAREGATE_LOG_LEVEL, --nats-seed is FAREGATE_NATS_SEED); a flag on the
// command line wins over its variable.
package main

import (
	"os"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(execute(newRootCmd(), os.Args[1:], os.Stderr))
}

// withRoleCmds adds the admin's and operators' commands to `faregate ledger`.
func withRoleCmds(ledgerCmd *cobra.Command) *cobra.Command {
	ledgerCmd.AddCommand(newLedgerRoleCmds()...)
	return ledgerCmd
}

func newRootCmd() *cobra.Command {
	lf := &logFlags{}
	prof := &activeProfile
	root := &cobra.Command{
		Use:   "faregate",
		Short: "Open fare clearing and biometric passenger verification for transit",
		Long: `Open fare clearing and biometric passenger verification for transit.

Every flag can also be set through the environment as FAREGATE_<NAME>: the
flag's name in capitals, dashes as underscores (--log-format json is
FAREGATE_LOG_FORMAT=json, --nats-seed is FAREGATE_NATS_SEED). A flag given on
the command line wins over its variable. (One flag meant for a single start,
terminal --accept-lost-taps, is taken from the command line only.)

Exit status: 0 success, 1 the command failed, 64 usage error (unknown command
or flag, bad or missing flag value); on 64 nothing was started. (2 is Go's own
status for a crash.)`,
		Example: `  faregate simulate --duration 60s --rate 300 --report report.json
  FAREGATE_LOG_FORMAT=json faregate clearing --data data/clearing --registry registry.json
  faregate version`,
		Version:       readBuildInfo().Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := lf.setUp(cmd, args); err != nil {
				return err
			}
			return prof.start()
		},
	}
	root.SetVersionTemplate(readBuildInfo().String())
	pf := root.PersistentFlags()
	pf.StringVar(&lf.level, "log-level", "info", "lowest level logged: debug, info, warn or error (env FAREGATE_LOG_LEVEL)")
	pf.StringVar(&lf.format, "log-format", "text", "log line format on stderr: text (key=value) or json (one object a line) (env FAREGATE_LOG_FORMAT)")
	pf.StringVar(&prof.path, "cpu-profile", "", "write a CPU profile of the command to this file (go tool pprof bin/faregate FILE)")
	root.AddCommand(
		newClearingCmd(),
		newTerminalCmd(),
		newSimulateCmd(),
		newFaceCmd(),
		newFaresCmd(),
		withRoleCmds(newLedgerCmd()),
		newNATSCmd(),
		newChaosCmd(),
		newVersionCmd(),
	)
	finishCommandTree(root)
	return root
}
