package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
)

// PeakConfig configures a peak search (FindPeak): the city's terminals
// are simulated in memory (peakTerminal), the rest is real: embedded NATS
// with the terminals' NKey identities and permissions, clearing, chain.
type PeakConfig struct {
	City CityConfig
	// NATSListen is where the embedded NATS server listens, host:port (""
	// = a free loopback port), as Config.NATSListen.
	NATSListen string
	// Period is clearing's settlement period.
	Period time.Duration
	// StartRate is the first step's offered rate, taps/s across the city
	// (default 200); each next step offers Factor times more (default 1.25).
	StartRate float64
	Factor    float64
	// Step is how long each step offers its rate (default 60s).
	Step time.Duration
	// P99 is the objective: a step whose tap-to-confirmation p99 exceeds
	// it ends the ramp (default 1s).
	P99 time.Duration
	// MaxSteps bounds the ramp (default 40).
	MaxSteps int
	// ResendAfter is how long an unconfirmed event waits before its
	// terminal sends again from its watermark (default 3s, as a real
	// terminal); it doubles while clearing makes no progress.
	ResendAfter time.Duration
	// Workers is how many goroutines take the terminals' taps and resends
	// (default 4); the terminals are shared among them.
	Workers int
	DataDir string
	NATSTLS bool
	// VerifierPartitions runs clearing with that many verifier partitions,
	// one verifier each (as Config.VerifierPartitions).
	VerifierPartitions int
	// RiderTaps is how many taps each rider makes (entries and exits in
	// turn) before another rider, a card not seen before, takes their
	// place among City.Passengers (default DefaultPeakRiderTaps; -1: the
	// same riders all run long, as before the turnover). A real rider taps
	// a few times a day, so a step of minutes at thousands of taps/s is
	// many riders, not a few riders' days of hundreds of taps, each of
	// which every later tap reprices.
	RiderTaps int
	// DeclineRate is the share of the day-close charges the simulated
	// acquirer declines (0 to 1; as Config.DeclineRate): each decline
	// puts its rider on the deny list.
	DeclineRate float64
	Logger      *slog.Logger
	// Progress, if set, receives one line per step and phase.
	Progress func(string)
	// OnTraffic, if set, is called once the city is set up and its load
	// begins (as Config.OnTraffic).
	OnTraffic func()
}

// MinAppliedShare is the share of a step's offered rate that clearing must
// apply within the step's own time for the step to pass: a clearing that
// fell behind and caught up in the grace after the step did not sustain
// the rate, whatever its latencies.
const MinAppliedShare = 0.95

// PeakStep is one step of the ramp.
type PeakStep struct {
	// OfferedRate is the rate the step asked for; GeneratedRate what the
	// simulated terminals took (taps/Seconds); AppliedRate what clearing
	// achieved: the events it applied within the step's Seconds, per
	// second (taps still in flight at the step's end count against it).
	OfferedRate   float64 `json:"offered_rate"`
	Seconds       float64 `json:"seconds"`
	Taps          uint64  `json:"taps"`
	GeneratedRate float64 `json:"generated_rate"`
	// GeneratorLagMs is the longest the simulated terminals published a
	// tap after it was due: the load generator's own delay, which the
	// confirmation latencies (timed from when each tap was due) include.
	GeneratorLagMs float64 `json:"generator_lag_ms"`
	AppliedRate    float64 `json:"applied_rate"`
	// ConfirmLatencyMs is tap to verified confirmation of the step's taps:
	// p50, p90, p99, max. A tap still unconfirmed when the step is judged
	// counts with its age then (Unconfirmed says how many).
	ConfirmLatencyMs map[string]float64 `json:"confirm_latency_ms"`
	Unconfirmed      uint64             `json:"unconfirmed"`
	// WithinObjective: every tap confirmed, p99 within the objective and
	// AppliedRate at least MinAppliedShare of OfferedRate. Failed says
	// why not ("" when within).
	WithinObjective bool   `json:"within_objective"`
	Failed          string `json:"failed,omitempty"`
}

// judge sets s.WithinObjective and s.Failed against the objective p99.
func (s *PeakStep) judge(p99 time.Duration) {
	switch {
	case s.Unconfirmed > 0:
		s.Failed = fmt.Sprintf("%d of %d taps unconfirmed when judged", s.Unconfirmed, s.Taps)
	case s.ConfirmLatencyMs == nil:
		s.Failed = "no taps"
	case s.ConfirmLatencyMs["p99"] > durationMs(p99):
		s.Failed = fmt.Sprintf("p99 %.0f ms above the objective %.0f ms", s.ConfirmLatencyMs["p99"], durationMs(p99))
	case s.AppliedRate < MinAppliedShare*s.OfferedRate:
		s.Failed = fmt.Sprintf("clearing applied %.0f of %.0f taps/s offered within the step (below %.0f%%; the terminals took %.0f/s)",
			s.AppliedRate, s.OfferedRate, 100*MinAppliedShare, s.GeneratedRate)
	}
	s.WithinObjective = s.Failed == ""
}

// generatorBound says why the load generator, not clearing, bounded the
// step ("" when it did not): it took under 0.9 of the offer while the
// step was otherwise within the objective (a higher offer would not be
// offered either), or it published taps over half the objective late and
// the step failed (the latencies that failed it are partly its own: they
// were blamed on clearing).
func (s *PeakStep) generatorBound(objectiveMs float64) string {
	switch {
	case s.GeneratedRate < 0.9*s.OfferedRate && s.Unconfirmed == 0 && s.ConfirmLatencyMs["p99"] <= objectiveMs:
		return fmt.Sprintf("the simulated terminals took %.0f of %.0f taps/s offered (the load generator is the bottleneck)", s.GeneratedRate, s.OfferedRate)
	case !s.WithinObjective && s.GeneratorLagMs > objectiveMs/2:
		return fmt.Sprintf("%s, but the simulated terminals published taps up to %.0f ms after they were due (the load generator is the bottleneck)", s.Failed, s.GeneratorLagMs)
	}
	return ""
}

