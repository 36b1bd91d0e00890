package clearing_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestLargestBatchOfLargestEvents: a full batch (MaxFetchBatch) of events
// of the largest size a terminal may sign (every free field at its bound)
// applies in one transaction. Refused by the store as too big, the batch
// would come back after every restart: a gate could stop clearing for
// good (an outside static review's question).
func TestLargestBatchOfLargestEvents(t *testing.T) {
	_, keys, url, cfg := externalCity(t, 1)
	cfg.FetchBatch, cfg.Metrics = clearing.MaxFetchBatch, prometheus.NewRegistry()
	cl := startClearing(t, cfg) // makes the streams and the consumer
	cl.stop(t)
	nc := terminalConn(t, url, keys["t1"], "t1")
	defer nc.Close()
	start := time.Now().Add(-time.Hour)
	size := 0
	for i := 1; i <= clearing.MaxFetchBatch; i++ {
		at := start.Add(time.Duration(i) * time.Millisecond)
		ev := fare.Event{ID: fare.NewEventID(at), Terminal: "t1", Operator: "metro", Stop: "stop-t1", Gate: strings.Repeat("g", fare.MaxIDLen),
			Direction: fare.Entry, Media: fare.Card, MediaToken: fmt.Sprintf("%0*d", fare.MaxTokenLen, i), DeviceTime: at,
			Decision: fare.Accepted, Reason: strings.Repeat("r", fare.MaxReasonLen), Sequence: uint64(i)}
		raw, err := fare.Sign(&ev, keys["t1"])
		if err != nil {
			t.Fatal(err)
		}
		size = len(raw)
		publishEvent(t, nc, fare.EventSubject("metro", "t1"), raw)
	}
	t.Logf("%d events of %d bytes", clearing.MaxFetchBatch, size)
	cfg.Metrics = prometheus.NewRegistry() // the restarted process's own
	cl = startClearing(t, cfg)
	defer cl.stop(t)
	waitFor(t, "every event applied", 60*time.Second, func() bool {
		select {
		case err := <-cl.done:
			t.Fatalf("clearing stopped: %v", err)
		default:
		}
		return cl.Stats().Applied == clearing.MaxFetchBatch
	})
	mfs, err := cfg.Metrics.(*prometheus.Registry).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "faregate_clearing_fetch_batch_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n > 2 {
				t.Errorf("applied in %d batches, want the one fetch of %d (a second for what the first fetch missed)", n, clearing.MaxFetchBatch)
			} else {
				t.Logf("applied in %d batch(es)", n)
			}
		}
	}
}
