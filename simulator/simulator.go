package simulator

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/terminal"
)

// Config configures one simulation run.
type Config struct {
	City CityConfig
	// Duration of tap generation.
	Duration time.Duration
	// PeakRate is taps per second across the city at the rush-hour peak;
	// the rate follows two rush hours over the run (morning and evening),
	// falling to a quarter of the peak between them.
	PeakRate float64
	// Period is clearing's settlement period.
	Period time.Duration
	// Days is how many travel days of the city the run covers (default 2):
	// the city's clock runs from 05:00 of the first to the cut-over (04:00)
	// after the last in Duration, so fare days close and
	// riders are billed during the run. DeclineRate is the share of
	// payments the simulated acquirer declines (0: none; `faregate
	// simulate` passes 0.05 by default; riders in debt meet closed gates
	// the next day).
	Days        int
	DeclineRate float64
	// DataDir keeps every store (clearing, terminals, chain) for audit.
	DataDir string
	// HTTPAddr serves the settlement API while the run lasts ("" = none).
	HTTPAddr string
	// NATSListen is where the run's embedded NATS server listens, host:port
	// ("" = a free loopback port); ChainRPCListen, the embedded chain's
	// JSON-RPC ("" = a free loopback port): for hosts whose firewall allows
	// only some ports.
	NATSListen, ChainRPCListen string
	// InjectBad publishes this many bad messages of each kind straight to
	// NATS as the busiest terminal (an authenticated but misbehaving
	// device): forged signature, another terminal's event on its own subject,
	// truncated payload, replayed sequence, and a publish on another
	// terminal's subject (refused by NATS itself). With InjectBad > 0 one
	// gate is also misconfigured (moved to another stop without being
	// re-registered): clearing rejects its events for good, and the gate
	// keeps them in its dead-letter store and drains. At most
	// MaxInjectBad.
	InjectBad int
	// NATSTLS runs the city's NATS over TLS: clearing's embedded server
	// with a certificate made for the run, every terminal trusting it.
	NATSTLS bool
	// Ledger, if set, is used instead of an embedded chain in DataDir. Its
	// contract must already hold the city's operators and terminals.
	Ledger ledger.Ledger
	Logger *slog.Logger
	// Progress, if set, receives one line a second.
	Progress func(string)
	// OnAPI is told the settlement API's URL once it listens, and an
	// auditor token the run issued for it.
	OnAPI func(url, token string)
	// OnTraffic, if set, is called once the city is set up (chain,
	// clearing, terminals, enrolments) and its riders begin to tap: a run
	// that fails before has nothing in its data dir worth keeping.
	OnTraffic func()
	// FaceData is idols.json (real dlib descriptors): the face riders'
	// faces. Required when City.FaceShare > 0. FacePolicy is the gates'
	// operating point (zero: gallery.DefaultPolicy).
	FaceData   string
	FacePolicy gallery.Policy
	// FaceImages holds labelled pictures (jimin2.jpg is jimin) that the
	// gates of one stop run through the whole dlib pipeline (models from
	// FaceModels, default as biometrics.FindModelDir); required with face
	// riders in a city of three operators or more.
	FaceImages string
	FaceModels string
	// VerifierPartitions, when positive, runs clearing with that many
	// verifier partitions (clearing.Config.VerifierPartitions) and one
	// verifier per partition beside it, each with its own NATS user.
	VerifierPartitions int
}

// Report is the machine-readable outcome of a run.
type Report struct {
	Terminals       int     `json:"terminals"`
	Operators       int     `json:"operators"`
	Passengers      int     `json:"passengers"`
	DurationSeconds float64 `json:"duration_seconds"`
	TapsGenerated   uint64  `json:"taps_generated"`
	TapsDenied      uint64  `json:"taps_denied"`
	// TapsFailed are taps a gate could not take at all (an error, not a
	// decision: its outbox or disk failed, or its face check): riders a
	// fault turned away. Must be 0.
	TapsFailed          uint64            `json:"taps_failed"`
	EventsPublished     uint64            `json:"events_published"`
	BadInjected         uint64            `json:"bad_messages_injected"`
	RefusedByNATS       uint64            `json:"refused_by_nats"`
	Rejected            uint64            `json:"rejected"`
	DeadLettered        uint64            `json:"dead_lettered"`
	RefusedConfirms     uint64            `json:"confirmations_refused"`
	DenyListEntries     int               `json:"deny_list_entries"`
	DenyListVersion     uint64            `json:"deny_list_version"`
	RidersEnrolled      int               `json:"riders_enrolled"` // concession riders enrolled (priced as such from the second fare day)
	RefusedDenyMessages map[string]uint64 `json:"deny_messages_refused"`
	Applied             uint64            `json:"applied"`
	DuplicatesDropped   uint64            `json:"duplicates_dropped"`
	DuplicatesApplied   uint64            `json:"duplicates_applied"`
	// LostSequences counts sequences a terminal used that clearing's
	// store skipped (below the terminal's highest applied, not applied or
	// rejected); StoreEventMismatch is the store's distinct applied events
	// less the sequences applied. Both are 0 when every event is applied
	// once.
	LostSequences       uint64            `json:"lost_sequences"`
	StoreEventMismatch  int64             `json:"store_event_mismatch"`
	Quarantined         uint64            `json:"quarantined"`
	QuarantinedByReason map[string]uint64 `json:"quarantined_by_reason"`
	OutboxPending       uint64            `json:"outbox_pending"`
	JournalTransfers    int               `json:"journal_transfers"`
	JournalImbalance    clearing.Money    `json:"journal_imbalance"`
	JournalMismatches   []string          `json:"journal_mismatches"`
	BatchesSealed       int               `json:"batches_sealed"`
	BatchesAnchored     int               `json:"batches_anchored"`
	BatchRootMismatches int               `json:"batches_root_mismatch"`
	BatchProblems       []string          `json:"batch_problems"`
	// AuditFindings are the store-wide findings of the full store audit
	// (clearing.Store.Audit, what `faregate ledger audit` runs): payments
	// without their transfers, contract balances against the batches,
	// the open period, sequence gaps. Must be empty.
	AuditFindings []string `json:"audit_findings"`
	// Stopped says why a run interrupted after its traffic ended early:
	// such a report holds what was measured (taps, published, applied,
	// pending, latencies) and no check (empty when the run ran to its end).
	Stopped          string                    `json:"stopped,omitempty"`
	Currency         string                    `json:"currency"`
	OperatorRevenue  map[string]clearing.Money `json:"operator_revenue"`
	Batches          []ReportBatch             `json:"batches"`
	TapRatePerSecond float64                   `json:"tap_rate_per_second"`
	ConfirmLatencyMs map[string]float64        `json:"confirm_latency_ms"`
	TapLatencyMs     map[string]float64        `json:"tap_latency_ms"`
	// GeneratorLagMs is the longest a tap was taken after it was due (with
	// --find-peak, the longest of its steps'): where it is large the
	// generator, not clearing, held the offered load back.
	GeneratorLagMs float64               `json:"generator_lag_ms"`
	Contract       string                `json:"contract"`
	Audit          []clearing.BatchAudit `json:"audit"`
	// The same latencies' distributions (nil without samples), for plots.
	ConfirmLatencyCDF *LatencyCDF `json:"confirm_latency_cdf"`
	TapLatencyCDF     *LatencyCDF `json:"tap_latency_cdf"`
	// Timeline is the run second by second from TimelineStart, the first
	// tap, until every outbox drained: taps taken, denied and applied.
	// --find-peak keeps none (its TimelineStart zero, left out).
	TimelineStart time.Time      `json:"timeline_start,omitzero"`
	Timeline      []ReportSample `json:"timeline"`
	// Live fares from the city's GTFS feed. Journeys is how many journeys
	// riders set out on; JourneysPriced how many the fare engine priced
	// (an entry without its exit is a journey of its own).
	// VerifierPartitions is clearing's (0: clearing verified every
	// signature itself); VerifiedByPartition what each partition's
	// verifier forwarded (a verifier's redelivery counts again).
	VerifierPartitions    int              `json:"verifier_partitions"`
	VerifiedByPartition   []uint64         `json:"verified_by_partition,omitempty"`
	Journeys              int              `json:"journeys"`
	JourneysPriced        int              `json:"journeys_priced"`
	JourneysMultiOperator int              `json:"journeys_multi_operator"`
	JourneysIncomplete    int              `json:"journeys_incomplete"`
	RidersCapped          int              `json:"riders_capped"`
	TapsUnpriced          uint64           `json:"taps_unpriced"`
	RiderCharges          clearing.Money   `json:"rider_charges"`
	FareRecompute         *ReportFareAudit `json:"fare_recompute"`
	FareRecomputeMismatch int              `json:"fare_recompute_mismatches"`
	// Post-paid billing over the city's travel days (CityStart to CityEnd,
	// the city's clock): payments asked of the simulated acquirer,
	// approved and declined, what was paid and what is still owed, riders
	// put on the deny list for debt and their taps gates then refused.
	CityStart           string         `json:"city_start"`
	CityEnd             string         `json:"city_end"`
	PaymentsAsked       int            `json:"payments_asked"`
	PaymentsApproved    int            `json:"payments_approved"`
	PaymentsDeclined    int            `json:"payments_declined"`
	Payments            clearing.Money `json:"payments"`
	AcquirerReceived    clearing.Money `json:"acquirer_received"`
	RidersInDebt        int            `json:"riders_in_debt"`
	Debt                clearing.Money `json:"debt"`
	DenyListDebtEntries int            `json:"deny_list_debt_entries"`
	// DenyListDebtListed is how many media the deny list holds for debt
	// at the end, read from clearing's store: every rider in debt, no
	// more. GatesBehindDenyList counts gates that did not hold the list's
	// last version (with the enrolments') within a wait at the end (null
	// where the run's gates hold no list: --find-peak).
	DenyListDebtListed  int  `json:"deny_list_debt_listed"`
	GatesBehindDenyList *int `json:"gates_behind_deny_list"`
	// DenyListDebtWrong counts the city's riders whose listing for debt
	// is not their billing's: in debt and not listed for it, or listed
	// for it and not in debt (null where the run knows no riders by
	// their media: --find-peak).
	DenyListDebtWrong   *int `json:"deny_list_debt_wrong"`
	DeniedAtGateForDebt int  `json:"denied_at_gate_for_debt"`
	UnbilledDays        int  `json:"unbilled_days"`
	// DayCloseRiderDays are the rider days open when the last travel day
	// ended; DayCloseBillingSeconds how long clearing took from then to
	// bill them all (the acquirer's answers posted, debtors listed).
	DayCloseRiderDays      int     `json:"day_close_rider_days"`
	DayCloseBillingSeconds float64 `json:"day_close_billing_seconds"`
	// Face riders: enrolled subjects (real descriptors of idols.json),
	// face presentations at the gates (riders and unenrolled strangers),
	// accepted and refused (by reason), presentations taken for someone
	// they were not (the simulator knows who stood there), and the time
	// from frames to the gate's decision (matching and the outbox write):
	// all presentations, and those of real pictures through dlib.
	FaceRidersEnrolled  int                `json:"face_riders_enrolled"`
	FaceTaps            int                `json:"face_taps"`
	FaceAccepted        int                `json:"face_accepted"`
	FaceRefused         int                `json:"face_refused"`
	FaceFalseAccepts    int                `json:"face_false_accepts"`
	FaceStrangerTaps    int                `json:"face_stranger_taps"`
	FaceImageTaps       int                `json:"face_image_taps"`
	FaceRefusedByReason map[string]int     `json:"face_refused_by_reason"`
	FaceDecisionMs      map[string]float64 `json:"face_decision_ms"`
	FaceImageDecisionMs map[string]float64 `json:"face_image_decision_ms"`
	FacePolicy          string             `json:"face_policy"`
}

