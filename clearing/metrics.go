package clearing

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/ledger"
)

// quarantineReasons is every reason clearing quarantines a message for:
// the quarantine counter is zero-initialised for each, so that a dashboard
// or an alert sees 0 rather than no series at all.
var quarantineReasons = []string{
	ReasonMalformed, ReasonSubjectMismatch, ReasonUnknownTerminal, ReasonTerminalRevoked,
	ReasonOperatorMismatch, ReasonStopMismatch, ReasonBadSignature, ReasonSequenceReplayed,
	ReasonSequenceConflict, ReasonSequenceAhead, ReasonFaceNotHeld, ReasonEventIDTaken,
	ReasonDeviceTimeAhead, ReasonDeviceTimeBehind, ReasonDeviceTimeFarAhead,
}

// QuarantineReasons lists every reason a message can be quarantined for
// (the values of the Faregate-Reason header and of the quarantine
// counter's reason label).
func QuarantineReasons() []string { return append([]string(nil), quarantineReasons...) }

// metrics are clearing's Prometheus metrics and the recent window the live
// dashboard reads (tap rate, confirmation latency, last contact). Clearing
// always has one; its collectors are registered only when Config.Metrics
// is set.
type metrics struct {
	applied, duplicates, batchesCommitted prometheus.Counter
	quarantined                           *prometheus.CounterVec
	batchSeconds                          prometheus.Histogram
	rejected                              prometheus.Counter
	gaps                                  prometheus.Gauge
	idleTimeframes                        prometheus.Gauge
	gapsOpened                            prometheus.Counter
	datedAhead                            prometheus.Counter
	priced, unpriced                      prometheus.Counter
	// pending is the consumer's lag: events in the stream not yet
	// delivered to clearing (pendingNow keeps the value for the dashboard).
	pending    prometheus.Gauge
	pendingNow atomic.Uint64
	// sealSeconds times closing a period into a batch (Merkle tree, nets,
	// synced write); commitSeconds a batch's ledger transaction, from send
	// to mined; commitErrors the failed ones.
	sealSeconds, commitSeconds prometheus.Histogram
	commitErrors               prometheus.Counter
	// tapToApplied is the confirmation latency: from the tap's device time
	// to its batch durably applied (and its confirmation on the way).
	tapToApplied prometheus.Histogram
	// partitionPending is each verifier partition's backlog: events not
	// yet verified and forwarded (pending plus delivered, unacked).
	partitionPending *prometheus.GaugeVec
	// apiRefused counts the settlement API's refusals of who asks: no or
	// a bad token (401), a party asking past its part (403, or 404 where
	// the route hides what exists).
	apiRefused *prometheus.CounterVec

	live *liveWindow
}

// newMetrics builds clearing's metrics and registers them with r (nil:
// not registered, kept for the dashboard only).
func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		applied:          prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_events_applied_total", Help: "Events verified, deduplicated and durably applied."}),
		duplicates:       prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_events_duplicate_total", Help: "Redelivered or resent events recognised as already applied."}),
		batchesCommitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_batches_committed_total", Help: "Settlement batches committed to the ledger."}),
		quarantined:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "faregate_clearing_events_quarantined_total", Help: "Messages quarantined, by reason."}, []string{"reason"}),
		batchSeconds:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: "faregate_clearing_fetch_batch_seconds", Help: "Time to verify, apply, sync and ack one fetched batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		rejected:         prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_sequences_rejected_total", Help: "Terminal sequences rejected for good (recorded, and confirmed to the terminal as rejected)."}),
		gaps:             prometheus.NewGauge(prometheus.GaugeOpts{Name: "faregate_clearing_terminals_with_gap", Help: "Terminals with a sequence missing below the highest one clearing holds."}),
		idleTimeframes:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "faregate_clearing_feed_idle_timeframe_services", Help: "Services the fare feed's timeframes name that run on no day from the current fare day on (their calendar.txt dates ended, no calendar_dates.txt addition is later): fare leg rules with them match nothing, so peak, off-peak or weekend fares are left out (checked each fare day)."}),
		gapsOpened:       prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_gaps_opened_total", Help: "Gaps detected: times a terminal's stream went from contiguous to a sequence missing below one clearing holds."}),
		datedAhead:       prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_taps_dated_ahead_total", Help: "Deliveries of taps (resends and redeliveries included) taken though dated more than 5 minutes ahead of clearing's clock: a gate's clock running fast, whose taps are priced by the time it stamps (the log names the terminals)."}),
		priced:           prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_taps_priced_total", Help: "Accepted taps booked in their rider's fare day from the GTFS feed."}),
		unpriced:         prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_taps_unpriced_total", Help: "Accepted taps the feed could not price: applied, to review (their journey charged leg by leg where the feed knows a leg's fare, else nothing)."}),
		pending:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "faregate_clearing_consumer_pending", Help: "Consumer lag: events in the event stream not yet delivered to clearing's consumer (from the last fetch, or the last readiness check)."}),
		sealSeconds:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "faregate_clearing_batch_seal_seconds", Help: "Time to seal a settlement period into a batch: Merkle tree, per-operator nets, synced write.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		commitSeconds:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "faregate_clearing_ledger_commit_seconds", Help: "Time to commit a sealed batch to the ledger (anchor it): transaction sent to mined.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		commitErrors:     prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_ledger_commit_errors_total", Help: "Rounds of the commit loop (every 5 s, and after each seal) that failed: the ledger unreachable, a commit refused or not mined; a round fails while the ledger cannot be read even with nothing to commit."}),
		tapToApplied:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: "faregate_clearing_tap_to_applied_seconds", Help: "Confirmation latency: from a tap's device time to its event durably applied by clearing.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}),
		partitionPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "faregate_clearing_verifier_partition_backlog", Help: "Events of a verifier partition not yet verified and forwarded (pending plus delivered and unacked); growing with no fetcher waiting means no verifier works on it."}, []string{"partition"}),
		apiRefused:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "faregate_clearing_api_refused_total", Help: "Settlement API requests refused for who asked, by status (401: no, a malformed or a bad token; 403 or 404: a token asking past its part; 429: a token over its request rate) and reason (missing_token, malformed_header, bad_token, unknown_operator, not_permitted, rate_limited)."}, []string{"status", "reason"}),
		live:             newLiveWindow(),
	}
	for _, sr := range apiRefusalKinds {
		m.apiRefused.WithLabelValues(sr[0], sr[1])
	}
	for _, reason := range quarantineReasons {
		m.quarantined.WithLabelValues(reason)
	}
	if r != nil {
		r.MustRegister(m.applied, m.duplicates, m.batchesCommitted, m.quarantined, m.batchSeconds, m.rejected, m.gaps, m.idleTimeframes, m.gapsOpened, m.datedAhead,
			m.priced, m.unpriced, m.pending, m.sealSeconds, m.commitSeconds, m.commitErrors, m.tapToApplied, m.partitionPending, m.apiRefused)
	}
	return m
}

