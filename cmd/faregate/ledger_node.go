package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/ledger"
)

// newChainNodeCmd is `faregate chaos chain-node`: the embedded chain of a
// clearing data dir run as a process of its own, serving its JSON-RPC, so
// that clearing reaches it with --eth-rpc and the chaos soak can SIGKILL and
// restart the chain node without touching clearing.
func newChainNodeCmd() *cobra.Command {
	var dir, addr string
	cmd := &cobra.Command{
		Use:   "chain-node",
		Short: "Serve an embedded chain's JSON-RPC from a process of its own (the soak's restart-chain fault)",
		Long: `chain-node opens the embedded chain in --dir (a clearing data dir's chain/,
created with its contract if new) and serves its JSON-RPC (eth, net, web3) on
--http until SIGTERM or SIGINT. Clearing then runs against it with
--eth-rpc http://ADDR --eth-key DIR/clearinghouse.key --contract ADDRESS (the
address is in DIR/ledger.json and printed here). Blocks are synced to disk
after every head, so a SIGKILL of this process loses no reported commit.
faregate chaos runs its chain this way for the restart-chain fault.`,
		Example: `  faregate chaos chain-node --dir data/clearing/chain --http 127.0.0.1:8545
  faregate clearing --data data/clearing --registry registry.json --eth-rpc http://127.0.0.1:8545 \
      --eth-key data/clearing/chain/clearinghouse.key --contract 0x...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErrorf("--dir: give the embedded chain's directory (a clearing data dir's chain/)")
			}
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return usageErrorf("--http %q: want HOST:PORT, e.g. 127.0.0.1:8545", addr)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			e, err := ledger.OpenEmbedded(ctx, dir, ledger.WithHTTP(addr), ledger.WithLogger(slog.Default()))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "chain node serving %s contract %s clearing-house %s key %s\n",
				e.HTTPEndpoint(), e.ContractAddress().Hex(), e.ClearingHouse().Hex(), filepath.Join(dir, "clearinghouse.key"))
			<-ctx.Done()
			return e.Close()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "`DIR` of the embedded chain (a clearing data dir's chain/)")
	cmd.Flags().StringVar(&addr, "http", "127.0.0.1:8545", "`HOST:PORT` to serve the chain's JSON-RPC on")
	return cmd
}