// Check is one guarantee a run must keep.
type Check struct {
	Name     string // the guarantee, e.g. "exactly once"
	Measured string // what the run measured
	Err      error  // why it broke; nil if it held
}

// OK reports whether the run ran to its end and kept every guarantee: why
// it stopped early, or the errors of the Checks that broke.
func (r *Report) OK() error {
	if r.Stopped != "" {
		return fmt.Errorf("stopped early, guarantees not checked: %s", r.Stopped)
	}
	var errs []error
	for _, c := range r.Checks() {
		if c.Err != nil {
			errs = append(errs, c.Err)
		}
	}
	return errors.Join(errs...)
}

// Checks lists every guarantee of a run, in a fixed order, with what the
// run measured and, where it broke, why.
func (r *Report) Checks() []Check {
	var cs []Check
	check := func(name, measured string, broken bool, err error) {
		if !broken {
			err = nil
		}
		cs = append(cs, Check{Name: name, Measured: measured, Err: err})
	}
	check("exactly once", fmt.Sprintf("%d applied, %d duplicates dropped, %d applied twice, %d sequences lost, %d store events unaccounted", r.Applied, r.DuplicatesDropped, r.DuplicatesApplied, r.LostSequences, r.StoreEventMismatch),
		r.DuplicatesApplied != 0 || r.LostSequences != 0 || r.StoreEventMismatch != 0,
		fmt.Errorf("%d events applied twice, %d sequences lost, the store holds %d applied events more than the sequences applied", r.DuplicatesApplied, r.LostSequences, r.StoreEventMismatch))
	check("the journal balances", fmt.Sprintf("%d transfers, imbalance %s %s, %d mismatches", r.JournalTransfers, r.JournalImbalance.Decimal, r.Currency, len(r.JournalMismatches)),
		r.JournalImbalance.Minor != 0 || len(r.JournalMismatches) > 0,
		fmt.Errorf("journal imbalance %s %s, %d mismatches", r.JournalImbalance.Decimal, r.Currency, len(r.JournalMismatches)))
	check("batch roots match the chain", fmt.Sprintf("%d batches audited, %d root mismatches, %d problems", len(r.Audit), r.BatchRootMismatches, len(r.BatchProblems)),
		r.BatchRootMismatches != 0 || len(r.BatchProblems) > 0,
		fmt.Errorf("%d batches differ from the chain: %v", r.BatchRootMismatches, r.BatchProblems))
	check("every outbox drained", fmt.Sprintf("%d events pending", r.OutboxPending),
		r.OutboxPending != 0, fmt.Errorf("%d events still in terminal outboxes", r.OutboxPending))
	check("taps were taken", fmt.Sprintf("%d taps", r.TapsGenerated),
		r.TapsGenerated == 0, errors.New("no tap was taken: the run measured nothing (a --duration too short for its --rate?)"))
	check("every tap taken at the gate", fmt.Sprintf("%d taps failed", r.TapsFailed),
		r.TapsFailed != 0, fmt.Errorf("gates failed %d taps (an error, not a decision: see the log)", r.TapsFailed))
	check("every tap applied or rejected", fmt.Sprintf("%d taps, %d applied, %d rejected", r.TapsGenerated, r.Applied, r.Rejected),
		r.Applied+r.Rejected != r.TapsGenerated,
		fmt.Errorf("%d taps generated but %d applied and %d rejected", r.TapsGenerated, r.Applied, r.Rejected))
	check("rejected events dead-lettered", fmt.Sprintf("%d rejected, %d dead-lettered", r.Rejected, r.DeadLettered),
		r.DeadLettered != r.Rejected, fmt.Errorf("clearing rejected %d sequences but terminals dead-lettered %d", r.Rejected, r.DeadLettered))
	check("confirmations verify", fmt.Sprintf("%d refused", r.RefusedConfirms),
		r.RefusedConfirms != 0, fmt.Errorf("terminals refused %d confirmations", r.RefusedConfirms))
	// Stale updates are no fault (a sync may overtake one on its way);
	// anything else refused means a message of clearing's did not verify.
	var denyErrs []error
	var refused []string
	for _, reason := range slices.Sorted(maps.Keys(r.RefusedDenyMessages)) {
		n := r.RefusedDenyMessages[reason]
		refused = append(refused, fmt.Sprintf("%d %s", n, reason))
		if n != 0 && reason != terminal.DenyRefusedStale {
			denyErrs = append(denyErrs, fmt.Errorf("terminals refused %d deny-list messages as %s", n, reason))
		}
	}
	if len(refused) == 0 {
		refused = []string{"none"}
	}
	check("gate-list messages verify", "refused: "+strings.Join(refused, ", "), len(denyErrs) > 0, errors.Join(denyErrs...))
	// A run without its repricing checked nothing: broken, not "0 differ".
	if fa := r.FareRecompute; fa == nil {
		check("fares reprice the same", "not repriced", true, errors.New("the independent repricing did not run"))
	} else {
		check("fares reprice the same", fmt.Sprintf("%d rider days repriced, %d differ", fa.RiderDays, r.FareRecomputeMismatch),
			r.FareRecomputeMismatch != 0, fmt.Errorf("%d rider days priced differently by the independent repricing", r.FareRecomputeMismatch))
	}
	// The journal's operator accounts against the events' own postings
	// (read from the applied event records, not from the balances), and
	// against what riders were charged.
	var revenue int64
	for _, v := range r.OperatorRevenue {
		revenue += v.Minor
	}
	posted, postedText := int64(0), "not read"
	if r.FareRecompute != nil {
		posted, postedText = r.FareRecompute.Posted.Minor, r.FareRecompute.Posted.Decimal
	}
	check("operators' revenue is what the events posted", fmt.Sprintf("revenue %s, events posted %s, riders charged %s %s", r.money(revenue).Decimal, postedText, r.RiderCharges.Decimal, r.Currency),
		r.FareRecompute == nil || revenue != posted || revenue != r.RiderCharges.Minor,
		fmt.Errorf("operators' revenue %s is not what the applied events posted (%s) and riders were charged (%s %s)", r.money(revenue).Decimal, postedText, r.RiderCharges.Decimal, r.Currency))
	check("every rider day billed", fmt.Sprintf("%d payments asked, %d rider days unbilled", r.PaymentsAsked, r.UnbilledDays),
		r.UnbilledDays != 0, fmt.Errorf("%d rider days over but not billed", r.UnbilledDays))
	check("the acquirer got what was paid", fmt.Sprintf("acquirer %s, payments %s %s", r.AcquirerReceived.Decimal, r.Payments.Decimal, r.Currency),
		r.AcquirerReceived.Minor != r.Payments.Minor,
		fmt.Errorf("the journal's acquirer account says %s %s was paid, the payment records %s", r.AcquirerReceived.Decimal, r.Currency, r.Payments.Decimal))
	gates := "not checked (no gate holds a list)"
	if r.GatesBehindDenyList != nil {
		gates = fmt.Sprintf("%d gates behind its last version", *r.GatesBehindDenyList)
	}
	wrong := ""
	if r.DenyListDebtWrong != nil {
		wrong = fmt.Sprintf(", %d riders listed otherwise than billed", *r.DenyListDebtWrong)
	}
	check("debtors on the deny list", fmt.Sprintf("%d riders in debt, %d listed for debt%s; %s", r.RidersInDebt, r.DenyListDebtListed, wrong, gates),
		r.DenyListDebtListed != r.RidersInDebt || r.DenyListDebtWrong != nil && *r.DenyListDebtWrong != 0 || r.GatesBehindDenyList != nil && *r.GatesBehindDenyList != 0,
		fmt.Errorf("%d riders in debt, the deny list holds %d for debt%s; %s", r.RidersInDebt, r.DenyListDebtListed, wrong, gates))
	check("the store audit is clean", fmt.Sprintf("%d store-wide findings", len(r.AuditFindings)),
		len(r.AuditFindings) != 0, fmt.Errorf("the store audit found %d problems: %v", len(r.AuditFindings), r.AuditFindings))
	check("every batch anchored", fmt.Sprintf("%d sealed, %d anchored", r.BatchesSealed, r.BatchesAnchored),
		r.BatchesAnchored != r.BatchesSealed, fmt.Errorf("%d batches sealed, %d anchored", r.BatchesSealed, r.BatchesAnchored))
	return cs
}

