package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

func newTerminalCmd() *cobra.Command {
	var (
		id, operator, stop, keyFile, dataDir, natsURL, source, denyFile string
		rate                                                            float64
		count                                                           int
	)
	cmd := &cobra.Command{
		Use:   "terminal",
		Short: "Run a turnstile agent: decide taps, sign, keep a durable outbox, stream to clearing",
		Long: `Run a turnstile agent. Taps come from --source:
  stdin     one tap per line: "entry|exit|validate card|face TOKEN [RIDER_CATEGORY]"
  generate  --rate taps per second from random cards, --count in all (0: until stopped)`,
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := terminal.LoadOrCreateKey(keyFile)
			if err != nil {
				return err
			}
			deny := terminal.TokenSet{}
			if denyFile != "" {
				b, err := os.ReadFile(denyFile)
				if err != nil {
					return fmt.Errorf("deny list: %w", err)
				}
				for _, l := range strings.Fields(string(b)) {
					deny[l] = struct{}{}
				}
			}
			t, err := terminal.Open(terminal.Config{ID: id, Operator: operator, Stop: stop, Key: key, DataDir: dataDir, NATSURL: natsURL, Deny: deny})
			if err != nil {
				return err
			}
			defer t.Close()
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- t.Run(ctx) }()
			slog.Info("terminal running", "id", id, "public_key", clearing.EncodePublicKey(t.PublicKey()), "outbox_pending", t.Pending(), "nats", natsURL)
			var tapErr error
			switch source {
			case "stdin":
				tapErr = tapsFromLines(ctx, t, os.Stdin, cmd.OutOrStdout())
			case "generate":
				tapErr = generateTaps(ctx, t, rate, count, cmd.OutOrStdout())
			default:
				tapErr = fmt.Errorf("--source %q: want stdin or generate", source)
			}
			if tapErr != nil {
				cancel()
				<-done
				return tapErr
			}
			// Keep streaming until the outbox drains or we are stopped.
			for t.Pending() > 0 && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
			slog.Info("outbox drained", "confirmed", t.Confirmed())
			cancel()
			return <-done
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "terminal id (as registered)")
	f.StringVar(&operator, "operator", "", "operator id")
	f.StringVar(&stop, "stop", "", "GTFS stop_id the terminal serves")
	f.StringVar(&keyFile, "key", "terminal.key", "ed25519 seed file (created if missing)")
	f.StringVar(&dataDir, "data", "data/terminal", "outbox directory")
	f.StringVar(&natsURL, "nats", "nats://127.0.0.1:4222", "clearing's NATS URL")
	f.StringVar(&source, "source", "stdin", "tap source: stdin or generate")
	f.StringVar(&denyFile, "deny", "", "file of denied card tokens, whitespace separated")
	f.Float64Var(&rate, "rate", 10, "taps per second with --source generate")
	f.IntVar(&count, "count", 100, "taps in all with --source generate (0: until stopped)")
	for _, n := range []string{"id", "operator", "stop"} {
		_ = cmd.MarkFlagRequired(n)
	}
	cmd.AddCommand(newTerminalKeygenCmd())
	return cmd
}

func newTerminalKeygenCmd() *cobra.Command {
	var id, operator, stop, keyFile string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create (or read) a terminal key and print its registry entry",
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := terminal.LoadOrCreateKey(keyFile)
			if err != nil {
				return err
			}
			entry := clearing.TerminalPublicKey{ID: id, Operator: operator, Stop: stop, PublicKey: key.Public().(ed25519.PublicKey)}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(entry)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "terminal id")
	cmd.Flags().StringVar(&operator, "operator", "", "operator id")
	cmd.Flags().StringVar(&stop, "stop", "", "stop id")
	cmd.Flags().StringVar(&keyFile, "key", "terminal.key", "ed25519 seed file (created if missing)")
	return cmd
}

// parseTapLine reads "entry|exit|validate card|face TOKEN [RIDER_CATEGORY]".
func parseTapLine(line string) (terminal.Tap, error) {
	f := strings.Fields(line)
	if len(f) < 3 || len(f) > 4 {
		return terminal.Tap{}, fmt.Errorf("want \"DIRECTION MEDIA TOKEN [RIDER_CATEGORY]\", got %d fields", len(f))
	}
	tap := terminal.Tap{Gate: "g1", Token: f[2]}
	switch f[0] {
	case "entry":
		tap.Direction = fare.Entry
	case "exit":
		tap.Direction = fare.Exit
	case "validate":
		tap.Direction = fare.Validate
	default:
		return tap, fmt.Errorf("direction %q: want entry, exit or validate", f[0])
	}
	switch f[1] {
	case "card":
		tap.Media = fare.Card
	case "face":
		tap.Media = fare.Face
	default:
		return tap, fmt.Errorf("media %q: want card or face", f[1])
	}
	if len(f) == 4 {
		tap.RiderCategory = f[3]
	}
	return tap, nil
}

func tapsFromLines(ctx context.Context, t *terminal.Terminal, r io.Reader, w io.Writer) error {
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		tap, err := parseTapLine(line)
		if err != nil {
			fmt.Fprintf(w, "line %d: %v\n", n, err)
			continue
		}
		ev, err := t.Tap(ctx, tap)
		if err != nil {
			fmt.Fprintf(w, "line %d: %v\n", n, err)
			continue
		}
		fmt.Fprintf(w, "%s seq=%d %s %s\n", ev.ID, ev.Sequence, ev.Decision, ev.Reason)
	}
	return sc.Err()
}

func generateTaps(ctx context.Context, t *terminal.Terminal, rate float64, count int, w io.Writer) error {
	if rate <= 0 {
		return fmt.Errorf("--rate %v: must be positive", rate)
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := 0; count == 0 || i < count; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		tap := terminal.Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: fmt.Sprintf("card-%06d", rand.IntN(100000)), RiderCategory: "adult"}
		if _, err := t.Tap(ctx, tap); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "%d taps written to the outbox\n", count)
	return nil
}
