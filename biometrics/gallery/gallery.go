// Package gallery holds enrolled face descriptors in memory and searches
// them exactly: a scan over int8 codes finds candidates, and a bound on the
// quantisation error proves which rows need an exact float32 distance, so
// results are identical to a brute-force float32 scan at a fraction of the
// memory traffic. It also implements the matching policy: 1:1 verification
// and bounded 1:N identification with a threshold and a margin.
//
// The package is Go with no I/O; persistence is in biometrics/templates.
// Built with GOEXPERIMENT=simd on amd64, the scan uses AVX-512 or AVX2
// (simd/archsimd) when the CPU has them, checked at run time; otherwise,
// and on other builds, a plain Go loop. All return the same results.
package gallery

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"slices"
	"sync"
)

// Dim is the descriptor length.
const Dim = 128

// Vector is a face descriptor. It is an alias so that any [128]float32
// based type (such as biometrics.Descriptor) converts without copying code.
type Vector = [Dim]float32

// step is the int8 quantisation step. dlib descriptors lie within about
// ±0.44 (idols.json); ±127 steps of 1/300 cover ±0.42 and clip the rare
// larger values, whose larger error the per-row residual accounts for.
const step = 1.0 / 300

// slack absorbs, in absolute terms, the rounding of the residuals (stored
// as float32) and of squares that underflow.
const slack = 1e-4

// relTol bounds, relatively, how far Distance and kernel.sq's square root
// can be from the exact distance between two float32 vectors. Both sum the
// same 128 float32 squares of the same float32 differences, in some order
// (or with fused multiply-adds), and for any order a float32 sum of n
// non-negative terms is within gamma(n) = n*u/(1-n*u) (u = 2^-24) of the
// exact sum, the products' rounding included: 7.7e-6 for n = 128. Square
// roots halve that and Distance's rounding to float32 adds u: both are
// within 4e-6 of the exact distance. relTol leaves a factor of 25.
const relTol = 1e-4

// wideResid is the residual above which a row is "wide": its code is too
// coarse to take part in the scan's bound (clipped values, mostly), so it
// is checked on its own in every search. A search's candidate window
// grows with the largest residual it must allow for; without the wide rows
// that is wideResid rather than the gallery's worst row. On the synthetic
// 1M gallery (bench_test.go) the median residual is 0.011, and 0.1% of
// the rows are wide.
const wideResid = 0.02

// qfine is how much finer than step the query is quantised. Distances are
// computed as sum((qcode - qfine*code)^2) in int32: the query's rounding
// error shrinks qfine-fold, so nearly all the slack is the gallery's.
// With both clipped to ±127*qfine a term is at most (254*16)^2 and 128 of
// them stay below 2^31.
const qfine = 16

// Match is one search result.
type Match struct {
	Subject  string
	Distance float32 // Euclidean
	Row      int     // internal row, stable until the next Remove
}

// Gallery is a set of enrolled templates. It is safe for concurrent use;
// searches run in parallel with each other.
//
// Memory: about 664 bytes per template (512 float32, 128 int8, norm,
// residual and owner), so 1M templates take about 664 MB.
type Gallery struct {
	mu     sync.RWMutex
	vecs   []float32 // row-major, Dim per row: exact values
	codes  []int8    // row-major, Dim per row: round(v/step), clipped
	norms  []int32   // sum of code^2 per row, for the SIMD kernels
	resid  []float32 // |v - code*step| per row
	owner  []string
	rows   map[string][]int32
	wide   []int32 // rows whose residual exceeds wideResid, in no order
	maxPer int     // most templates any subject has: bounds 1:N search depth
	perLen []int   // perLen[n]: how many subjects have n templates
	cands  sync.Pool
}

// New returns an empty gallery.
func New() *Gallery {
	return &Gallery{rows: make(map[string][]int32)}
}

// ErrInvalid reports a template that cannot be added.
var ErrInvalid = errors.New("gallery: invalid template")

// quantiseQuery rounds q to steps of step/qfine, clipped like codes.
func quantiseQuery(v *Vector, code *[Dim]int16) float32 {
	var e float64
	const s = step / qfine
	for i, x := range v {
		q := math.Round(float64(x) / s)
		q = max(-127*qfine, min(127*qfine, q))
		code[i] = int16(q)
		d := float64(x) - q*s
		e += d * d
	}
	return float32(math.Sqrt(e))
}

func quantise(v *Vector, code []int8) float32 {
	var e float64
	for i, x := range v {
		q := math.Round(float64(x) / step)
		q = max(-127, min(127, q))
		code[i] = int8(q)
		d := float64(x) - q*step
		e += d * d
	}
	return float32(math.Sqrt(e))
}