// PeakReport is a peak search's outcome: the run's guarantees as a
// normal simulation reports them (Report, whose JSON fields it shares),
// and the ramp. Its Report's DurationSeconds is the completed steps'
// offering time (their Seconds summed, without the waits for their
// confirmations and the ceiling's burst), TapRatePerSecond their taps
// over it.
type PeakReport struct {
	*Report
	ObjectiveP99Ms float64    `json:"peak_objective_p99_ms"`
	StepSeconds    float64    `json:"peak_step_seconds"`
	Steps          []PeakStep `json:"peak_steps"`
	// PeakRate is the highest offered rate whose step kept the objective
	// (0: not even the first); PeakStep its index in Steps (-1: none).
	PeakRate float64 `json:"peak_rate"`
	PeakStep int     `json:"peak_step"`
	// StopReason says why the ramp ended; PeakFinal whether it ended by
	// its own rule (a step out of the objective, the generator behind,
	// MaxSteps). A ramp stopped early (Stopped) has a peak so far only.
	StopReason string `json:"peak_stop_reason"`
	PeakFinal  bool   `json:"peak_final"`
	// PeakLowerBound is set when no step broke the objective (the ramp
	// reached MaxSteps, or the generator fell behind): clearing's peak is
	// PeakRate or more, not found.
	PeakLowerBound bool `json:"peak_lower_bound"`
	// CeilingRate is clearing's applied rate at saturation, CeilingMethod
	// how it was measured; PeakToCeiling is PeakRate over it.
	// CeilingValid is false when the burst stalled: an event lost on the
	// way (NATS dropping part of the burst) waited for its terminal's
	// resend, and the stall is in the rate.
	CeilingRate   float64 `json:"ceiling_applied_rate"`
	CeilingEvents int     `json:"ceiling_events"`
	CeilingMethod string  `json:"ceiling_method"`
	CeilingValid  bool    `json:"ceiling_valid"`
	PeakToCeiling float64 `json:"peak_to_ceiling"`
	// Stopped says why the search stopped before its end (interrupted, a
	// phase that failed): the report is then partial, its steps those
	// completed, and the run's guarantees were not checked.
	Stopped string `json:"stopped,omitempty"`
	// RiderTaps is the run's taps per rider (0: no turnover); Riders how
	// many riders tapped.
	RiderTaps int    `json:"peak_rider_taps"`
	Riders    uint64 `json:"peak_riders"`
}

// MarshalJSON writes the report; a ceiling not measured (the search
// stopped before its burst) as null, not as a rate of 0 and a ratio of 0
// (an outside test read them after an interrupt the text said "ceiling
// not measured" for).
func (r PeakReport) MarshalJSON() ([]byte, error) {
	type plain PeakReport
	if r.CeilingMethod != "" {
		return json.Marshal(plain(r))
	}
	return json.Marshal(struct {
		plain
		CeilingRate   *float64 `json:"ceiling_applied_rate"`
		CeilingEvents *int     `json:"ceiling_events"`
		CeilingMethod *string  `json:"ceiling_method"`
		CeilingValid  *bool    `json:"ceiling_valid"`
		PeakToCeiling *float64 `json:"peak_to_ceiling"`
	}{plain: plain(r)})
}

// DefaultPeakRiderTaps is PeakConfig.RiderTaps's default: two journeys
// with an entry and an exit each.
const DefaultPeakRiderTaps = 4

// OK reports whether the search ran to its end and the run kept every
// guarantee.
func (r *PeakReport) OK() error {
	if r.Stopped != "" {
		return fmt.Errorf("stopped early, guarantees not checked: %s", r.Stopped)
	}
	return r.Report.OK()
}

// FindPeak ramps the offered tap rate over a city of simulated terminals
// until the tap-to-confirmation p99 of a step exceeds cfg.P99, measures
// clearing's applied rate at saturation with a burst of pre-signed events,
// then drains, settles and audits the run as Run does.
//
// An error before the ramp began returns no report. One after (ctx done,
// a phase that failed) returns a partial report with the error: the steps
// completed, the peak so far (PeakFinal false unless the ramp had ended),
// Stopped saying why.
func FindPeak(ctx context.Context, cfg PeakConfig) (*PeakReport, error) {
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	rep, err := findPeak(ctx, abort, cfg)
	return rep, withCause(ctx, err)
}