// writeCity writes the city beside its stores in dir: its fares as a GTFS
// Fares v2 feed (loaded back, as clearing reads it, with its version, as
// clearing names it: `--feed DIR/feed` on a kept run is the same version)
// and its registry, which says what each gate's taps ride.
func writeCity(city *City, dir string) (*clearing.Registry, *fares.Feed, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, "", fmt.Errorf("simulator data dir: %w", err)
	}
	feedDir := filepath.Join(dir, "feed")
	if err := WriteCityFeed(city, feedDir); err != nil {
		return nil, nil, "", err
	}
	feed, err := gtfs.LoadPath(feedDir)
	if err != nil {
		return nil, nil, "", fmt.Errorf("the city's own feed: %w", err)
	}
	version, err := clearing.FeedVersionOfPath(feedDir)
	if err != nil {
		return nil, nil, "", fmt.Errorf("the city's own feed: %w", err)
	}
	reg, err := city.Registry()
	if err != nil {
		return nil, nil, "", err
	}
	legs := city.LegContexts()
	for _, id := range slices.Sorted(maps.Keys(legs)) {
		reg.Legs = append(reg.Legs, clearing.TerminalLeg{Terminal: id, Network: legs[id].NetworkID, Route: legs[id].RouteID})
	}
	if err := reg.Save(filepath.Join(dir, "registry.json")); err != nil {
		return nil, nil, "", err
	}
	return reg, feed, version, nil
}

type simTerminal struct {
	*terminal.Terminal
	op     *Operator
	stop   *Stop
	mu     sync.Mutex
	tapAt  []time.Time // by sequence-1
	lat    []time.Duration
	seenTo uint64
	// confirmedAt holds when sequences were seen confirmed before their
	// taps were recorded (a worker's record comes after its Tap returns,
	// and a later tap's confirmation may come first): measured once they
	// are.
	confirmedAt map[uint64]time.Time
	faces       *faceGate // the gate's camera; nil without face riders
}

// MaxInjectBad is the most bad messages of each kind Config.InjectBad
// asks for: 10,000 of each are quarantined here in about a second, well
// within the 30 s the run waits for them, where 100,000 left a third
// unquarantined when the wait ran out (and a count near 2^61 made the run
// panic after its traffic).
const MaxInjectBad = 10_000

// Run runs one simulation: clearing with embedded NATS and chain, every
// terminal of the city, taps for cfg.Duration, then drain, settle and audit.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	rep, err := run(ctx, abort, cfg)
	return rep, withCause(ctx, err)
}

