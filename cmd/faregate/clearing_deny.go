package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// newDenyCmd is `faregate clearing deny add|remove|list`: the city's deny
// list, which clearing keeps and every gate follows. A running clearing
// holds its store, so add and remove queue a request in its data dir
// (clearing.QueueDenyChange) that it applies within a second; list reads a
// stopped clearing's store (a running one serves GET /v1/deny to auditors).
func newDenyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deny",
		Short: "Put media on the city's deny list, take them off, list them (every gate follows clearing's list)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newDenyChangeCmd(true), newDenyChangeCmd(false), newDenyListCmd())
	return cmd
}

func newDenyChangeCmd(listed bool) *cobra.Command {
	var (
		dataDir, media, token, reason string
		wait                          time.Duration
	)
	use, short := "remove", "Take a card or face off the deny list"
	if listed {
		use, short = "add", "Put a card or face on the deny list, with a reason"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `. The change is queued in clearing's data dir
(<data>/` + clearing.DenyRequestsDir + `), holding the medium's hashed key, never its token;
a running clearing applies it within a second and announces it to every
gate, a stopped one at its next start. The command waits up to --wait for it
to be applied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dataDir, err := clearingDir(dataDir)
			if err != nil {
				return err
			}
			if media == "" {
				return usageErr("--media is required: card or face")
			}
			m, err := clearing.ParseMedia(media)
			if err != nil {
				return usageErrorf("--media: %w", err)
			}
			if token == "-" {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read --token from stdin: %w", err)
				}
				token = strings.TrimRight(line, "\r\n")
			}
			if token == "" {
				return usageErr("--token is required: the card token or face subject id (- reads it from stdin)")
			}
			if listed && reason == "" {
				return usageErr("--reason is required: why the medium is refused (kept for auditors)")
			}
			path, err := clearing.QueueDenyChange(dataDir, m, token, listed, reason, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			key := fare.DenyKey(m, token) // hashes are 0x hex in every output
			for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
					outcome, ok := clearing.DenyRequestOutcome(path)
					if !ok {
						outcome = "applied"
					}
					fmt.Fprintf(out, "deny list: %s %s %s %s\n", use, m, key, strings.Replace(outcome, "applied", "applied by clearing", 1))
					return nil
				}
			}
			fmt.Fprintf(out, "deny list: %s %s %s queued in %s; clearing applies it when it runs\n", use, m, key, path)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "clearing's data directory (required)")
	f.StringVar(&media, "media", "", "card or face")
	f.StringVar(&token, "token", "", "the card token or face subject id (- reads it from stdin, keeping it out of shell history)")
	if listed {
		f.StringVar(&reason, "reason", "", "why the medium is refused (kept for auditors)")
	}
	f.DurationVar(&wait, "wait", 5*time.Second, "how long to wait for a running clearing to apply the change (0: do not wait)")
	return cmd
}

func newDenyListCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the deny list of a stopped clearing (a running one serves GET /v1/deny to auditors), and queued changes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dataDir, err := clearingDir(dataDir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			pending, err := clearing.PendingDenyRequests(dataDir)
			if err != nil {
				return err
			}
			if len(pending) > 0 {
				fmt.Fprintf(out, "%d change(s) queued, not applied yet (clearing applies them when it runs)\n", len(pending))
			}
			version, entries, err := clearing.ReadDenyList(dataDir, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "deny list version %d, %d entries\n", version, len(entries))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tMEDIA\tSINCE\tGROUNDS\tREASON")
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", hex0x(e.Key), e.Media, e.Since.Format(time.RFC3339), strings.Join(e.Grounds, "+"), e.Reason)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "clearing's data directory (required)")
	return cmd
}

// hex0x returns a hex hash or key as every output shows them: with 0x (a
// value that has it already is returned as is; "" stays "").
func hex0x(h string) string {
	if h == "" || strings.HasPrefix(h, "0x") {
		return h
	}
	return "0x" + h
}
