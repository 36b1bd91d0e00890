package eval

import (
	"math"
	"math/rand/v2"
)

// IdentPoint is the open-set identification outcome at one threshold and
// margin, for galleries of Gallery identities and passages of Frames
// consecutive probes.
type IdentPoint struct {
	Threshold, Margin float32
	Gallery           int // enrolled identities searched per passage
	Frames            int // probes of one person that must all agree
	// Enrolled passages (the person is in the gallery).
	TPIR float64 // accepted as the right identity
	MIR  float64 // accepted as a wrong identity (misidentification)
	// FPIR: passages of people not enrolled (strangers) accepted as
	// someone.
	FPIR float64
	// Passages is how many passages of enrolled people were searched and
	// Strangers how many stranger passages (enrolled people searched
	// without their identity, and people too small to enrol), each in
	// Draws galleries; FalsePositive and Misidentified count the accepted
	// ones over all draws.
	Passages, Strangers, Draws   int
	FalsePositive, Misidentified int
}

// FNIR is the share of enrolled passages not accepted as the right
// identity (rejected or misidentified).
func (p IdentPoint) FNIR() float64 { return 1 - p.TPIR }

// FPIRBound is UpperBound on FPIR, counting each stranger passage once
// however many galleries it was drawn into (draws of one passage are not
// independent trials).
func (p IdentPoint) FPIRBound() float64 {
	return UpperBound(p.FPIR*float64(p.Strangers), float64(p.Strangers))
}

// MIRBound is UpperBound on MIR, counting each passage once.
func (p IdentPoint) MIRBound() float64 {
	return UpperBound(p.MIR*float64(p.Passages), float64(p.Passages))
}

// OpenSetParams describes an open-set identification experiment.
type OpenSetParams struct {
	// Enrol is the templates per enrolled identity: each label's first
	// Enrol samples; the rest are probes (see Enrolment).
	Enrol int
	// Gallery is the identities searched per passage. 0 (or more than the
	// data allow) means all: every enrolled identity when the person is
	// enrolled, all the others when they are a stranger.
	Gallery int
	// Frames is how many consecutive probes of one person form a passage;
	// all must be accepted as the same identity (gallery.IdentifyFrames).
	// A label's probes are cut into passages in order; a remainder shorter
	// than Frames is dropped. 0 means 1.
	Frames int
	// Draws is how many random galleries each passage is searched in when
	// Gallery is smaller than all (default 20); the draws are fixed by
	// Seed, so results are reproducible.
	Draws int
	Seed  uint64
}

// passageResult is one passage's outcome in one drawn gallery, reduced to
// what decides acceptance at any threshold and margin: the passage is
// accepted iff worst <= threshold, gap >= margin and agree.
type passageResult struct {
	worst   float32 // largest nearest distance over the frames
	gap     float32 // smallest margin to the runner-up over the frames
	agree   bool    // every frame's nearest identity is the same
	correct bool    // ...and it is the person's own
}

// OpenSetRuns holds the searches of an open-set experiment; Point
// evaluates them at any threshold and margin.
type OpenSetRuns struct {
	Gallery, Frames, Passages, Strangers, Draws int
	in, out                                     []passageResult
}

// Gallery sizes beyond the data are clamped: a person is searched among at
// most all identities (enrolled) or all others (stranger).
func (p OpenSetParams) normalise(identities int) OpenSetParams {
	if p.Frames < 1 {
		p.Frames = 1
	}
	if p.Draws < 1 {
		p.Draws = 20
	}
	if p.Gallery <= 0 || p.Gallery >= identities-1 {
		p.Gallery = identities - 1
		p.Draws = 1 // every gallery is the same
	}
	return p
}

// cutPassages cuts samples into passages of frames consecutive samples of
// one label; a label's remainder shorter than frames is dropped.
func cutPassages(samples []Sample, frames int) [][]int {
	var passages [][]int
	for i := 0; i < len(samples); {
		j := i
		for j < len(samples) && samples[j].Label == samples[i].Label {
			j++
		}
		for k := i; k+frames <= j; k += frames {
			ps := make([]int, frames)
			for f := range ps {
				ps[f] = k + f
			}
			passages = append(passages, ps)
		}
		i = j
	}
	return passages
}

