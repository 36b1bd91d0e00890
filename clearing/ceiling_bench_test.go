package clearing_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// BenchmarkCeilingRatio measures clearing's throughput against the
// signature ceiling of the same machine in the same run (issue 13): each
// iteration first times one core batch-verifying the events clearing is
// about to consume (curve25519-voi, ZIP-215, batches of FetchBatch, keys
// expanded: clearing's own verifyBatch), then clearing consuming them
// (pre-published to the embedded JetStream, as BenchmarkClearingThroughput).
// The ceiling is GOMAXPROCS x the one-core rate; the ratio is clearing's
// events/s over it, the median of the iterations' ratios.
//
// It also reports the process's CPU time per applied event (runtime/metrics,
// user and GC, everything in the process: clearing, the embedded
// nats-server, Badger) beside the verification's share of it, which says
// what bounds the ratio: at a CPU cost of c µs per event, two cores apply at
// most 2e6/c events/s whatever the pipeline overlaps.
func BenchmarkCeilingRatio(b *testing.B) {
	reg, keys := testRegistry(64)
	const n = 20000
	events := signedEvents(b, n, keys, reg)
	pubs := make([]ed25519.PublicKey, n)
	msgs, sigs := make([][]byte, n), make([][]byte, n)
	for i, raw := range events {
		s, err := fare.Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		t, _ := reg.TerminalKey(s.Terminal)
		pubs[i], msgs[i], sigs[i] = t.PublicKey, s.Message(), s.Signature()
	}
	const batch = 1000
	oneCore := func() float64 {
		start := time.Now()
		for lo := 0; lo < n; lo += batch {
			for _, ok := range clearing.VerifyBatch(pubs[lo:lo+batch], msgs[lo:lo+batch], sigs[lo:lo+batch], 1) {
				if !ok {
					b.Fatal("a signature failed")
				}
			}
		}
		return n / time.Since(start).Seconds()
	}
	oneCore() // expand the keys once, as clearing's cache holds them
	var ratios, rates, ceilings, cpuPerEvent, verifyShare []float64
	for b.Loop() {
		b.StopTimer()
		ceiling := float64(runtime.GOMAXPROCS(0)) * oneCore()
		b.StartTimer()
		rate, perEvent := timedApply(b, reg, events, nil)
		rates, ceilings, ratios = append(rates, rate), append(ceilings, ceiling), append(ratios, rate/ceiling)
		cpuPerEvent = append(cpuPerEvent, perEvent)
		verifyShare = append(verifyShare, float64(runtime.GOMAXPROCS(0))*1e6/ceiling/perEvent)
	}
	b.ReportMetric(median(rates), "events/s")
	b.ReportMetric(median(ceilings), "ceiling-sig/s")
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(cpuPerEvent), "cpu-µs/event")
	b.ReportMetric(median(verifyShare), "verify-share")
}

// processCPU is the process's CPU seconds so far, user and system, from
// getrusage. (runtime/metrics' CPU classes are estimates brought up to
// date only at each GC: over a second-long run they moved in steps, and
// not at all with GOGC=400.)
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// BenchmarkVerifierPartitions is the scaling curve of verifier partitions
// on this machine: each iteration applies the same 20,000 pre-published
// signed events with clearing verifying them itself (0) and with 1, 2 and 3
// verifier partitions, one in-process verifier each (the same code as
// `faregate clearing verifier`, over the same NATS), one after another, so
// every partition count sees the same minutes of a shared machine. It
// reports each count's median events/s and CPU µs per event (the whole
// process: clearing, verifiers, nats-server, Badger).
func BenchmarkVerifierPartitions(b *testing.B) {
	reg, keys := testRegistry(64)
	const n = 20000
	events := signedEvents(b, n, keys, reg)
	counts := []int{0, 1, 2, 3}
	seeds := make([][2]string, 3) // file, public key
	for i := range seeds {
		seeds[i][0], seeds[i][1] = verifierSeed(b)
	}
	rates := make(map[int][]float64)
	cpus := make(map[int][]float64)
	for b.Loop() {
		for _, parts := range counts {
			rate, perEvent := timedApply(b, reg, events, seeds[:parts])
			rates[parts] = append(rates[parts], rate)
			cpus[parts] = append(cpus[parts], perEvent)
		}
	}
	for _, parts := range counts {
		b.ReportMetric(median(rates[parts]), fmt.Sprintf("p%d-events/s", parts))
		b.ReportMetric(median(cpus[parts]), fmt.Sprintf("p%d-cpu-µs/event", parts))
	}
}

// timedApply opens a fresh clearing (flat fares) with one verifier
// partition per seed (file, public key) and an in-process verifier on
// each, pre-publishes events, and times Run (and the verifiers) until all
// are applied: events/s and the process's CPU µs per event.
func timedApply(b *testing.B, reg *clearing.Registry, events [][]byte, seeds [][2]string) (rate, cpuPerEvent float64) {
	b.StopTimer()
	defer b.StartTimer()
	parts := len(seeds)
	pubs := make([]clearing.VerifierKey, parts)
	for p, s := range seeds {
		pubs[p] = clearing.VerifierKey{Partition: p, Key: s[1]}
	}
	bc := openBenchClearing(b, reg, func(cfg *clearing.Config) func(string) *nats.Conn {
		cfg.VerifierPartitions, cfg.VerifierKeys = parts, pubs
		return nil
	})
	defer bc.close()
	cl, led := bc.cl, bc.led
	publishAll(b, bc, reg, events)
	var vs []*clearing.Verifier
	for p, s := range seeds {
		v, err := clearing.OpenVerifier(context.Background(), clearing.VerifierConfig{NATSURL: cl.NATSURL(), NATSSeedFile: s[0], Ledger: led, Partition: p, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		defer v.Close()
		vs = append(vs, v)
	}
	runtime.GC()
	n := uint64(len(events))
	b.StartTimer()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1+parts)
	cpu0 := processCPU()
	start := time.Now()
	go func() { done <- cl.Run(ctx) }()
	for _, v := range vs {
		go func() { done <- v.Run(ctx) }()
	}
	for cl.Stats().Applied < n {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	cpu := processCPU() - cpu0
	b.StopTimer()
	cancel()
	for range 1 + parts {
		<-done
	}
	return float64(n) / el.Seconds(), cpu / float64(n) * 1e6
}
