package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/simulator/chaos"
)

func newChaosCmd() *cobra.Command {
	var (
		cfg                  chaos.Config
		kinds                []string
		reportFile, natsBin  string
		keep                 bool
		faregateBin, dataDir string
		ports                string
	)
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Soak real processes under scheduled faults and check that nothing was lost or applied twice",
		Long: `chaos runs a city of real processes: three nats-server nodes in one JetStream
cluster, faregate clearing, with --verifier-partitions N (default 2) one
faregate clearing verifier process per partition of the terminals, its chain
(with the restart-chain fault, a process of its own: faregate chaos chain-node;
otherwise embedded in clearing), and terminals each behind a proxy the harness
can cut. While the terminals tap it kills clearing, the NATS node leading the
event stream, the chain node, a verifier and terminals, and cuts terminals off,
one fault at a time. At the end it checks, from the stores and the chain, that
every accepted tap was applied exactly once, every outbox drained, ledger audit
is clean and every verifier partition carried taps and was left empty. It
prints the fault log with the stall after each fault.`,
		Example: `  faregate chaos                          # the CI soak: 3000 taps, 12 faults, 2 verifier partitions
  faregate chaos --verifier-partitions 0 --taps 50000 --faults 20 --rate 30 --cut-off 60s --report soak.json
  faregate chaos --taps 1000000 --faults 25 --terminals 8 --rate 64 --cut-off 60s --fault-interval 60s --stall-limit 5m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case cfg.Taps < 1:
				return usageErrorf("--taps %d: want 1 or more", cfg.Taps)
			case cfg.Faults < 0:
				return usageErrorf("--faults %d: want 0 or more", cfg.Faults)
			case cfg.Terminals < 1 || cfg.Terminals > chaos.MaxTerminals:
				return usageErrorf("--terminals %d: want 1 to %d terminal processes", cfg.Terminals, chaos.MaxTerminals)
			case cfg.Rate <= 0 || cfg.Rate > 10000:
				return usageErrorf("--rate %v: want taps per second per terminal above 0, at most 10000", cfg.Rate)
			case cfg.CutOff <= 0 || cfg.Outage <= 0 || cfg.NATSOutage <= 0:
				return usageErrorf("--cut-off, --outage and --nats-outage: want positive durations")
			case cfg.FaultInterval <= 0 || cfg.StallLimit <= 0:
				return usageErrorf("--fault-interval and --stall-limit: want positive durations")
			case cfg.Period < chaos.MinPeriod:
				// Not replaced by a default: run.flags must say what ran.
				return usageErrorf("--period %s: want a settlement period of at least %s", cfg.Period, chaos.MinPeriod)
			case cfg.VerifierPartitions < 0 || cfg.VerifierPartitions > clearing.MaxVerifierPartitions:
				return usageErrorf("--verifier-partitions %d: want 0 to %d", cfg.VerifierPartitions, clearing.MaxVerifierPartitions)
			}
			if ports != "" {
				first, last, ok := strings.Cut(ports, "-")
				var err1, err2 error
				cfg.FirstPort, err1 = strconv.Atoi(first)
				cfg.LastPort, err2 = strconv.Atoi(last)
				if !ok || err1 != nil || err2 != nil {
					return usageErrorf("--ports %q: want FIRST-LAST, e.g. 25100-25199", ports)
				}
				if cfg.FirstPort == 0 && cfg.LastPort == 0 {
					return usageErrorf("--ports 0-0: want FIRST-LAST within 1-65535 (leave the flag out for ports the kernel picks)")
				}
				if err := chaos.CheckPortRange(cfg.FirstPort, cfg.LastPort, cfg.Terminals); err != nil {
					return usageErrorf("--%v", err)
				}
			}
			if err := chaos.CheckPartitions(cfg.Terminals, cfg.VerifierPartitions); err != nil {
				return usageErrorf("--terminals %d --verifier-partitions %d: %v", cfg.Terminals, cfg.VerifierPartitions, err)
			}
			if cmd.Flags().Changed("kinds") && len(kinds) == 0 {
				// An empty list is no choice: it ran every kind (an
				// outside test).
				return usageErrorf("--kinds \"\": name the fault kinds to inject, some of %v (leave the flag out for all)", chaos.AllKinds)
			}
			for _, k := range kinds {
				if !slices.Contains(chaos.AllKinds, chaos.FaultKind(k)) {
					return usageErrorf("--kinds %q: want some of %v", k, chaos.AllKinds)
				}
				if chaos.FaultKind(k) == chaos.KillVerifier && cfg.VerifierPartitions == 0 {
					return usageErrorf("--kinds %s needs --verifier-partitions 1 or more", k)
				}
				cfg.Kinds = append(cfg.Kinds, chaos.FaultKind(k))
			}
			// A fault that will run and whose part, down longer than
			// --stall-limit, must be back for progress fails as a stall
			// every time, after all the setup (an outside review). A NATS
			// node's is not: the cluster elects another leader meanwhile.
			rotation := cfg.Kinds
			if len(rotation) == 0 {
				rotation = chaos.DefaultKindsFor(cfg.VerifierPartitions)
			}
			rotation = rotation[:min(len(rotation), cfg.Faults)]
			for _, k := range rotation {
				if k == chaos.KillStreamLeader {
					continue
				}
				if down := cfg.OutageOf(k); down >= cfg.StallLimit {
					flags := map[chaos.FaultKind]string{chaos.CutTerminal: "--cut-off", chaos.RestartChain: "--outage and --period (the chain is down two periods at least)"}[k]
					if flags == "" {
						flags = "--outage"
					}
					return usageErrorf("--stall-limit %s: a %s fault keeps its part down %s (%s), so every one would fail the soak as a stall; raise --stall-limit or shorten the outage", cfg.StallLimit, k, down, flags)
				}
			}
			if reportFile != "" {
				if fi, err := os.Stat(filepath.Dir(reportFile)); err != nil || !fi.IsDir() {
					return usageErrorf("--report %s: its directory does not exist", reportFile)
				}
			}
			// A kept soak is evidence: a second soak over it would start its
			// NATS nodes on the old streams and rewrite its registry.
			if err := checkNewDataDirFor(dataDir, "a kept soak", fmt.Sprintf("faregate clearing --data %s --registry %s",
				filepath.Join(dataDir, "clearing"), filepath.Join(dataDir, "registry.json"))); err != nil {
				return err
			}
			if faregateBin == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find this faregate binary: %w", err)
				}
				faregateBin = exe
			} else if _, err := os.Stat(faregateBin); err != nil {
				// Checked first: the default nats-server is looked for beside it.
				return fmt.Errorf("--faregate: %w", err)
			}
			if natsBin == "" {
				natsBin = findNATSServer(faregateBin)
			}
			if _, err := os.Stat(natsBin); err != nil {
				return fmt.Errorf("--nats-server: %w (make nats-server builds bin/nats-server)", err)
			}
			// The files checked are the ones run: a bare name would be
			// looked for in $PATH (an outside test's ./afile was not).
			for _, p := range []*string{&faregateBin, &natsBin} {
				abs, err := filepath.Abs(*p)
				if err != nil {
					return err
				}
				*p = abs
			}
			// Claimed: a soak that never ran leaves nothing there, and a
			// second soak given the same dir meanwhile is refused.
			release, err := claimDataDir(dataDir)
			if err != nil {
				return err
			}
			soaked := false
			defer func() { release(!soaked) }()
			if dataDir == "" {
				dir, err := os.MkdirTemp("", "faregate-chaos-")
				if err != nil {
					return err
				}
				dataDir = dir
				if !keep {
					defer os.RemoveAll(dir)
				}
			}
			cfg.Faregate, cfg.NATSServer, cfg.Dir = faregateBin, natsBin, dataDir
			out := cmd.OutOrStdout()
			cfg.Logf = func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			fmt.Fprintf(out, "chaos soak: %d terminals at %.0f taps/s each, %d verifier partitions, at least %d taps, %d faults; data and logs in %s\n",
				cfg.Terminals, cfg.Rate, cfg.VerifierPartitions, cfg.Taps, cfg.Faults, dataDir)
			ri := newRunInfo(cmd, os.Args[1:])
			run := cfg
			if run.Faults == 0 {
				run.Faults = chaos.NoFaults // a baseline: the library's 0 is its default count
			}
			rep, err := chaos.Run(ctx, run)
			// No report: no soak ran, nothing there is evidence, and the
			// same command, mended, must run again (an outside test's
			// retry was refused as a kept run).
			soaked = rep != nil
			if rep == nil {
				return err
			}
			// A soak stopped early (interrupted, a stall) still reports
			// what it did: the faults recovered until then, marked partial.
			printFaultLog(out, rep)
			if werr := writeJSONReport(out, reportFile, rep, ri); werr != nil {
				return errors.Join(err, werr)
			}
			if err != nil {
				return err
			}
			if !rep.OK() {
				return fmt.Errorf("the soak broke %d invariant(s)", len(rep.Problems))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Taps, "taps", 3000, "taps to take at least (taps go on until the fault schedule is done)")
	f.IntVar(&cfg.Faults, "faults", 12, "faults to inject, one at a time, rotating over --kinds (the default: each of the six kinds twice)")
	f.StringSliceVar(&kinds, "kinds", nil, "fault kinds to rotate over (default all: kill-clearing, kill-nats-stream-leader, kill-terminal, cut-terminal, restart-chain, and kill-verifier with verifier partitions)")
	f.IntVar(&cfg.Terminals, "terminals", 4, "terminal processes")
	f.IntVar(&cfg.VerifierPartitions, "verifier-partitions", 2, "`N` verifier partitions: clearing --verifier-partitions N and one faregate clearing verifier process per partition (0: clearing verifies)")
	f.Float64Var(&cfg.Rate, "rate", 10, "taps per second per terminal")
	f.DurationVar(&cfg.Outage, "outage", time.Second, "how long a killed clearing, chain node, verifier or terminal stays down (a chain node two settlement periods and a second at least)")
	f.DurationVar(&cfg.NATSOutage, "nats-outage", 3*time.Second, "how long a killed NATS node stays down")
	f.DurationVar(&cfg.CutOff, "cut-off", 5*time.Second, "how long a terminal is cut off from NATS")
	f.DurationVar(&cfg.Period, "period", 2*time.Second, "clearing's settlement period")
	f.DurationVar(&cfg.FaultInterval, "fault-interval", 3*time.Second, "quiet time between one fault's recovery and the next (a long soak spreads its faults over the run)")
	f.StringVar(&ports, "ports", "", "`FIRST-LAST` TCP ports every listener of the soak takes (6 NATS, clearing's API, the chain's JSON-RPC, 3 proxies a terminal); default: free loopback ports the kernel picks")
	f.DurationVar(&cfg.StallLimit, "stall-limit", 2*time.Minute, "fail the soak when the system makes no progress this long after a fault")
	f.StringVar(&dataDir, "data", "", "directory for every process's data and logs (default: a temporary one, removed unless --keep)")
	f.BoolVar(&keep, "keep", false, "keep the temporary directory")
	f.StringVar(&reportFile, "report", "", "write the JSON report (fault log, figures, invariants) here")
	f.StringVar(&natsBin, "nats-server", "", "nats-server binary (default bin/nats-server beside this binary, or ./bin/nats-server)")
	f.StringVar(&faregateBin, "faregate", "", "faregate binary the processes run (default this one)")
	cmd.AddCommand(newChainNodeCmd())
	return cmd
}

// findNATSServer looks for nats-server beside the faregate binary (make
// build puts both in bin/), then in ./bin.
func findNATSServer(faregateBin string) string {
	if p := filepath.Join(filepath.Dir(faregateBin), "nats-server"); fileExists(p) {
		return p
	}
	return filepath.Join("bin", "nats-server")
}

// printFaultLog prints the soak's figures and its fault log as a table.
func printFaultLog(w interface{ Write([]byte) (int, error) }, rep *chaos.Report) {
	fmt.Fprintf(w, "\n== fault log ==\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  at\tkind\ttarget\tdown\tstall\tnote")
	for _, f := range rep.Faults {
		stall, note := f.Stall.String(), f.Note
		if f.Unrecovered != "" {
			// No stall to show: the recovery was never seen.
			within := ""
			if f.Waited > 0 {
				within = " within " + f.Waited.String()
			}
			stall, note = "-", strings.TrimSpace(fmt.Sprintf("no progress observed%s (%s) %s", within, f.Unrecovered, f.Note))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", f.At, f.Kind, f.Target, f.Down, stall, note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n== result ==\n%s", rep.Summary())
}