// findPeak is FindPeak, aborted with a cause by what fails on a goroutine
// of its own.
func findPeak(ctx context.Context, abort context.CancelCauseFunc, cfg PeakConfig) (*PeakReport, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string) {}
	}
	if cfg.StartRate <= 0 {
		cfg.StartRate = 200
	}
	if cfg.Factor <= 1 {
		cfg.Factor = 1.25
	}
	if cfg.Step <= 0 {
		cfg.Step = time.Minute
	}
	if cfg.P99 <= 0 {
		cfg.P99 = time.Second
	}
	if cfg.MaxSteps <= 0 {
		cfg.MaxSteps = 40
	}
	if cfg.ResendAfter <= 0 {
		cfg.ResendAfter = 3 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Period <= 0 {
		cfg.Period = 10 * time.Second
	}
	switch {
	case cfg.RiderTaps == 0:
		cfg.RiderTaps = DefaultPeakRiderTaps
	case cfg.RiderTaps < 0:
		cfg.RiderTaps = 0
	}
	// Card riders only: simulated terminals decide every tap "accepted by
	// card"; they follow no deny list and carry no face evidence.
	cfg.City.FaceShare, cfg.City.DeniedShare = 0, 0
	city := NewCity(cfg.City)
	reg, feed, feedVersion, err := writeCity(city, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	led, err := ledger.OpenEmbedded(ctx, filepath.Join(cfg.DataDir, "chain"))
	if err != nil {
		return nil, fmt.Errorf("embedded chain: %w", err)
	}
	defer led.Close()
	if err := clearing.PublishRegistry(ctx, led, reg); err != nil {
		return nil, err
	}
	var natsCert, natsKey string
	if cfg.NATSTLS {
		if natsCert, natsKey, err = writeSelfSignedCert(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	// The city's clock runs at real speed from 06:00 of the current fare
	// day: no fare day ends during the search, whatever the wall clock.
	cityStart := feed.FareDayBegins(feed.FareDay(time.Now())).Add(time.Hour)
	clock := newCityClock(cityStart, 1)
	clock.start()
	const closeAfter = 30 * time.Minute
	acq, err := NewAcquirer(cfg.DeclineRate, cfg.City.Seed)
	if err != nil {
		return nil, err
	}
	verifiers, err := newCityVerifiers(cfg.DataDir, cfg.VerifierPartitions)
	if err != nil {
		return nil, err
	}
	natsHost, natsPort, err := listenAddr(cfg.NATSListen)
	if err != nil {
		return nil, err
	}
	cl, err := clearing.Open(ctx, clearing.Config{
		DataDir: filepath.Join(cfg.DataDir, "clearing"), NATSHost: natsHost, NATSPort: natsPort, NATSTLSCert: natsCert, NATSTLSKey: natsKey,
		Registry: reg, Ledger: led, Period: cfg.Period, Logger: cfg.Logger, Metrics: prometheus.NewRegistry(),
		Feed: feed, FeedVersion: feedVersion, FareClock: clock.Now, FareClockRate: clock.speed, CloseAfter: closeAfter, Acquirer: acq, CollectEvery: 100 * time.Millisecond,
		VerifierPartitions: cfg.VerifierPartitions, VerifierKeys: verifiers.keys,
	})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	// A kept run reopens as simulate's does (`faregate clearing --data DIR`).
	man, err := cityManifest(cfg.DataDir, led.ContractAddress().Hex(), true, feedVersion, cfg.Period, natsCert, natsKey, verifiers, acq)
	if err != nil {
		return nil, err
	}
	if err := writeManifest(cfg.DataDir, man); err != nil {
		return nil, err
	}
	clr := startClearing(ctx, cl, abort)
	defer clr.stop()
	if err := verifiers.start(clr.ctx, cl.NATSURL(), natsCert, led, cfg.Logger); err != nil {
		return nil, err
	}
	defer verifiers.stop()

	lat := &peakLatencies{}
	var terms []*peakTerminal
	defer func() {
		for _, t := range terms {
			t.close()
		}
	}()
	for oi := range city.Operators {
		op := &city.Operators[oi]
		for _, st := range op.Stops {
			for _, ts := range st.Terminals {
				t, err := openPeakTerminal(peakTerminalConfig{
					id: ts.ID, operator: op.ID, stop: st.ID, key: ts.Key, url: cl.NATSURL(), ca: natsCert,
					clearingKey: cl.ConfirmationKey(), resendAfter: cfg.ResendAfter, lat: lat, logger: cfg.Logger, now: clock.Now,
				})
				if err != nil {
					return nil, err
				}
				terms = append(terms, t)
			}
		}
	}
	var opOf []int
	var tapOut []bool
	for oi, op := range city.Operators {
		tapOut = append(tapOut, op.TapOut)
		for _, st := range op.Stops {
			for range st.Terminals {
				opOf = append(opOf, oi)
			}
		}
	}
	pool := newPeakPool(terms, opOf, tapOut, cfg.Workers, city.Passengers, cfg.RiderTaps, cfg.City.Seed)
	poolCtx, stopPool := context.WithCancel(ctx)
	var poolWG sync.WaitGroup
	defer func() {
		stopPool()
		poolWG.Wait()
	}()
	if cfg.OnTraffic != nil {
		cfg.OnTraffic()
	}
	pool.start(poolCtx, &poolWG)

	rep := &PeakReport{
		Report: &Report{Terminals: len(terms), Operators: len(city.Operators), Passengers: len(city.Passengers),
			Currency: city.Currency, Contract: led.ContractAddress().Hex()},
		ObjectiveP99Ms: durationMs(cfg.P99), StepSeconds: cfg.Step.Seconds(), PeakStep: -1, RiderTaps: cfg.RiderTaps,
	}
	defer func() { rep.Riders = pool.riderCount() }()
	// From here on an error returns what was done until then.
	var start time.Time
	measured := false // the figures below were filled in by the run's end
	stopped := func(err error) (*PeakReport, error) {
		err = withCause(ctx, err)
		rep.Stopped = err.Error()
		if !measured && !start.IsZero() {
			// What was measured by then (an outside test saw an
			// interrupted ramp report 0 taps and 0 pending after three
			// steps): the terminals' counts, clearing's, the latencies.
			r := rep.Report
			for _, t := range terms {
				r.OutboxPending += t.pending()
			}
			addRampFigures(r, terms, lat, rep.Steps)
			st := cl.Stats()
			r.Applied, r.DuplicatesDropped, r.Quarantined = st.Applied, st.Duplicates, st.Quarantined
		}
		// Interrupted: a signal or the caller (a signal's cause is
		// Canceled too), not clearing stopping on its own.
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) && !strings.HasPrefix(rep.Stopped, "interrupted") {
			rep.Stopped = "interrupted: " + rep.Stopped
		}
		if rep.StopReason == "" {
			rep.StopReason = fmt.Sprintf("stopped early, %d step(s) completed: %v", len(rep.Steps), err)
		}
		return rep, err
	}
	start = time.Now()
	rate := cfg.StartRate
	for i := 0; ; i++ {
		if i == cfg.MaxSteps {
			rep.StopReason = fmt.Sprintf("%d steps, every one within the objective (raise --peak-start)", cfg.MaxSteps)
			rep.PeakLowerBound = true
			break
		}
		step, err := runPeakStep(ctx, cl, pool, terms, lat, i, rate, cfg)
		if err != nil {
			return stopped(fmt.Errorf("step %d (%.0f taps/s) not completed: %w", i+1, rate, err))
		}
		rep.Steps = append(rep.Steps, step)
		rep.GeneratorLagMs = max(rep.GeneratorLagMs, step.GeneratorLagMs)
		cfg.Progress(fmt.Sprintf("step %d: offered %.0f taps/s, generated %.0f (lag up to %.0f ms), applied %.0f/s, p50 %.0f ms, p99 %.0f ms (%d unconfirmed)",
			i+1, step.OfferedRate, step.GeneratedRate, step.GeneratorLagMs, step.AppliedRate, step.ConfirmLatencyMs["p50"], step.ConfirmLatencyMs["p99"], step.Unconfirmed))
		if why := step.generatorBound(rep.ObjectiveP99Ms); why != "" {
			rep.StopReason = fmt.Sprintf("step %d: %s", i+1, why)
			rep.PeakLowerBound = true
			break
		}
		if !step.WithinObjective {
			rep.StopReason = fmt.Sprintf("step %d: %s", i+1, step.Failed)
			break
		}
		rep.PeakRate, rep.PeakStep = step.OfferedRate, i
		rate *= cfg.Factor
	}
	rep.PeakFinal = true

	// The ceiling: a burst of pre-signed events (signing outside the
	// clock), published as fast as the terminals' connections take them;
	// clearing's applied rate from the first publish until all applied.
	// Sized from the best step within the objective (the first step's if
	// none was), not from a step that failed.
	best := 0.0
	for i, s := range rep.Steps {
		if s.Failed == "" || i == 0 {
			best = max(best, s.AppliedRate, s.OfferedRate)
		}
	}
	burst := int(min(max(8*best, 5000), maxBurst))
	cfg.Progress(fmt.Sprintf("ceiling: %d pre-signed events at once", burst))
	ceil, drained, stalled, err := measureCeiling(ctx, cl, terms, pool, burst, lat)
	if err != nil {
		return stopped(fmt.Errorf("ceiling: %w", err))
	}
	rep.CeilingRate, rep.CeilingEvents, rep.CeilingValid = ceil, burst, !stalled
	if drained {
		rep.CeilingMethod = fmt.Sprintf("saturation burst: %d events signed beforehand, published at once by the simulated terminals; clearing's applied events/s draining the backlog the burst left once its last event was published (the publisher no longer sharing the cores), in this run", burst)
	} else {
		rep.CeilingMethod = fmt.Sprintf("saturation burst: %d events signed beforehand, published at once by the simulated terminals; clearing kept up with the publisher (less than a quarter of the burst left once it was published), so the rate is from the first publish until the last applied: a lower bound of clearing's ceiling, in this run", burst)
	}
	if stalled {
		rep.CeilingMethod += "; NOT VALID: clearing stalled 10 s with events missing (lost on the way, as when NATS drops part of a burst past its stream ingest queue), and waited for the terminals' resends: the rate counts the stall"
		cfg.Progress("ceiling: NOT VALID, the burst stalled waiting for resends (see ceiling_method)")
	}
	if ceil > 0 {
		rep.PeakToCeiling = rep.PeakRate / ceil
	}

	// Drain: every event confirmed.
	var pending uint64
	for drainBy := time.Now().Add(2 * time.Minute); ; {
		pending = 0
		for _, t := range terms {
			pending += t.pending()
		}
		if pending == 0 || time.Now().After(drainBy) {
			break
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return stopped(fmt.Errorf("interrupted while the terminals drained (%d events pending): %w", pending, err))
		}
	}
	stopPool()
	poolWG.Wait()
	// The travel day ends: the city's clock jumps past its cut-over and
	// the billing delay, and every rider day is billed (a declined one
	// lists its rider on the deny list).
	if err := billDayClose(ctx, cl, rep.Report, func() {
		clock.jumpTo(feed.FareDayBegins(feed.FareDay(clock.Now()) + 1).Add(closeAfter + time.Minute))
	}); err != nil {
		return stopped(err)
	}
	rep.CityStart, rep.CityEnd = cityStart.Format(time.RFC3339), clock.Now().Format(time.RFC3339)
	settleCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := cl.Settle(settleCtx); err != nil {
		return stopped(fmt.Errorf("final settlement: %w", err))
	}
	if err := clr.wait(); err != nil {
		return stopped(fmt.Errorf("clearing: %w", err))
	}
	man.CityClock = clock.Now().UTC()
	if err := writeManifest(cfg.DataDir, man); err != nil {
		return stopped(err)
	}
	r := rep.Report
	measured = true
	r.OutboxPending = pending
	r.VerifierPartitions, r.VerifiedByPartition = cfg.VerifierPartitions, verifiers.forwarded()
	ids := make([]string, len(terms))
	for i, t := range terms {
		ids[i] = t.cfg.id
	}
	addRampFigures(r, terms, lat, rep.Steps)
	if err := auditPeakRun(ctx, cl, led, ids, r); err != nil {
		return stopped(fmt.Errorf("audit: %w", err))
	}
	return rep, nil
}

// addRampFigures adds the terminals' counts to r, and the ramp's tap rate
// and latencies. They are the ramp's: the ceiling's burst, all published
// at once, is counted in taps_generated (and applied, audited) but is no
// offered load. The duration and rate are the completed steps' offering
// time and their taps over it, without the waits for their confirmations
// between them (an outside test saw the rate divided by a time that
// counted those waits and the burst).
func addRampFigures(r *Report, terms []*peakTerminal, lat *peakLatencies, steps []PeakStep) {
	for _, t := range terms {
		r.TapsGenerated += t.lastSeq()
		r.EventsPublished += t.published.Load()
		r.DeadLettered += t.rejected.Load()
		r.RefusedConfirms += t.refused.Load()
	}
	var all []time.Duration
	for step, s := range lat.all() {
		if step != burstStep {
			all = append(all, s...)
		}
	}
	var taps uint64
	r.DurationSeconds = 0
	for _, s := range steps {
		taps += s.Taps
		r.DurationSeconds += s.Seconds
	}
	r.TapRatePerSecond = 0
	if r.DurationSeconds > 0 {
		r.TapRatePerSecond = float64(taps) / r.DurationSeconds
	}
	r.ConfirmLatencyMs, r.ConfirmLatencyCDF = percentiles(all), latencyCDF(all)
}

// burstStep is the latency samples' step of the ceiling's burst.
const burstStep = -1

// maxBurst bounds the ceiling's burst under NATS's stream ingest queue
// (100,000 messages by default): a burst past it is partly dropped by the
// server, resent after a stall, and the stall measured as clearing's rate.
const maxBurst = 80_000

// runPeakStep offers rate for cfg.Step, then waits until the step's taps
// are confirmed (or cfg.Step+30s passed) and judges its latencies.
func runPeakStep(ctx context.Context, cl *clearing.Clearing, pool *peakPool, terms []*peakTerminal, lat *peakLatencies, i int, rate float64, cfg PeakConfig) (PeakStep, error) {
	lat.begin(i)
	applied0 := cl.Stats().Applied
	t0 := time.Now()
	did := pool.offer(ctx, i, rate, cfg.Step)
	n := did.taps
	el := time.Since(t0)
	applied := cl.Stats().Applied - applied0
	if ctx.Err() != nil {
		return PeakStep{}, ctx.Err()
	}
	// Wait for the step's taps: all confirmed, or judged as they are. An
	// interrupt is no verdict: the step is not completed.
	waitBy := time.Now().Add(cfg.Step + 30*time.Second)
	for lat.count(i) < n && time.Now().Before(waitBy) {
		if err := pause(ctx, 10*time.Millisecond); err != nil {
			return PeakStep{}, err
		}
	}
	ds := lat.step(i)
	var unconfirmed uint64
	if got := uint64(len(ds)); got < n {
		unconfirmed = n - got
		now := time.Now()
		for _, t := range terms {
			ds = append(ds, t.ages(i, now)...)
		}
	}
	st := PeakStep{OfferedRate: rate, Seconds: el.Seconds(), Taps: n, GeneratedRate: float64(n) / el.Seconds(),
		GeneratorLagMs: durationMs(did.lag), AppliedRate: float64(applied) / el.Seconds(), ConfirmLatencyMs: percentiles(ds), Unconfirmed: unconfirmed}
	st.judge(cfg.P99)
	return st, nil
}

// measureCeiling signs n events across the terminals, publishes them all
// and returns clearing's applied events/s: draining the backlog left once
// the last is published (drained), or, when clearing kept up with the
// publisher, from the first publish until every one is applied; and
// whether it stalled waiting for resends (the rate then counts the stall).
func measureCeiling(ctx context.Context, cl *clearing.Clearing, terms []*peakTerminal, pool *peakPool, n int, lat *peakLatencies) (rate float64, drained, stalled bool, err error) {
	lat.begin(burstStep)
	// No resend round may start while the burst is signed: signing takes
	// seconds on a loaded machine, and a round would publish (and clearing
	// apply) burst events before the count below is taken, so the count
	// would never be reached. Events still unconfirmed from the steps will
	// be applied too: they are counted in.
	for _, t := range terms {
		t.holdResends(true)
	}
	// Counted in: the burst, and the steps' events clearing has not
	// applied yet (a terminal's unconfirmed events less those clearing's
	// watermark already covers: one applied but not yet confirmed at the
	// terminal, counted twice, would keep want out of reach; an outside
	// review). The wait below also ends once every terminal is confirmed.
	want := cl.Stats().Applied + uint64(n)
	for _, t := range terms {
		t.mu.Lock()
		seq, conf := t.seq, t.confirmed
		t.mu.Unlock()
		if wm := cl.TerminalWatermark(t.cfg.id); seq > max(conf, wm) {
			want += seq - max(conf, wm)
		}
	}
	batches := make([][]*peakEvent, len(terms))
	byOp := make([][]int, len(pool.tapOut)) // terminals by operator
	for i, o := range pool.opOf {
		byOp[o] = append(byOp[o], i)
	}
	nextOf := make([]int, len(byOp))
	for i := range n {
		tp, op := pool.tap(i)
		t := byOp[op][nextOf[op]%len(byOp[op])]
		nextOf[op]++
		ev, err := terms[t].sign(tp, burstStep, time.Now())
		if err != nil {
			return 0, false, false, err
		}
		batches[t] = append(batches[t], ev)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i, t := range terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.publishAll(batches[i], start)
		}()
	}
	wg.Wait()
	// Publishing the burst takes the same cores clearing applies on: timed
	// from the first publish, the rate was the publisher's as much as
	// clearing's (an outside test saw 8.5k/s where clearing then drained
	// its backlog at 25k/s). So the rate is the backlog's drain once the
	// last event is published, when that backlog is a quarter of the burst
	// or more; otherwise clearing kept up with the publisher, and the rate
	// from the first publish is what it was shown to do (a lower bound).
	pubEnd, appliedAtPubEnd := time.Now(), cl.Stats().Applied
	// Resends stay held while the burst is applied: a burst takes longer
	// than a terminal's resend wait, and the duplicates its rounds would
	// publish cost clearing the very capacity measured here (the ceiling
	// swung four-fold with them). Only if clearing stops making progress
	// (an event really lost on the way) are they let go.
	held := true
	release := func() {
		for _, t := range terms {
			t.holdResends(false)
		}
		held = false
	}
	defer func() {
		if held {
			release()
		}
	}()
	last, lastAt := cl.Stats().Applied, time.Now()
	confirmedAll := func() bool {
		for _, t := range terms {
			if t.pending() > 0 {
				return false
			}
		}
		return true
	}
	for cl.Stats().Applied < want && !confirmedAll() {
		if applied := cl.Stats().Applied; applied != last {
			last, lastAt = applied, time.Now()
		} else if held && time.Since(lastAt) > 10*time.Second {
			release()
			stalled = true
		}
		if time.Since(start) > 5*time.Minute {
			// What each side holds, so a stuck burst says where it stuck.
			st := cl.Stats()
			var where []string
			for _, t := range terms {
				t.mu.Lock()
				where = append(where, fmt.Sprintf("%s: sequence %d, confirmed %d, published %d, resend rounds %d",
					t.cfg.id, t.seq, t.confirmed, t.published.Load(), t.round))
				t.mu.Unlock()
			}
			stored, twice := -1, 0
			if all, err := cl.Store().AppliedEventIDs(); err == nil {
				seen := make(map[fare.EventID]bool, len(all))
				for _, id := range all {
					if seen[id] {
						twice++
					}
					seen[id] = true
				}
				stored = len(all)
			}
			return 0, false, false, fmt.Errorf("ceiling burst: %d of %d events applied in 5 minutes (clearing counted %d applied, its store holds %d, %d of them twice; %d duplicates, %d quarantined %v; %s)",
				st.Applied+uint64(n)-want, n, st.Applied, stored, twice, st.Duplicates, st.Quarantined, st.QuarantineByWhy, strings.Join(where, "; "))
		}
		if err := pause(ctx, time.Millisecond); err != nil {
			return 0, false, false, err
		}
	}
	if backlog := want - min(appliedAtPubEnd, want); backlog >= uint64(n)/4 {
		return float64(backlog) / time.Since(pubEnd).Seconds(), true, stalled, nil
	}
	return float64(n) / time.Since(start).Seconds(), false, stalled, nil
}

// auditPeakRun fills r's guarantees from clearing's store and the chain,
// as Run does: exactly once, the journal, the batches and their roots.
func auditPeakRun(ctx context.Context, cl *clearing.Clearing, led ledger.Ledger, ids []string, r *Report) error {
	st := cl.Stats()
	r.DuplicatesDropped, r.Quarantined, r.QuarantinedByReason = st.Duplicates, st.Quarantined, st.QuarantineByWhy
	store := cl.Store()
	rejections, err := store.Rejections()
	if err != nil {
		return err
	}
	r.Rejected = uint64(len(rejections))
	if err := r.countAppliedIDs(store, ids); err != nil {
		return err
	}
	// One audit of the store, the journal's included (read once).
	if err := r.auditStore(ctx, store, led); err != nil {
		return err
	}
	r.BatchProblems = []string{}
	r.OperatorRevenue = make(map[string]clearing.Money)
	for _, id := range slices.Sorted(maps.Keys(operatorsOf(cl))) {
		b, err := store.Balance(clearing.OperatorAccount(id))
		if err != nil {
			return err
		}
		r.OperatorRevenue[id] = r.money(int64(b.Net()))
	}
	riders, err := store.Balances("passenger/", "", 1<<30)
	if err != nil {
		return err
	}
	var charged int64
	for _, b := range riders {
		charged -= int64(b.Net())
	}
	pt, err := store.PaymentTotals()
	if err != nil {
		return err
	}
	r.RiderCharges = r.money(charged + int64(pt.Paid))
	r.PaymentsAsked, r.PaymentsApproved, r.PaymentsDeclined = pt.Attempts, pt.Approved, pt.Declined
	r.Payments, r.RidersInDebt, r.Debt, r.UnbilledDays = r.money(int64(pt.Paid)), pt.RidersInDebt, r.money(int64(pt.Debt)), pt.UnbilledDays
	r.DenyListVersion, r.DenyListEntries = cl.DenyListVersion()
	// Riders put on the deny list for debt: those with a declined payment
	// (each decline lists its rider), as simulate counts them.
	for _, b := range riders {
		pays, err := store.Payments(b.Account)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(pays, func(p clearing.Payment) bool { return !p.Approved }) {
			r.DenyListDebtEntries++
		}
	}
	acq, err := store.Balance(clearing.AcquirerAccount)
	if err != nil {
		return err
	}
	r.AcquirerReceived = r.money(-int64(acq.Net()))
	fa, err := cl.AuditFares()
	if err != nil {
		return err
	}
	if fa != nil {
		r.FareRecompute, r.FareRecomputeMismatch = r.fareAudit(fa), fa.Count
		r.JourneysPriced, r.JourneysMultiOperator, r.JourneysIncomplete, r.RidersCapped = fa.Journeys, fa.MultiOperator, fa.Incomplete, fa.RidersCapped
	}
	r.TapsUnpriced = st.Unpriced
	batches, err := store.Batches(1, 1<<30)
	if err != nil {
		return err
	}
	for _, b := range batches {
		r.Batches = append(r.Batches, r.batch(b))
		if _, err := store.Commit(b.ID); err == nil {
			r.BatchesAnchored++
		}
	}
	r.BatchesSealed = len(batches)
	if r.DenyListDebtListed, _, err = debtListings(store, cl, nil); err != nil {
		return err
	}
	for _, a := range r.Audit {
		if a.Problem != "" {
			r.BatchProblems = append(r.BatchProblems, fmt.Sprintf("batch %d: %s", a.ID, a.Problem))
			if a.ChainRoot != "" && a.ChainRoot != a.ComputedRoot {
				r.BatchRootMismatches++ // a pending batch has no root on chain to differ
			}
		}
	}
	return nil
}

// operatorsOf is the set of operators in clearing's registry.
func operatorsOf(cl *clearing.Clearing) map[string]bool {
	ops := map[string]bool{}
	for _, t := range cl.Registry().Terminals {
		ops[t.Operator] = true
	}
	return ops
}

// countAppliedIDs checks exactly-once from the store, r.Rejected read
// (exactlyOnce): what breaks it is counted in the report for its checks
// to name; an error is the store's alone.
func (r *Report) countAppliedIDs(store *clearing.Store, ids []string) error {
	gaps, err := store.SequenceGaps()
	if err != nil {
		return err
	}
	missing := make(map[string]uint64, len(gaps))
	for _, g := range gaps {
		missing[g.Terminal] = g.Count
	}
	seqs := make([]terminalSeqs, len(ids))
	for i, id := range ids {
		if seqs[i].highest, err = store.HighestSequence(id); err != nil {
			return err
		}
		seqs[i].missing = missing[id]
	}
	all, err := store.AppliedEventIDs()
	if err != nil {
		return err
	}
	r.Applied, r.DuplicatesApplied, r.LostSequences, r.StoreEventMismatch = exactlyOnce(seqs, r.Rejected, all)
	return nil
}

// terminalSeqs is what clearing's store holds of one terminal's
// sequences: the highest it recorded (applied or rejected for good), and
// how many below it it holds none for (clearing.Store.SequenceGaps).
type terminalSeqs struct{ highest, missing uint64 }

// exactlyOnce checks exactly-once: every sequence the terminals used up to
// their highest is recorded (applied, or rejected for good: rejected of
// them), each applied event once, and no event id (the store's applied,
// all) twice. It returns the distinct events applied, those applied twice,
// the sequences lost (missing below a terminal's highest) and the distinct
// applied events less the sequences recorded as applied. (A lost tail,
// sequences above the highest recorded, only the terminals know: the
// report's taps against applied and rejected check finds it.)
func exactlyOnce(seqs []terminalSeqs, rejected uint64, all []fare.EventID) (applied, twice, lost uint64, mismatch int64) {
	var recorded uint64
	for _, s := range seqs {
		lost += s.missing
		recorded += s.highest - min(s.highest, s.missing)
	}
	seen := make(map[fare.EventID]struct{}, len(all))
	for _, id := range all {
		if _, ok := seen[id]; ok {
			twice++
		}
		seen[id] = struct{}{}
	}
	applied = uint64(len(all)) - twice
	return applied, twice, lost, int64(applied) - (int64(recorded) - int64(rejected))
}

// peakLatencies collects tap-to-confirmation latencies by step.
type peakLatencies struct {
	mu     sync.Mutex
	bySt   map[int][]time.Duration
	counts map[int]uint64
}

func (l *peakLatencies) begin(step int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bySt == nil {
		l.bySt, l.counts = map[int][]time.Duration{}, map[int]uint64{}
	}
	l.bySt[step] = nil
}

func (l *peakLatencies) add(step int, d time.Duration) {
	l.mu.Lock()
	l.bySt[step] = append(l.bySt[step], d)
	l.counts[step]++
	l.mu.Unlock()
}

func (l *peakLatencies) count(step int) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[step]
}

