package clearing

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/fare"
)

// TestLatencyAtTheFareClockRate: taps are stamped by the fare clock, so the
// confirmation latency is its lapse divided by how fast it runs. An outside
// test saw the simulator's dashboard and histogram show hours for a 150 ms
// p99: its city clock runs a day in a minute, and clearing measured against
// the wall.
func TestLatencyAtTheFareClockRate(t *testing.T) {
	device := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		lapse   time.Duration // fare clock at apply less device time
		rate    float64
		wantSec float64
	}{
		{"the wall's pace (rate 0 is 1)", 250 * time.Millisecond, 0, 0.25},
		{"a day a minute", 1440 * 200 * time.Millisecond, 1440, 0.2},
		{"a device clock ahead counts as none", -time.Second, 1440, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := newMetrics(reg)
			ev := &fare.Signed{Event: fare.Event{DeviceTime: device}}
			m.observe(applyResult{outcomes: []Outcome{Applied}, reasons: []string{""}, applied: 1}, []candidate{{ev: ev}}, device.Add(tc.lapse), tc.rate, time.Millisecond)
			fams, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fams {
				if f.GetName() == "faregate_clearing_tap_to_applied_seconds" {
					h := f.GetMetric()[0].GetHistogram()
					if h.GetSampleCount() != 1 || h.GetSampleSum() < tc.wantSec-1e-9 || h.GetSampleSum() > tc.wantSec+1e-9 {
						t.Errorf("%d samples summing to %v s, want 1 of %v s", h.GetSampleCount(), h.GetSampleSum(), tc.wantSec)
					}
					return
				}
			}
			t.Fatal("no tap_to_applied histogram")
		})
	}
}
