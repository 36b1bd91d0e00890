package terminal

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/faregate/faregate/fare"
)

// TestHealthMetrics: what a device operator watches reads the gate's state
// (pending, sequences, NATS, lists, disk, taps refused for space); a
// terminal closed and opened again on the same registry registers again,
// and an Open that fails leaves nothing registered.
func TestHealthMetrics(t *testing.T) {
	dir := t.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: filepath.Join(dir, "outbox"), Metrics: reg,
		NATSURL: "nats://127.0.0.1:1", ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}}
	term, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "rider"}); err != nil {
			t.Fatal(err)
		}
	}
	term.room.Set(DefaultMinFreeBytes, 0, func(string) (uint64, uint64, error) { return 1 << 20, 1 << 30, nil })
	if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: "rider"}); err == nil {
		t.Fatal("a tap on a full disk was taken")
	}
	if err := term.Ready(); err == nil {
		t.Fatal("ready on a full disk")
	}
	got := gather(t, reg)
	for _, c := range []struct {
		name, label string
		want        float64
	}{
		{"faregate_terminal_outbox_pending", "", 2},
		{"faregate_terminal_last_sequence", "", 2},
		{"faregate_terminal_confirmed_sequence", "", 0},
		{"faregate_terminal_last_confirmation_timestamp_seconds", "", 0},
		{"faregate_terminal_nats_connected", "", 0},
		{"faregate_terminal_gate_lists_synced", "", 0},
		{"faregate_terminal_gate_list_version", "deny", 0},
		{"faregate_terminal_gate_list_version", "enrolment", 0},
		{"faregate_terminal_disk_free_bytes", "", 1 << 20},
		{"faregate_terminal_taps_refused_disk_full_total", "", 1},
	} {
		if v, ok := got[c.name+"/"+c.label]; !ok || v != c.want {
			t.Errorf("%s{list=%q} = %v (present %v), want %v", c.name, c.label, v, ok, c.want)
		}
	}
	// Never followed since the start: stale since it.
	if v := got["faregate_terminal_gate_lists_stale_seconds/"]; v <= 0 {
		t.Errorf("gate_lists_stale_seconds %v before the lists were ever followed, want the time since the start", v)
	}
	term.setListsLive(true)
	if v := gather(t, reg)["faregate_terminal_gate_lists_stale_seconds/"]; v != 0 {
		t.Errorf("gate_lists_stale_seconds %v while followed, want 0", v)
	}
	lost := time.Now()
	time.Sleep(20 * time.Millisecond)
	term.setListsLive(false)
	term.setListsLive(false) // still lost: counted from the first
	if v, max := gather(t, reg)["faregate_terminal_gate_lists_stale_seconds/"], time.Since(lost).Seconds(); v <= 0 || v > max {
		t.Errorf("gate_lists_stale_seconds %v once no longer followed, want in (0, %v]", v, max)
	}
	term.room.Set(DefaultMinFreeBytes, 0, nil) // room again, to close (TestCloseOnAFullDisk)
	if err := term.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(gather(t, reg)); n != 0 {
		t.Fatalf("%d series left registered after Close", n)
	}
	// A failed Open (another terminal's id on this outbox) registers nothing.
	bad := cfg
	bad.ID = "t2"
	if _, err := Open(bad); err == nil {
		t.Fatal("the outbox opened under another id")
	}
	term, err = Open(cfg)
	if err != nil {
		t.Fatalf("reopened on the same registry: %v", err)
	}
	defer term.Close()
	if v := gather(t, reg)["faregate_terminal_outbox_pending/"]; v != 2 {
		t.Fatalf("reopened: pending %v, want 2", v)
	}
}

// gather reads reg's gauges and counters by name and list label.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			list := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "list" {
					list = l.GetValue()
				}
			}
			var v float64
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			default:
				continue
			}
			out[mf.GetName()+"/"+list] = v
		}
	}
	return out
}