// Add enrols one template for subject.
func (g *Gallery) Add(subject string, v Vector) error {
	if subject == "" {
		return fmt.Errorf("%w: empty subject", ErrInvalid)
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("%w: value %d is not finite", ErrInvalid, i)
		}
	}
	var code [Dim]int8
	e := quantise(&v, code[:])
	g.mu.Lock()
	defer g.mu.Unlock()
	row := int32(len(g.owner))
	g.vecs = appendWiping(g.vecs, v[:]...)
	g.codes = appendWiping(g.codes, code[:]...)
	g.norms = append(g.norms, norm(&code))
	g.resid = append(g.resid, e)
	g.owner = append(g.owner, subject)
	g.rows[subject] = append(g.rows[subject], row)
	n := len(g.rows[subject])
	if n >= len(g.perLen) {
		g.perLen = append(g.perLen, make([]int, n+1-len(g.perLen))...)
	}
	if n > 1 {
		g.perLen[n-1]--
	}
	g.perLen[n]++
	g.maxPer = max(g.maxPer, n)
	if e > wideResid {
		g.wide = append(g.wide, row)
	}
	return nil
}

// appendWiping appends add to s; where s must grow, the array it leaves
// behind is cleared: templates are biometric data, and a copy left in an
// outgrown array would outlive its subject's erasure until the collector
// reused the memory (an outside review). g.mu held, so no search reads it.
func appendWiping[T any](s []T, add ...T) []T {
	if len(s)+len(add) <= cap(s) {
		return append(s, add...)
	}
	out := make([]T, len(s), max(cap(s)+cap(s)/4+Dim, len(s)+len(add))) // as append grows, in rows
	copy(out, s)
	clear(s[:cap(s)])
	return append(out, add...)
}

// Remove erases every template of subject and returns how many there were.
// The memory is overwritten, not just dropped. Each erased row takes the
// gallery's last row, so a removal costs the subject's templates, not the
// gallery's: a gate applying a city's erasures one by one would otherwise
// hold its searches for a pass over every row each time.
func (g *Gallery) Remove(subject string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	gone := g.rows[subject]
	n := len(gone)
	if n == 0 {
		return 0
	}
	delete(g.rows, subject)
	// Highest first: the last row is then never one still to erase.
	slices.Sort(gone)
	for i := len(gone) - 1; i >= 0; i-- {
		g.moveLast(gone[i])
	}
	g.perLen[n]--
	for g.maxPer > 0 && g.perLen[g.maxPer] == 0 {
		g.maxPer--
	}
	return n
}

// moveLast overwrites row r with the gallery's last row and drops the
// last, whose memory is cleared; g.mu held.
func (g *Gallery) moveLast(r int32) {
	last := int32(len(g.owner) - 1)
	g.wide = slices.DeleteFunc(g.wide, func(w int32) bool { return w == r })
	if r != last {
		copy(g.vecs[int(r)*Dim:int(r+1)*Dim], g.vecs[int(last)*Dim:])
		copy(g.codes[int(r)*Dim:int(r+1)*Dim], g.codes[int(last)*Dim:])
		g.norms[r], g.resid[r], g.owner[r] = g.norms[last], g.resid[last], g.owner[last]
		rows := g.rows[g.owner[r]]
		rows[slices.Index(rows, last)] = r
		if i := slices.Index(g.wide, last); i >= 0 {
			g.wide[i] = r
		}
	}
	clear(g.vecs[int(last)*Dim:])
	clear(g.codes[int(last)*Dim:])
	g.norms[last], g.resid[last], g.owner[last] = 0, 0, ""
	g.vecs, g.codes = g.vecs[:int(last)*Dim], g.codes[:int(last)*Dim]
	g.norms, g.resid, g.owner = g.norms[:last], g.resid[:last], g.owner[:last]
}

// Len returns the number of templates.
func (g *Gallery) Len() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.owner)
}

// Subjects returns the number of enrolled subjects.
func (g *Gallery) Subjects() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.rows)
}

// Has reports whether subject has any template.
func (g *Gallery) Has(subject string) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.rows[subject]) > 0
}

// Distance returns the Euclidean distance between two descriptors, summed
// in float32 in index order (the reference all searches agree with).
func Distance(a, b *Vector) float32 {
	var s float32
	for i := range a {
		d := a[i] - b[i]
		s += d * d
	}
	return float32(math.Sqrt(float64(s)))
}

func (g *Gallery) exact(q *Vector, row int) float32 {
	return Distance(q, (*Vector)(g.vecs[row*Dim:(row+1)*Dim]))
}

func less(a, b Match) bool {
	if a.Distance != b.Distance {
		return a.Distance < b.Distance
	}
	return a.Row < b.Row
}

// Search returns the k templates nearest to q, nearest first (ties by row).
// The result equals SearchFloat's: the int8 scan only chooses which rows get
// an exact distance, and the bound below guarantees no true neighbour is
// missed.
func (g *Gallery) Search(q Vector, k int) []Match {
	ms, _ := g.search(&q, k)
	return ms
}

