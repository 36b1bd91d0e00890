package biometrics

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/faregate/faregate/biometrics/gallery"
)

// BenchmarkGateDecision is frame to decision at a gate, side by side with
// the raw dlib pipeline on the same frame (decode, HOG detection,
// landmarks, descriptor): what the gate adds is the quality check, the
// presentation check and the 1:N search in a gallery of 10 subjects (the
// default operating point's bound). Both report the median and the 99th
// percentile per frame; "parallel" keeps every worker (core) busy.
func BenchmarkGateDecision(b *testing.B) {
	r, _, jpg := benchFrame(b)
	face, err := r.RecognizeSingle(jpg)
	if err != nil || face == nil {
		b.Fatalf("bench frame: %v", err)
	}
	g := gallery.New()
	if err := g.Add("rider-0", gallery.Vector(face.Descriptor)); err != nil {
		b.Fatal(err)
	}
	ds := idolsDataset(b)
	for i, s := range ds.Samples {
		if g.Subjects() == 10 {
			break
		}
		if err := g.Add(fmt.Sprintf("rider-%d", i+1), s.Descriptor); err != nil {
			b.Fatal(err)
		}
	}
	gate, err := NewGate(GateConfig{Recognizer: r, Gallery: &fixedGallery{identify: g}, Policy: gallery.DefaultPolicy()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	frames := [][]byte{jpg}
	ops := map[string]func() error{
		"pipeline": func() error { _, err := r.Recognize(jpg); return err },
		"gate": func() error {
			ev, ok, why := gate.MatchFace(ctx, frames, "")
			if !ok || ev.Subject != "rider-0" {
				return fmt.Errorf("refused (%s): %+v", why, ev)
			}
			return nil
		},
	}
	for _, name := range []string{"pipeline", "gate"} {
		op := ops[name]
		for _, par := range []bool{false, true} {
			mode := "one-core"
			if par {
				mode = "all-cores"
			}
			b.Run(name+"/"+mode, func(b *testing.B) {
				var mu sync.Mutex
				var took []time.Duration
				timed := func() {
					t0 := time.Now()
					if err := op(); err != nil {
						b.Error(err)
					}
					d := time.Since(t0)
					mu.Lock()
					took = append(took, d)
					mu.Unlock()
				}
				if par {
					b.SetParallelism(1)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							timed()
						}
					})
				} else {
					for b.Loop() {
						timed()
					}
				}
				slices.Sort(took)
				ms := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))]) / 1e6 }
				b.ReportMetric(ms(0.5), "p50-ms")
				b.ReportMetric(ms(0.99), "p99-ms")
			})
		}
	}
}
