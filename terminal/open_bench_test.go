package terminal

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/storecheck"
)

// BenchmarkCheckTables: what checking an outbox's tables at open costs (the
// checksums of every block of every table the MANIFEST names), for an
// outbox holding 20,000 unsent taps (a gate offline for hours at a busy
// station). Reported per open and per MiB of tables.
func BenchmarkCheckTables(b *testing.B) {
	dir := b.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		b.Fatal(err)
	}
	outbox := filepath.Join(dir, "outbox")
	cfg := Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: outbox, NATSURL: "nats://127.0.0.1:1",
		ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}}
	term, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const taps, workers = 20000, 64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range taps / workers {
				if _, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Validate, Media: fare.Card, Token: fmt.Sprintf("card-%d-%d", w, i)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	term.Close()
	opts := badger.DefaultOptions(outbox).WithLogger(nil)
	names := storecheck.ReferencedTables(opts)
	var size int64
	for _, n := range names {
		fi, err := os.Stat(n)
		if err != nil {
			b.Fatal(err)
		}
		size += fi.Size()
	}
	if len(names) == 0 {
		b.Fatal("no table to check")
	}
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		for _, n := range storecheck.ReferencedTables(opts) {
			if err := storecheck.Table(n, opts); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(names)), "tables")
	b.ReportMetric(float64(size)/(1<<20), "MiB")
}
