package clearing_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/gatefeed"
)

// BenchmarkGateFeedWhole: a gate reading a deny list of 10,000 media
// whole, as it does at every start and reconnect: through the feed
// clearing makes for it (a request, a push consumer into the terminal's
// inbox across the accounts, flow control answered), against nats.go's
// key-value watch of the same bucket from clearing's own account (what a
// gate's watch did before gate feeds, less the accounts' hop), alternated
// in one run. Reports values/s.
func BenchmarkGateFeedWhole(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	reg, keys := testRegistry(1)
	led := openLedger(b, filepath.Join(dir, "chain"))
	b.Cleanup(func() { led.Close() })
	cl := startClearing(b, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour})
	b.Cleanup(func() { cl.stop(b) })
	const n = 10_000
	media := make([]clearing.DenyMedium, n)
	for i := range media {
		media[i] = clearing.DenyMedium{Media: fare.Card, Token: fmt.Sprintf("card-%05d", i), Reason: "bulk"}
	}
	if listed, err := cl.DenyAll(ctx, media); err != nil || listed != n {
		b.Fatalf("DenyAll: %d, %v", listed, err)
	}
	nc := terminalConn(b, cl.NATSURL(), keys["t1"], "t1")
	admin := adminConn(b, cl.NATSURL())
	ajs, _ := jetstream.New(admin)
	kv, err := ajs.KeyValue(ctx, fare.DenyBucket)
	if err != nil {
		b.Fatal(err)
	}
	// The list and its head, as a gate reads them.
	const want = n + 1
	b.Run("feed", func(b *testing.B) {
		for b.Loop() {
			w, err := gatefeed.Start(ctx, nc, "t1", fare.FeedDeny)
			if err != nil {
				b.Fatal(err)
			}
			got := untilNil(w.Updates())
			w.Stop()
			if got != want {
				b.Fatalf("read %d values, want %d (%v)", got, want, w.Err())
			}
			b.StopTimer()
			time.Sleep(600 * time.Millisecond) // a feed may be asked for again after half a second
			b.StartTimer()
		}
		b.ReportMetric(float64(want)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
	})
	b.Run("kv-watch", func(b *testing.B) {
		for b.Loop() {
			w, err := kv.WatchAll(ctx)
			if err != nil {
				b.Fatal(err)
			}
			got := untilNil(w.Updates())
			w.Stop()
			if got != want {
				b.Fatalf("read %d values, want %d", got, want)
			}
		}
		b.ReportMetric(float64(want)*float64(b.N)/b.Elapsed().Seconds(), "values/s")
	})
}

// untilNil counts what ch yields before its first nil (a watch's "read
// whole") or its end.
func untilNil[T comparable](ch <-chan T) int {
	var zero T
	n := 0
	for e := range ch {
		if e == zero {
			return n
		}
		n++
	}
	return n
}

// BenchmarkGateFeedReconnect: a city's gates reconnecting at once (a NATS
// node restarted, a network back), each asking for its deny-list feed, with
// a list of 10,000 media of which 10 changed while they were away: read
// whole (as every reconnect did before gates resumed their copies), against
// resumed from the copy's position (the 10 changes and the list's head). One
// operation is every gate caught up; p50-ms and max-ms are a gate's time to
// caught up within it.
func BenchmarkGateFeedReconnect(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	const gates, n, changed = 100, 10_000, 10
	reg, keys := testRegistry(gates)
	led := openLedger(b, filepath.Join(dir, "chain"))
	b.Cleanup(func() { led.Close() })
	cl := startClearing(b, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour})
	b.Cleanup(func() { cl.stop(b) })
	media := make([]clearing.DenyMedium, n)
	for i := range media {
		media[i] = clearing.DenyMedium{Media: fare.Card, Token: fmt.Sprintf("card-%05d", i), Reason: "bulk"}
	}
	if listed, err := cl.DenyAll(ctx, media); err != nil || listed != n {
		b.Fatalf("DenyAll: %d, %v", listed, err)
	}
	// Every gate's position: the list as it stood before the changes.
	ncs := make([]*nats.Conn, gates)
	var pos fare.GateFeedPosition
	for i := range ncs {
		id := fmt.Sprintf("t%d", i+1)
		ncs[i] = terminalConn(b, cl.NATSURL(), keys[id], id)
	}
	w, err := gatefeed.Start(ctx, ncs[0], "t1", fare.FeedDeny)
	if err != nil {
		b.Fatal(err)
	}
	for e := range w.Updates() {
		if e == nil {
			break
		}
		pos = fare.GateFeedPosition{Stream: w.Stream(), Revision: max(pos.Revision, e.Revision)}
	}
	w.Stop()
	for i := range changed {
		if err := cl.Undeny(ctx, fare.Card, fmt.Sprintf("card-%05d", i)); err != nil {
			b.Fatal(err)
		}
	}
	storm := func(b *testing.B, resume bool, want int) {
		var p50, most []float64
		for b.Loop() {
			took := make([]time.Duration, gates)
			var wg sync.WaitGroup
			t0 := time.Now()
			for i := range gates {
				wg.Go(func() {
					id := fmt.Sprintf("t%d", i+1)
					for {
						var w *gatefeed.Watch
						var err error
						if resume {
							w, err = gatefeed.Resume(ctx, ncs[i], id, fare.FeedDeny, pos)
						} else {
							w, err = gatefeed.Start(ctx, ncs[i], id, fare.FeedDeny)
						}
						if err != nil {
							time.Sleep(250 * time.Millisecond) // as a gate's retry does
							continue
						}
						got := untilNil(w.Updates())
						w.Stop()
						if got != want || w.Resumed() != resume {
							b.Errorf("%s read %d values (resumed %v), want %d", id, got, w.Resumed(), want)
						}
						took[i] = time.Since(t0)
						return
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(took)
			p50, most = append(p50, float64(took[gates/2].Milliseconds())), append(most, float64(took[gates-1].Milliseconds()))
			time.Sleep(600 * time.Millisecond) // a feed may be asked for again after half a second
			b.StartTimer()
		}
		slices.Sort(p50)
		slices.Sort(most)
		b.ReportMetric(p50[len(p50)/2], "p50-ms")
		b.ReportMetric(most[len(most)/2], "max-ms")
	}
	b.Run("whole", func(b *testing.B) { storm(b, false, n+1) })
	b.Run("resumed", func(b *testing.B) { storm(b, true, changed+1) })
}
