// Package gallery holds enrolled face descriptors in memory and searches
// them exactly: a scan over int8 codes finds candidates, and a bound on the
// quantisation error proves which rows need an exact float32 distance, so
// results are identical to a brute-force float32 scan at a fraction of the
// memory traffic. It also implements the matching policy: 1:1 verification
// and bounded 1:N identification with a threshold and a margin.
//
// The package is pure Go with no I/O; persistence is in biometrics/templates.
package gallery

import (
	"errors"
	"fmt"
	"math"
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

// slack absorbs float32 rounding in the exactness bound.
const slack = 1e-4

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
// Memory: about 660 bytes per template (512 float32, 128 int8, residual and
// owner), so 1M templates take about 660 MB.
type Gallery struct {
	mu     sync.RWMutex
	vecs   []float32 // row-major, Dim per row: exact values
	codes  []int8    // row-major, Dim per row: round(v/step), clipped
	resid  []float32 // |v - code*step| per row
	owner  []string
	rows   map[string][]int32
	maxPer int     // most templates any subject has: bounds 1:N search depth
	eMax   float32 // largest residual
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
	g.vecs = append(g.vecs, v[:]...)
	g.codes = append(g.codes, code[:]...)
	g.resid = append(g.resid, e)
	g.owner = append(g.owner, subject)
	g.rows[subject] = append(g.rows[subject], row)
	g.maxPer = max(g.maxPer, len(g.rows[subject]))
	g.eMax = max(g.eMax, e)
	return nil
}

// Remove erases every template of subject and returns how many there were.
// The memory is overwritten, not just dropped.
func (g *Gallery) Remove(subject string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(g.rows[subject])
	if n == 0 {
		return 0
	}
	w := 0
	g.rows = make(map[string][]int32, len(g.rows))
	g.maxPer, g.eMax = 0, 0
	for r := range g.owner {
		if g.owner[r] == subject {
			continue
		}
		if w != r {
			copy(g.vecs[w*Dim:(w+1)*Dim], g.vecs[r*Dim:(r+1)*Dim])
			copy(g.codes[w*Dim:(w+1)*Dim], g.codes[r*Dim:(r+1)*Dim])
			g.resid[w], g.owner[w] = g.resid[r], g.owner[r]
		}
		s := g.owner[w]
		g.rows[s] = append(g.rows[s], int32(w))
		g.maxPer = max(g.maxPer, len(g.rows[s]))
		g.eMax = max(g.eMax, g.resid[w])
		w++
	}
	// Zero the tail so that the erased templates do not linger in memory.
	clear(g.vecs[w*Dim:])
	clear(g.codes[w*Dim:])
	clear(g.resid[w:])
	clear(g.owner[w:])
	g.vecs, g.codes, g.resid, g.owner = g.vecs[:w*Dim], g.codes[:w*Dim], g.resid[:w], g.owner[:w]
	return n
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
}

// parallelMin is the gallery size from which one search uses every core:
// below it, starting goroutines costs more than the scan.
const parallelMin = 1 << 16

// scan computes quantised distances for rows [lo, hi) and returns the k
// smallest (a max-heap) and every row that might still be within reach of
// them (cands, appended to buf).
func (g *Gallery) scan(qc *[Dim]int16, lo, hi, k int, widen float64, buf []cand) ([]int32, []cand) {
	heap := make([]int32, 0, k)
	candT := int32(math.MaxInt32)
	codes := g.codes
	for r := lo; r < hi; r++ {
		d := dist8(qc, (*[Dim]int8)(codes[r*Dim:(r+1)*Dim]))
		if d > candT {
			continue
		}
		buf = append(buf, cand{int32(r), d})
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
			t := math.Sqrt(float64(heap[0])) + widen
			candT = int32(min(t*t, math.MaxInt32-1))
		}
	}
	return heap, buf
}

// search also returns how many rows got an exact distance. Galleries of
// parallelMin rows or more are scanned by GOMAXPROCS goroutines, each over
// a contiguous block, all finished before it returns.
func (g *Gallery) search(q *Vector, k int) ([]Match, int) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	n := len(g.owner)
	if k <= 0 || n == 0 {
		return nil, 0
	}
	k = min(k, n)
	var qc [Dim]int16
	eq := quantiseQuery(q, &qc)
	const unit = step / qfine // distance unit of sqrt(dist8)
	// Widening of the candidate radius, in units: a row can be a true
	// neighbour only if its quantised distance is within 2(eq+eMax) of the
	// k-th best quantised distance (triangle inequality, twice).
	widen := (2*float64(eq+g.eMax) + slack) / unit

	cp, _ := g.cands.Get().(*[]cand)
	if cp == nil {
		cp = new([]cand)
	}
	var kth int32 // k-th smallest quantised distance overall
	cs := (*cp)[:0]
	if p := runtime.GOMAXPROCS(0); n >= parallelMin && p > 1 {
		heaps := make([][]int32, p)
		parts := make([][]cand, p)
		var wg sync.WaitGroup
		for i := range p {
			wg.Add(1)
			go func() {
				defer wg.Done()
				heaps[i], parts[i] = g.scan(&qc, n*i/p, n*(i+1)/p, k, widen, nil)
			}()
		}
		wg.Wait()
		var all []int32
		for i := range p {
			all = append(all, heaps[i]...)
			cs = append(cs, parts[i]...)
		}
		slices.Sort(all)
		kth = all[k-1]
	} else {
		var heap []int32
		heap, cs = g.scan(&qc, 0, n, k, widen, cs)
		kth = heap[0]
	}
	// Final filter with each row's own residual: keep rows whose lower
	// bound is within the k-th upper bound. Each block kept every row
	// within reach of its own k-th distance, which is no smaller than the
	// overall one, so no true neighbour was dropped.
	ub := unit*math.Sqrt(float64(kth)) + float64(eq+g.eMax) + slack
	ms := make([]Match, 0, k+8)
	exact := 0
	for _, c := range cs {
		lb := unit*math.Sqrt(float64(c.d)) - float64(eq) - float64(g.resid[c.row]) - slack
		if lb > ub {
			continue
		}
		exact++
		ms = append(ms, Match{Subject: g.owner[c.row], Distance: g.exact(q, int(c.row)), Row: int(c.row)})
	}
	*cp = cs[:0]
	g.cands.Put(cp)
	slices.SortFunc(ms, func(a, b Match) int {
		if less(a, b) {
			return -1
		}
		if less(b, a) {
			return 1
		}
		return 0
	})
	return ms[:min(k, len(ms))], exact
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