// run is Run, aborted with a cause by what fails on a goroutine of its own.
func run(ctx context.Context, abort context.CancelCauseFunc, cfg Config) (*Report, error) {
	if cfg.InjectBad < 0 || cfg.InjectBad > MaxInjectBad {
		return nil, fmt.Errorf("simulator: InjectBad %d: want 0 to %d bad messages of each kind", cfg.InjectBad, MaxInjectBad)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string) {}
	}
	if cfg.PeakRate <= 0 {
		cfg.PeakRate = 200
	}
	if cfg.Days <= 0 {
		cfg.Days = 2
	}
	acq, err := NewAcquirer(cfg.DeclineRate, cfg.City.Seed)
	if err != nil {
		return nil, err
	}
	// The settlement API's port first, before anything is written to the
	// data dir: a port taken after the city was set up left a kept run a
	// retry was refused on (an outside test).
	var apiLn net.Listener
	if cfg.HTTPAddr != "" {
		if apiLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("settlement API listen %s: %w", cfg.HTTPAddr, err)
		}
		defer apiLn.Close()
	}
	city := NewCity(cfg.City)
	reg, feed, feedVersion, err := writeCity(city, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	led := cfg.Ledger
	if led == nil {
		rpc := cmp.Or(cfg.ChainRPCListen, "127.0.0.1:0")
		emb, err := ledger.OpenEmbedded(ctx, filepath.Join(cfg.DataDir, "chain"), ledger.WithHTTP(rpc)) // role commands act through it while the city runs
		if err != nil {
			return nil, fmt.Errorf("embedded chain: %w", err)
		}
		defer emb.Close()
		led = emb
		// The city's operators admit themselves and register their gates on
		// the chain, as they would on a shared ledger; clearing reads them there.
		if err := clearing.PublishRegistry(ctx, emb, reg); err != nil {
			return nil, err
		}
	}
	promReg := prometheus.NewRegistry()
	var natsCert, natsKey string
	if cfg.NATSTLS {
		var err error
		if natsCert, natsKey, err = writeSelfSignedCert(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	// The city's clock: travel days from 05:00 of the current fare day to
	// the cut-over after the last of Days, in Duration. It stands just
	// before that cut-over once there: the last travel day ends with the
	// jump to its close below, not while the outboxes drain, and no tap
	// spills into a fare day after it (an outside test saw the city end an
	// hour into one, and the day close measure that hour's rider days).
	cityStart := feed.FareDayBegins(feed.FareDay(time.Now())).Add(time.Hour)
	cityCutOver := feed.FareDayBegins(feed.FareDay(cityStart) + fares.Date(cfg.Days))
	clock := newCityClock(cityStart, float64(cityCutOver.Sub(cityStart))/float64(cfg.Duration))
	clock.holdAt(cityCutOver.Add(-time.Millisecond))
	const closeAfter = 30 * time.Minute
	var fc *faceCity
	var faceKey []byte
	if cfg.City.FaceShare > 0 {
		if cfg.FacePolicy == (gallery.Policy{}) {
			cfg.FacePolicy = gallery.DefaultPolicy()
		}
		if fc, err = loadFaceCity(cfg.FaceData, cfg.FacePolicy, cfg.City.Seed); err != nil {
			return nil, err
		}
		// The face template store's key, made for the run and kept beside it.
		if faceKey, err = runFaceKey(cfg.DataDir); err != nil {
			return nil, err
		}
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
		Registry: reg, Ledger: led, Period: cfg.Period, Logger: cfg.Logger, Metrics: promReg,
		Feed: feed, FeedVersion: feedVersion,
		Acquirer: acq, FareClock: clock.Now, FareClockRate: clock.speed, CloseAfter: closeAfter, CollectEvery: 100 * time.Millisecond,
		FaceKey: faceKey, FaceMaxGallery: cfg.FacePolicy.MaxGallery,
		VerifierPartitions: cfg.VerifierPartitions, VerifierKeys: verifiers.keys,
	})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	man, err := cityManifest(cfg.DataDir, led.ContractAddress().Hex(), cfg.Ledger == nil, feedVersion, cfg.Period, natsCert, natsKey, verifiers, acq)
	if err != nil {
		return nil, err
	}
	man.FaceMaxGallery = cfg.FacePolicy.MaxGallery
	if faceKey != nil {
		man.FaceKey = faceKeyFile
	}
	if err := writeManifest(cfg.DataDir, man); err != nil {
		return nil, err
	}
	// The city's denied cards go on clearing's deny list, which every
	// terminal follows (no terminal gets a static list).
	stolen := make([]clearing.DenyMedium, 0, len(city.Denied))
	for _, tok := range slices.Sorted(maps.Keys(city.Denied)) {
		stolen = append(stolen, clearing.DenyMedium{Media: fare.Card, Token: tok, Reason: "simulated: card reported stolen"})
	}
	if _, err := cl.DenyAll(ctx, stolen); err != nil {
		return nil, err
	}
	// Riders travel by the generator's habits; face riders are enrolled
	// for the stops of their commute (those who do not fit a gallery ride
	// by card).
	gen := newGenerator(city, cfg.City.Seed, clock)
	if fc != nil {
		if err := fc.enrol(ctx, cl, gen, cfg.City.FaceShare, cityStart.Add(-24*time.Hour)); err != nil {
			return nil, err
		}
	}
	// The image gates: one stop no face rider commutes through (the first
	// of an operator that is neither the metro nor its feeder bus; the
	// misconfigured gate of InjectBad stands at a last stop).
	var ic *imageCity
	if fc != nil && len(gen.others) > 0 {
		op := gen.others[0]
		if ic, err = openImageCity(ctx, cl, cfg.FaceImages, cfg.FaceModels, op.Stops[0].ID, cityStart.Add(-24*time.Hour)); err != nil {
			return nil, err
		}
		defer ic.rec.Close()
	}
	// The city's concession riders are enrolled by its concessions desk,
	// from the next fare day (enrolments are never backdated, and a fare
	// day is priced for the category of its start): the gates get the
	// enrolments with the deny list and put the category in each event.
	enrolled := 0
	for _, p := range city.Passengers {
		if p.RiderCategory != CategoryConcession {
			continue
		}
		if _, err := cl.Enrol(ctx, p.Media, p.Token, clearing.EnrolRequest{Category: CategoryConcession, ApprovedBy: "simulated concessions desk",
			ValidUntil: cityStart.Add(time.Duration(cfg.Days+7) * 24 * time.Hour)}); err != nil {
			return nil, fmt.Errorf("enrol concession rider: %w", err)
		}
		enrolled++
	}
	clr := startClearing(ctx, cl, abort)
	defer clr.stop()
	if err := verifiers.start(clr.ctx, cl.NATSURL(), natsCert, led, cfg.Logger); err != nil {
		return nil, err
	}
	defer verifiers.stop()
	// quarantined counts what clearing and the verifiers quarantined.
	quarantined := func() uint64 {
		n, _ := verifiers.quarantined()
		return cl.Stats().Quarantined + n
	}

	if apiLn != nil {
		ln := apiLn
		tokens, err := clearing.LoadTokenStore(filepath.Join(cfg.DataDir, "clearing", clearing.APITokenFile))
		if err != nil {
			return nil, err
		}
		_ = tokens.Revoke("simulator") // a kept data dir reused: a fresh token each run
		// The token printed for the run (in make run's and CI's logs) works
		// for the run only: revoked when it ends, and expiring within a day
		// should the process die before that.
		token, err := tokens.IssueUntil(clearing.RoleAuditor, "", "simulator", time.Now().Add(24*time.Hour))
		if err != nil {
			return nil, fmt.Errorf("settlement API token: %w", err)
		}
		defer func() {
			if err := tokens.Revoke("simulator"); err != nil {
				cfg.Logger.Warn("the run's settlement API token not revoked (it expires within a day)", "err", err)
			}
		}()
		srv := &http.Server{Handler: clearing.NewAPI(cl, promReg, clearing.WithTokens(tokens), clearing.WithAPILogger(cfg.Logger))}
		clearing.SetAPITimeouts(srv)
		limited := clearing.LimitAPIListener(ln)
		srv.ConnState = limited.ConnState
		go srv.Serve(limited)
		defer srv.Close()
		if cfg.OnAPI != nil {
			cfg.OnAPI("http://"+ln.Addr().String(), token)
		}
	}

	// Terminals.
	var terms []*simTerminal
	termCtx, stopTerms := context.WithCancel(ctx)
	var termWG sync.WaitGroup
	defer func() {
		stopTerms()
		termWG.Wait()
		for _, t := range terms {
			t.Close()
		}
	}()
	misconfigured := ""
	if cfg.InjectBad > 0 {
		last := city.Operators[len(city.Operators)-1]
		misconfigured = last.Stops[len(last.Stops)-1].Terminals[0].ID
	}
	for oi := range city.Operators {
		op := &city.Operators[oi]
		for si := range op.Stops {
			st := &op.Stops[si]
			for _, ts := range st.Terminals {
				stop := st.ID
				if ts.ID == misconfigured {
					stop = "moved-" + st.ID
				}
				dir := filepath.Join(cfg.DataDir, "terminals", ts.ID)
				var fg *faceGate
				var faces terminal.FaceMatcher
				var faceHead func() []byte
				switch {
				case ic != nil && st.ID == ic.stop:
					if fg, err = openImageGate(fc, ic, ts.ID, ts.Key, cl.ConfirmationKey(), dir); err != nil {
						return nil, err
					}
					faces, faceHead = fg.gate, fg.feed.SignedHead
				case fc != nil:
					if fg, err = openFaceGate(fc, ts.ID, ts.Key, cl.ConfirmationKey(), dir); err != nil {
						return nil, err
					}
					faces, faceHead = fg.gate, fg.feed.SignedHead
				}
				t, err := terminal.Open(terminal.Config{
					ID: ts.ID, Operator: op.ID, Stop: stop, Key: ts.Key,
					DataDir: dir, NATSURL: cl.NATSURL(), NATSCA: natsCert, Faces: faces, FaceHead: faceHead,
					ClearingKeys: []ed25519.PublicKey{cl.ConfirmationKey()}, Metrics: promReg, Logger: cfg.Logger, Now: clock.Now,
				})
				if err != nil {
					return nil, err
				}
				st := &simTerminal{Terminal: t, op: op, stop: st, faces: fg}
				terms = append(terms, st)
				termWG.Add(1)
				go func() {
					defer termWG.Done()
					if err := t.Run(termCtx); err != nil {
						cfg.Logger.Error("terminal stopped", "terminal", t.ID(), "err", err)
					}
				}()
				if fg != nil {
					termWG.Add(1)
					go func() {
						defer termWG.Done()
						if err := fg.follow(termCtx, cl.NATSURL(), t); err != nil {
							cfg.Logger.Error("face gallery stopped", "terminal", t.ID(), "err", err)
						}
					}()
				}
			}
		}
	}

	// Taps start once every gate holds the deny list's current version.
	if err := waitDenyList(ctx, cl, terms, 30*time.Second); err != nil {
		return nil, err
	}
	gen.attach(terms)
	if fc != nil {
		if err := waitFaceGalleries(ctx, terms, gen, ic, 30*time.Second); err != nil {
			return nil, err
		}
	}
	rep := &Report{
		Terminals: len(terms), Operators: len(city.Operators), Passengers: len(city.Passengers),
		Currency: city.Currency, Contract: led.ContractAddress().Hex(), RidersEnrolled: enrolled,
	}
	// Confirmation latency sampler.
	var sampWG sync.WaitGroup
	sampCtx, stopSamp := context.WithCancel(ctx)
	defer stopSamp()
	sampWG.Add(1)
	go func() {
		defer sampWG.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampCtx.Done():
				return
			case <-tick.C:
				for _, t := range terms {
					t.sampleConfirm()
				}
			}
		}
	}()

	clock.start() // the city's day begins with its traffic, not with its setup
	start := time.Now()
	var deniedAt deniedTaps
	var tapLat []time.Duration
	var tapLatMu sync.Mutex
	var lagMax time.Duration // the longest a tap was taken after it was due
	var generated, denied, failed atomic.Uint64
	// tapFailed counts a tap a gate could not take (its outbox write, its
	// disk room, its face check failed): the rider was turned away by a
	// fault, which no other figure shows (the tap used no sequence). A tap
	// the run's own interrupt cut short is none.
	tapFailed := func(what string, t *simTerminal, err error) {
		if ctx.Err() != nil {
			return
		}
		failed.Add(1)
		cfg.Logger.Error(what, "terminal", t.ID(), "err", err)
	}
	// The timeline: taps and applied events a second, until the drain.
	rep.TimelineStart = start.UTC()
	tl := startTimeline(ctx, start, time.Second, func() (uint64, uint64, uint64) {
		return generated.Load(), denied.Load(), cl.Stats().Applied
	})
	defer tl.stop()
	record := func(t *simTerminal, ev fare.Event, t0 time.Time) {
		generated.Add(1)
		if ev.Decision == fare.Denied {
			denied.Add(1)
			if ev.Reason == "deny-list" {
				deniedAt.add(ev.MediaToken, ev.DeviceTime)
			}
		}
		t.tapped(ev.Sequence, t0)
	}
	imgCtx, stopImages := context.WithCancel(ctx)
	var imgWG sync.WaitGroup
	if ic != nil && len(ic.probes) > 0 {
		var gates []*simTerminal
		for _, t := range terms {
			if t.stop.ID == ic.stop {
				gates = append(gates, t)
			}
		}
		imgWG.Add(1)
		go func() {
			defer imgWG.Done()
			ic.present(imgCtx, fc, gates, 500*time.Millisecond, clock, record, func(t *simTerminal, err error) { tapFailed("image gate", t, err) })
		}()
	}
	if cfg.OnTraffic != nil {
		cfg.OnTraffic()
	}
	tapErr := gen.run(ctx, cfg, start, func(t *simTerminal, tap terminal.Tap, due time.Time) (fare.Event, bool) {
		t0 := time.Now()
		var ev fare.Event
		var err error
		face := tap.Media == fare.Face && fc != nil
		if face {
			ev, err = t.TapFace(ctx, terminal.FaceTap{Gate: tap.Gate, Direction: tap.Direction, Frames: [][]byte{fc.frame(tap.Token)}, Time: tap.Time})
		} else {
			ev, err = t.Tap(ctx, tap)
		}
		d := time.Since(t0)
		if err != nil {
			tapFailed("tap", t, err)
			return ev, false
		}
		if due.After(t0) {
			due = t0
		} else if lag := t0.Sub(due); lag > 0 {
			tapLatMu.Lock()
			lagMax = max(lagMax, lag)
			tapLatMu.Unlock()
		}
		record(t, ev, due) // confirmation latency from when the tap was due
		tapLatMu.Lock()
		tapLat = append(tapLat, d)
		tapLatMu.Unlock()
		if face {
			// The camera showed the rider; now and then a stranger comes
			// after them, a presentation of its own (its time not the
			// rider's).
			fc.count(ev, tap.Token, d)
			if fr := fc.strangerFrame(); fr != nil {
				s0 := time.Now()
				sev, err := t.TapFace(ctx, terminal.FaceTap{Gate: tap.Gate, Direction: tap.Direction, Frames: [][]byte{fr}, Time: tap.Time})
				if err != nil {
					tapFailed("face tap", t, err)
				} else {
					sd := time.Since(s0)
					fc.count(sev, "", sd)
					record(t, sev, s0)
					tapLatMu.Lock()
					tapLat = append(tapLat, sd)
					tapLatMu.Unlock()
				}
			}
		}
		return ev, true
	}, func(elapsed time.Duration) {
		st := cl.Stats()
		cfg.Progress(fmt.Sprintf("t=%3.0fs city %s taps=%d applied=%d quarantined=%d batches=%d/%d payments=%d declined=%d",
			elapsed.Seconds(), clock.Now().Format("Mon 15:04"), generated.Load(), st.Applied, st.Quarantined, st.BatchesCommitted, st.BatchesSealed,
			st.PaymentsAsked, st.PaymentsDeclined))
	})
	stopImages()
	imgWG.Wait()
	if tapErr != nil && ctx.Err() == nil {
		return nil, tapErr
	}
	genTime := time.Since(start)
	// interrupted ends a run stopped after its traffic with what was
	// measured by then (a partial report, Stopped saying why); nothing is
	// checked: the guarantees' fields stay empty.
	interrupted := func(err error) (*Report, error) {
		stopSamp()
		sampWG.Wait()
		err = withCause(ctx, err)
		rep.Stopped = err.Error()
		rep.DurationSeconds = genTime.Seconds()
		rep.TapsGenerated, rep.TapsDenied, rep.TapsFailed = generated.Load(), denied.Load(), failed.Load()
		var written uint64
		for _, t := range terms {
			t.sampleConfirm()
			written += t.LastSequence()
			rep.OutboxPending += t.Pending()
		}
		addTerminalCounts(rep, terms)
		rep.TapsGenerated = max(rep.TapsGenerated, written)
		rep.TapRatePerSecond = float64(rep.TapsGenerated) / genTime.Seconds()
		st := cl.Stats()
		rep.Applied, rep.DuplicatesDropped = st.Applied, st.Duplicates
		vq, vwhy := verifiers.quarantined()
		rep.Quarantined, rep.QuarantinedByReason = st.Quarantined+vq, st.QuarantineByWhy
		for k, n := range vwhy {
			if rep.QuarantinedByReason == nil {
				rep.QuarantinedByReason = map[string]uint64{}
			}
			rep.QuarantinedByReason[k] += n
		}
		var confirm []time.Duration
		for _, t := range terms {
			confirm = append(confirm, t.lat...)
		}
		tapLatMu.Lock()
		rep.TapLatencyMs, rep.TapLatencyCDF = percentiles(tapLat), latencyCDF(tapLat)
		rep.GeneratorLagMs = durationMs(lagMax)
		tapLatMu.Unlock()
		rep.ConfirmLatencyMs, rep.ConfirmLatencyCDF = percentiles(confirm), latencyCDF(confirm)
		// What was measured by then, as a whole run reports it (an outside
		// test found the CDFs, the reasons and the timeline null).
		rep.Timeline = tl.finish(time.Now())
		return rep, err
	}
	// Interrupted during the traffic: said so (the drain below would call
	// it interrupted while the outboxes drained, which had not begun).
	if err := ctx.Err(); err != nil {
		return interrupted(fmt.Errorf("simulation interrupted during its traffic, %.1f s into %s: %w", genTime.Seconds(), cfg.Duration, err))
	}

	// Drain: every outbox empty.
	drainBy := time.Now().Add(2 * time.Minute)
	for {
		var pending uint64
		for _, t := range terms {
			pending += t.Pending()
		}
		if pending == 0 || time.Now().After(drainBy) {
			rep.OutboxPending = pending
			break
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return interrupted(fmt.Errorf("simulation interrupted while the outboxes drained (%d events pending): %w", pending, err))
		}
	}
	// Interrupted as the traffic stopped: nothing more is started (no bad
	// message injected), and the run ends now rather than after its waits.
	if err := ctx.Err(); err != nil {
		return interrupted(fmt.Errorf("simulation interrupted: %w", err))
	}
	rep.Timeline = tl.finish(time.Now())
	// Bad messages go in after the drain, so the replayed sequence is one
	// clearing has already applied.
	if cfg.InjectBad > 0 {
		n, refused, err := injectBad(ctx, cl.NATSURL(), terms, misconfigured, cfg.InjectBad)
		if err != nil {
			return nil, fmt.Errorf("inject bad messages: %w", err)
		}
		rep.BadInjected, rep.RefusedByNATS = n, refused
		for deadline := time.Now().Add(30 * time.Second); quarantined()-cl.Stats().Rejected < rep.BadInjected-refused && time.Now().Before(deadline); {
			if err := pause(ctx, 20*time.Millisecond); err != nil {
				return nil, fmt.Errorf("simulation interrupted while waiting for the bad messages' quarantine: %w", err)
			}
		}
	}
	// The last travel day ends: jump the city's clock (standing before its
	// cut-over) past the cut-over and the billing delay, and wait until
	// every rider day is billed.
	lastDay := feed.FareDay(clock.Now())
	if err := billDayClose(ctx, cl, rep, func() { clock.jumpTo(feed.FareDayBegins(lastDay + 1).Add(closeAfter + time.Minute)) }); err != nil {
		return nil, err
	}
	cityEnd := clock.Now()
	rep.CityStart, rep.CityEnd = cityStart.Format(time.RFC3339), cityEnd.Format(time.RFC3339)
	man.CityClock = cityEnd.UTC()
	if err := writeManifest(cfg.DataDir, man); err != nil {
		return nil, err
	}
	rep.Journeys = int(gen.journey.Load())
	// Every gate holds the list the day's billing left (debtors on it),
	// as each would after its next reconnect.
	behind, err := gatesBehind(ctx, cl, terms, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if len(behind) > 0 {
		cfg.Logger.Error("gates behind the deny list at the end", "gates", behind)
	}
	nBehind := len(behind)
	rep.GatesBehindDenyList = &nBehind
	stopSamp()
	sampWG.Wait()
	for _, t := range terms {
		t.sampleConfirm()
	}

	settleCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := cl.Settle(settleCtx); err != nil {
		return nil, fmt.Errorf("final settlement: %w", err)
	}
	stopTerms()
	termWG.Wait()
	if err := clr.wait(); err != nil {
		return nil, fmt.Errorf("clearing: %w", err)
	}

	// Report from the stores.
	rep.DurationSeconds = genTime.Seconds()
	rep.TapsGenerated = generated.Load()
	// A tap the traffic's stop interrupted after its event was written
	// (Tap returns the context's error, the sequence is used) was not
	// counted where it was made: the outboxes' sequences are the truth.
	var written uint64
	for _, t := range terms {
		written += t.LastSequence()
	}
	if written > rep.TapsGenerated {
		cfg.Logger.Info("taps whose event was written as the traffic stopped, counted from the outboxes", "counted", rep.TapsGenerated, "written", written)
		// In the timeline's second the traffic stopped in, so that it
		// still sums to the total.
		if i := slices.IndexFunc(rep.Timeline, func(s ReportSample) bool { return s.T >= genTime.Seconds() }); i >= 0 {
			rep.Timeline[i].Taps += written - rep.TapsGenerated
		}
		rep.TapsGenerated = written
	}
	rep.TapsDenied, rep.TapsFailed = denied.Load(), failed.Load()
	rep.TapRatePerSecond = float64(rep.TapsGenerated) / genTime.Seconds()
	addTerminalCounts(rep, terms)
	// The deny list and the billing states are read together, between two
	// bills (a debt paid off clears its billing state a moment before its
	// deny-list entry goes).
	pt, denyVersion, denyEntries, err := cl.BillingSnapshot()
	if err != nil {
		return nil, err
	}
	rep.DenyListVersion, rep.DenyListEntries = denyVersion, denyEntries
	st := cl.Stats()
	rep.DuplicatesDropped = st.Duplicates
	vq, vwhy := verifiers.quarantined()
	rep.Quarantined = st.Quarantined + vq
	rep.QuarantinedByReason = st.QuarantineByWhy
	for k, n := range vwhy {
		rep.QuarantinedByReason[k] += n
	}
	rep.VerifierPartitions, rep.VerifiedByPartition = cfg.VerifierPartitions, verifiers.forwarded()
	store := cl.Store()
	rejections, err := store.Rejections()
	if err != nil {
		return nil, err
	}
	rep.Rejected = uint64(len(rejections))
	if err := rep.countApplied(store, terms); err != nil {
		return nil, err
	}
	// One audit of the store, the journal's included (read once).
	if err := rep.auditStore(ctx, store, led); err != nil {
		return nil, err
	}
	rep.BatchProblems = []string{}
	rep.OperatorRevenue = make(map[string]clearing.Money)
	for _, op := range city.Operators {
		b, err := store.Balance(clearing.OperatorAccount(op.ID))
		if err != nil {
			return nil, err
		}
		rep.OperatorRevenue[op.ID] = rep.money(int64(b.Net()))
	}
	riders, err := store.Balances("passenger/", "", 1<<30)
	if err != nil {
		return nil, err
	}
	var charged int64
	for _, b := range riders {
		charged -= int64(b.Net())
	}
	// Payments: what riders paid went to their accounts; what they were
	// charged is that plus what they still owe.
	rep.RiderCharges = rep.money(charged + int64(pt.Paid))
	rep.PaymentsAsked, rep.PaymentsApproved, rep.PaymentsDeclined = pt.Attempts, pt.Approved, pt.Declined
	rep.Payments, rep.RidersInDebt, rep.Debt, rep.UnbilledDays = rep.money(int64(pt.Paid)), pt.RidersInDebt, rep.money(int64(pt.Debt)), pt.UnbilledDays
	acqBal, err := store.Balance(clearing.AcquirerAccount)
	if err != nil {
		return nil, err
	}
	rep.AcquirerReceived = rep.money(-int64(acqBal.Net()))
	for _, p := range city.Passengers {
		pays, err := store.Payments(cl.RiderAccount(p.Media, p.Token))
		if err != nil {
			return nil, err
		}
		for _, pay := range pays {
			if !pay.Approved {
				rep.DenyListDebtEntries++
				rep.DeniedAtGateForDebt += deniedAt.since(p.Token, pay.At)
				break
			}
		}
	}
	fa, err := cl.AuditFares()
	if err != nil {
		return nil, err
	}
	if fa != nil {
		rep.FareRecompute, rep.FareRecomputeMismatch = rep.fareAudit(fa), fa.Count
		rep.JourneysPriced, rep.JourneysMultiOperator, rep.JourneysIncomplete, rep.RidersCapped = fa.Journeys, fa.MultiOperator, fa.Incomplete, fa.RidersCapped
	}
	rep.TapsUnpriced = cl.Stats().Unpriced
	batches, err := store.Batches(1, 1<<30)
	if err != nil {
		return nil, err
	}
	for _, b := range batches {
		rep.Batches = append(rep.Batches, rep.batch(b))
		if _, err := store.Commit(b.ID); err == nil {
			rep.BatchesAnchored++
		}
	}
	rep.BatchesSealed = len(batches)
	if rep.DenyListDebtListed, rep.DenyListDebtWrong, err = debtListings(store, cl, city.Passengers); err != nil {
		return nil, err
	}
	for _, a := range rep.Audit {
		if a.Problem != "" {
			rep.BatchProblems = append(rep.BatchProblems, fmt.Sprintf("batch %d: %s", a.ID, a.Problem))
			if a.ChainRoot != "" && a.ChainRoot != a.ComputedRoot {
				rep.BatchRootMismatches++ // a pending batch has no root on chain to differ
			}
		}
	}
	var confirm []time.Duration
	for _, t := range terms {
		confirm = append(confirm, t.lat...)
	}
	rep.ConfirmLatencyMs = percentiles(confirm)
	rep.TapLatencyMs = percentiles(tapLat)
	rep.ConfirmLatencyCDF, rep.TapLatencyCDF = latencyCDF(confirm), latencyCDF(tapLat)
	tapLatMu.Lock()
	rep.GeneratorLagMs = durationMs(lagMax)
	tapLatMu.Unlock()
	if fc != nil {
		fc.report(rep)
	}
	return rep, nil
}

