package gallery

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// dist8Ref is dist8 written the obvious way, in int64: the reference every
// kernel, the plain one included, is checked against.
func dist8Ref(a *[Dim]int16, b []int8) int64 {
	var s int64
	for i := range a {
		d := int64(a[i]) - qfine*int64(b[i])
		s += d * d
	}
	return s
}

// testedKernels returns every kernel this build and CPU can run, and logs
// the SIMD kernels it cannot, so that a run on a smaller CPU says what it
// did not test instead of passing silently.
func testedKernels(t testing.TB) []kernel {
	t.Helper()
	for _, name := range []string{"avx2", "avx512"} {
		if _, ok := kernelNamed(name); ok {
			continue
		}
		if simdBuilt {
			t.Logf("kernel %s not tested: this CPU lacks it", name)
		} else {
			t.Logf("kernel %s not tested: built without GOEXPERIMENT=simd on amd64", name)
		}
	}
	names := ""
	for _, k := range kernels {
		names += " " + k.name
	}
	t.Logf("testing kernels:%s", names)
	return kernels
}

// checkKernels runs every kernel on codes (rows of Dim) against qc, in
// runs of up to block rows, and compares each distance with dist8Ref and
// each mask with the distances, for limits below, at and above them.
func checkKernels(t *testing.T, ks []kernel, qc *[Dim]int16, codes []int8) {
	t.Helper()
	var q query
	q.code = *qc
	for _, x := range qc {
		q.sq += int32(x) * int32(x)
	}
	n := len(codes) / Dim
	want := make([]int64, n)
	for r := range want {
		want[r] = dist8Ref(qc, codes[r*Dim:(r+1)*Dim])
		if want[r] > math.MaxInt32 {
			t.Fatalf("row %d: distance %d overflows int32: test data breaks the kernels' bound", r, want[r])
		}
	}
	norms := make([]int32, n)
	for r := range norms {
		norms[r] = norm((*[Dim]int8)(codes[r*Dim:]))
	}
	limits := []int32{-1, 0, math.MaxInt32}
	if n > 0 {
		limits = append(limits, int32(want[n/2]), int32(want[n/2])-1, int32(want[0]))
	}
	got := make([]int32, block)
	for _, k := range ks {
		for r0 := 0; r0 < n; r0 += block {
			m := min(block, n-r0)
			for _, limit := range limits {
				clear(got)
				mask := k.dists(&q, codes[r0*Dim:(r0+m)*Dim], norms[r0:r0+m], limit, got[:m])
				for i := range m {
					if int64(got[i]) != want[r0+i] {
						t.Fatalf("kernel %s, %d rows: row %d = %d, want %d", k.name, n, r0+i, got[i], want[r0+i])
					}
					if in := mask>>i&1 == 1; in != (want[r0+i] <= int64(limit)) {
						t.Fatalf("kernel %s, %d rows: row %d (%d) in mask = %v for limit %d", k.name, n, r0+i, got[i], in, limit)
					}
				}
				if m < 64 && mask>>m != 0 {
					t.Fatalf("kernel %s: mask %#x has bits beyond %d rows", k.name, mask, m)
				}
			}
		}
	}
}

func randomQuery(rng *rand.Rand, qc *[Dim]int16) {
	for i := range qc {
		qc[i] = int16(rng.IntN(2*127*qfine+1) - 127*qfine)
	}
}

