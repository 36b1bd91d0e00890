package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/simulator"
)

func newSimulateCmd() *cobra.Command {
	var (
		cfg        simulator.Config
		reportFile string
		keep       bool
		policyFile string
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Run a simulated city: real terminals, NATS, clearing and chain in one process",
		Example: `  faregate simulate --duration 60s --rate 300 --period 10s --report report.json
  faregate simulate --duration 20s --rate 100 --face 0 --data data/run1 --keep`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			// Checked before anything is deployed or started.
			if cfg.Duration <= 0 {
				return usageErrorf("--duration %s: want a positive duration", cfg.Duration)
			}
			if cfg.PeakRate <= 0 {
				return usageErrorf("--rate %v: want a positive rate of taps per second", cfg.PeakRate)
			}
			if cfg.Period <= 0 {
				return usageErrorf("--period %s: want a positive settlement period", cfg.Period)
			}
			if cfg.City.Operators < 1 || cfg.City.StopsPerOp < 1 || cfg.City.GatesPerStop < 1 || cfg.City.Passengers < 1 {
				return usageErrorf("--operators %d, --stops %d, --gates %d, --passengers %d: want 1 or more of each",
					cfg.City.Operators, cfg.City.StopsPerOp, cfg.City.GatesPerStop, cfg.City.Passengers)
			}
			if cfg.InjectBad < 0 {
				return usageErrorf("--inject-bad %d: want 0 (none) or more", cfg.InjectBad)
			}
			for _, s := range []struct {
				flag string
				v    float64
			}{{"denied", cfg.City.DeniedShare}, {"concession", cfg.City.ConcessionShare}} {
				if s.v < 0 || s.v > 1 {
					return usageErrorf("--%s %v: want a share from 0 to 1", s.flag, s.v)
				}
			}
			if cfg.Days < 1 {
				return usageErrorf("--days %d: want 1 or more travel days", cfg.Days)
			}
			if cfg.DeclineRate < 0 || cfg.DeclineRate > 1 {
				return usageErrorf("--decline-rate %v: want 0 to 1", cfg.DeclineRate)
			}
			if cfg.City.FaceShare < 0 || cfg.City.FaceShare > 1 {
				return usageErrorf("--face %v: want a share from 0 to 1", cfg.City.FaceShare)
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
				if policyFile != "" {
					p, _, err := gallery.LoadPolicyFile(policyFile)
					if err != nil {
						return fmt.Errorf("--face-policy: %w", err)
					}
					cfg.FacePolicy = p
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if cfg.DataDir == "" {
				dir, err := os.MkdirTemp("", "faregate-sim-")
				if err != nil {
					return err
				}
				cfg.DataDir = dir
				if !keep {
					defer os.RemoveAll(dir)
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
			if err != nil {
				return err
			}
			printReport(out, rep)
			if reportFile != "" {
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(reportFile, append(b, '\n'), 0o644); err != nil {
					return fmt.Errorf("write report: %w", err)
				}
				fmt.Fprintf(out, "report written to %s\n", reportFile)
			}
			if err := rep.OK(); err != nil {
				return fmt.Errorf("simulation broke a guarantee: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long terminals take taps")
	f.Float64Var(&cfg.PeakRate, "rate", 300, "city-wide taps per second at the rush-hour peak")
	f.DurationVar(&cfg.Period, "period", 10*time.Second, "settlement period")
	f.IntVar(&cfg.Days, "days", 2, "travel days of the city the run covers (the city's clock runs days×24h in --duration)")
	f.Float64Var(&cfg.DeclineRate, "decline-rate", 0.05, "share of payments the simulated acquirer declines (0 to 1)")
	f.StringVar(&cfg.DataDir, "data", "", "keep every store (clearing, terminals, chain) in this directory (default: a temporary one)")
	f.BoolVar(&keep, "keep", false, "keep the temporary data directory")
	f.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "settlement API address while the run lasts (empty: none)")
	f.StringVar(&reportFile, "report", "", "write the machine-readable JSON report here")
	f.BoolVar(&cfg.NATSTLS, "nats-tls", true, "run the city's NATS over TLS (a certificate made for the run)")
	f.IntVar(&cfg.InjectBad, "inject-bad", 5, "bad messages of each kind (forged, foreign event, truncated, replayed, another terminal's subject) to inject, plus one misconfigured gate when > 0")
	f.IntVar(&cfg.City.Operators, "operators", 3, "operators")
	f.IntVar(&cfg.City.StopsPerOp, "stops", 4, "stops per operator")
	f.IntVar(&cfg.City.GatesPerStop, "gates", 2, "gates (terminals) per stop")
	f.IntVar(&cfg.City.Passengers, "passengers", 5000, "passengers")
	f.Float64Var(&cfg.City.DeniedShare, "denied", 0.01, "share of cards on the deny list")
	f.Float64Var(&cfg.City.FaceShare, "face", 0.1, "share of passengers riding by face")
	f.Float64Var(&cfg.City.ConcessionShare, "concession", 0.15, "share of concession riders")
	f.Uint64Var(&cfg.City.Seed, "seed", 1, "random seed of the city and its taps")
	f.StringVar(&cfg.FaceData, "face-data", "", "real dlib descriptors of the face riders, idols.json format (default $"+faceDataEnv+", else ../shared/testdata/faces/idols.json)")
	f.StringVar(&cfg.FaceImages, "face-images", "", "labelled pictures (jimin2.jpg is jimin) that the gates of one stop run through the whole dlib pipeline (default: images/ beside --face-data)")
	f.StringVar(&cfg.FaceModels, "models", "", "dlib model directory for the picture gates (default $"+biometrics.ModelsEnv+", ./models, ../shared/models)")
	f.StringVar(&policyFile, "face-policy", "", "the gates' face operating point, a policy file from `faregate face calibrate` (default: the built-in conservative point)")
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

func printReport(w io.Writer, r *simulator.Report) {
	fmt.Fprintf(w, "\n== settlement ==\n")
	ops := make([]string, 0, len(r.OperatorRevenue))
	for op := range r.OperatorRevenue {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		fmt.Fprintf(w, "  %-10s revenue %12s %s\n", op, r.OperatorRevenue[op].Decimal, r.Currency)
	}
	fmt.Fprintf(w, "\n== batches anchored on the ledger (contract %s) ==\n", r.Contract)
	for _, b := range r.Batches {
		fmt.Fprintf(w, "  batch %3d  %s .. %s  %6d events  root %s\n", b.ID, b.PeriodStart.Format(time.TimeOnly), b.PeriodEnd.Format(time.TimeOnly), b.EventCount, b.Root)
	}
	fmt.Fprintf(w, "\n== totals ==\n")
	fmt.Fprintf(w, "  taps generated      %d (%d denied at the gate), %.0f taps/s\n", r.TapsGenerated, r.TapsDenied, r.TapRatePerSecond)
	fmt.Fprintf(w, "  deny list           %d media at version %d, held by every gate; gate-list values refused: %s\n", r.DenyListEntries, r.DenyListVersion, counts(r.RefusedDenyMessages))
	fmt.Fprintf(w, "  enrolments          %d concession riders enrolled (concession fares from the second fare day), held by every gate\n", r.RidersEnrolled)
	fmt.Fprintf(w, "  events published    %d (resends included)\n", r.EventsPublished)
	fmt.Fprintf(w, "  applied             %d, duplicates dropped %d, duplicates applied %d\n", r.Applied, r.DuplicatesDropped, r.DuplicatesApplied)
	fmt.Fprintf(w, "  bad injected        %d: %d refused by NATS, %d quarantined in all (%s)\n", r.BadInjected, r.RefusedByNATS, r.Quarantined, counts(r.QuarantinedByReason))
	fmt.Fprintf(w, "  rejected for good   %d (dead-lettered by their terminals %d), confirmations refused %d\n", r.Rejected, r.DeadLettered, r.RefusedConfirms)
	fmt.Fprintf(w, "  city                %s to %s (city clock)\n", r.CityStart, r.CityEnd)
	fmt.Fprintf(w, "  fares (GTFS feed)   %d journeys set out, %d priced (%d incomplete, %d split between operators), %d riders capped, %d taps unpriced\n",
		r.Journeys, r.JourneysPriced, r.JourneysIncomplete, r.JourneysMultiOperator, r.RidersCapped, r.TapsUnpriced)
	fmt.Fprintf(w, "  payments            %d asked, %d approved (%s %s), %d declined; %d riders in debt (%s %s); %d put on the deny list for debt, %d of their taps refused at the gate; %d rider days unbilled\n",
		r.PaymentsAsked, r.PaymentsApproved, r.Payments.Decimal, r.Currency, r.PaymentsDeclined,
		r.RidersInDebt, r.Debt.Decimal, r.Currency, r.DenyListDebtEntries, r.DeniedAtGateForDebt, r.UnbilledDays)
	fmt.Fprintf(w, "  riders charged      %s %s; independent repricing mismatches %d\n", r.RiderCharges.Decimal, r.Currency, r.FareRecomputeMismatch)
	fmt.Fprintf(w, "  journal             %d transfers, imbalance %s %s, mismatches %d\n", r.JournalTransfers, r.JournalImbalance.Decimal, r.Currency, len(r.JournalMismatches))
	fmt.Fprintf(w, "  batches             %d sealed, %d anchored, %d root mismatches\n", r.BatchesSealed, r.BatchesAnchored, r.BatchRootMismatches)
	if r.FaceTaps > 0 || r.FaceRidersEnrolled > 0 {
		fmt.Fprintf(w, "  face riders         %d enrolled (idols.json), policy %s; %d presentations (%d by unenrolled strangers, %d real pictures through dlib): %d accepted, %d refused (%s), %d false accepts; frames to decision %s (pictures through dlib %s)\n",
			r.FaceRidersEnrolled, r.FacePolicy, r.FaceTaps, r.FaceStrangerTaps, r.FaceImageTaps, r.FaceAccepted, r.FaceRefused, counts(r.FaceRefusedByReason), r.FaceFalseAccepts, latencies(r.FaceDecisionMs), latencies(r.FaceImageDecisionMs))
	}
	fmt.Fprintf(w, "  outbox pending      %d\n", r.OutboxPending)
	fmt.Fprintf(w, "  tap latency         %s\n", latencies(r.TapLatencyMs))
	fmt.Fprintf(w, "  confirm latency     %s (tap to clearing's durable confirmation)\n", latencies(r.ConfirmLatencyMs))
}