func (l *peakLatencies) step(step int) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.bySt[step])
}

func (l *peakLatencies) all() map[int][]time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.bySt)
}

// peakPool is the goroutines that take the simulated terminals' taps and
// resends: each operator's terminals are dealt to the workers in turn
// (its j-th to worker j mod workers), and there are no more workers than
// the operator with the fewest terminals has, so that every worker holds a
// gate of every operator and a rider's tap is taken at its own operator's
// gate (an outside review's small city, one gate a stop and four workers,
// had riders tap at other operators' gates: 3,137 taps unpriced).
type peakPool struct {
	terms []*peakTerminal
	// opOf is each terminal's operator (an index into tapOut); tapOut
	// says which operators' gates take entries and exits (the metro),
	// the others' validations. A rider's place rides one operator, so
	// every journey is one the feed prices (an exit at a bus validator
	// after a metro entry had no fare: a tenth of the taps unpriced).
	opOf    []int
	tapOut  []bool
	workers int
	riders  []Passenger
	seed    uint64
	taps    uint64          // per rider (0: riders never change)
	dir     []atomic.Uint64 // taps made in each rider's place
	offers  []chan peakOffer
}

type peakOffer struct {
	step  int
	rate  float64 // this worker's share
	until time.Time
	done  chan offered
}