// waitDenyList waits until every terminal holds clearing's deny-list and
// enrolments versions, at most within; the error names the terminals that
// do not.
func waitDenyList(ctx context.Context, cl *clearing.Clearing, terms []*simTerminal, within time.Duration) error {
	behind, err := gatesBehind(ctx, cl, terms, within)
	if err != nil || len(behind) == 0 {
		return err
	}
	want, n := cl.DenyListVersion()
	if len(behind) > 5 {
		behind = append(behind[:5], fmt.Sprintf("and %d more", len(behind)-5))
	}
	return fmt.Errorf("%d of %d terminals do not hold the deny list's version %d (%d entries) after %s: %v", len(behind), len(terms), want, n, within, behind)
}

// debtListings reads the store's deny list: how many media it holds for
// debt, and how many of riders are listed otherwise than their billing
// says (in debt and not listed for it, or listed for it and not in debt:
// counts alike can hide one of each); nil riders, nil (not checked).
func debtListings(store *clearing.Store, cl *clearing.Clearing, riders []Passenger) (listed int, wrong *int, err error) {
	_, entries, err := store.DenyEntries("", 0)
	if err != nil {
		return 0, nil, fmt.Errorf("read the deny list: %w", err)
	}
	forDebt := map[string]bool{}
	for _, e := range entries {
		if slices.Contains(e.Grounds, clearing.DenyGroundDebt) {
			forDebt[e.Key] = true
		}
	}
	if riders == nil {
		return len(forDebt), nil, nil
	}
	n := 0
	for _, p := range riders {
		b, err := store.Billing(cl.RiderAccount(p.Media, p.Token))
		if err != nil {
			return 0, nil, err
		}
		if (b.Status == clearing.BillingDebt) != forDebt[fare.HashDeny(p.Media, p.Token).Hex()] {
			n++
		}
	}
	return len(forDebt), &n, nil
}

