package gallery

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/faregate/faregate/biometrics/eval"
	"github.com/faregate/faregate/biometrics/internal/testenv"
)

func loadIdols(t testing.TB) *eval.Dataset {
	t.Helper()
	f, err := os.Open(testenv.Idols(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ds, err := eval.DecodeIdols(f)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// synth draws descriptors from a Gaussian fitted to idols.json (mean and
// full covariance), so that distances look like real impostor distances.
type synth struct {
	mean [Dim]float64
	chol [Dim][Dim]float64 // lower triangular
	rng  *rand.Rand
}

func newSynth(t testing.TB, seed uint64) *synth {
	ds := loadIdols(t)
	s := &synth{rng: rand.New(rand.NewPCG(seed, 1))}
	n := float64(len(ds.Samples))
	for _, x := range ds.Samples {
		for i, v := range x.Descriptor {
			s.mean[i] += float64(v) / n
		}
	}
	var cov [Dim][Dim]float64
	for _, x := range ds.Samples {
		for i := 0; i < Dim; i++ {
			di := float64(x.Descriptor[i]) - s.mean[i]
			for j := 0; j <= i; j++ {
				cov[i][j] += di * (float64(x.Descriptor[j]) - s.mean[j]) / (n - 1)
			}
		}
	}
	for i := 0; i < Dim; i++ { // Cholesky
		for j := 0; j <= i; j++ {
			sum := cov[i][j]
			for k := 0; k < j; k++ {
				sum -= s.chol[i][k] * s.chol[j][k]
			}
			if i == j {
				s.chol[i][i] = math.Sqrt(max(sum, 1e-12))
			} else {
				s.chol[i][j] = sum / s.chol[j][j]
			}
		}
	}
	return s
}

func (s *synth) next() Vector {
	var z [Dim]float64
	for i := range z {
		z[i] = s.rng.NormFloat64()
	}
	var v Vector
	for i := 0; i < Dim; i++ {
		x := s.mean[i]
		for k := 0; k <= i; k++ {
			x += s.chol[i][k] * z[k]
		}
		v[i] = float32(x)
	}
	return v
}

func synthGallery(t testing.TB, n int, seed uint64) (*Gallery, *synth) {
	s := newSynth(t, seed)
	g := New()
	for i := 0; i < n; i++ {
		if err := g.Add(fmt.Sprintf("s%d", i/3), s.next()); err != nil {
			t.Fatal(err)
		}
	}
	return g, s
}

// checkIndex checks what Add and Remove derive from the codes: the norms
// the SIMD kernels use and the list of wide rows.
func checkIndex(t *testing.T, g *Gallery) {
	t.Helper()
	var wide []int32
	for r := range g.owner {
		if got, want := g.norms[r], norm((*[Dim]int8)(g.codes[r*Dim:])); got != want {
			t.Fatalf("row %d: norm %d, want %d", r, got, want)
		}
		if g.resid[r] > wideResid {
			wide = append(wide, int32(r))
		}
	}
	// Removal moves rows: the list is a set, in no particular order.
	if got := slices.Sorted(slices.Values(g.wide)); !slices.Equal(got, wide) {
		t.Fatalf("wide rows %v, want %v", g.wide, wide)
	}
}

func sameMatches(a, b []Match) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSearchEqualsFloatScan(t *testing.T) {
	g, s := synthGallery(t, 20000, 1)
	for i := range 200 {
		q := s.next()
		if i%2 == 1 { // near a gallery row: a genuine-like probe
			q = *(*Vector)(g.vecs[(i*97)%g.Len()*Dim:])
			for j := range q {
				q[j] += float32(s.rng.NormFloat64() * 0.03)
			}
		}
		for _, k := range []int{1, 4, 10} {
			got, want := g.Search(q, k), g.SearchFloat(q, k)
			if !sameMatches(got, want) {
				t.Fatalf("query %d k=%d:\n got %v\nwant %v", i, k, got, want)
			}
		}
	}
}

func TestSearchRealDescriptors(t *testing.T) {
	ds := loadIdols(t)
	g := New()
	for _, x := range ds.Samples {
		if err := g.Add(x.Label, x.Descriptor); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range ds.Samples {
		got, want := g.Search(x.Descriptor, 10), g.SearchFloat(x.Descriptor, 10)
		if !sameMatches(got, want) {
			t.Fatalf("got %v want %v", got, want)
		}
	}
}

// Clipped values (beyond ±127 steps) must still give exact results.
func TestSearchOutOfRange(t *testing.T) {
	g := New()
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range 500 {
		var v Vector
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		if err := g.Add(fmt.Sprint(i), v); err != nil {
			t.Fatal(err)
		}
	}
	checkIndex(t, g)
	for range 50 {
		var q Vector
		for j := range q {
			q[j] = float32(rng.NormFloat64())
		}
		if got, want := g.Search(q, 5), g.SearchFloat(q, 5); !sameMatches(got, want) {
			t.Fatalf("got %v want %v", got, want)
		}
	}
}

func TestAddRejects(t *testing.T) {
	g := New()
	var nan Vector
	nan[3] = float32(math.NaN())
	for name, tc := range map[string]struct {
		subject string
		v       Vector
	}{
		"empty subject": {"", Vector{}},
		"NaN":           {"a", nan},
		"Inf":           {"a", Vector{0: float32(math.Inf(1))}},
	} {
		if err := g.Add(tc.subject, tc.v); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func TestRemove(t *testing.T) {
	g, s := synthGallery(t, 3000, 2)
	victim := "s17"
	probe := *(*Vector)(g.vecs[g.rows[victim][1]*Dim:])
	if ms := g.Search(probe, 1); ms[0].Subject != victim || ms[0].Distance != 0 {
		t.Fatalf("before: %v", ms)
	}
	if n := g.Remove(victim); n != 3 {
		t.Fatalf("removed %d, want 3", n)
	}
	if g.Has(victim) || g.Len() != 2997 || g.Subjects() != 999 {
		t.Fatalf("after remove: has=%v len=%d subjects=%d", g.Has(victim), g.Len(), g.Subjects())
	}
	for _, m := range g.Search(probe, 50) {
		if m.Subject == victim {
			t.Fatalf("erased subject still found: %v", m)
		}
	}
	if _, err := g.Verify(victim, probe, DefaultPolicy()); !errors.Is(err, ErrUnknownSubject) {
		t.Fatalf("verify after erase: %v", err)
	}
	for r, o := range g.owner {
		for _, rr := range g.rows[o] {
			if int(rr) == r {
				goto ok
			}
		}
		t.Fatalf("row %d of %s missing from index", r, o)
	ok:
	}
	for range 20 {
		q := s.next()
		if got, want := g.Search(q, 5), g.SearchFloat(q, 5); !sameMatches(got, want) {
			t.Fatalf("after remove: got %v want %v", got, want)
		}
	}
	if g.Remove("nobody") != 0 {
		t.Fatal("removed a subject that does not exist")
	}
	checkIndex(t, g)
}

// TestRemoveMany: a gallery after many interleaved additions and removals
// (of subjects with 1 to 6 templates, some wide) holds, finds and indexes
// exactly what one built from what is left would, and keeps nothing of the
// erased templates in memory, its backing arrays included.
func TestRemoveMany(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	g := New()
	held := map[string][]Vector{}
	var erased []Vector
	subject := 0
	for step := range 3000 {
		if len(held) == 0 || rng.IntN(3) > 0 {
			name := fmt.Sprint("s", subject)
			subject++
			for range 1 + rng.IntN(6) {
				var v Vector
				scale := 0.05
				if rng.IntN(20) == 0 {
					scale = 0.3 // clipped values: a wide row
				}
				for j := range v {
					v[j] = float32(rng.NormFloat64() * scale)
				}
				if err := g.Add(name, v); err != nil {
					t.Fatal(err)
				}
				held[name] = append(held[name], v)
			}
			continue
		}
		victim := fmt.Sprint("s", rng.IntN(subject))
		if got, want := g.Remove(victim), len(held[victim]); got != want {
			t.Fatalf("step %d: removed %d of %s, want %d", step, got, victim, want)
		}
		erased = append(erased, held[victim]...)
		delete(held, victim)
	}
	checkIndex(t, g)
	want := New()
	total, maxPer := 0, 0
	for name, vs := range held {
		for _, v := range vs {
			if err := want.Add(name, v); err != nil {
				t.Fatal(err)
			}
		}
		total += len(vs)
		maxPer = max(maxPer, len(vs))
		if !g.Has(name) || len(g.rows[name]) != len(vs) {
			t.Fatalf("%s: held %v with %d rows, want %d", name, g.Has(name), len(g.rows[name]), len(vs))
		}
	}
	if g.Len() != total || g.Subjects() != len(held) || g.maxPer != maxPer {
		t.Fatalf("len %d subjects %d maxPer %d, want %d %d %d", g.Len(), g.Subjects(), g.maxPer, total, len(held), maxPer)
	}
	for r, o := range g.owner {
		if !slices.Contains(g.rows[o], int32(r)) {
			t.Fatalf("row %d of %s missing from its index", r, o)
		}
	}
	type hit struct {
		subject string
		d       float32
	}
	hits := func(ms []Match) []hit {
		out := make([]hit, len(ms))
		for i, m := range ms {
			out[i] = hit{m.Subject, m.Distance}
		}
		return out
	}
	probes := erased[:min(len(erased), 100)]
	for range 100 {
		var q Vector
		for j := range q {
			q[j] = float32(rng.NormFloat64() * 0.05)
		}
		probes = append(probes, q)
	}
	for i, q := range probes {
		got := g.Search(q, 5)
		if !sameMatches(got, g.SearchFloat(q, 5)) {
			t.Fatalf("probe %d: search %v, float scan %v", i, got, g.SearchFloat(q, 5))
		}
		if w := want.Search(q, 5); !slices.Equal(hits(got), hits(w)) {
			t.Fatalf("probe %d: %v, a gallery built afresh finds %v", i, got, w)
		}
	}
	for _, tail := range [][]float32{g.vecs[len(g.vecs):cap(g.vecs)], g.resid[len(g.resid):cap(g.resid)]} {
		for i, x := range tail {
			if x != 0 {
				t.Fatalf("backing array past the rows: %g at %d", x, i)
			}
		}
	}
	for i, x := range g.codes[len(g.codes):cap(g.codes)] {
		if x != 0 {
			t.Fatalf("codes past the rows: %d at %d", x, i)
		}
	}
	rows := map[Vector]bool{}
	for r := range g.owner {
		rows[*(*Vector)(g.vecs[r*Dim:])] = true
	}
	for _, v := range erased {
		if rows[v] {
			t.Fatal("an erased template is still a row")
		}
	}
}

func TestVote(t *testing.T) {
	g := New()
	add := func(s string, x float32) {
		if err := g.Add(s, Vector{0: x}); err != nil {
			t.Fatal(err)
		}
	}
	// Nearest is "a", but "b" has more of the 5 nearest.
	add("a", 0.01)
	add("b", 0.02)
	add("b", 0.03)
	add("b", 0.04)
	add("a", 0.30)
	add("c", 0.05)
	if got, _ := g.Vote(Vector{}, 5); got != "b" {
		t.Fatalf("vote = %q, want b", got)
	}
	// Tie (2 each among 4): the closer subject wins.
	g2 := New()
	for _, x := range []struct {
		s string
		v float32
	}{{"x", 0.02}, {"y", 0.01}, {"x", 0.03}, {"y", 0.04}} {
		g2.Add(x.s, Vector{0: x.v})
	}
	if got, _ := g2.Vote(Vector{}, 4); got != "y" {
		t.Fatalf("tie vote = %q, want y", got)
	}
	if _, ok := New().Vote(Vector{}, 3); ok {
		t.Fatal("vote on empty gallery")
	}
}

func TestPolicy(t *testing.T) {
	g := New()
	add := func(s string, x float32) { g.Add(s, Vector{0: x}) }
	add("alice", 0)
	add("alice", 0.05)
	add("bob", 0.5)
	add("carol", 0.2)
	p := Policy{VerifyThreshold: 0.1, IdentifyThreshold: 0.1, Margin: 0.1, MaxGallery: 3, Frames: 2}
	tests := []struct {
		name   string
		probe  float32
		claim  string
		verify bool
		ident  bool
		who    string
	}{
		{"alice exact", 0, "alice", true, true, "alice"},
		{"alice near, carol close: no margin", 0.09, "alice", true, false, "alice"},
		{"claims bob", 0, "bob", false, true, "alice"},
		{"stranger", 0.35, "bob", false, false, "carol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := g.Verify(tc.claim, Vector{0: tc.probe}, p)
			if err != nil || v.Accepted != tc.verify {
				t.Errorf("verify = %+v, %v; want accepted=%v", v, err, tc.verify)
			}
			d, err := g.Identify(Vector{0: tc.probe}, p)
			if err != nil || d.Accepted != tc.ident || d.Subject != tc.who {
				t.Errorf("identify = %+v, %v; want %v %s", d, err, tc.ident, tc.who)
			}
		})
	}
	// Frames: two agreeing frames are needed.
	if d, _ := g.IdentifyFrames([]Vector{{0: 0}}, p); d.Accepted {
		t.Errorf("one frame accepted with Frames=2: %+v", d)
	}
	if d, _ := g.IdentifyFrames([]Vector{{0: 0}, {0: 0.35}, {0: 0.01}, {0: 0}}, p); !d.Accepted || d.Subject != "alice" {
		t.Errorf("frames: %+v", d)
	}
	add("dave", 0.9)
	if _, err := g.Identify(Vector{}, p); !errors.Is(err, ErrGalleryTooLarge) {
		t.Errorf("identify over MaxGallery: %v", err)
	}
	if _, err := New().Identify(Vector{}, p); !errors.Is(err, ErrEmpty) {
		t.Errorf("identify on empty: %v", err)
	}
}

func TestConcurrentSearchAndAdd(t *testing.T) {
	g, s := synthGallery(t, 2000, 4)
	qs := make([]Vector, 64)
	for i := range qs {
		qs[i] = s.next()
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				g.Search(qs[(i+w)%len(qs)], 5)
			}
		}()
	}
	for i := range 200 {
		g.Add(fmt.Sprint("new", i), qs[i%len(qs)])
		if i%50 == 0 {
			g.Remove(fmt.Sprint("new", i-1))
		}
	}
	wg.Wait()
	checkIndex(t, g)
}

// TestIdentifyWhileEmptied: a gallery emptied and filled again while
// faces are identified (a gate's feed erasing its only subject as a face
// is at the gate) answers ErrEmpty or a decision, never a panic.
func TestIdentifyWhileEmptied(t *testing.T) {
	g := New()
	v := Vector{0: 0.1, 1: -0.05}
	if err := g.Add("only", v); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := g.Identify(v, DefaultPolicy()); err != nil && !errors.Is(err, ErrEmpty) {
					t.Errorf("identify: %v", err)
					return
				}
			}
		})
	}
	for range 20000 {
		g.Remove("only")
		if err := g.Add("only", v); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestAppendWipingClearsTheOutgrownArray: a gallery's arrays that grow
// leave no copy of a template behind in the array they outgrew.
func TestAppendWipingClearsTheOutgrownArray(t *testing.T) {
	old := make([]float32, 2, 2)
	old[0], old[1] = 0.5, -0.25
	grown := appendWiping(old, 0.125)
	if len(grown) != 3 || grown[0] != 0.5 || grown[1] != -0.25 || grown[2] != 0.125 {
		t.Fatalf("grown %v", grown)
	}
	if old[0] != 0 || old[1] != 0 {
		t.Errorf("the outgrown array still holds %v", old)
	}
	room := make([]float32, 1, 4)
	room[0] = 1
	if s := appendWiping(room, 2); &s[0] != &room[0] || s[1] != 2 || room[0] != 1 {
		t.Errorf("an append with room moved or cleared the array: %v", s)
	}
}
