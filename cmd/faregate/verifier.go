package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// newVerifierCmd is `faregate clearing verifier`: one verifier process of
// a partition (clearing/partitions.go).
func newVerifierCmd() *cobra.Command {
	var (
		partition, fetch             int
		natsURL, natsSeed, natsCA    string
		dataDir, rpc, keyFile, contr string
	)
	cmd := &cobra.Command{
		Use:   "verifier --partition P --nats URL --nats-seed FILE",
		Short: "Verify the signatures of one partition of the terminals for clearing (run with clearing --verifier-partitions N)",
		Long: `Checks the events of one partition of the terminals before clearing applies
them: decodes each, checks it arrived on its terminal's own subject and that
the terminal is in the on-chain registry, batch-verifies the signatures
(curve25519-voi, ZIP-215) and forwards each event that verifies, its bytes
untouched, to the verified stream clearing consumes; junk goes to the
quarantine stream. Clearing still deduplicates, applies and confirms every
event, and ` + "`ledger audit`" + ` checks every signature again.

Any number of verifiers may work on one partition (a replacement for one
that died, or a twin): what a dead one had fetched goes to the others after
5 s, and nothing is applied twice.

The NATS user (--nats-seed, made by ` + "`faregate clearing verifier-key`" + `) must be
given to clearing with --verifier-key (or to faregate nats config): it may
only fetch from the verify consumers, forward and quarantine. The registry
is read from clearing's embedded chain while clearing runs (--data), or from
--eth-rpc.`,
		Example: `  faregate clearing verifier-key verifier-0.nk          # prints U...
  faregate clearing --verifier-partitions 3 --verifier-key 0=U... --verifier-key 1=U... --verifier-key 2=U... --nats-listen 127.0.0.1:4222 &
  faregate clearing verifier --partition 0 --nats nats://127.0.0.1:4222 --nats-seed verifier-0.nk --data data/clearing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case natsURL == "":
				return usageErr("--nats URL is required: the NATS server or cluster clearing uses")
			case natsSeed == "":
				return usageErr("--nats-seed FILE is required: the verifier's NATS user seed (faregate clearing verifier-key FILE makes one)")
			case checkNATSURLs(natsURL) != nil:
				return asUsage(checkNATSURLs(natsURL))
			case natsCA != "" && checkNATSCA(natsCA) != nil:
				return asUsage(checkNATSCA(natsCA))
			case partition < 0 || partition >= clearing.MaxVerifierPartitions:
				return usageErrorf("--partition %d: want 0 to %d", partition, clearing.MaxVerifierPartitions-1)
			case fetch <= 0 || fetch > clearing.MaxFetchBatch:
				return usageErrorf("--fetch %d: want 1 to %d events", fetch, clearing.MaxFetchBatch)
			case rpc != "" && contr == "":
				return usageErr("--eth-rpc needs --contract (the verifier only reads the registry)")
			}
			if err := checkInputFiles(inputFile{"--nats-seed", natsSeed, maxKeyFileSize}); err != nil {
				return err
			}
			log := slog.Default()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			var led ledger.Ledger
			var reopen func(context.Context) (ledger.Ledger, error)
			if rpc != "" {
				var c *ledger.Client
				var err error
				if keyFile != "" {
					c, err = dialLedger(ctx, rpc, keyFile, contr)
				} else {
					c, err = ledger.DialReadOnly(ctx, rpc, contr)
				}
				if err != nil {
					return fmt.Errorf("open ledger: %w", err)
				}
				led = c
			} else {
				chainDir := filepath.Join(dataDir, "chain")
				a, err := ledger.AttachEmbedded(ctx, chainDir)
				// A chain clearing ran before, not served now: clearing
				// restarting (a verifier restarted with it under a
				// supervisor exited, and its partition stalled until
				// restarted by hand: an outside re-check). Wait for it,
				// as for clearing's consumer below.
				for waited := false; errors.Is(err, ledger.ErrNotRunning) && chainMade(chainDir) && ctx.Err() == nil; waited = true {
					if !waited {
						log.Warn("clearing's embedded chain is not served: waiting for clearing to run", "chain", chainDir)
					}
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
						a, err = ledger.AttachEmbedded(ctx, chainDir)
					}
				}
				if err != nil && ctx.Err() != nil {
					return nil // stopped while waiting for clearing: a normal stop
				}
				if err != nil {
					return fmt.Errorf("the registry: clearing's embedded chain in %s: %w (run clearing first, or give --eth-rpc)", dataDir, err)
				}
				led = a
				// A restarted clearing serves its chain on a new port.
				reopen = func(ctx context.Context) (ledger.Ledger, error) { return ledger.AttachEmbedded(ctx, chainDir) }
			}
			defer led.Close()
			v, err := clearing.OpenVerifier(ctx, clearing.VerifierConfig{
				NATSURL: natsURL, NATSSeedFile: natsSeed, NATSCA: natsCA, Ledger: led, Reopen: reopen,
				Partition: partition, FetchBatch: fetch, Logger: log,
			})
			if err != nil {
				return err
			}
			defer v.Close()
			log.Info("verifier running", "partition", partition, "nats", fare.RedactURLList(natsURL))
			err = v.Run(ctx)
			st := v.Stats()
			log.Info("verifier stopped", "partition", partition, "forwarded", st.Forwarded, "quarantined", st.Quarantined)
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&partition, "partition", 0, "`P`, the partition to verify (0 to clearing's --verifier-partitions - 1)")
	f.StringVar(&natsURL, "nats", "", "NATS server or cluster `URL` clearing uses")
	f.StringVar(&natsSeed, "nats-seed", "", "the verifier's NATS user seed `FILE` (SU...)")
	f.StringVar(&natsCA, "nats-ca", "", "PEM CA `FILE` to trust for a TLS NATS server")
	f.IntVar(&fetch, "fetch", 1000, fmt.Sprintf("events per fetch and per verified batch (1 to %d)", clearing.MaxFetchBatch))
	f.StringVar(&dataDir, "data", "data/clearing", "`DIR` of the running clearing, whose embedded chain (DIR/chain) holds the registry")
	f.StringVar(&rpc, "eth-rpc", "", "Ethereum JSON-RPC endpoint of the shared ledger instead of clearing's embedded chain")
	f.StringVar(&keyFile, "eth-key", "", "hex private key `FILE` (optional with --eth-rpc: the verifier only reads the registry, and no read needs a key)")
	f.StringVar(&contr, "contract", "", "settlement contract address (with --eth-rpc)")
	return cmd
}

// newVerifierKeyCmd is `faregate clearing verifier-key FILE`.
func newVerifierKeyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verifier-key FILE",
		Short: "Make a verifier's NATS user seed in FILE (mode 0600) unless it exists, and print its public key for clearing --verifier-key",
		Example: `  faregate clearing verifier-key verifier-0.nk
  faregate clearing --verifier-partitions 1 --verifier-key "0=$(faregate clearing verifier-key verifier-0.nk)"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			kp, err := readUserSeed("seed file", path)
			if errors.Is(err, fs.ErrNotExist) {
				if err := checkParentDir(path); err != nil {
					return err
				}
				if kp, err = nkeys.CreateUser(); err != nil {
					return err
				}
				seed, _ := kp.Seed()
				if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "created verifier NATS user seed %s (mode 0600)\n", path)
			} else if err != nil {
				return err
			}
			pub, err := kp.PublicKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), pub)
			return nil
		},
	}
}

// chainMade reports whether dir holds an embedded chain clearing made (its
// ledger.json): one that may be served again, unlike a mistyped --data.
func chainMade(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "ledger.json"))
	return err == nil
}
