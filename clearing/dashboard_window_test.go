package clearing

import (
	"slices"
	"testing"
	"time"
)

// TestLiveWindow: the dashboard's tap rate counts each whole second of the
// last minute in its place (older seconds and the current, partial one
// left out, a reused slot not carrying its old count), the latency window
// keeps the most recent samples, and last contact is the latest batch a
// terminal was heard from in.
func TestLiveWindow(t *testing.T) {
	now := time.Unix(1_800_000_000, 500_000_000)
	w := newLiveWindow()
	for _, a := range []struct {
		ago     time.Duration
		applied int
	}{
		{-30 * time.Second, 7}, // reused slot of 30 s ago below: must not add up
		{rateWindow * time.Second, 100},
		{30 * time.Second, 5},
		{time.Second, 3},
		{time.Second, 2},
		{0, 9}, // the current second: not whole yet
	} {
		w.add(now.Add(-a.ago), a.applied, 1, nil, map[string]*touch{"t1": {}})
	}
	applied, quarantined := w.rates(now)
	want := make([]uint64, rateWindow)
	want[rateWindow-30], want[rateWindow-1] = 5, 5
	if !slices.Equal(applied, want) {
		t.Errorf("applied per second %v, want %v", applied, want)
	}
	if quarantined[rateWindow-1] != 2 || quarantined[rateWindow-30] != 1 {
		t.Errorf("quarantined per second %v", quarantined)
	}
	if at, ok := w.lastContact("t1"); !ok || !at.Equal(now) {
		t.Errorf("t1's last contact %v %v", at, ok)
	}
	if _, ok := w.lastContact("t2"); ok {
		t.Error("t2 has a last contact without an event")
	}

	for _, c := range []struct {
		samples  int
		min, max float64
	}{
		{10, 0, 9},
		{latencyWindow + 500, 500, latencyWindow + 499}, // the oldest 500 fell out
	} {
		w := newLiveWindow()
		lat := make([]float64, c.samples)
		for i := range lat {
			lat[i] = float64(i) // in order of arrival
		}
		w.add(now, c.samples, 0, lat, nil)
		got := w.latencies()
		if len(got) != min(c.samples, latencyWindow) || got[0] != c.min || got[len(got)-1] != c.max || !slices.IsSorted(got) {
			t.Errorf("%d samples: kept %d, from %v to %v", c.samples, len(got), got[0], got[len(got)-1])
		}
	}
}
