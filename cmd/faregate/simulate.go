package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/simulator"
)

func newSimulateCmd() *cobra.Command {
	var (
		cfg        simulator.Config
		reportFile string
		htmlFile   string
		keep       bool
		broke      bool // a guarantee broke: the temporary data directory is kept
		policyFile string
		findPeak   bool
		peak       simulator.PeakConfig
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Run a simulated city: real terminals, NATS, clearing and chain in one process",
		Example: `  faregate simulate --duration 60s --rate 300 --period 10s --report report.json --html report.html
  faregate simulate --duration 20s --rate 100 --face 0 --data data/run1 --keep
  faregate simulate --find-peak --peak-p99 1s --peak-step 60s --report peak.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) (rerr error) {
			var trafficBegan atomic.Bool
			var releaseData func(failedSetup bool) // set once the run claims --data
			ri := newRunInfo(cmd, os.Args[1:])
			// The defaults a report lists are those of settings that
			// applied (an outside review found --rate among --find-peak's).
			if findPeak {
				ri.dropDefaults(slices.Concat(notWithPeak, []string{"http", "html", "chain-rpc-listen"})...)
			} else {
				ri.dropDefaults(peakFlags...)
				if cfg.City.FaceShare == 0 {
					ri.dropDefaults("face-data", "face-images", "face-policy", "models")
				}
			}
			out := cmd.OutOrStdout()
			// Checked before anything is deployed or started.
			if cfg.Duration <= 0 {
				return usageErrorf("--duration %s: want a positive duration", cfg.Duration)
			}
			if cfg.PeakRate <= 0 || cfg.PeakRate > maxOfferedRate {
				return usageErrorf("--rate %v: want a positive rate of taps per second, at most %v", cfg.PeakRate, maxOfferedRate)
			}
			if !findPeak && cfg.PeakRate*cfg.Duration.Seconds() < 1 {
				// Not one tap due: the run would measure nothing and pass
				// (an outside review's --duration 1ns).
				return usageErrorf("--duration %s at --rate %v: not one tap is due; want a longer run", cfg.Duration, cfg.PeakRate)
			}
			if cfg.Period < minSimPeriod {
				// A batch a nanosecond long anchors one event a transaction.
				return usageErrorf("--period %s: want a settlement period of at least %s", cfg.Period, minSimPeriod)
			}
			if cfg.HTTPAddr != "" {
				// Said now, not after the city is built and its chain deployed.
				if _, port, err := net.SplitHostPort(cfg.HTTPAddr); err != nil {
					return usageErrorf("--http %q: want HOST:PORT (or empty for none): %v", cfg.HTTPAddr, err)
				} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
					return usageErrorf("--http %q: port %q is not 0 to 65535", cfg.HTTPAddr, port)
				}
			}
			for _, l := range []struct{ flag, addr string }{{"nats-listen", cfg.NATSListen}, {"chain-rpc-listen", cfg.ChainRPCListen}} {
				if l.addr == "" {
					continue
				}
				if _, port, err := net.SplitHostPort(l.addr); err != nil {
					return usageErrorf("--%s %q: want HOST:PORT: %v", l.flag, l.addr, err)
				} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
					return usageErrorf("--%s %q: port %q is not 0 to 65535", l.flag, l.addr, port)
				}
			}
			// One address for two listeners, or one in use, fails here,
			// named: the NATS server's said only "not ready after 10s"
			// (an outside review). They are held together, then let go:
			// one port spelled two ways (localhost, 0.0.0.0) is in use by
			// the other.
			listens := []struct{ flag, addr string }{{"http", cfg.HTTPAddr}, {"nats-listen", cfg.NATSListen}, {"chain-rpc-listen", cfg.ChainRPCListen}}
			if findPeak {
				listens = listens[1:2] // the ramp serves no API and no JSON-RPC (refused below if given)
			}
			for i, a := range listens {
				if a.addr == "" || strings.HasSuffix(a.addr, ":0") {
					continue
				}
				for _, b := range listens[:i] {
					if b.addr == a.addr {
						return usageErrorf("--%s and --%s are both %s: give each its own port", b.flag, a.flag, a.addr)
					}
				}
			}
			if err := portsFree(listens); err != nil {
				return err
			}
			if cfg.City.Operators < 1 || cfg.City.StopsPerOp < 1 || cfg.City.GatesPerStop < 1 || cfg.City.Passengers < 1 {
				return usageErrorf("--operators %d, --stops %d, --gates %d, --passengers %d: want 1 or more of each",
					cfg.City.Operators, cfg.City.StopsPerOp, cfg.City.GatesPerStop, cfg.City.Passengers)
			}
			// Bounds a city of this machine's scale: past them the run
			// only eats memory building riders and gates (a typo of
			// --passengers 100000000000 took 24 GB before any tap).
			if cfg.City.Operators > maxSimOperators || cfg.City.StopsPerOp > maxSimStops || cfg.City.GatesPerStop > maxSimGates || cfg.City.Passengers > maxSimPassengers {
				return usageErrorf("--operators %d, --stops %d, --gates %d, --passengers %d: at most %d operators, %d stops per operator, %d gates per stop and %d passengers",
					cfg.City.Operators, cfg.City.StopsPerOp, cfg.City.GatesPerStop, cfg.City.Passengers, maxSimOperators, maxSimStops, maxSimGates, maxSimPassengers)
			}
			if n := cfg.City.Operators * cfg.City.StopsPerOp * cfg.City.GatesPerStop; n > maxSimTerminals {
				return usageErrorf("--operators %d x --stops %d x --gates %d is %d terminals: at most %d", cfg.City.Operators, cfg.City.StopsPerOp, cfg.City.GatesPerStop, n, maxSimTerminals)
			}
			if cfg.InjectBad < 0 || cfg.InjectBad > simulator.MaxInjectBad {
				// Not after the traffic: a count near 2^61 panicked there.
				return usageErrorf("--inject-bad %d: want 0 (none) to %d of each kind", cfg.InjectBad, simulator.MaxInjectBad)
			}
			if n := cfg.City.Operators * cfg.City.StopsPerOp * cfg.City.GatesPerStop; cfg.InjectBad > 0 && n < 2 && !findPeak {
				// One gate is set up wrong on purpose and one sends on
				// another's subject: a city of one gate would take no
				// good tap (an outside review).
				return usageErrorf("--inject-bad %d needs a city of 2 gates or more (one is set up wrong on purpose), this one has %d: add --gates 2, or give --inject-bad 0", cfg.InjectBad, n)
			}
			if cfg.VerifierPartitions < 0 || cfg.VerifierPartitions > clearing.MaxVerifierPartitions {
				return usageErrorf("--verifier-partitions %d: want 0 to %d", cfg.VerifierPartitions, clearing.MaxVerifierPartitions)
			}
			for _, s := range []struct {
				flag string
				v    float64
			}{{"denied", cfg.City.DeniedShare}, {"concession", cfg.City.ConcessionShare}} {
				if s.v < 0 || s.v > 1 {
					return usageErrorf("--%s %v: want a share from 0 to 1", s.flag, s.v)
				}
			}
			if cfg.Days < 1 || cfg.Days > maxSimDays {
				return usageErrorf("--days %d: want 1 to %d travel days", cfg.Days, maxSimDays)
			}
			if cfg.DeclineRate < 0 || cfg.DeclineRate > 1 {
				return usageErrorf("--decline-rate %v: want 0 to 1", cfg.DeclineRate)
			}
			if findPeak && !givenOnCommandLine(cmd, "html") {
				// FAREGATE_HTML is a shared setting the ramp ignores, as
				// the run's other flags set through their variables.
				htmlFile = ""
			}
			// Before anything is created: a report written into --data
			// would replace the kept run's run.json (an outside test).
			for _, o := range []struct{ flag, path string }{{"report", reportFile}, {"html", htmlFile}} {
				if err := checkOutsideData(o.flag, o.path, cfg.DataDir); err != nil {
					return err
				}
			}
			if err := checkNewDataDir(cfg.DataDir); err != nil {
				return err
			}
			if err := checkOutputFile("report", reportFile); err != nil {
				return err
			}
			// The --data dir is the run's once its flags are checked: a
			// run that fails before its traffic began leaves nothing there,
			// so that the same command, mended, runs again (an outside
			// test's retry was refused as a kept run), and a second run
			// given the same dir meanwhile is refused, not cleared away (a
			// code review saw one remove another's registry and feed).
			claim := func() error {
				release, err := claimDataDir(cfg.DataDir)
				if err != nil {
					return err
				}
				cfg.OnTraffic = func() { trafficBegan.Store(true) }
				peak.OnTraffic = cfg.OnTraffic
				releaseData = release
				return nil
			}
			defer func() {
				if releaseData != nil {
					releaseData(rerr != nil && !trafficBegan.Load())
				}
			}()
			if findPeak {
				if err := checkPeakFlags(cmd, &peak, cfg.Period, htmlFile); err != nil {
					return err
				}
				if err := claim(); err != nil {
					return err
				}
				return runFindPeak(cmd, cfg, peak, reportFile, keep, ri)
			}
			// The ramp's flags on a plain run are a mistake (the run would
			// ignore them), as the run's flags are with --find-peak. Their
			// variables in the environment are not: a shared setting.
			for _, name := range peakFlags {
				if givenOnCommandLine(cmd, name) {
					return usageErrorf("--%s applies only with --find-peak", name)
				}
			}
			if err := checkOutputFile("html", htmlFile); err != nil {
				return err
			}
			if htmlFile != "" && filepath.Clean(htmlFile) == filepath.Clean(reportFile) {
				return usageErrorf("--html %s: the same file as --report", htmlFile)
			}
			if cfg.City.FaceShare < 0 || cfg.City.FaceShare > 1 {
				return usageErrorf("--face %v: want a share from 0 to 1", cfg.City.FaceShare)
			}
			if cfg.City.FaceShare == 0 {
				// Ignored without face riders: given on the command line
				// they are a mistake (an outside test's --face-data went
				// unused in silence); through their variables, a shared
				// setting.
				for _, name := range []string{"face-data", "face-images", "models", "face-policy"} {
					if givenOnCommandLine(cmd, name) {
						return usageErrorf("--%s: no face riders with --face 0 (give --face above 0 for face riders, or leave --%s out)", name, name)
					}
				}
			}
			if cfg.City.FaceShare > 0 {
				if cfg.FaceData == "" {
					cfg.FaceData = findFaceData()
				}
				if _, err := os.Stat(cfg.FaceData); err != nil {
					return fmt.Errorf("--face-data: face riders need real dlib descriptors (idols.json format; ../shared/testdata/faces/idols.json or $%s), or --face 0: %w", faceDataEnv, err)
				}
				if cfg.FaceImages == "" {
					cfg.FaceImages = filepath.Join(filepath.Dir(cfg.FaceData), "images")
				}
				if cfg.FaceModels != "" {
					// Said now, not after the chain and clearing are set up.
					if _, err := os.Stat(filepath.Join(cfg.FaceModels, biometrics.DescriptorModelFile)); err != nil {
						return fmt.Errorf("--models %s: the picture gates need the dlib models there (make models): %w", cfg.FaceModels, err)
					}
				}
				if policyFile != "" {
					p, _, err := loadPolicyFile(policyFile)
					if err != nil {
						return fmt.Errorf("--face-policy: %w", err)
					}
					cfg.FacePolicy = p
				}
			}
			if err := claim(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			kept := cfg.DataDir != "" || keep
			if cfg.DataDir == "" {
				dir, err := os.MkdirTemp("", "faregate-sim-")
				if err != nil {
					return err
				}
				cfg.DataDir = dir
				if !keep {
					defer func() {
						// The stores are the evidence of what broke, or of
						// what failed once the traffic began (a final
						// settlement, billing: an outside re-check).
						switch {
						case broke:
							fmt.Fprintf(out, "\nthe run's data is kept for inspection in %s: a guarantee broke\n", dir)
						case rerr != nil && trafficBegan.Load() && ctx.Err() == nil: // not asked to stop
							fmt.Fprintf(out, "\nthe run's data is kept for inspection in %s: the run failed after its traffic began\n", dir)
						default:
							os.RemoveAll(dir)
						}
					}()
				}
			}
			cfg.Logger = slog.Default()
			prog := newRunProgress(out, cfg.Duration)
			cfg.Progress = prog.status
			cfg.OnAPI = func(url, token string) {
				fmt.Fprintf(out, "settlement API at %s while the simulation runs, auditor token %s\n  try: curl -H 'Authorization: Bearer %s' %s/v1/batches\n", url, token, token, url)
			}
			fmt.Fprintf(out, "simulating %d operators x %d stops x %d gates, %d passengers, %s at up to %.0f taps/s; data in %s\n",
				cfg.City.Operators, cfg.City.StopsPerOp, cfg.City.GatesPerStop, cfg.City.Passengers, cfg.Duration, cfg.PeakRate, cfg.DataDir)
			rep, err := simulator.Run(ctx, cfg)
			prog.done()
			if err != nil && rep != nil && rep.Stopped != "" {
				// Interrupted after the traffic: what it measured is
				// still worth keeping.
				printStopped(out, rep)
				if werr := writeReports(out, rep, reportFile, htmlFile, ri); werr != nil {
					return errors.Join(err, werr)
				}
				return fmt.Errorf("simulation stopped early (partial report, guarantees not checked): %w", err)
			}
			if err != nil {
				return err
			}
			printReport(out, rep)
			if err := writeReports(out, rep, reportFile, htmlFile, ri); err != nil {
				return err
			}
			if kept {
				if err := printExplore(out, cfg.DataDir, cfg.HTTPAddr, cfg.NATSListen, cfg.ChainRPCListen); err != nil {
					fmt.Fprintf(out, "\n(no explore commands: %v)\n", err)
				}
			}
			if err := rep.OK(); err != nil {
				broke = true
				return fmt.Errorf("simulation broke a guarantee: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long terminals take taps")
	f.Float64Var(&cfg.PeakRate, "rate", 300, "city-wide taps per second at the rush-hour peak")
	f.DurationVar(&cfg.Period, "period", 10*time.Second, "settlement period")
	f.IntVar(&cfg.Days, "days", 2, "travel days of the city the run covers (the city's clock runs from 05:00 of the first to the 04:00 cut-over after the last in --duration)")
	f.Float64Var(&cfg.DeclineRate, "decline-rate", 0.05, "share of payments the simulated acquirer declines (0 to 1)")
	f.StringVar(&cfg.DataDir, "data", "", "keep every store (clearing, terminals, chain) in this directory (default: a temporary one)")
	f.BoolVar(&keep, "keep", false, "keep the temporary data directory")
	f.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "settlement API address while the run lasts (empty: none)")
	f.StringVar(&cfg.NATSListen, "nats-listen", "", "`HOST:PORT` the run's embedded NATS server listens on (default: a free loopback port)")
	f.StringVar(&cfg.ChainRPCListen, "chain-rpc-listen", "", "`HOST:PORT` of the embedded chain's JSON-RPC while the run lasts (default: a free loopback port; not with --find-peak, whose chain serves none)")
	f.StringVar(&reportFile, "report", "", "write the machine-readable JSON report here")
	f.StringVar(&htmlFile, "html", "", "write the run's report as one self-contained HTML page with plots here (reads offline)")
	f.BoolVar(&cfg.NATSTLS, "nats-tls", true, "run the city's NATS over TLS (a certificate made for the run)")
	f.IntVar(&cfg.VerifierPartitions, "verifier-partitions", 0, "`N` verifier partitions: separate verifiers check the signatures of N partitions of the terminals before clearing applies them (0: clearing verifies)")
	f.IntVar(&cfg.InjectBad, "inject-bad", 5, "bad messages of each kind (forged, foreign event, truncated, replayed, another terminal's subject) to inject (at most "+strconv.Itoa(simulator.MaxInjectBad)+"), plus one misconfigured gate when > 0")
	f.IntVar(&cfg.City.Operators, "operators", 3, "operators")
	f.IntVar(&cfg.City.StopsPerOp, "stops", 4, "stops per operator")
	f.IntVar(&cfg.City.GatesPerStop, "gates", 2, "gates (terminals) per stop")
	f.IntVar(&cfg.City.Passengers, "passengers", 5000, "passengers")
	f.Float64Var(&cfg.City.DeniedShare, "denied", 0.01, "share of cards on the deny list")
	f.Float64Var(&cfg.City.FaceShare, "face", 0.1, "share of passengers riding by face")
	f.Float64Var(&cfg.City.ConcessionShare, "concession", 0.15, "share of concession riders")
	f.Var(weeklyCapFlag{&cfg.City.RollingWeek}, "weekly-cap", "the city's weekly fare caps: calendar (Monday to Monday) or rolling (seven days from the first journey charged)")
	f.Uint64Var(&cfg.City.Seed, "seed", 1, "random seed of the city's riders (who rides by face, with a concession, on the deny list) and their plans, and of its terminals' keys; the feed, stops and gates follow from the size flags alone. Taps are paced by the wall clock, so two runs with one seed build the same city but differ in how many taps fit in --duration and in latencies")
	f.StringVar(&cfg.FaceData, "face-data", "", "real dlib descriptors of the face riders, idols.json format (default $"+faceDataEnv+", else ../shared/testdata/faces/idols.json)")
	f.StringVar(&cfg.FaceImages, "face-images", "", "labelled pictures (jimin2.jpg is jimin) that the gates of one stop run through the whole dlib pipeline (default: images/ beside --face-data)")
	f.StringVar(&cfg.FaceModels, "models", "", "dlib model directory for the picture gates (default $"+biometrics.ModelsEnv+", ./models, ../shared/models)")
	f.BoolVar(&findPeak, "find-peak", false, "ramp the offered tap rate over lightweight simulated terminals until tap-to-confirmation p99 exceeds --peak-p99; report the peak and clearing's ceiling (card riders only; --duration, --rate, --days, --http, --html, --denied, --concession and the face and bad-message flags do not apply)")
	f.DurationVar(&peak.P99, "peak-p99", time.Second, "--find-peak: the objective, tap-to-confirmation p99")
	f.DurationVar(&peak.Step, "peak-step", time.Minute, "--find-peak: how long each step offers its rate")
	f.Float64Var(&peak.StartRate, "peak-start", 200, "--find-peak: the first step's offered taps per second")
	f.Float64Var(&peak.Factor, "peak-factor", 1.25, "--find-peak: each step offers this many times the last")
	f.IntVar(&peak.MaxSteps, "peak-max-steps", 40, "--find-peak: at most this many steps")
	f.IntVar(&peak.RiderTaps, "peak-rider-taps", simulator.DefaultPeakRiderTaps, "--find-peak: taps each rider makes (entry and exit in turn) before a new rider takes their place among --passengers; -1: the same riders tap all run long")
	f.StringVar(&policyFile, "face-policy", "", "the gates' face operating point, a policy `FILE` from faregate face calibrate (default: the built-in conservative point)")
	return cmd
}

// faceDataEnv names the face riders' descriptors when --face-data is not given.
const faceDataEnv = "FAREGATE_FACE_DATA"

// findFaceData looks for ../shared/testdata/faces/idols.json beside the
// working directory or one of its parents (a checkout's subdirectory).
func findFaceData() string {
	if p := os.Getenv(faceDataEnv); p != "" {
		return p
	}
	rel := filepath.Join("..", "shared", "testdata", "faces", "idols.json")
	for up := ""; len(up) < 12; up = filepath.Join(up, "..") {
		if p := filepath.Join(up, rel); fileExists(p) {
			return p
		}
	}
	return rel
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// checkOutputFile refuses, as a usage error, an output file --flag names
// in a directory that does not exist, or that is a directory: checked
// before the run, which would otherwise end without its report.
func checkOutputFile(flag, path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return usageErrorf("--%s %s: is a directory, want a file", flag, path)
	}
	dir := filepath.Dir(path)
	switch fi, err := os.Stat(dir); {
	case err != nil:
		return usageErrorf("--%s %s: directory %s does not exist", flag, path, dir)
	case !fi.IsDir():
		return usageErrorf("--%s %s: %s is a file, not a directory", flag, path, dir)
	}
	// Opened for writing now, not after an hour's run: a path that cannot
	// be written must not throw the run's results away at the end.
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	}
	f.Close()
	if os.IsNotExist(statErr) {
		// Written at the end; none if the run fails. Through a symbolic
		// link, the file made is its target's, not the link.
		if made, err := filepath.EvalSymlinks(path); err == nil {
			os.Remove(made)
		}
	}
	return nil
}

// checkOutsideData refuses, as a usage error, an output file --flag names
// at or under the --data directory: written there, a report replaces the
// kept run's run.json (or is the directory itself, and is lost after the
// run). Both paths are compared absolute and clean, through symbolic links
// where the path exists.
func checkOutsideData(flag, path, dataDir string) error {
	if path == "" || dataDir == "" {
		return nil
	}
	in, err := pathWithin(path, dataDir)
	if err != nil {
		return fmt.Errorf("--%s %s: %w", flag, path, err)
	}
	if in {
		return usageErrorf("--%s %s: inside --data %s, where the run keeps its stores and run.json: write it elsewhere", flag, path, dataDir)
	}
	return nil
}

// pathWithin reports whether path is dir or inside it, both compared
// absolute and clean, through symbolic links where they exist.
func pathWithin(path, dir string) (bool, error) {
	p, err := resolvedPath(path)
	if err != nil {
		return false, err
	}
	d, err := resolvedPath(dir)
	if err != nil {
		return false, fmt.Errorf("%s: %w", dir, err)
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && (rel == "." || filepath.IsLocal(rel)), nil
}

// resolvedPath is p absolute and clean, with the symbolic links of its
// longest existing prefix resolved (the rest does not exist yet).
func resolvedPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for dir := abs; ; {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
}

// runLockFile marks a --data dir a run is using: made exclusively when the
// run claims the dir (claimDataDir), removed when it ends.
const runLockFile = ".faregate-run"

// claimDataDir claims dir, new or empty (checkNewDataDir), for this run: it
// makes dir and the lock file in it, which only one run can make. release
// removes the lock, and with failedSetup true everything the run wrote
// into dir (it held nothing before). An empty dir claims nothing.
func claimDataDir(dir string) (release func(failedSetup bool), err error) {
	if dir == "" {
		return func(bool) {}, nil
	}
	_, statErr := os.Stat(dir)
	made := errors.Is(statErr, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--data %s: %w", dir, err)
	}
	lock := filepath.Join(dir, runLockFile)
	f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, usageErrorf("--data %s: another run is using it (%s): give another directory", dir, lock)
	}
	if err != nil {
		return nil, fmt.Errorf("--data %s: %w", dir, err)
	}
	fmt.Fprintf(f, "pid %d\n", os.Getpid())
	f.Close()
	// Another run may have written before this one's lock was made: the
	// dir must still hold nothing but the lock.
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 {
		os.Remove(lock)
		if err != nil {
			return nil, fmt.Errorf("--data %s: %w", dir, err)
		}
		return nil, usageErrorf("--data %s: another run is writing into it: give another directory", dir)
	}
	return func(failedSetup bool) {
		if !failedSetup {
			os.Remove(lock)
			return
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			if e.Name() != runLockFile {
				_ = os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
		os.Remove(lock) // last: the dir stays claimed until it is empty
		if made {
			os.Remove(dir) // made for the run: gone again (only if empty)
		}
	}, nil
}

// checkNewDataDir refuses a --data directory that already holds something:
// a kept run is reopened with faregate clearing --data DIR, and a run
// written over it would leave its store and chain under another city's
// registry and feed.
func checkNewDataDir(dir string) error {
	return checkNewDataDirFor(dir, "a kept run", "faregate clearing --data "+dir)
}

// checkNewDataDirFor is checkNewDataDir for a dir that would hold what
// (a kept run, a kept soak), reopened by the command reopen.
func checkNewDataDirFor(dir, what, reopen string) error {
	if dir == "" {
		return nil
	}
	ents, err := os.ReadDir(dir)
	switch {
	case os.IsNotExist(err):
		return nil
	case errors.Is(err, syscall.ENOTDIR):
		// A plain file, or a path through one: a usage error, as a
		// non-empty directory is, not a failure to retry.
		return usageErrorf("--data %s: not a directory (a file is there, or on the way there): give an empty or new directory for the run's stores", dir)
	case err != nil:
		return fmt.Errorf("--data %s: %w", dir, err)
	case len(ents) == 0:
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, runLockFile)); err == nil {
		return usageErrorf("--data %s holds %s: a run is using it, or one was killed there; give another directory (or remove that file if no run uses the directory)", dir, runLockFile)
	}
	if _, err := os.Stat(filepath.Join(dir, "registry.json")); err == nil {
		return usageErrorf("--data %s holds %s already: reopen it with %s, or give an empty or new directory", dir, what, reopen)
	}
	return usageErrorf("--data %s is not empty (%d entries, e.g. %s): give an empty or new directory for the run's stores", dir, len(ents), ents[0].Name())
}

// writeJSONReport writes v, indented, to path and says where; an empty
// path writes nothing.
func writeJSONReport(out io.Writer, path string, v any, ri runInfo) error {
	if path == "" {
		return nil
	}
	// The report, then what produced it ("run"), in the report's own order.
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if b, err = nullUnchecked(b); err != nil {
		return err
	}
	run, err := json.Marshal(ri)
	if err != nil {
		return err
	}
	if n := len(b); n >= 2 && b[0] == '{' && b[n-1] == '}' {
		sep := []byte(",")
		if n == 2 {
			sep = nil
		}
		b = append(append(append(append(b[:n-1:n-1], sep...), `"run":`...), run...), '}')
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, b, "", "  "); err != nil {
		return err
	}
	b = ind.Bytes()
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	fmt.Fprintf(out, "report written to %s\n", path)
	return nil
}

// uncheckedFields are the report's checks and what the end of a run
// computes or reads from clearing and its store: a run stopped early (its
// "stopped" set) computed none of them, and writes them as null, so that
// a script reading duplicates_applied == 0 (or deny_list_entries == 0,
// rejected == 0, city_start "") does not pass a run that checked nothing.
var uncheckedFields = map[string]bool{
	"rejected": true, "deny_list_entries": true, "deny_list_version": true, "verified_by_partition": true,
	"city_start": true, "city_end": true,
	"face_riders_enrolled": true, "face_taps": true, "face_accepted": true, "face_refused": true, "face_refused_by_reason": true,
	"face_false_accepts": true, "face_stranger_taps": true, "face_image_taps": true, "face_decision_ms": true,
	"face_image_decision_ms": true, "face_policy": true,
	"duplicates_applied": true, "lost_sequences": true, "store_event_mismatch": true, "journal_transfers": true, "journal_imbalance": true, "journal_mismatches": true,
	"batches_sealed": true, "batches_anchored": true, "batches_root_mismatch": true, "batch_problems": true,
	"operator_revenue": true, "batches": true, "audit": true, "fare_recompute": true, "fare_recompute_mismatches": true,
	"journeys": true, "journeys_priced": true, "journeys_multi_operator": true, "journeys_incomplete": true,
	"riders_capped": true, "taps_unpriced": true, "rider_charges": true, "payments_asked": true,
	"payments_approved": true, "payments_declined": true, "payments": true, "acquirer_received": true,
	"riders_in_debt": true, "debt": true, "deny_list_debt_entries": true, "denied_at_gate_for_debt": true,
	"unbilled_days": true, "day_close_rider_days": true, "day_close_billing_seconds": true,
	"audit_findings": true, "deny_list_debt_listed": true, "deny_list_debt_wrong": true, "gates_behind_deny_list": true,
}

// nullUnchecked rewrites report b (a JSON object) with uncheckedFields as
// null when its "stopped" is set, keeping the members' order.
func nullUnchecked(b []byte) ([]byte, error) {
	var head struct {
		Stopped string `json:"stopped"`
	}
	if err := json.Unmarshal(b, &head); err != nil || head.Stopped == "" {
		return b, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	out := []byte{'{'}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		if uncheckedFields[key] {
			val = json.RawMessage("null")
		}
		kb, _ := json.Marshal(key)
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(append(append(out, kb...), ':'), val...)
	}
	return append(out, '}'), nil
}

// writeReports writes the run's JSON report and HTML page where asked
// (empty: not) and says where.
func writeReports(out io.Writer, rep *simulator.Report, reportFile, htmlFile string, ri runInfo) error {
	if err := writeJSONReport(out, reportFile, rep, ri); err != nil {
		return err
	}
	if htmlFile != "" {
		page, err := simulator.HTMLReport(rep, ri.rows()...)
		if err != nil {
			return err
		}
		if err := os.WriteFile(htmlFile, page, 0o644); err != nil {
			return fmt.Errorf("write HTML report: %w", err)
		}
		fmt.Fprintf(out, "HTML report written to %s\n", htmlFile)
	}
	return nil
}

// printStopped prints what a run interrupted after its traffic measured.
func printStopped(w io.Writer, r *simulator.Report) {
	fmt.Fprintf(w, "\n== stopped early: %s ==\n", r.Stopped)
	t := newTable(1)
	t.add("taps generated", strconv.FormatUint(r.TapsGenerated, 10))
	t.add("tap rate", fmt.Sprintf("%.0f/s over %.1f s", r.TapRatePerSecond, r.DurationSeconds))
	t.add("events published", strconv.FormatUint(r.EventsPublished, 10))
	t.add("applied by clearing", strconv.FormatUint(r.Applied, 10))
	t.add("still in outboxes", strconv.FormatUint(r.OutboxPending, 10))
	if p, ok := r.ConfirmLatencyMs["p99"]; ok {
		t.add("confirmation p50 / p99", fmt.Sprintf("%.1f / %.1f ms", r.ConfirmLatencyMs["p50"], p))
	}
	t.write(w)
	fmt.Fprintln(w, "nothing was checked (applied once, journal, batches, audit): run to the end for that")
}

// printReport prints the run as aligned tables (text/tabwriter): each
// operator's revenue, the anchored batches, the guarantees and the totals.
// Money is its decimal with the currency (minor units beside it in the
// settlement), batch roots 0x hex.
func printReport(w io.Writer, r *simulator.Report) {
	money := func(m clearing.Money) string { return m.Decimal + " " + m.Currency }
	ops := slices.Sorted(maps.Keys(r.OperatorRevenue))

	fmt.Fprintf(w, "\n== settlement ==\n")
	t := newTable(1, 2)
	t.add("OPERATOR", "REVENUE", "MINOR UNITS")
	var total int64
	for _, op := range ops {
		m := r.OperatorRevenue[op]
		t.add(op, money(m), strconv.FormatInt(m.Minor, 10))
		total += m.Minor
	}
	all := clearing.MoneyOf(fare.Amount(total), r.Currency)
	t.add("all operators", money(all), strconv.FormatInt(all.Minor, 10))
	t.add("riders charged", money(r.RiderCharges), strconv.FormatInt(r.RiderCharges.Minor, 10))
	t.write(w)

	fmt.Fprintf(w, "\n== batches anchored on the ledger (contract %s) ==\n", r.Contract)
	batchOps := map[string]bool{}
	for _, b := range r.Batches {
		for _, n := range b.Nets {
			batchOps[n.Operator] = true
		}
	}
	netOps := slices.Sorted(maps.Keys(batchOps))
	state := map[uint64]string{}
	for _, a := range r.Audit {
		state[a.ID] = a.State
	}
	right := []int{0, 2}
	head := []string{"BATCH", "PERIOD (UTC)", "EVENTS", "ON CHAIN"}
	for i, op := range netOps {
		head = append(head, strings.ToUpper(op)+" NET")
		right = append(right, 4+i)
	}
	t = newTable(right...)
	t.add(append(head, "ROOT")...)
	for _, b := range r.Batches {
		st, ok := state[b.ID]
		if !ok {
			st = "not audited"
		}
		row := []string{strconv.FormatUint(b.ID, 10),
			b.PeriodStart.UTC().Format(time.TimeOnly) + " - " + b.PeriodEnd.UTC().Format(time.TimeOnly),
			strconv.FormatUint(b.EventCount, 10), st}
		nets := map[string]clearing.Money{}
		for _, n := range b.Nets {
			nets[n.Operator] = n.Net
		}
		for _, op := range netOps {
			cell := "-"
			if m, ok := nets[op]; ok {
				cell = money(m)
			}
			row = append(row, cell)
		}
		t.add(append(row, b.Root)...)
	}
	t.write(w)

	fmt.Fprintf(w, "\n== guarantees ==\n")
	t = newTable()
	t.add("GUARANTEE", "RESULT", "MEASURED")
	for _, c := range r.Checks() {
		if c.Err != nil {
			t.add(c.Name, "BROKE", c.Measured+": "+c.Err.Error())
		} else {
			t.add(c.Name, "held", c.Measured)
		}
	}
	t.write(w)

	fmt.Fprintf(w, "\n== totals ==\n")
	t = newTable()
	t.add("taps generated", fmt.Sprintf("%d (%d denied at the gate), %.0f taps/s over %.1f s", r.TapsGenerated, r.TapsDenied, r.TapRatePerSecond, r.DurationSeconds))
	// Whether the generator kept up: a late one held the offered load back
	// itself (an outside load tester could not tell, a plain run's busiest
	// second short of --rate).
	lag := fmt.Sprintf("taps taken up to %.0f ms after they were due", r.GeneratorLagMs)
	if r.GeneratorLagMs > 1000 {
		lag += ": the generator, not clearing, fell behind the offered rate"
	}
	t.add("tap generator", lag)
	// Held by the gates only where the run checked it (--find-peak's gates
	// hold no list: an outside review read "held by every gate" there).
	held := "no gate holds the lists"
	if r.GatesBehindDenyList != nil {
		held = fmt.Sprintf("%d gates behind its last version", *r.GatesBehindDenyList)
	}
	t.add("deny list", fmt.Sprintf("%d media at version %d, %s; gate-list values refused: %s", r.DenyListEntries, r.DenyListVersion, held, counts(r.RefusedDenyMessages)))
	if r.GatesBehindDenyList != nil { // gates that hold lists: not --find-peak's
		t.add("enrolments", fmt.Sprintf("%d concession riders enrolled (concession fares from the second fare day on: none with --days 1)", r.RidersEnrolled))
	}
	t.add("events published", fmt.Sprintf("%d (resends included)", r.EventsPublished))
	t.add("applied", fmt.Sprintf("%d, duplicates dropped %d, duplicates applied %d, sequences lost %d", r.Applied, r.DuplicatesDropped, r.DuplicatesApplied, r.LostSequences))
	if r.VerifierPartitions > 0 {
		t.add("verifier partitions", fmt.Sprintf("%d, events forwarded by each: %v", r.VerifierPartitions, r.VerifiedByPartition))
	}
	t.add("bad injected", fmt.Sprintf("%d: %d refused by NATS, %d quarantined in all (%s)", r.BadInjected, r.RefusedByNATS, r.Quarantined, counts(r.QuarantinedByReason)))
	t.add("rejected for good", fmt.Sprintf("%d (dead-lettered by their terminals %d), confirmations refused %d", r.Rejected, r.DeadLettered, r.RefusedConfirms))
	t.add("city", fmt.Sprintf("%s to %s (city clock)", r.CityStart, r.CityEnd))
	setOut := fmt.Sprintf("%d journeys set out, ", r.Journeys)
	if r.Journeys == 0 {
		setOut = "" // --find-peak: its riders follow no day's plan
	}
	t.add("fares (GTFS feed)", fmt.Sprintf("%s%d priced (%d incomplete, %d split between operators), %d riders capped, %d taps unpriced",
		setOut, r.JourneysPriced, r.JourneysIncomplete, r.JourneysMultiOperator, r.RidersCapped, r.TapsUnpriced))
	t.add("payments", fmt.Sprintf("%d asked, %d approved (%s), %d declined; acquirer received %s", r.PaymentsAsked, r.PaymentsApproved, money(r.Payments), r.PaymentsDeclined, money(r.AcquirerReceived)))
	if r.DayCloseBillingSeconds > 0 {
		t.add("day-close billing", fmt.Sprintf("%d rider days open when the last day ended, billed in %.1f s (%.0f/s)", r.DayCloseRiderDays, r.DayCloseBillingSeconds, float64(r.DayCloseRiderDays)/r.DayCloseBillingSeconds))
	}
	atGate := "the simulated terminals hold no deny list"
	if r.GatesBehindDenyList != nil {
		atGate = fmt.Sprintf("%d of their taps refused at the gate, %d gates behind the list at the end", r.DeniedAtGateForDebt, *r.GatesBehindDenyList)
	}
	t.add("debt", fmt.Sprintf("%d riders in debt (%s); %d put on the deny list for debt, %d listed for debt at the end; %s; %d rider days unbilled",
		r.RidersInDebt, money(r.Debt), r.DenyListDebtEntries, r.DenyListDebtListed, atGate, r.UnbilledDays))
	if r.TapsFailed > 0 {
		t.add("taps failed", fmt.Sprintf("%d (gates could not take them: see the log)", r.TapsFailed))
	}
	t.add("riders charged", fmt.Sprintf("%s; independent repricing mismatches %d", money(r.RiderCharges), r.FareRecomputeMismatch))
	t.add("journal", fmt.Sprintf("%d transfers, imbalance %s, mismatches %d", r.JournalTransfers, money(r.JournalImbalance), len(r.JournalMismatches)))
	t.add("batches", fmt.Sprintf("%d sealed, %d anchored, %d root mismatches", r.BatchesSealed, r.BatchesAnchored, r.BatchRootMismatches))
	if r.FaceTaps > 0 || r.FaceRidersEnrolled > 0 {
		t.add("face riders", fmt.Sprintf("%d enrolled (idols.json), policy %s; %d presentations (%d by unenrolled strangers, %d real pictures through dlib): %d accepted, %d refused (%s), %d false accepts",
			r.FaceRidersEnrolled, r.FacePolicy, r.FaceTaps, r.FaceStrangerTaps, r.FaceImageTaps, r.FaceAccepted, r.FaceRefused, counts(r.FaceRefusedByReason), r.FaceFalseAccepts))
		t.add("face decision", fmt.Sprintf("frames to decision %s; pictures through dlib %s", latencies(r.FaceDecisionMs), latencies(r.FaceImageDecisionMs)))
	}
	t.add("outbox pending", strconv.FormatUint(r.OutboxPending, 10))
	t.add("tap latency", latencies(r.TapLatencyMs)+strings.TrimPrefix(fewSamples(r.TapLatencyCDF), ";"))
	t.add("confirm latency", latencies(r.ConfirmLatencyMs)+" (tap to clearing's durable confirmation"+fewSamples(r.ConfirmLatencyCDF)+")")
	t.write(w)
}

// table lines rows up in columns with text/tabwriter, two spaces apart
// and indented by two; the columns named when it is made are aligned to
// the right (numbers and money).
type table struct {
	rows  [][]string
	right []int
}

func newTable(right ...int) *table { return &table{right: right} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	width := map[int]int{}
	for _, row := range t.rows {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, row := range t.rows {
		cells := slices.Clone(row)
		for i, c := range cells {
			if slices.Contains(t.right, i) {
				cells[i] = strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)) + c
			}
		}
		fmt.Fprintf(tw, "  %s\n", strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// maxOfferedRate bounds the taps per second a simulation offers: far above
// what a machine clears, far below what would overflow its arithmetic.
const maxOfferedRate = 1e6

// minSimPeriod is the shortest settlement period simulate takes, as chaos
// and clearing:
// shorter, each batch anchors an event or two (and the chain's periods are
// whole seconds).
const minSimPeriod = 100 * time.Millisecond

// The largest city simulate builds: operators, stops per operator, gates per
// stop, terminals in all (each a store or a simulated gate), passengers and
// travel days.
const (
	maxSimOperators  = 100
	maxSimStops      = 1000
	maxSimGates      = 100
	maxSimTerminals  = 500
	maxSimPassengers = 1_000_000
	maxSimDays       = 366
)

// notWithPeak are the plain run's flags that do not apply to --find-peak
// (--http, --html and --chain-rpc-listen are refused apart).
var notWithPeak = []string{"duration", "rate", "days", "inject-bad", "face", "face-data", "face-images", "models", "face-policy", "denied", "concession"}

// peakFlags are the flags only --find-peak uses.
var peakFlags = []string{"peak-p99", "peak-step", "peak-start", "peak-factor", "peak-max-steps", "peak-rider-taps"}

// minPeakStep is the shortest --peak-step: a step's applied rate counts
// the taps still in flight at its end against it, which over a shorter
// step weighs too much, and a step must see a settlement period's seal and
// anchoring (it is also at least twice --period).
const minPeakStep = 5 * time.Second

// minPeakStepTaps is the fewest taps --find-peak's first step may offer
// (--peak-start x --peak-step): the step's p99 is measured over them.
const minPeakStepTaps = 100

// checkPeakFlags checks --find-peak's flags (before anything is created)
// and refuses flags it does not use, given on the command line. period is the
// settlement period (--period).
func checkPeakFlags(cmd *cobra.Command, p *simulator.PeakConfig, period time.Duration, htmlFile string) error {
	if p.P99 <= 0 {
		return usageErrorf("--peak-p99 %s: want a positive latency objective", p.P99)
	}
	if p.Step <= 0 {
		return usageErrorf("--peak-step %s: want a positive step duration", p.Step)
	}
	if p.Step < max(minPeakStep, 2*period) {
		return usageErrorf("--peak-step %s: want at least %s and twice --period %s (%s), so a step spans settlements and its taps still in flight at its end weigh little",
			p.Step, minPeakStep, period, 2*period)
	}
	if p.StartRate <= 0 || p.StartRate > maxOfferedRate {
		return usageErrorf("--peak-start %v: want a positive rate of taps per second, at most %v", p.StartRate, maxOfferedRate)
	}
	if n := p.StartRate * p.Step.Seconds(); n < minPeakStepTaps {
		// A first step of no tap "broke the objective" and the ramp
		// advised a lower --peak-start (an outside test).
		return usageErrorf("--peak-start %v x --peak-step %s offers %.4g taps in the first step: want at least %d (a p99 of fewer taps is their slowest)",
			p.StartRate, p.Step, n, minPeakStepTaps)
	}
	if p.Factor <= 1 || p.Factor > 100 {
		return usageErrorf("--peak-factor %v: want more than 1, at most 100", p.Factor)
	}
	if p.MaxSteps < 1 {
		return usageErrorf("--peak-max-steps %d: want 1 or more", p.MaxSteps)
	}
	if p.RiderTaps == 0 || p.RiderTaps < -1 || p.RiderTaps > 1000 {
		return usageErrorf("--peak-rider-taps %d: want 1 to 1000 taps a rider, or -1 for no new riders", p.RiderTaps)
	}
	if htmlFile != "" {
		return usageErrorf("--html: not with --find-peak (its report is the step table and report.json)")
	}
	if f := cmd.Flags().Lookup("http"); givenOnCommandLine(cmd, "http") && f.Value.String() != "" {
		// The ramp serves no API: a scrape of it would find nothing (an
		// outside test found the address silently unused).
		return usageErrorf("--http %s: not with --find-peak (the ramp serves no settlement API, metrics or dashboard; its report is the step table and report.json)", f.Value)
	}
	if f := cmd.Flags().Lookup("chain-rpc-listen"); givenOnCommandLine(cmd, "chain-rpc-listen") && f.Value.String() != "" {
		return usageErrorf("--chain-rpc-listen %s: not with --find-peak (its embedded chain serves no JSON-RPC)", f.Value)
	}
	// Given on the command line, not through their variables: those are
	// shared settings (a plain run ignores FAREGATE_PEAK_STEP likewise),
	// and an error naming a flag never typed misleads (an outside test).
	for _, name := range notWithPeak {
		if givenOnCommandLine(cmd, name) {
			return usageErrorf("--%s: does not apply to --find-peak", name)
		}
	}
	return nil
}

// runFindPeak runs simulator.FindPeak on cfg's city and prints its steps,
// peak, ceiling and the run's guarantees.
func runFindPeak(cmd *cobra.Command, cfg simulator.Config, p simulator.PeakConfig, reportFile string, keep bool, ri runInfo) error {
	out := cmd.OutOrStdout()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	broke := false // a guarantee broke: the temporary data directory is kept
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "faregate-peak-")
		if err != nil {
			return err
		}
		cfg.DataDir = dir
		if !keep {
			defer func() {
				if broke {
					fmt.Fprintf(out, "\nthe run's data is kept for inspection in %s: a guarantee broke\n", dir)
					return
				}
				os.RemoveAll(dir)
			}()
		}
	}
	p.City, p.Period, p.DataDir, p.NATSTLS, p.Logger = cfg.City, cfg.Period, cfg.DataDir, cfg.NATSTLS, slog.Default()
	p.NATSListen = cfg.NATSListen
	p.VerifierPartitions, p.DeclineRate = cfg.VerifierPartitions, cfg.DeclineRate
	p.Progress = func(s string) { fmt.Fprintln(out, s) }
	turnover := fmt.Sprintf("each making %d taps, then replaced by a new rider", p.RiderTaps)
	if p.RiderTaps < 0 {
		turnover = "the same riders all run long"
	}
	fmt.Fprintf(out, "finding the peak: %d operators x %d stops x %d gates of simulated terminals, %d passengers (%s), from %.0f taps/s x %v per step of %s until p99 > %s; data in %s\n",
		cfg.City.Operators, cfg.City.StopsPerOp, cfg.City.GatesPerStop, cfg.City.Passengers, turnover, p.StartRate, p.Factor, p.Step, p.P99, cfg.DataDir)
	rep, err := simulator.FindPeak(ctx, p)
	if rep == nil {
		return err
	}
	if err != nil {
		// Stopped early (interrupted, a phase that failed): the steps
		// completed and the peak so far are still worth keeping.
		printPeak(out, rep)
		if werr := writeJSONReport(out, reportFile, rep, ri); werr != nil {
			return errors.Join(err, werr)
		}
		return fmt.Errorf("find-peak stopped early (partial report, guarantees not checked): %w", err)
	}
	printReport(out, rep.Report)
	printPeak(out, rep)
	if err := writeJSONReport(out, reportFile, rep, ri); err != nil {
		return err
	}
	if err := rep.OK(); err != nil {
		broke = true
		return fmt.Errorf("simulation broke a guarantee: %w", err)
	}
	return nil
}

// printPeak prints the ramp as a table, then the peak and the ceiling.
func printPeak(w io.Writer, r *simulator.PeakReport) {
	fmt.Fprintf(w, "\n== peak: tap to confirmation, objective p99 <= %.0f ms, steps of %.0f s ==\n", r.ObjectiveP99Ms, r.StepSeconds)
	t := newTable(0, 1, 2, 3, 4, 5, 6, 7)
	t.add("STEP", "OFFERED/S", "GENERATED/S", "APPLIED/S", "P50 MS", "P90 MS", "P99 MS", "UNCONFIRMED", "OBJECTIVE")
	for i, s := range r.Steps {
		kept := "kept"
		if !s.WithinObjective {
			kept = "BROKEN: " + s.Failed
		}
		l := s.ConfirmLatencyMs
		t.add(strconv.Itoa(i+1), fmt.Sprintf("%.0f", s.OfferedRate), fmt.Sprintf("%.0f", s.GeneratedRate), fmt.Sprintf("%.0f", s.AppliedRate),
			fmt.Sprintf("%.1f", l["p50"]), fmt.Sprintf("%.1f", l["p90"]), fmt.Sprintf("%.1f", l["p99"]), strconv.FormatUint(s.Unconfirmed, 10), kept)
	}
	t.write(w)
	t = newTable()
	soFar := ""
	if !r.PeakFinal {
		soFar = " so far (the ramp did not finish: not final)"
	}
	switch {
	case r.PeakStep >= 0:
		s := r.Steps[r.PeakStep]
		t.add("peak", fmt.Sprintf("%.0f taps/s offered (step %d), %.0f applied/s, p99 %.1f ms%s", r.PeakRate, r.PeakStep+1, s.AppliedRate, s.ConfirmLatencyMs["p99"], soFar))
	case !r.PeakFinal:
		t.add("peak", "none"+soFar)
	default:
		t.add("peak", "none: the first step already broke the objective (lower --peak-start)")
	}
	t.add("stopped", r.StopReason)
	if r.RiderTaps > 0 {
		t.add("riders", fmt.Sprintf("%d (%d taps each, then a new rider)", r.Riders, r.RiderTaps))
	} else {
		t.add("riders", fmt.Sprintf("%d (no turnover)", r.Riders))
	}
	if r.CeilingMethod != "" {
		t.add("ramp and burst", fmt.Sprintf("%d taps in the steps (the totals' taps/s, over the steps' %.1f s of offering without the waits between them, and latencies are theirs), %d more in the ceiling's burst (in the totals' taps generated and applied)",
			r.TapsGenerated-uint64(r.CeilingEvents), r.DurationSeconds, r.CeilingEvents))
		t.add("ceiling", fmt.Sprintf("%.0f applied/s (%s)", r.CeilingRate, r.CeilingMethod))
		if r.CeilingValid {
			t.add("peak / ceiling", fmt.Sprintf("%.2f", r.PeakToCeiling))
		} else {
			t.add("peak / ceiling", fmt.Sprintf("%.2f, not valid (the ceiling's burst stalled)", r.PeakToCeiling))
		}
	} else {
		t.add("ceiling", "not measured")
	}
	t.write(w)
}

// weeklyCapFlag is --weekly-cap: calendar or rolling.
type weeklyCapFlag struct{ rolling *bool }

func (f weeklyCapFlag) String() string {
	if f.rolling != nil && *f.rolling {
		return "rolling"
	}
	return "calendar"
}

func (f weeklyCapFlag) Set(v string) error {
	switch v {
	case "calendar":
		*f.rolling = false
	case "rolling":
		*f.rolling = true
	default:
		return fmt.Errorf("%q: want calendar or rolling", v)
	}
	return nil
}

func (weeklyCapFlag) Type() string { return "calendar|rolling" }

// portsFree reports an error, naming the flag, when the listen addresses
// cannot all be listened on now (in use, or one port given to two flags in
// different spellings): tried together and let go.
func portsFree(listens []struct{ flag, addr string }) error {
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for _, l := range listens {
		if l.addr == "" || strings.HasSuffix(l.addr, ":0") {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("--%s %s: %w (in use by another process, or by another of --http, --nats-listen, --chain-rpc-listen)", l.flag, l.addr, err)
		}
		held = append(held, ln)
	}
	return nil
}

// fewSamples notes, after a latency row, when the distribution holds under
// 100 samples: by nearest rank its p99 is then the slowest ("" else).
func fewSamples(c *simulator.LatencyCDF) string {
	if c == nil || c.Samples >= 100 {
		return ""
	}
	return fmt.Sprintf("; %d samples only: p99 is the slowest", c.Samples)
}
