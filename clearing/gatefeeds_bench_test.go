package clearing_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

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