// RunOpenSet searches every passage of ds in p.Draws galleries of
// p.Gallery identities: once with the person enrolled (their own identity
// and p.Gallery-1 others) and once as a stranger (p.Gallery others). An
// enrolled search with Gallery = all uses all identities; so for a data
// set of L enrolled identities the enrolled gallery has L and the stranger
// one L-1. People with too few samples to enrol (Strangers) are searched
// as strangers only, in galleries of p.Gallery enrolled identities.
func RunOpenSet(ds *Dataset, p OpenSetParams) *OpenSetRuns {
	templates, probes := Enrolment(ds, p.Enrol)
	var ids []string
	index := make(map[string]int)
	for _, l := range ds.Labels {
		if _, ok := templates[l]; ok {
			index[l] = len(ids)
			ids = append(ids, l)
		}
	}
	if len(ids) < 2 {
		return &OpenSetRuns{Frames: max(p.Frames, 1)}
	}
	p = p.normalise(len(ids))
	all := p.Gallery == len(ids)-1
	strangers := Strangers(ds, p.Enrol)
	own := make([]int, 0, len(probes)+len(strangers))
	for _, s := range probes {
		own = append(own, index[s.Label])
	}
	for range strangers {
		own = append(own, -1)
	}
	samples := append(probes[:len(probes):len(probes)], strangers...)
	// dist[i][j]: sample i to identity j's nearest template.
	dist := make([][]float32, len(samples))
	for i := range samples {
		dist[i] = make([]float32, len(ids))
		for j, l := range ids {
			dist[i][j] = minDistance(&samples[i].Descriptor, templates[l])
		}
	}
	enrolled := cutPassages(probes, p.Frames)
	outsiders := cutPassages(strangers, p.Frames)
	for _, ps := range outsiders {
		for f := range ps {
			ps[f] += len(probes)
		}
	}
	r := &OpenSetRuns{Gallery: p.Gallery, Frames: p.Frames, Passages: len(enrolled),
		Strangers: len(enrolled) + len(outsiders), Draws: p.Draws}
	others := make([]int, 0, len(ids))
	set := make([]int, 0, len(ids))
	for pi, frames := range append(enrolled, outsiders...) {
		who := own[frames[0]]
		rng := rand.New(rand.NewPCG(p.Seed, uint64(pi)))
		for d := 0; d < p.Draws; d++ {
			others = others[:0]
			for j := range ids {
				if j != who {
					others = append(others, j)
				}
			}
			if !all || who < 0 {
				// A partial Fisher-Yates shuffle draws the first Gallery.
				for k := 0; k < p.Gallery; k++ {
					x := k + rng.IntN(len(others)-k)
					others[k], others[x] = others[x], others[k]
				}
			}
			r.out = append(r.out, searchPassage(dist, frames, others[:p.Gallery], who))
			if who < 0 {
				continue
			}
			set = append(set[:0], who)
			set = append(set, others[:p.Gallery-1]...)
			if all {
				set = append(set, others[p.Gallery-1])
			}
			r.in = append(r.in, searchPassage(dist, frames, set, who))
		}
	}
	return r
}

// searchPassage identifies each frame among the identities in set.
func searchPassage(dist [][]float32, frames, set []int, own int) passageResult {
	res := passageResult{gap: float32(math.Inf(1)), agree: true}
	first := -1
	for _, f := range frames {
		best, second, who := float32(math.Inf(1)), float32(math.Inf(1)), -1
		for _, j := range set {
			switch d := dist[f][j]; {
			case d < best:
				second, best, who = best, d, j
			case d < second:
				second = d
			}
		}
		res.worst = max(res.worst, best)
		res.gap = min(res.gap, second-best)
		if first < 0 {
			first = who
		} else if who != first {
			res.agree = false
		}
	}
	res.correct = res.agree && first == own
	return res
}

// Point evaluates the searches at one threshold and margin.
func (r *OpenSetRuns) Point(t, m float32) IdentPoint {
	p := IdentPoint{Threshold: t, Margin: m, Gallery: r.Gallery, Frames: r.Frames, Passages: r.Passages, Strangers: r.Strangers, Draws: r.Draws}
	accept := func(x passageResult) bool { return x.agree && x.worst <= t && x.gap >= m }
	var tp int
	for _, x := range r.in {
		if accept(x) {
			if x.correct {
				tp++
			} else {
				p.Misidentified++
			}
		}
	}
	for _, x := range r.out {
		if accept(x) {
			p.FalsePositive++
		}
	}
	if n := float64(len(r.in)); n > 0 {
		p.TPIR, p.MIR = float64(tp)/n, float64(p.Misidentified)/n
	}
	if n := float64(len(r.out)); n > 0 {
		p.FPIR = float64(p.FalsePositive) / n
	}
	return p
}

// OpenSet runs open-set identification (RunOpenSet) and evaluates every
// combination of thresholds and margins.
func OpenSet(ds *Dataset, p OpenSetParams, thresholds, margins []float32) []IdentPoint {
	r := RunOpenSet(ds, p)
	var pts []IdentPoint
	for _, t := range thresholds {
		for _, m := range margins {
			pts = append(pts, r.Point(t, m))
		}
	}
	return pts
}

// MaxGallery returns the largest gallery for which the chance that a
// stranger matches anyone stays within fpir, given the per-identity false
// match rate fmr: 1-(1-fmr)^N <= fpir, ignoring the margin (which only
// lowers it). It returns 0 when fmr is 0 (unbounded by this data).
func MaxGallery(fmr, fpir float64) int {
	if fmr <= 0 {
		return 0
	}
	return int(math.Floor(math.Log1p(-fpir) / math.Log1p(-fmr)))
}
