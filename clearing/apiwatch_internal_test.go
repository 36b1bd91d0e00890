package clearing

import (
	"testing"
	"time"
)

// TestFlooderBars: a flooding terminal is refused for the base bar, twice
// as long at each repeat, never more than an hour, and not after its bar.
func TestFlooderBars(t *testing.T) {
	var w apiWatch
	now := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		flagged int
		want    time.Duration
	}{{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {7, time.Hour}, {40, time.Hour}} {
		for range tc.flagged - int(w.flooders()["t1"]) {
			w.flag("t1")
		}
		if got := w.bar("t1", now, time.Minute).Sub(now); got != tc.want {
			t.Errorf("flagged %d times: barred %s, want %s", tc.flagged, got, tc.want)
		}
	}
	w.flag("t2")
	w.bar("t2", now, time.Minute)
	if b := w.barred(now.Add(30 * time.Second)); !b["t1"] || !b["t2"] {
		t.Errorf("barred half a minute on: %v", b)
	}
	if b := w.barred(now.Add(2 * time.Minute)); !b["t1"] || b["t2"] {
		t.Errorf("barred two minutes on: %v, want t1 only", b)
	}
	if b := w.barred(now.Add(time.Hour)); len(b) != 0 {
		t.Errorf("barred an hour on: %v", b)
	}
}