func TestKernelsEqualReference(t *testing.T) {
	ks := testedKernels(t)
	rng := rand.New(rand.NewPCG(11, 11))
	fill := func(codes []int8, f func(r, i int) int8) {
		for j := range codes {
			codes[j] = f(j/Dim, j%Dim)
		}
	}
	const lim = 127 * qfine // the query's clip
	tests := []struct {
		name  string
		rows  int
		query func(i int) int16 // nil: random
		code  func(r, i int) int8
	}{
		{"random", 1000, nil, func(r, i int) int8 { return int8(rng.IntN(255) - 127) }},
		{"random with -128", 517, nil, func(r, i int) int8 { return int8(rng.IntN(256) - 128) }},
		{"zero", 33, func(int) int16 { return 0 }, func(r, i int) int8 { return 0 }},
		{"largest: codes +127, query clipped low", 40, func(int) int16 { return -lim }, func(r, i int) int8 { return 127 }},
		{"largest: codes -127, query clipped high", 40, func(int) int16 { return lim }, func(r, i int) int8 { return -127 }},
		{"codes -128, query clipped high", 17, func(int) int16 { return lim }, func(r, i int) int8 { return -128 }},
		{"alternating extremes", 48, func(i int) int16 { return int16(lim * (1 - 2*(i%2))) }, func(r, i int) int8 { return int8(127 * (2*((i+r)%2) - 1)) }},
		{"exact match", 24, func(i int) int16 { return int16(qfine * (i - 64)) }, func(r, i int) int8 { return int8(i - 64) }},
		{"rows differ", 64, func(i int) int16 { return int16(i * 7) }, func(r, i int) int8 { return int8(r*3 - i) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			codes := make([]int8, tc.rows*Dim)
			fill(codes, tc.code)
			var qc [Dim]int16
			for q := range 3 {
				if tc.query == nil {
					randomQuery(rng, &qc)
				} else {
					for i := range qc {
						qc[i] = tc.query(i)
					}
				}
				// Every row count up to 40 covers every tail length of
				// the 8- and 16-row SIMD loops.
				for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 40, tc.rows} {
					if n <= tc.rows {
						checkKernels(t, ks, &qc, codes[:n*Dim])
					}
				}
				checkKernels(t, ks, &qc, codes[(tc.rows/2)*Dim:]) // an odd start
				if tc.query != nil && q == 0 {
					break
				}
			}
		})
	}
}

// TestKernelsRealDescriptors checks the kernels on idols.json: every
// descriptor quantised as a row, and as a query against all rows.
func TestKernelsRealDescriptors(t *testing.T) {
	ks := testedKernels(t)
	ds := loadIdols(t)
	codes := make([]int8, len(ds.Samples)*Dim)
	for r, x := range ds.Samples {
		quantise(&x.Descriptor, codes[r*Dim:(r+1)*Dim])
	}
	for i := 0; i < len(ds.Samples); i += 7 {
		var qc [Dim]int16
		quantiseQuery(&ds.Samples[i].Descriptor, &qc)
		checkKernels(t, ks, &qc, codes)
	}
}

// TestSearchKernelsEqualFloat forces each kernel, on one goroutine and on
// several, and compares Search with the float32 scan: strangers, probes
// near a row, and probes near wide rows (clipped codes), which the scan
// leaves to the rerank.
func TestSearchKernelsEqualFloat(t *testing.T) {
	ks := testedKernels(t)
	g, s := synthGallery(t, parallelMin+1001, 5)
	if len(g.wide) < 4 {
		t.Fatalf("only %d wide rows: the test needs some", len(g.wide))
	}
	t.Logf("%d rows, %d wide", g.Len(), len(g.wide))
	near := func(row int, sd float64) Vector {
		q := *(*Vector)(g.vecs[row*Dim:])
		for j := range q {
			q[j] += float32(s.rng.NormFloat64() * sd)
		}
		return q
	}
	var qs []Vector
	for i := range 12 {
		qs = append(qs, s.next(), near((i*4099)%g.Len(), 0.03))
	}
	for _, r := range g.wide[:4] {
		qs = append(qs, near(int(r), 0.01), near(int(r), 0))
	}
	for _, k := range []int{1, 10, 50} {
		want := make([][]Match, len(qs))
		for i, q := range qs {
			want[i] = g.SearchFloat(q, k)
		}
		for _, kern := range ks {
			for _, procs := range []int{1, 3} {
				t.Run(fmt.Sprintf("k=%d/%s/procs=%d", k, kern.name, procs), func(t *testing.T) {
					for i := range qs {
						got, _ := g.searchWith(kern, procs, &qs[i], k)
						if !sameMatches(got, want[i]) {
							t.Fatalf("query %d:\n got %v\nwant %v", i, got, want[i])
						}
					}
				})
			}
		}
	}
}