// offered is what a worker did of an offer: the taps it published, and
// the longest it published one after the tap was due (its own lag, which
// the taps' latencies include).
type offered struct {
	taps uint64
	lag  time.Duration
}

func newPeakPool(terms []*peakTerminal, opOf []int, tapOut []bool, workers int, riders []Passenger, riderTaps int, seed uint64) *peakPool {
	workers = min(workers, len(terms))
	perOp := map[int]int{}
	for _, op := range opOf {
		perOp[op]++
	}
	for _, n := range perOp {
		workers = min(workers, n)
	}
	workers = max(workers, 1)
	p := &peakPool{terms: terms, opOf: opOf, tapOut: tapOut, workers: workers, riders: riders, seed: seed, taps: uint64(max(riderTaps, 0)), dir: make([]atomic.Uint64, len(riders))}
	for range workers {
		p.offers = append(p.offers, make(chan peakOffer, 1))
	}
	return p
}

// start runs the workers until ctx is done; wg tracks them.
func (p *peakPool) start(ctx context.Context, wg *sync.WaitGroup) {
	for w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.work(ctx, w)
		}()
	}
}

// offer has the workers take rate taps/s for d and returns how many they took.
func (p *peakPool) offer(ctx context.Context, step int, rate float64, d time.Duration) offered {
	until := time.Now().Add(d)
	dones := make([]chan offered, p.workers)
	for w := range p.workers {
		dones[w] = make(chan offered, 1)
		select {
		case p.offers[w] <- peakOffer{step: step, rate: rate / float64(p.workers), until: until, done: dones[w]}:
		case <-ctx.Done():
			return offered{}
		}
	}
	var all offered
	for _, d := range dones {
		select {
		case k := <-d:
			all.taps += k.taps
			all.lag = max(all.lag, k.lag)
		case <-ctx.Done():
			return all
		}
	}
	return all
}

