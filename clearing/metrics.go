package clearing

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	applied, duplicates, batchesCommitted prometheus.Counter
	quarantined                           *prometheus.CounterVec
	batchSeconds                          prometheus.Histogram
	rejected                              prometheus.Counter
	gaps                                  prometheus.Gauge
	priced, unpriced                      prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		applied:          prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_events_applied_total", Help: "Events verified, deduplicated and durably applied."}),
		duplicates:       prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_events_duplicate_total", Help: "Redelivered or resent events recognised as already applied."}),
		batchesCommitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_batches_committed_total", Help: "Settlement batches committed to the ledger."}),
		quarantined:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "faregate_clearing_events_quarantined_total", Help: "Messages quarantined, by reason."}, []string{"reason"}),
		batchSeconds:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: "faregate_clearing_fetch_batch_seconds", Help: "Time to verify, apply, sync and ack one fetched batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		rejected:         prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_sequences_rejected_total", Help: "Terminal sequences rejected for good (recorded, and confirmed to the terminal as rejected)."}),
		gaps:             prometheus.NewGauge(prometheus.GaugeOpts{Name: "faregate_clearing_terminals_with_gap", Help: "Terminals with a sequence missing below the highest one clearing holds."}),
	}
	m.priced = prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_taps_priced_total", Help: "Accepted taps booked in their rider's fare day from the GTFS feed."})
	m.unpriced = prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_taps_unpriced_total", Help: "Accepted taps the feed could not price: applied, charged nothing, to review."})
	r.MustRegister(m.applied, m.duplicates, m.batchesCommitted, m.quarantined, m.batchSeconds, m.rejected, m.gaps, m.priced, m.unpriced)
	return m
}

func (m *metrics) observe(res applyResult, d time.Duration) {
	m.applied.Add(float64(res.applied))
	m.duplicates.Add(float64(res.duplicate))
	m.rejected.Add(float64(res.rejected))
	m.priced.Add(float64(res.pricing.Priced))
	m.unpriced.Add(float64(res.pricing.Unpriced))
	for i, o := range res.outcomes {
		if o == Quarantined {
			m.quarantined.WithLabelValues(res.reasons[i]).Inc()
		}
	}
	m.batchSeconds.Observe(d.Seconds())
}
