package clearing

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	applied, duplicates, batchesCommitted prometheus.Counter
	quarantined                           *prometheus.CounterVec
	batchSeconds                          prometheus.Histogram
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		applied:          prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_events_applied_total", Help: "Events verified, deduplicated and durably applied."}),
		duplicates:       prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_events_duplicate_total", Help: "Redelivered or resent events recognised as already applied."}),
		batchesCommitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "faregate_clearing_batches_committed_total", Help: "Settlement batches committed to the ledger."}),
		quarantined:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "faregate_clearing_events_quarantined_total", Help: "Messages quarantined, by reason."}, []string{"reason"}),
		batchSeconds:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: "faregate_clearing_fetch_batch_seconds", Help: "Time to verify, apply, sync and ack one fetched batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	r.MustRegister(m.applied, m.duplicates, m.batchesCommitted, m.quarantined, m.batchSeconds)
	return m
}

func (m *metrics) observe(res applyResult, d time.Duration) {
	m.applied.Add(float64(res.applied))
	m.duplicates.Add(float64(res.duplicate))
	for i, o := range res.outcomes {
		if o == Quarantined {
			m.quarantined.WithLabelValues(res.reasons[i]).Inc()
		}
	}
	m.batchSeconds.Observe(d.Seconds())
}
