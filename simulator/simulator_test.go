package simulator

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// A short city run end to end: real terminals, embedded NATS, clearing,
// embedded chain; every guarantee of the report must hold.
func TestRunKeepsGuarantees(t *testing.T) {
	rep, err := Run(context.Background(), Config{
		City:      CityConfig{Operators: 3, StopsPerOp: 2, GatesPerStop: 2, Passengers: 300, DeniedShare: 0.05, FaceShare: 0.2, Seed: 7},
		Duration:  3 * time.Second,
		PeakRate:  150,
		Period:    time.Second,
		DataDir:   t.TempDir(),
		InjectBad: 2,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.OK(); err != nil {
		t.Fatal(err)
	}
	if rep.TapsGenerated == 0 || rep.BatchesAnchored < 2 {
		t.Fatalf("too little happened: %d taps, %d batches", rep.TapsGenerated, rep.BatchesAnchored)
	}
	if rep.Quarantined != rep.BadInjected || rep.BadInjected != 8 {
		t.Fatalf("quarantined %d of %d injected, want all 8", rep.Quarantined, rep.BadInjected)
	}
	var revenue int64
	for _, v := range rep.OperatorRevenue {
		revenue += v
	}
	if revenue <= 0 {
		t.Fatal("no revenue")
	}
}
