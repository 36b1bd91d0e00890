package simulator

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// report.json shows money as the settlement API does (minor units, the
// decimal string and the currency) and hashes as 0x hex; these are its
// shapes of what clearing keeps in other forms.

// ReportBatch is a sealed settlement batch.
type ReportBatch struct {
	ID          uint64    `json:"id"`
	StartIndex  uint64    `json:"start_index"` // first apply index, inclusive
	EndIndex    uint64    `json:"end_index"`   // exclusive
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	// Root is the batch's Merkle root, 0x hex, as anchored on the chain.
	Root       string                     `json:"root"`
	EventCount uint64                     `json:"event_count"`
	Nets       []clearing.OperatorNetView `json:"nets"` // credits minus debits, as the API's batch view
}

// ReportFareAudit is the independent repricing of every rider day
// (clearing.FareAudit) with its amounts as money.
type ReportFareAudit struct {
	RiderDays         int            `json:"rider_days"`
	Journeys          int            `json:"journeys"`
	Incomplete        int            `json:"journeys_incomplete"`
	Capped            int            `json:"journeys_capped"`
	MultiOperator     int            `json:"journeys_multi_operator"`
	MultiOperatorDays int            `json:"rider_days_multi_operator"`
	RidersCapped      int            `json:"riders_capped"`
	Posted            clearing.Money `json:"posted"`     // what the applied events posted
	Recomputed        clearing.Money `json:"recomputed"` // what the fresh repricing says
	Mismatches        []string       `json:"mismatches,omitempty"`
	Count             int            `json:"mismatch_count"`
}

// money is v in the report's currency.
func (r *Report) money(v int64) clearing.Money {
	return clearing.MoneyOf(fare.Amount(v), r.Currency)
}

func (r *Report) batch(b *clearing.BatchRecord) ReportBatch {
	rb := ReportBatch{ID: b.ID, StartIndex: b.StartIndex, EndIndex: b.EndIndex, PeriodStart: b.PeriodStart, PeriodEnd: b.PeriodEnd,
		Root: fmt.Sprintf("0x%x", b.Root), EventCount: b.EventCount, Nets: make([]clearing.OperatorNetView, 0, len(b.Amounts))}
	for _, a := range b.Amounts {
		rb.Nets = append(rb.Nets, clearing.OperatorNetView{Operator: a.Operator, Net: r.money(a.Net)})
	}
	return rb
}

func (r *Report) fareAudit(fa *clearing.FareAudit) *ReportFareAudit {
	return &ReportFareAudit{RiderDays: fa.RiderDays, Journeys: fa.Journeys, Incomplete: fa.Incomplete, Capped: fa.Capped,
		MultiOperator: fa.MultiOperator, MultiOperatorDays: fa.MultiOperatorDays, RidersCapped: fa.RidersCapped,
		Posted: r.money(int64(fa.Posted)), Recomputed: r.money(int64(fa.Recomputed)), Mismatches: fa.Mismatches, Count: fa.Count}
}

// ReportSample is one interval of the run's timeline: what happened in
// the interval that ends T seconds after the first tap (the previous
// sample's T, or 0, to T). Counts divided by the interval's length are
// rates per second.
type ReportSample struct {
	T       float64 `json:"t"`       // seconds since the first tap, to the millisecond
	Taps    uint64  `json:"taps"`    // taps the gates took, denied included
	Denied  uint64  `json:"denied"`  // of them, denied at the gate
	Applied uint64  `json:"applied"` // events clearing applied
}

// LatencyCDF is a latency's distribution as 101 points: Ms[i] is the
// i-th percentile in milliseconds (nearest rank), Ms[0] the fastest and
// Ms[100] the slowest of Samples measurements.
type LatencyCDF struct {
	Samples int       `json:"samples"`
	Ms      []float64 `json:"ms"`
}

// latencyCDF is ds's distribution; ds must be sorted. Nil without samples.
func latencyCDF(ds []time.Duration) *LatencyCDF {
	if len(ds) == 0 {
		return nil
	}
	c := &LatencyCDF{Samples: len(ds), Ms: make([]float64, 101)}
	n := len(ds)
	for i := range c.Ms {
		// Nearest rank in integers: ceil(i·n/100)-1 (in floating point,
		// 0.07·100 rounds up to the next rank).
		c.Ms[i] = durationMs(ds[max(0, (i*n+99)/100-1)])
	}
	return c
}

// rank is the index of the p-quantile of n sorted values (nearest rank).
func rank(p float64, n int) int {
	i := int(math.Ceil(p*float64(n))) - 1
	return max(0, min(i, n-1))
}

// durationMs is d in milliseconds to the microsecond.
func durationMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timeline samples a run's counters at a fixed interval from the first
// tap: one goroutine, started by startTimeline and ended by stop or
// finish (both may be called more than once).
type timeline struct {
	start   time.Time
	read    func() (taps, denied, applied uint64)
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	last    [3]uint64
	samples []ReportSample
}

func startTimeline(ctx context.Context, start time.Time, every time.Duration, read func() (taps, denied, applied uint64)) *timeline {
	ctx, cancel := context.WithCancel(ctx)
	tl := &timeline{start: start, read: read, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tl.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				tl.sample(now)
			}
		}
	}()
	return tl
}

// sample closes the interval ending now.
func (tl *timeline) sample(now time.Time) {
	taps, denied, applied := tl.read()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	t := math.Round(now.Sub(tl.start).Seconds()*1000) / 1000
	s := ReportSample{T: t, Taps: taps - tl.last[0], Denied: denied - tl.last[1], Applied: applied - tl.last[2]}
	if n := len(tl.samples); n > 0 && t <= tl.samples[n-1].T {
		// Not a millisecond since the last sample: its interval takes the counts.
		last := &tl.samples[n-1]
		last.Taps, last.Denied, last.Applied = last.Taps+s.Taps, last.Denied+s.Denied, last.Applied+s.Applied
	} else {
		tl.samples = append(tl.samples, s)
	}
	tl.last = [3]uint64{taps, denied, applied}
}

// stop ends the sampling goroutine and waits for it.
func (tl *timeline) stop() {
	tl.cancel()
	<-tl.done
}

// finish stops sampling, closes the last (partial) interval and returns
// the samples.
func (tl *timeline) finish(now time.Time) []ReportSample {
	tl.stop()
	tl.sample(now)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Clone(tl.samples)
}