// auditStore runs the full store audit (what `faregate ledger audit`
// runs) and puts it in rep: one entry per batch (a pending one a problem,
// after a final settlement), the store-wide findings, each on a line,
// and the journal's audit.
func (rep *Report) auditStore(ctx context.Context, store *clearing.Store, led ledger.Ledger) error {
	a, err := store.Audit(ctx, led, clearing.AuditOptions{Currency: rep.Currency})
	if err != nil {
		return err
	}
	rep.JournalTransfers, rep.JournalImbalance, rep.JournalMismatches = a.Journal.Transfers, rep.money(int64(a.Journal.Imbalance)), a.Journal.Mismatches
	if rep.JournalMismatches == nil {
		rep.JournalMismatches = []string{} // checked, none: [] (null only in a report that checked nothing)
	}
	batches := make([]clearing.BatchAudit, 0, len(a.Batches))
	for _, b := range a.Batches {
		if b.State == clearing.BatchPending {
			b.Problem = "not on chain (pending)"
		}
		batches = append(batches, b)
	}
	findings := []string{}
	for _, m := range a.Mismatches {
		if m.BatchID == 0 {
			findings = append(findings, m.String())
		}
	}
	rep.Audit, rep.AuditFindings = batches, findings
	return nil
}

// gatesBehind waits up to within for every gate to hold the deny list's
// and the enrolments' current versions, and names those that still do
// not (an error only when ctx ends).
func gatesBehind(ctx context.Context, cl *clearing.Clearing, terms []*simTerminal, within time.Duration) ([]string, error) {
	deadline := time.Now().Add(within)
	for {
		want, _ := cl.DenyListVersion()
		wantEnrol, _ := cl.EnrolmentListVersion()
		var behind []string
		for _, t := range terms {
			v, _ := t.DenyListVersion()
			e, _ := t.EnrolmentVersion()
			if v != want || e != wantEnrol {
				behind = append(behind, fmt.Sprintf("%s (version %d, enrolments %d)", t.ID(), v, e))
			}
		}
		if len(behind) == 0 || time.Now().After(deadline) {
			return behind, nil
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return nil, fmt.Errorf("interrupted waiting for the deny list at the gates: %w", err)
		}
	}
}

