package simulator

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// A short city run end to end: real terminals, embedded NATS, clearing,
// embedded chain; every guarantee of the report must hold.
func TestRunKeepsGuarantees(t *testing.T) {
	dataDir := t.TempDir()
	var apiToken string
	apiStatus := 0
	rep, err := Run(context.Background(), Config{
		// The settlement API with the run's auditor token: it works while
		// the run does, and is revoked when it ends.
		HTTPAddr: "127.0.0.1:0",
		OnAPI: func(url, token string) {
			apiToken = token
			req, _ := http.NewRequest("GET", url+"/v1/stats", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				apiStatus = resp.StatusCode
				resp.Body.Close()
			}
		},
		City:     CityConfig{Operators: 3, StopsPerOp: 2, GatesPerStop: 2, Passengers: 300, DeniedShare: 0.05, FaceShare: 0.2, Seed: 7},
		Duration: 4 * time.Second,
		// Two travel days in 4 s, a fifth of the payments declined: riders
		// in debt meet closed gates on the second day.
		Days:        2,
		DeclineRate: 0.2,
		PeakRate:    150,
		Period:      time.Second,
		DataDir:     dataDir,
		InjectBad:   2,
		NATSTLS:     true,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		FaceData:    filepath.Join("..", "..", "shared", "testdata", "faces", "idols.json"),
		FaceImages:  filepath.Join("..", "..", "shared", "testdata", "faces", "images"),
		FaceModels:  filepath.Join("..", "..", "shared", "models"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.OK(); err != nil {
		t.Fatal(err)
	}
	tokens, err := clearing.LoadTokenStore(filepath.Join(dataDir, "clearing", clearing.APITokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Authenticate(apiToken); apiStatus != http.StatusOK || err == nil {
		t.Errorf("the run's API token: %d during the run, %v after it (want 200, then refused)", apiStatus, err)
	}
	if rep.TapsGenerated == 0 || rep.BatchesAnchored < 2 {
		t.Fatalf("too little happened: %d taps, %d batches (applied per second: %+v)", rep.TapsGenerated, rep.BatchesAnchored, rep.Timeline)
	}
	// Whether the generator kept up is measured: a tap is taken a little
	// after it is due (a timer wakes late), never before.
	if rep.GeneratorLagMs <= 0 {
		t.Errorf("generator lag %v ms, want it measured", rep.GeneratorLagMs)
	}
	// 2 of each of 5 kinds; the publishes on another terminal's subject are
	// refused by NATS, the rest quarantined; the misconfigured gate's events
	// are quarantined and rejected for good, and it drained into its
	// dead-letter store.
	if rep.BadInjected != 10 || rep.RefusedByNATS != 2 || rep.Quarantined != 8+rep.Rejected {
		t.Fatalf("injected %d, refused by NATS %d, quarantined %d (%v), rejected %d; want 10, 2, 8 + rejected", rep.BadInjected, rep.RefusedByNATS, rep.Quarantined, rep.QuarantinedByReason, rep.Rejected)
	}
	if rep.Rejected == 0 || rep.DeadLettered != rep.Rejected || rep.OutboxPending != 0 {
		t.Fatalf("rejected %d, dead-lettered %d, outbox pending %d; want the misconfigured gate's events rejected and drained", rep.Rejected, rep.DeadLettered, rep.OutboxPending)
	}
	// The denied cards went through clearing's deny list (no static seed):
	// every gate held it before the first tap, and refused them.
	// Riders whose payment was declined joined it, those still in debt are
	// on it at the end.
	if city := NewCity(CityConfig{Operators: 3, StopsPerOp: 2, GatesPerStop: 2, Passengers: 300, DeniedShare: 0.05, FaceShare: 0.2, Seed: 7}); rep.DenyListEntries != len(city.Denied)+rep.RidersInDebt || len(city.Denied) == 0 ||
		rep.DenyListVersion < uint64(rep.DenyListEntries) || rep.TapsDenied == 0 {
		t.Fatalf("deny list of %d entries at version %d, %d taps denied; want the city's %d denied cards and %d riders in debt, refused at the gates",
			rep.DenyListEntries, rep.DenyListVersion, rep.TapsDenied, len(city.Denied), rep.RidersInDebt)
	}
	// Riders commuted by bus to the metro: journeys paying both operators.
	if rep.JourneysMultiOperator == 0 || rep.JourneysPriced == 0 || rep.FareRecomputeMismatch != 0 {
		t.Fatalf("%d journeys priced, %d split between operators, %d repricing mismatches", rep.JourneysPriced, rep.JourneysMultiOperator, rep.FareRecomputeMismatch)
	}
	// Both travel days were billed; a fifth of the payments declined.
	if rep.PaymentsAsked == 0 || rep.PaymentsDeclined == 0 || rep.DenyListDebtEntries == 0 || rep.DenyListDebtEntries > rep.PaymentsDeclined || rep.UnbilledDays != 0 {
		t.Fatalf("payments: %d asked, %d declined, %d riders listed for debt, %d days unbilled", rep.PaymentsAsked, rep.PaymentsDeclined, rep.DenyListDebtEntries, rep.UnbilledDays)
	}
	// Face riders of idols.json were enrolled for their commute's stops (a
	// gallery holds at most what the operating point allows) and matched
	// at the gates by their held-out descriptors. At the default operating
	// point only about one in ten of idols.json's genuine presentations is
	// accepted (BENCHMARKS.md): a short run may accept none.
	if rep.FaceRidersEnrolled == 0 || rep.FaceRidersEnrolled > 10 || rep.FaceTaps == 0 || rep.FaceImageTaps == 0 ||
		rep.FaceAccepted+rep.FaceRefused != rep.FaceTaps || rep.FacePolicy == "" || rep.FaceDecisionMs["p50"] <= 0 {
		t.Fatalf("face riders: %d enrolled, %d taps, %d accepted, %d refused (%v), policy %q, decision %v",
			rep.FaceRidersEnrolled, rep.FaceTaps, rep.FaceAccepted, rep.FaceRefused, rep.FaceRefusedByReason, rep.FacePolicy, rep.FaceDecisionMs)
	}
	t.Logf("face: %d enrolled, %d taps (%d by strangers, %d pictures), %d accepted, %d refused %v, %d false accepts, decision %v ms",
		rep.FaceRidersEnrolled, rep.FaceTaps, rep.FaceStrangerTaps, rep.FaceImageTaps, rep.FaceAccepted, rep.FaceRefused, rep.FaceRefusedByReason, rep.FaceFalseAccepts, rep.FaceDecisionMs)
	var revenue int64
	for _, v := range rep.OperatorRevenue {
		revenue += v.Minor
	}
	if revenue <= 0 {
		t.Fatal("no revenue")
	}
	// The HTML report of this run: its plots hold the run's numbers.
	checkRunHTML(t, rep)
}

// A short city run with two verifier partitions: the same guarantees
// hold, every partition's verifier carried events (this city's 12
// terminals hash 6 and 6 into two partitions; into three, 0, 7 and 5:
// NATS's partition hash, FNV-1a of the tokens, evens out only over many
// terminals), and the injected junk
// was quarantined by the verifiers (the forgery, the foreign event and the
// truncated payload never reached clearing).
func TestRunWithVerifierPartitions(t *testing.T) {
	dir := t.TempDir()
	rep, err := Run(context.Background(), Config{
		City:               CityConfig{Operators: 3, StopsPerOp: 2, GatesPerStop: 2, Passengers: 300, DeniedShare: 0.05, Seed: 11},
		Duration:           3 * time.Second,
		Days:               2,
		DeclineRate:        0.2,
		PeakRate:           150,
		Period:             time.Second,
		DataDir:            dir,
		InjectBad:          2,
		NATSTLS:            true,
		VerifierPartitions: 2,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.OK(); err != nil {
		t.Fatal(err)
	}
	if rep.BadInjected != 10 || rep.RefusedByNATS != 2 || rep.Quarantined != 8+rep.Rejected {
		t.Fatalf("injected %d, refused by NATS %d, quarantined %d (%v), rejected %d; want 10, 2, 8 + rejected", rep.BadInjected, rep.RefusedByNATS, rep.Quarantined, rep.QuarantinedByReason, rep.Rejected)
	}
	var forwarded uint64
	for p, n := range rep.VerifiedByPartition {
		if n == 0 {
			t.Fatalf("partition %d forwarded nothing: %v (applied %d, taps %d, quarantined %v)", p, rep.VerifiedByPartition, rep.Applied, rep.TapsGenerated, rep.QuarantinedByReason)
		}
		forwarded += n
	}
	if rep.VerifierPartitions != 2 || len(rep.VerifiedByPartition) != 2 || forwarded < rep.Applied || rep.OutboxPending != 0 {
		t.Fatalf("%d partitions forwarded %v (%d) for %d applied, %d pending", rep.VerifierPartitions, rep.VerifiedByPartition, forwarded, rep.Applied, rep.OutboxPending)
	}
	t.Logf("%d taps, %d applied, forwarded by partition %v, quarantined %v", rep.TapsGenerated, rep.Applied, rep.VerifiedByPartition, rep.QuarantinedByReason)
	// run.json keeps the partitions and the verifiers' seeds, so that
	// `clearing --data DIR` reopens the run laid out as it was.
	man, ok, err := LoadManifest(dir)
	if err != nil || !ok {
		t.Fatalf("run.json: ok %v, %v", ok, err)
	}
	if man.VerifierPartitions != 2 || len(man.VerifierSeeds) != 2 {
		t.Fatalf("run.json: %d verifier partitions, seeds %v", man.VerifierPartitions, man.VerifierSeeds)
	}
	for _, seed := range man.VerifierSeeds {
		if _, err := os.Stat(man.Path(dir, seed)); err != nil {
			t.Fatalf("run.json names verifier seed %s: %v", seed, err)
		}
	}
}

// TestRunWithRollingWeekCaps: a city whose weekly caps are rolling weeks
// (seven days from the first journey charged), ten travel days long so
// that windows open, close and open again: its guarantees hold, among
// them that the independent repricing from the stored events, which runs
// the rolling windows from day to day on its own, charges every rider day
// what the live path did.
func TestRunWithRollingWeekCaps(t *testing.T) {
	dir := t.TempDir()
	rep, err := Run(context.Background(), Config{
		City:        CityConfig{Operators: 3, StopsPerOp: 2, GatesPerStop: 2, Passengers: 20, RollingWeek: true, Seed: 12},
		Duration:    6 * time.Second,
		Days:        10,
		DeclineRate: 0.1,
		PeakRate:    300,
		Period:      time.Second,
		DataDir:     dir,
		NATSTLS:     true,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.OK(); err != nil {
		t.Fatal(err)
	}
	caps, err := os.ReadFile(filepath.Join(dir, "feed", "fare_caps.txt"))
	if err != nil || !strings.Contains(string(caps), "rolling-adult,adult,,2,") {
		t.Fatalf("the run's feed has no rolling-week cap: %s, %v", caps, err)
	}
	if rep.RidersCapped == 0 || rep.FareRecompute == nil || rep.FareRecompute.RiderDays < 100 {
		t.Fatalf("%d riders capped, repricing %+v: the run did not exercise the caps", rep.RidersCapped, rep.FareRecompute)
	}
	t.Logf("%d taps, %d applied, %d rider days repriced, %d riders capped", rep.TapsGenerated, rep.Applied, rep.FareRecompute.RiderDays, rep.RidersCapped)
}

// TestRunInterrupted: a run interrupted while its gates tap (Ctrl-C)
// ends as the traffic stops, saying so, rather than going on to inject
// bad messages and wait for their quarantine, for billing and for the
// last settlement with a context that is done.
func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep, err := Run(ctx, Config{
		City:     CityConfig{Operators: 1, StopsPerOp: 2, GatesPerStop: 1, Passengers: 50, Seed: 13},
		Duration: time.Minute,
		PeakRate: 20,
		Period:   time.Second,
		DataDir:  t.TempDir(),
		// Bad messages would go in after the drain: not after an interrupt.
		InjectBad: 2,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Progress: func(line string) { // the first line after a tap
			if !strings.Contains(line, " taps=0 ") {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "simulation interrupted during its traffic, ") || !strings.Contains(err.Error(), " s into 1m0s") {
		t.Fatalf("interrupted run: %v, want it to say it was interrupted during its traffic, and when", err)
	}
	// What it measured comes back, marked as stopped, with no check made;
	// every tap made is applied, quarantined (the city has a gate moved
	// without its registration: refused) or still kept in its outbox (one
	// taken as the run stopped may not have been sent yet).
	if rep == nil || rep.Stopped != err.Error() || rep.TapsGenerated == 0 || rep.Applied+rep.Quarantined+rep.OutboxPending < rep.TapsGenerated || rep.DurationSeconds <= 0 {
		t.Fatalf("interrupted run's report: %+v, want the taps made so far and why it stopped", rep)
	}
	if rep.BatchesSealed != 0 || rep.Audit != nil || rep.FareRecompute != nil {
		t.Errorf("interrupted run's report holds checks it did not make: %+v", rep)
	}
	// What it measured is there whole: the latencies' CDFs beside their
	// percentiles, the timeline (an outside test found them null).
	if rep.ConfirmLatencyMs != nil && rep.ConfirmLatencyCDF == nil || rep.TapLatencyMs != nil && rep.TapLatencyCDF == nil || len(rep.Timeline) == 0 {
		t.Errorf("interrupted run's report: CDFs %v %v beside percentiles %v %v, %d timeline samples", rep.ConfirmLatencyCDF, rep.TapLatencyCDF, rep.ConfirmLatencyMs, rep.TapLatencyMs, len(rep.Timeline))
	}
	page, err := HTMLReport(rep)
	if err != nil || !strings.Contains(string(page), "Stopped early, nothing checked: simulation interrupted") || strings.Contains(string(page), "guarantees broke") {
		t.Errorf("interrupted run's HTML page: %v, want it stopped early with nothing checked", err)
	}
}

// TestRunRefusesBadInjectBad: an InjectBad out of range is refused before
// anything is built (a count near 2^61 panicked after the city's traffic).
func TestRunRefusesBadInjectBad(t *testing.T) {
	for _, n := range []int{-1, MaxInjectBad + 1, 1 << 61} {
		dir := filepath.Join(t.TempDir(), "run")
		_, err := Run(context.Background(), Config{
			City:     CityConfig{Operators: 1, StopsPerOp: 1, GatesPerStop: 2, Passengers: 10, Seed: 1},
			Duration: time.Second, Period: time.Second, DataDir: dir, InjectBad: n,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err == nil || !strings.Contains(err.Error(), "InjectBad") {
			t.Errorf("InjectBad %d: %v, want an error naming InjectBad", n, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("InjectBad %d: %s was created", n, dir)
		}
	}
}

// TestRunCoversItsTravelDays: a run of Days travel days taps in those
// fare days only, from 05:00 of the first to the cut-over after the last
// (an outside test saw the city run an hour into the next fare day, the
// day close measure that hour's few rider days and the city end a day
// late), and the day close bills the last travel day's rider days.
func TestRunCoversItsTravelDays(t *testing.T) {
	dataDir := t.TempDir()
	cc := CityConfig{Operators: 2, StopsPerOp: 2, GatesPerStop: 1, Passengers: 200, Seed: 5}
	const days = 2
	rep, err := Run(context.Background(), Config{
		City: cc, Duration: 3 * time.Second, Days: days, PeakRate: 200, Period: time.Second,
		DataDir: dataDir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.OK(); err != nil {
		t.Fatal(err)
	}
	_, feed, _, err := writeCity(NewCity(cc), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cityStart, err1 := time.Parse(time.RFC3339, rep.CityStart)
	cityEnd, err2 := time.Parse(time.RFC3339, rep.CityEnd)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	first := feed.FareDay(cityStart)
	last := first + days - 1
	// The city ends once the last travel day closed and was billed: in the
	// fare day after it, past its billing delay.
	if closeAt := feed.FareDayBegins(last + 1).Add(31 * time.Minute); feed.FareDay(cityEnd) != last+1 || cityEnd.Before(closeAt) {
		t.Errorf("city %s to %s: want it to end in the fare day after the last travel day, at %s or later", cityStart, cityEnd, closeAt)
	}
	store, err := clearing.OpenStoreReadOnly(filepath.Join(dataDir, "clearing", "store"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ids, err := store.AppliedEventIDs()
	if err != nil {
		t.Fatal(err)
	}
	byDay := map[fares.Date]int{}
	lastDayRiders := map[string]bool{}
	for _, id := range ids {
		rec, err := store.Event(id)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := fare.Decode(rec.Raw)
		if err != nil {
			t.Fatal(err)
		}
		d := feed.FareDay(ev.DeviceTime)
		byDay[d]++
		if d == last && ev.Decision == fare.Accepted {
			lastDayRiders[ev.MediaToken] = true
		}
	}
	for d, n := range byDay {
		if d < first || d > last {
			t.Errorf("%d taps in fare day %v, outside the run's travel days %v to %v (taps by day: %v)", n, d, first, last, byDay)
		}
	}
	// Every rider who tapped on the last travel day has a day open when it
	// ends (an outside test read 7).
	if len(lastDayRiders) == 0 || rep.DayCloseRiderDays < len(lastDayRiders) {
		t.Errorf("day close billed %d rider days; %d riders tapped on the last travel day (taps by day: %v)", rep.DayCloseRiderDays, len(lastDayRiders), byDay)
	}
	t.Logf("taps by fare day %v, %d riders on the last, %d rider days open at its close, billed in %.2f s", byDay, len(lastDayRiders), rep.DayCloseRiderDays, rep.DayCloseBillingSeconds)
}
