package gallery

import (
	"fmt"
	"sync"
	"testing"
)

var benchGalleries sync.Map // size -> *benchSet

type benchSet struct {
	g       *Gallery
	queries []Vector
}

// benchGallery builds (once per size) a synthetic gallery and queries: half
// strangers, half near an enrolled row (distance about 0.35, like a genuine
// probe).
func benchGallery(b *testing.B, n int) *benchSet {
	if v, ok := benchGalleries.Load(n); ok {
		return v.(*benchSet)
	}
	g, s := synthGallery(b, n, 42)
	qs := make([]Vector, 256)
	for i := range qs {
		if i%2 == 0 {
			qs[i] = s.next()
			continue
		}
		qs[i] = *(*Vector)(g.vecs[(i*7919)%n*Dim:])
		for j := range qs[i] {
			qs[i][j] += float32(s.rng.NormFloat64() * 0.031)
		}
	}
	bs := &benchSet{g, qs}
	benchGalleries.Store(n, bs)
	return bs
}

func BenchmarkSearch(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		for _, k := range []int{1, 10} {
			b.Run(fmt.Sprintf("int8+exact/n=%d/k=%d", n, k), func(b *testing.B) {
				bs := benchGallery(b, n)
				b.ResetTimer()
				exact := 0
				for i := 0; b.Loop(); i++ {
					_, e := bs.g.search(&bs.queries[i%len(bs.queries)], k)
					exact += e
				}
				b.ReportMetric(float64(exact)/float64(b.N), "exact/op")
			})
		}
		b.Run(fmt.Sprintf("float32/n=%d/k=10", n), func(b *testing.B) {
			bs := benchGallery(b, n)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				bs.g.SearchFloat(bs.queries[i%len(bs.queries)], 10)
			}
		})
	}
}

// BenchmarkSearchParallel runs one query per goroutine on all cores: the
// throughput of a terminal serving several gates.
func BenchmarkSearchParallel(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("int8+exact/n=%d/k=10", n), func(b *testing.B) {
			bs := benchGallery(b, n)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					bs.g.Search(bs.queries[i%len(bs.queries)], 10)
					i++
				}
			})
		})
	}
}

// TestRecallAgainstFloat is the recall report: Search must equal the float32
// scan on every query (recall 1.0 by construction); this checks it on a
// 100k synthetic gallery.
func TestRecallAgainstFloat(t *testing.T) {
	g, s := synthGallery(t, 100_000, 7)
	hits, total := 0, 0
	for range 40 {
		q := s.next()
		got, want := g.Search(q, 10), g.SearchFloat(q, 10)
		for i := range want {
			total++
			if i < len(got) && got[i] == want[i] {
				hits++
			}
		}
	}
	if hits != total {
		t.Fatalf("recall@10 = %d/%d, want all", hits, total)
	}
}