// sampleConfirm records tap-to-confirmation latency for newly confirmed
// sequences (resolution: the sampling interval). The time is read after
// the lock, so a tap recorded since the sampler woke is never measured
// against an earlier time (a negative latency).
func (t *simTerminal) sampleConfirm() { t.seeConfirmed(t.Confirmed()) }

// seeConfirmed records that sequences up to w are confirmed now.
func (t *simTerminal) seeConfirmed(w uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for ; t.seenTo < w; t.seenTo++ {
		if t.seenTo < uint64(len(t.tapAt)) && !t.tapAt[t.seenTo].IsZero() {
			t.lat = append(t.lat, now.Sub(t.tapAt[t.seenTo]))
			continue
		}
		if t.confirmedAt == nil {
			t.confirmedAt = map[uint64]time.Time{}
		}
		t.confirmedAt[t.seenTo+1] = now
	}
}

// tapped records that the tap of sequence seq was due at at (measured at
// once if its confirmation was seen already).
func (t *simTerminal) tapped(seq uint64, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.confirmedAt[seq]; ok {
		delete(t.confirmedAt, seq)
		t.lat = append(t.lat, c.Sub(at))
		return
	}
	for uint64(len(t.tapAt)) < seq {
		t.tapAt = append(t.tapAt, time.Time{})
	}
	t.tapAt[seq-1] = at
}

