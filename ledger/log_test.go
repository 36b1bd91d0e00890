package ledger

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestForwardHandlerDemotesExpectedWarnings checks that go-ethereum's start-up
// warnings about an embedded chain (no peers, no reachable head in the freezer)
// reach the application's log only at debug level, while other warnings pass
// through unchanged.
func TestForwardHandlerDemotesExpectedWarnings(t *testing.T) {
	tests := []struct {
		msg       string
		level     slog.Level // the application logger's level
		wantShown bool
		wantLevel string
	}{
		{"P2P server will be useless, neither dialing nor listening", slog.LevelInfo, false, ""},
		{"Head block is not reachable", slog.LevelInfo, false, ""},
		{"Head block is not reachable", slog.LevelDebug, true, "level=DEBUG"},
		{"Served eth_call", slog.LevelDebug, false, ""},
		{"Database compaction stalled", slog.LevelInfo, true, "level=WARN"},
	}
	t.Cleanup(func() { gethLogTarget.Store(nil) })
	for _, tt := range tests {
		var buf bytes.Buffer
		gethLogTarget.Store(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.level})))
		r := slog.NewRecord(time.Now(), slog.LevelWarn, tt.msg, 0)
		if err := (forwardHandler{}).Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if shown := out != ""; shown != tt.wantShown {
			t.Errorf("%q at application level %v: shown = %v, want %v (output %q)", tt.msg, tt.level, shown, tt.wantShown, out)
			continue
		}
		if tt.wantShown && (!strings.Contains(out, tt.wantLevel) || !strings.Contains(out, "component=go-ethereum")) {
			t.Errorf("%q: output %q, want %s and component=go-ethereum", tt.msg, out, tt.wantLevel)
		}
	}
}
