package gallery

// A kernel is the arithmetic of a search, in one instruction set.
//
// dists computes the quantised distances of a run of at most 64
// consecutive rows: out[i] = dist8(&q.code, row i of codes) for every i,
// with len(codes) = len(out)*Dim and norms[i] the sum of the squares of
// row i's codes (which a kernel may use). It returns a mask with bit i set
// where out[i] <= limit, so that the scan looks only at those rows. All
// kernels return identical values (integer arithmetic is exact, and no
// sum can overflow).
//
// sq is the squared Euclidean distance summed in float32 in any order: it
// may differ from Distance's square by rounding (see relTol), and only
// decides which rows need Distance.
//
// So which kernel runs changes the speed of a search, never its result.
type kernel struct {
	name  string
	dists func(q *query, codes []int8, norms []int32, limit int32, out []int32) uint64
	sq    func(a, b *Vector) float32
}

// query is a search's quantised query as the kernels take it.
type query struct {
	code [Dim]int16 // in steps of step/qfine
	sq   int32      // sum of code^2: at most 128*2032^2 < 2^30
}

// setQuery quantises v into q and returns the quantisation error.
func setQuery(q *query, v *Vector) float32 {
	e := quantiseQuery(v, &q.code)
	q.sq = 0
	for _, x := range q.code {
		q.sq += int32(x) * int32(x)
	}
	return e
}

// plain is the portable kernel, and the fallback on every CPU.
var plain = kernel{"plain", distsPlain, sqPlain}

// kernels lists the kernels this build and CPU can run, slowest first; the
// SIMD kernels add themselves at init after checking the CPU.
var kernels = []kernel{plain}

// simdBuilt reports whether this build has the SIMD kernels (amd64 with
// GOEXPERIMENT=simd), whether or not the CPU can run them.
var simdBuilt bool

// best is the fastest kernel in kernels: the one searches use.
func best() kernel {
	return kernels[len(kernels)-1]
}

// kernelNamed returns the kernel called name if this build and CPU can run
// it. Tests and benchmarks use it to force a kernel.
func kernelNamed(name string) (kernel, bool) {
	for _, k := range kernels {
		if k.name == name {
			return k, true
		}
	}
	return kernel{}, false
}

func distsPlain(q *query, codes []int8, _ []int32, limit int32, out []int32) uint64 {
	codes = codes[:len(out)*Dim]
	var mask uint64
	for i := range out {
		d := dist8(&q.code, (*[Dim]int8)(codes[i*Dim:]))
		out[i] = d
		if d <= limit {
			mask |= 1 << i
		}
	}
	return mask
}

// dist8 is the squared distance between a query code (in steps of
// step/qfine) and a row's int8 code (in steps of step), in units of
// (step/qfine)^2. Four accumulators break the dependency chain; the array
// pointers drop bounds checks.
func dist8(a *[Dim]int16, b *[Dim]int8) int32 {
	var s0, s1, s2, s3 int32
	for i := 0; i < Dim; i += 4 {
		d0 := int32(a[i]) - qfine*int32(b[i])
		d1 := int32(a[i+1]) - qfine*int32(b[i+1])
		d2 := int32(a[i+2]) - qfine*int32(b[i+2])
		d3 := int32(a[i+3]) - qfine*int32(b[i+3])
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	return s0 + s1 + s2 + s3
}

// sqPlain sums in four chains: a quarter of Distance's latency.
func sqPlain(a, b *Vector) float32 {
	var s0, s1, s2, s3 float32
	for i := 0; i < Dim; i += 4 {
		d0 := a[i] - b[i]
		d1 := a[i+1] - b[i+1]
		d2 := a[i+2] - b[i+2]
		d3 := a[i+3] - b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	return (s0 + s1) + (s2 + s3)
}

// norm is the sum of the squares of a row's codes: at most 128*128^2.
func norm(code *[Dim]int8) int32 {
	var s int32
	for _, c := range code {
		s += int32(c) * int32(c)
	}
	return s
}