// tap is the i-th tap of a generator and the operator (an index into
// p.tapOut) whose gate takes it: a rider's place (by i, spread by a hash)
// rides one operator, its rider entering and exiting in turn at a gated
// one's, validating at another's, and after p.taps taps gives the place to
// a new rider: the place's card token with the generation appended.
func (p *peakPool) tap(i int) (peakTap, int) {
	h := (uint64(i) + p.seed) * 0x9e3779b97f4a7c15
	r := int(h>>33) % len(p.riders)
	op := r % len(p.tapOut)
	n := p.dir[r].Add(1) - 1
	dir := fare.Validate
	if p.tapOut[op] {
		dir = fare.Entry
		if n%2 == 1 {
			dir = fare.Exit
		}
	}
	rider := p.riders[r]
	if p.taps > 0 {
		if gen := n / p.taps; gen > 0 {
			rider.Token += "-" + strconv.FormatUint(gen, 10)
		}
	}
	return peakTap{rider: rider, dir: dir}, op
}

// riderCount is how many riders have tapped.
func (p *peakPool) riderCount() uint64 {
	var n uint64
	for i := range p.dir {
		switch taps := p.dir[i].Load(); {
		case taps == 0:
		case p.taps == 0:
			n++
		default:
			n += (taps + p.taps - 1) / p.taps
		}
	}
	return n
}