// TestSearchTightBound builds rows whose rounding errors all point the
// same way, so that the triangle bound is nearly tight: row "near" has the
// larger code distance from the query (the origin) but is truly nearer
// than row "far", and both residuals are just under wideResid. A scan
// window or rerank bound any narrower than the proof's drops "near".
func TestSearchTightBound(t *testing.T) {
	ks := testedKernels(t)
	at := func(c float64, dims int, rest float64) Vector {
		var v Vector
		for i := range v {
			v[i] = float32(rest * step)
			if i < dims {
				v[i] = float32(c * step)
			}
		}
		return v
	}
	near := at(2.501, Dim, 0)   // codes 3: rounded away from the origin
	far := at(3.499, 66, 0.499) // codes 3 and 0: rounded towards it
	filler := at(40, Dim, 0)    // far from everything
	g := New()
	for i := range parallelMin {
		if err := g.Add(fmt.Sprint("filler", i), filler); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range []struct {
		name string
		v    Vector
	}{{"far", far}, {"near", near}} { // far first: it sets the scan's window
		if err := g.Add(x.name, x.v); err != nil {
			t.Fatal(err)
		}
		if e := g.resid[g.Len()-1]; e > wideResid || e < 0.9*wideResid {
			t.Fatalf("%s: residual %v, want just under %v", x.name, e, wideResid)
		}
	}
	var q Vector
	if Distance(&q, &near) >= Distance(&q, &far) {
		t.Fatalf("test data: near %v is not nearer than far %v", Distance(&q, &near), Distance(&q, &far))
	}
	want := g.SearchFloat(q, 1)
	for _, kern := range ks {
		for _, procs := range []int{1, 2} {
			got, _ := g.searchWith(kern, procs, &q, 1)
			if !sameMatches(got, want) || got[0].Subject != "near" {
				t.Errorf("%s, procs=%d: got %v, want %v", kern.name, procs, got, want)
			}
		}
	}
}

// TestSqWithinTolerance checks kern.sq against Distance within relTol on
// real descriptors: sq decides which rows need Distance, so a kernel
// outside the bound would drop true neighbours.
func TestSqWithinTolerance(t *testing.T) {
	ks := testedKernels(t)
	ds := loadIdols(t)
	worst := 0.0
	for i := 0; i < len(ds.Samples); i += 3 {
		a := &ds.Samples[i].Descriptor
		for j := 0; j < len(ds.Samples); j += 5 {
			b := &ds.Samples[j].Descriptor
			d := float64(Distance(a, b))
			for _, k := range ks {
				f := math.Sqrt(float64(k.sq(a, b)))
				if d == 0 && f == 0 {
					continue
				}
				rel := math.Abs(f-d) / d
				if rel > relTol/10 {
					t.Fatalf("kernel %s: sq gives %v, Distance %v: %.2g apart", k.name, f, d, rel)
				}
				worst = max(worst, rel)
			}
		}
	}
	t.Logf("largest relative difference %.2g (bound %.2g)", worst, relTol)
}

// FuzzKernels compares every kernel with the reference on fuzzed rows:
// the first 2*Dim bytes make the query (clipped like quantiseQuery), the
// rest the rows' codes.
func FuzzKernels(f *testing.F) {
	seed := make([]byte, 2*Dim+17*Dim)
	for i := range seed {
		seed[i] = byte(i * 37)
	}
	f.Add(seed)
	ext := make([]byte, 2*Dim+16*Dim)
	for i := 0; i < 2*Dim; i += 2 {
		ext[i], ext[i+1] = 0x00, 0x80 // -32768: clipped to -2032
	}
	for i := 2 * Dim; i < len(ext); i++ {
		ext[i] = 0x7f
	}
	f.Add(ext)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2*Dim {
			return
		}
		var qc [Dim]int16
		for i := range qc {
			v := int16(uint16(data[2*i]) | uint16(data[2*i+1])<<8)
			qc[i] = max(-127*qfine, min(127*qfine, v))
		}
		rest := data[2*Dim:]
		codes := make([]int8, len(rest)/Dim*Dim)
		for i := range codes {
			codes[i] = int8(rest[i])
		}
		checkKernels(t, kernels, &qc, codes)
	})
}