// cand is a row whose quantised distance might put it in the top k.
type cand struct {
	row int32
	d   int32
	e   float32 // residual, kept so the rerank reads no scattered rows
}

// parallelMin is the gallery size from which one search uses every core:
// below it, starting goroutines costs more than the scan.
const parallelMin = 1 << 16

// block is how many rows a kernel call scores: the bits of a mask.
const block = 64

// scan computes quantised distances for rows [lo, hi) with kern. Of the
// rows that are not wide it returns the k smallest distances (a max-heap)
// and every row that might still be within reach of them (cands, appended
// to buf). A row is within reach while sqrt(d) <= ratio*sqrt(heap[0]) +
// spread (see searchWith).
func (g *Gallery) scan(kern kernel, q *query, lo, hi, k int, ratio, spread float64, buf []cand) ([]int32, []cand) {
	heap := make([]int32, 0, k)
	candT := int32(math.MaxInt32)
	codes, norms, resid := g.codes, g.norms, g.resid
	var ds [block]int32
	for r0 := lo; r0 < hi; r0 += block {
		n := min(block, hi-r0)
		// The kernel's mask holds the rows within candT as the block
		// began; candT only shrinks, so d is checked again.
		for m := kern.dists(q, codes[r0*Dim:(r0+n)*Dim], norms[r0:r0+n], candT, ds[:n]); m != 0; m &= m - 1 {
			j := bits.TrailingZeros64(m)
			d := ds[j]
			if d > candT {
				continue
			}
			e := resid[r0+j]
			if e > wideResid {
				continue
			}
			buf = append(buf, cand{int32(r0 + j), d, e})
			if len(heap) < k {
				heap = append(heap, d)
				up(heap, len(heap)-1)
			} else if d < heap[0] {
				heap[0] = d
				down(heap, 0)
			} else {
				continue
			}
			if len(heap) == k {
				t := ratio*math.Sqrt(float64(heap[0])) + spread
				candT = int32(min(t*t, math.MaxInt32-1))
			}
		}
	}
	return heap, buf
}

// search also reports how many rows got a float32 distance. It scans with
// the best kernel the CPU has; galleries of parallelMin rows or more are
// scanned by GOMAXPROCS goroutines.
func (g *Gallery) search(q *Vector, k int) ([]Match, searchStats) {
	return g.searchWith(best(), runtime.GOMAXPROCS(0), q, k)
}