// addTerminalCounts adds what the terminals count themselves to rep:
// events published, events dead-lettered, confirmations and gate-list
// values refused.
func addTerminalCounts(rep *Report, terms []*simTerminal) {
	for _, t := range terms {
		rep.EventsPublished += t.Published()
		rep.DeadLettered += t.RejectedEvents()
		rep.RefusedConfirms += t.RefusedConfirmations()
		for reason, n := range t.DenyRefusals() {
			if rep.RefusedDenyMessages == nil {
				rep.RefusedDenyMessages = make(map[string]uint64)
			}
			rep.RefusedDenyMessages[reason] += n
		}
	}
}

// countApplied checks exactly-once from the store for the city's
// terminals (countAppliedIDs).
func (r *Report) countApplied(store *clearing.Store, terms []*simTerminal) error {
	ids := make([]string, len(terms))
	for i, t := range terms {
		ids[i] = t.ID()
	}
	return r.countAppliedIDs(store, ids)
}

// percentiles sorts ds and returns its p50, p90, p99 and max in
// milliseconds; nil without samples.
func percentiles(ds []time.Duration) map[string]float64 {
	if len(ds) == 0 {
		return nil
	}
	slices.Sort(ds)
	at := func(p float64) float64 { return durationMs(ds[rank(p, len(ds))]) }
	return map[string]float64{"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": at(1)}
}

// injectBad publishes n messages of each bad kind straight to NATS, as the
// busiest terminal: an authenticated device gone wrong. It returns how many
// it sent and how many of those NATS itself refused.
func injectBad(ctx context.Context, url string, terms []*simTerminal, skip string, n int) (sent, refused uint64, err error) {
	// The busiest correctly configured terminal: its sequence 1 is certainly applied.
	var busiest *simTerminal
	for _, t := range terms {
		if t.ID() != skip && (busiest == nil || t.LastSequence() > busiest.LastSequence()) {
			busiest = t
		}
	}
	if busiest == nil || busiest.LastSequence() == 0 {
		return 0, 0, errors.New("no terminal has tapped yet")
	}
	var other *simTerminal
	for _, t := range terms {
		if t != busiest {
			other = t
			break
		}
	}
	violations := make(chan error, 4*n+4)
	nc, err := nats.Connect(url, append(busiest.NATSOptions(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case violations <- err:
		default:
		}
	}))...)
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	op, st := busiest.op, busiest.stop
	var ts TerminalSpec
	for _, spec := range st.Terminals {
		if spec.ID == busiest.ID() {
			ts = spec
		}
	}
	_, strangerKey, _ := ed25519.GenerateKey(nil)
	last := busiest.LastSequence()
	for i := 0; i < n; i++ {
		ev := fare.Event{
			ID: fare.NewEventID(time.Now()), Terminal: ts.ID, Operator: op.ID, Stop: st.ID, Gate: gateOf(ts.ID),
			Direction: fare.Validate, Media: fare.Card, MediaToken: "forged-card", DeviceTime: time.Now(),
			Decision: fare.Accepted, Sequence: 1 + uint64(i)%last, // used sequences: forgery burns none
		}
		forged, err := fare.Sign(&ev, strangerKey) // right terminal id, wrong key
		if err != nil {
			return sent, refused, err
		}
		foreign := ev
		foreign.ID, foreign.Terminal = fare.NewEventID(time.Now()), other.ID()
		foreignRaw, _ := fare.Sign(&foreign, ts.Key)
		replay := ev
		replay.ID, replay.Sequence = fare.NewEventID(time.Now()), 1 // long used by a real event
		replayRaw, _ := fare.Sign(&replay, ts.Key)
		for _, m := range []struct {
			subj string
			data []byte
		}{
			{fare.EventSubject(op.ID, ts.ID), forged},
			{fare.EventSubject(op.ID, ts.ID), foreignRaw},
			{fare.EventSubject(op.ID, ts.ID), forged[:len(forged)/2]},
			{fare.EventSubject(op.ID, ts.ID), replayRaw},
		} {
			// A plain publish: the event stream sends no acks.
			if err := nc.Publish(m.subj, m.data); err != nil {
				return sent, refused, fmt.Errorf("publish bad message: %w", err)
			}
			sent++
		}
		// Publishing as another terminal: NATS refuses it.
		if err := nc.Publish(fare.EventSubject(other.op.ID, other.ID()), foreignRaw); err != nil {
			return sent, refused, err
		}
		sent++
	}
	flushCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := nc.FlushWithContext(flushCtx); err != nil {
		return sent, refused, fmt.Errorf("flush bad messages: %w", err)
	}
	deadline := time.After(5 * time.Second)
	for refused < uint64(n) {
		select {
		case <-ctx.Done():
			return sent, refused, ctx.Err()
		case err := <-violations:
			if errors.Is(err, nats.ErrPermissionViolation) {
				refused++
			}
		case <-deadline:
			return sent, refused, fmt.Errorf("NATS refused %d of %d publishes on another terminal's subject", refused, n)
		}
	}
	return sent, refused, nil
}

// listenAddr splits a NATSListen address into clearing's NATSHost and
// NATSPort: empty is any free loopback port.
func listenAddr(addr string) (string, int, error) {
	if addr == "" {
		return "127.0.0.1", -1, nil
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("NATS listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("NATS listen address %q: port %q is not 0 to 65535", addr, p)
	}
	return host, port, nil
}