// observe records an applied batch: its counts, the confirmation latency of
// each applied event (appliedAt less its device time), the terminals heard
// from, and d, the time the batch took.
func (m *metrics) observe(res applyResult, cands []candidate, appliedAt time.Time, clockRate float64, d time.Duration) {
	if clockRate <= 0 {
		clockRate = 1
	}
	m.applied.Add(float64(res.applied))
	m.duplicates.Add(float64(res.duplicate))
	m.rejected.Add(float64(res.rejected))
	m.priced.Add(float64(res.pricing.Priced))
	m.unpriced.Add(float64(res.pricing.Unpriced))
	quarantined := 0
	lat := make([]float64, 0, res.applied)
	for i, o := range res.outcomes {
		switch o {
		case Quarantined:
			m.quarantined.WithLabelValues(res.reasons[i]).Inc()
			quarantined++
		case Applied:
			if i < len(cands) && cands[i].ev != nil {
				// A device clock ahead of clearing's would give a negative
				// latency: counted as none.
				s := max(appliedAt.Sub(cands[i].ev.DeviceTime).Seconds()/clockRate, 0)
				m.tapToApplied.Observe(s)
				lat = append(lat, s)
			}
		}
	}
	m.batchSeconds.Observe(d.Seconds())
	m.live.add(time.Now(), res.applied, quarantined, lat, res.touched)
}

// fetched records the consumer's lag from a fetched batch: the last
// message's metadata says how many are still pending behind it. An empty
// fetch (it waited and nothing came) means none is.
func (m *metrics) fetched(msgs []jetstream.Msg) {
	if m == nil {
		return
	}
	if len(msgs) == 0 {
		m.setPending(0)
		return
	}
	if md, err := msgs[len(msgs)-1].Metadata(); err == nil {
		m.setPending(md.NumPending)
	}
}

func (m *metrics) setPending(n uint64) {
	if m == nil {
		return
	}
	m.pending.Set(float64(n))
	m.pendingNow.Store(n)
}

// sealed records the time one period took to seal.
func (m *metrics) sealed(d time.Duration) {
	if m != nil {
		m.sealSeconds.Observe(d.Seconds())
	}
}

// gapsOpen counts terminals whose stream has just gone from contiguous to
// gapped.
func (m *metrics) gapsOpen(n int) {
	if m != nil && n > 0 {
		m.gapsOpened.Add(float64(n))
	}
}

// timed returns l with its batch commits timed into commitSeconds (and
// failures counted); l itself when there are no metrics.
func (m *metrics) timed(l ledger.Ledger) ledger.Ledger {
	if m == nil {
		return l
	}
	return timedLedger{Ledger: l, m: m}
}

// timedLedger is a ledger whose CommitBatch is timed.
type timedLedger struct {
	ledger.Ledger
	m *metrics
}

// CommitBatch commits b through the wrapped ledger and records how long it
// took when it did (failed attempts are counted by the commit loop).
func (t timedLedger) CommitBatch(ctx context.Context, b ledger.Batch) (ledger.Receipt, error) {
	start := time.Now()
	r, err := t.Ledger.CommitBatch(ctx, b)
	if err == nil {
		t.m.commitSeconds.Observe(time.Since(start).Seconds())
	}
	return r, err
}