// searchWith is search with the kernel and the number of goroutines chosen
// by the caller (tests and benchmarks force them). With procs > 1 and at
// least parallelMin rows, each goroutine scans a contiguous block, all
// finished before it returns.
//
// The bounds: let t be the exact distance between q and a row v, d the
// row's quantised distance and e its residual. By the triangle inequality
// (twice) t is within eq + e of unit*sqrt(d), and Distance is within
// relTol of t, so, with slack for the residuals' rounding,
//
//	lb = (unit*sqrt(d) - eq - e - slack) * (1-relTol) <= Distance(q, v)
//	ub = (unit*sqrt(d) + eq + e + slack) * (1+relTol) >= Distance(q, v).
//
// The k-th nearest Distance is at most the k-th smallest ub, and a row
// whose lb exceeds that cannot be among the k nearest.
func (g *Gallery) searchWith(kern kernel, procs int, q *Vector, k int) ([]Match, searchStats) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	n := len(g.owner)
	if k <= 0 || n == 0 {
		return nil, searchStats{}
	}
	k = min(k, n)
	var qq query
	eq := float64(setQuery(&qq, q))
	const unit = step / qfine // distance unit of sqrt(dist8)
	// The scan's window: with e <= wideResid for the rows it keeps, lb <=
	// ub(heap[0]) holds only if sqrt(d) <= ratio*sqrt(heap[0]) + spread.
	const ratio = (1 + relTol) / (1 - relTol)
	spread := (ratio + 1) * (eq + wideResid + slack) / unit

	cp, _ := g.cands.Get().(*[]cand)
	if cp == nil {
		cp = new([]cand)
	}
	kth := int32(-1) // k-th smallest quantised distance of the scanned rows; -1: fewer than k
	cs := (*cp)[:0]
	if p := procs; n >= parallelMin && p > 1 {
		heaps := make([][]int32, p)
		parts := make([][]cand, p)
		var wg sync.WaitGroup
		for i := range p {
			wg.Add(1)
			go func() {
				defer wg.Done()
				heaps[i], parts[i] = g.scan(kern, &qq, n*i/p, n*(i+1)/p, k, ratio, spread, nil)
			}()
		}
		wg.Wait()
		var all []int32
		for i := range p {
			all = append(all, heaps[i]...)
			cs = append(cs, parts[i]...)
		}
		slices.Sort(all)
		if len(all) >= k {
			kth = all[k-1]
		}
	} else {
		var heap []int32
		heap, cs = g.scan(kern, &qq, 0, n, k, ratio, spread, cs)
		if len(heap) == k {
			kth = heap[0]
		}
	}
	// The rerank. T bounds the k-th nearest Distance: first the k-th
	// smallest ub of the scanned rows, then the k-th best Distance so far.
	// A row gets a float32 distance only if its lb is within T, and
	// Distance only if kern.sq's sum (another order, the same rounding
	// bound) is too. Each scan block kept every row within reach of its
	// own k-th distance, which is no smaller than the overall one, so no
	// true neighbour was dropped; the wide rows are all looked at.
	//
	// The k rows nearest by code go first, so T is near its final value
	// before the rest are looked at.
	T := math.Inf(1)
	if kth >= 0 {
		T = (unit*math.Sqrt(float64(kth)) + eq + wideResid + slack) * (1 + relTol)
	}
	top := make([]Match, 0, k) // max-heap under less
	var st searchStats
	consider := func(c cand) {
		lb := (unit*math.Sqrt(float64(c.d)) - eq - float64(c.e) - slack) * (1 - relTol)
		if lb > T {
			return
		}
		v := (*Vector)(g.vecs[int(c.row)*Dim:])
		st.floats++
		f := math.Sqrt(float64(kern.sq(q, v)))
		// f and Distance are each within relTol/25 of the exact distance.
		if f*(1-relTol)-slack > T && !math.IsInf(f, 0) {
			return
		}
		st.exact++
		m := Match{Distance: Distance(q, v), Row: int(c.row)}
		switch {
		case len(top) < k:
			top = append(top, m)
			upMatch(top, len(top)-1)
		case less(m, top[0]):
			top[0] = m
			downMatch(top, 0)
		default:
			return
		}
		if len(top) == k {
			T = min(T, float64(top[0].Distance))
		}
	}
	for _, c := range cs {
		if c.d <= kth {
			consider(c)
		}
	}
	for _, r := range g.wide {
		consider(cand{r, dist8(&qq.code, (*[Dim]int8)(g.codes[int(r)*Dim:])), g.resid[r]})
	}
	for _, c := range cs {
		if c.d > kth {
			consider(c)
		}
	}
	*cp = cs[:0]
	g.cands.Put(cp)
	slices.SortFunc(top, func(a, b Match) int {
		if less(a, b) {
			return -1
		}
		return 1 // no two matches share a row
	})
	for i := range top {
		top[i].Subject = g.owner[top[i].Row]
	}
	return top, st
}

// searchStats counts the rows of one search that got a float32 distance:
// floats by kern.sq, exact by Distance.
type searchStats struct {
	floats, exact int
}

func upMatch(h []Match, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !less(h[p], h[i]) {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func downMatch(h []Match, i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && less(h[l], h[r]) {
			c = r
		}
		if !less(h[i], h[c]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// SearchFloat is a brute-force float32 scan: the reference Search is
// tested and benchmarked against.
func (g *Gallery) SearchFloat(q Vector, k int) []Match {
	g.mu.RLock()
	defer g.mu.RUnlock()
	n := len(g.owner)
	if k <= 0 || n == 0 {
		return nil
	}
	k = min(k, n)
	ms := make([]Match, 0, k+1)
	for r := 0; r < n; r++ {
		m := Match{Distance: g.exact(&q, r), Row: r}
		if len(ms) == k && !less(m, ms[k-1]) {
			continue
		}
		i, _ := slices.BinarySearchFunc(ms, m, func(a, b Match) int {
			if less(a, b) {
				return -1
			}
			return 1
		})
		ms = slices.Insert(ms, i, m)
		if len(ms) > k {
			ms = ms[:k]
		}
	}
	for i := range ms {
		ms[i].Subject = g.owner[ms[i].Row]
	}
	return ms
}

func up(h []int32, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p] >= h[i] {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func down(h []int32, i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && h[r] > h[l] {
			c = r
		}
		if h[i] >= h[c] {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// Vote classifies q with go-face's rule: among the k nearest templates the
// subject with the most wins; a tie goes to the subject whose nearest
// template is closer. It returns false for an empty gallery.
func (g *Gallery) Vote(q Vector, k int) (string, bool) {
	ms := g.Search(q, k)
	if len(ms) == 0 {
		return "", false
	}
	votes := make(map[string]int)
	first := make(map[string]int) // rank of each subject's nearest
	for i, m := range ms {
		if _, ok := first[m.Subject]; !ok {
			first[m.Subject] = i
		}
		votes[m.Subject]++
	}
	best := ms[0].Subject
	for s, v := range votes {
		if v > votes[best] || (v == votes[best] && first[s] < first[best]) {
			best = s
		}
	}
	return best, true
}
