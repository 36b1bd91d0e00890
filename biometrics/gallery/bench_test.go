package gallery

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
	"unsafe"
)

var benchGalleries sync.Map // size -> *benchSet

type benchSet struct {
	g       *Gallery
	queries []Vector
}

// benchGallery builds (once per size) a synthetic gallery and queries: half
// strangers, half near an enrolled row (distance about 0.35, like a genuine
// probe).
func benchGallery(b testing.TB, n int) *benchSet {
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
				var floats, exact int
				for i := 0; b.Loop(); i++ {
					_, st := bs.g.search(&bs.queries[i%len(bs.queries)], k)
					floats += st.floats
					exact += st.exact
				}
				b.ReportMetric(float64(floats)/float64(b.N), "float/op")
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

// A streamer reads every byte of codes once and folds them into a value
// the compiler cannot drop: the floor under any scan of the codes.
type streamer struct {
	name string
	read func(codes []int8) uint64
}

// streamers lists the ways this build and CPU can read memory, slowest
// first; stream_amd64_test.go adds the vector ones.
var streamers = []streamer{{"words", streamWords}}

// streamWords reads codes 32 bytes at a time as four uint64 words.
func streamWords(codes []int8) uint64 {
	if len(codes) == 0 {
		return 0
	}
	w := unsafe.Slice((*uint64)(unsafe.Pointer(&codes[0])), len(codes)/8)
	var a, b, c, d uint64
	for i := 0; i+4 <= len(w); i += 4 {
		a |= w[i]
		b |= w[i+1]
		c |= w[i+2]
		d |= w[i+3]
	}
	return a | b | c | d
}

// threadCPU is the CPU time the calling thread has used (nil where
// unknown; rusage_linux_test.go sets it). On a shared machine other
// processes take the CPU away mid-benchmark: CPU time, unlike wall time,
// does not count the waits. The benchmarks that use it do not start
// goroutines, and lockThread keeps their goroutine on one thread.
var (
	threadCPU                func() time.Duration
	lockThread, unlockThread = func() {}, func() {}
)

// cpuClock measures the CPU time of one benchmark.
type cpuClock struct {
	b     *testing.B
	start time.Duration
}

// startCPU starts a cpuClock; call it right before b.Loop.
func startCPU(b *testing.B) cpuClock {
	lockThread()
	c := cpuClock{b: b}
	if threadCPU != nil {
		c.start = threadCPU()
	}
	return c
}

// stop reports cpu-ns/op and returns it (0 where CPU time is unknown).
func (c cpuClock) stop() float64 {
	defer unlockThread()
	if threadCPU == nil {
		return 0
	}
	ns := float64((threadCPU() - c.start).Nanoseconds()) / float64(c.b.N)
	c.b.ReportMetric(ns, "cpu-ns/op")
	return ns
}

// BenchmarkSearchOneCore measures, side by side in one run, the time to
// stream a gallery's int8 codes from memory once (with the widest vector
// reads the CPU has) and one-goroutine searches with each kernel. "scan"
// is the kernel alone over every row; "k=1", "k=10" are whole searches
// (scan, candidates, rerank). x-stream is the time over the stream time
// measured just before in the same run; x-stream-cpu the same in CPU time.
func BenchmarkSearchOneCore(b *testing.B) {
	st := streamers[len(streamers)-1]
	for _, n := range []int{100_000, 1_000_000} {
		var streamNs, streamCPU float64
		// ratios reports the time per op over the stream's.
		ratios := func(b *testing.B, cpu float64) {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/streamNs, "x-stream")
			if cpu > 0 {
				b.ReportMetric(cpu/streamCPU, "x-stream-cpu")
			}
		}
		b.Run(fmt.Sprintf("n=%d/stream-%s", n, st.name), func(b *testing.B) {
			bs := benchGallery(b, n)
			b.SetBytes(int64(len(bs.g.codes)))
			var sink uint64
			c := startCPU(b)
			for b.Loop() {
				sink |= st.read(bs.g.codes)
			}
			streamCPU = c.stop()
			streamNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if sink == 1<<63 { // keep sink alive
				b.Log(sink)
			}
		})
		for _, kern := range kernels {
			b.Run(fmt.Sprintf("n=%d/%s/scan", n, kern.name), func(b *testing.B) {
				bs := benchGallery(b, n)
				b.SetBytes(int64(len(bs.g.codes)))
				var q query
				setQuery(&q, &bs.queries[0])
				var ds [block]int32
				codes, norms := bs.g.codes, bs.g.norms
				c := startCPU(b)
				for b.Loop() {
					for r0 := 0; r0 < n; r0 += block {
						m := min(block, n-r0)
						kern.dists(&q, codes[r0*Dim:(r0+m)*Dim], norms[r0:r0+m], 0, ds[:m])
					}
				}
				ratios(b, c.stop())
			})
			for _, k := range []int{1, 10} {
				b.Run(fmt.Sprintf("n=%d/%s/k=%d", n, kern.name, k), func(b *testing.B) {
					bs := benchGallery(b, n)
					b.SetBytes(int64(len(bs.g.codes)))
					var floats, exact int
					c := startCPU(b)
					for i := 0; b.Loop(); i++ {
						_, st := bs.g.searchWith(kern, 1, &bs.queries[i%len(bs.queries)], k)
						floats += st.floats
						exact += st.exact
					}
					ratios(b, c.stop())
					b.ReportMetric(float64(floats)/float64(b.N), "float/op")
					b.ReportMetric(float64(exact)/float64(b.N), "exact/op")
				})
			}
		}
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

// BenchmarkKernels is each kernel alone on 4096 rows (512 KiB, in the
// core's L2 cache): the compute cost of a row without the memory traffic.
func BenchmarkKernels(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	codes := make([]int8, 4096*Dim)
	for i := range codes {
		codes[i] = int8(rng.IntN(255) - 127)
	}
	norms := make([]int32, len(codes)/Dim)
	for r := range norms {
		norms[r] = norm((*[Dim]int8)(codes[r*Dim:]))
	}
	var q query
	randomQuery(rng, &q.code)
	var ds [block]int32
	for _, kern := range kernels {
		b.Run(kern.name, func(b *testing.B) {
			b.SetBytes(int64(len(codes)))
			c := startCPU(b)
			for b.Loop() {
				for r0 := 0; r0 < len(codes)/Dim; r0 += block {
					kern.dists(&q, codes[r0*Dim:(r0+block)*Dim], norms[r0:r0+block], 0, ds[:])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(codes)/Dim), "ns/row")
			b.ReportMetric(c.stop()/float64(len(codes)/Dim), "cpu-ns/row")
		})
	}
}

// BenchmarkRemoveAndAdd: a subject's templates replaced (erased, then
// enrolled again), as a gate applies a change to its gallery, in galleries
// of 3 templates a subject.
func BenchmarkRemoveAndAdd(b *testing.B) {
	for _, n := range []int{60_000, 300_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			g, _ := synthGallery(b, n, 5)
			vs := make([][3]Vector, n/3)
			for r := range n {
				vs[r/3][r%3] = *(*Vector)(g.vecs[r*Dim:])
			}
			for i := 0; b.Loop(); i++ {
				s := (i * 7919) % (n / 3)
				name := fmt.Sprintf("s%d", s)
				if g.Remove(name) != 3 {
					b.Fatalf("%s not held", name)
				}
				for _, v := range vs[s] {
					if err := g.Add(name, v); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