// deal returns worker w's terminals, and the same by operator.
func (p *peakPool) deal(w int) (mine []*peakTerminal, byOp [][]*peakTerminal) {
	byOp = make([][]*peakTerminal, len(p.tapOut))
	dealt := make([]int, len(p.tapOut)) // each operator's terminals dealt so far
	for i, t := range p.terms {
		op := p.opOf[i]
		if dealt[op]%p.workers == w {
			mine = append(mine, t)
			byOp[op] = append(byOp[op], t)
		}
		dealt[op]++
	}
	return mine, byOp
}

func (p *peakPool) work(ctx context.Context, w int) {
	mine, byOp := p.deal(w)
	nextOf := make([]int, len(p.tapOut))
	rng := rand.New(rand.NewPCG(p.seed, uint64(w)))
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	var cur *peakOffer
	var start time.Time
	var taken, unsigned uint64
	var lag time.Duration
	lastResend := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-p.offers[w]:
			cur, start, taken, unsigned, lag = &o, time.Now(), 0, 0, 0
		case <-tick.C:
		}
		now := time.Now()
		if cur != nil {
			end := now
			if end.After(cur.until) {
				end = cur.until
			}
			due := uint64(cur.rate * end.Sub(start).Seconds())
			for ; taken < due; taken++ {
				tp, op := p.tap(rng.IntN(1 << 30))
				ts := byOp[op]
				if len(ts) == 0 {
					ts = mine // an operator without gates (newPeakPool deals every other to every worker)
				}
				t := ts[nextOf[op]%len(ts)]
				nextOf[op]++
				// The taken-th tap of this worker's share was due then.
				dueAt := start.Add(time.Duration(float64(taken) / cur.rate * float64(time.Second)))
				ev, err := t.sign(tp, cur.step, dueAt)
				if err != nil {
					t.log("sign", err)
					unsigned++ // never published: not waited for as the step's
					continue
				}
				t.publish(ev, false)
				lag = max(lag, time.Since(dueAt))
			}
			if !now.Before(cur.until) {
				cur.done <- offered{taps: taken - unsigned, lag: lag}
				cur = nil
			}
		}
		if now.Sub(lastResend) >= 100*time.Millisecond {
			lastResend = now
			for _, t := range mine {
				t.resend(now)
			}
		}
	}
}

// peakTap is a rider at a gate.
type peakTap struct {
	rider Passenger
	dir   fare.Direction
}
