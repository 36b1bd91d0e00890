// Package eval measures face-matching error rates: genuine and impostor
// distance distributions, FMR and FNMR across thresholds (a DET table), and
// open-set identification rates with a threshold and a margin. It is pure Go
// with no I/O beyond decoding readers it is given.
//
// Conventions: distances are Euclidean between descriptors; a comparison
// "matches" when its distance is <= the threshold.
package eval

import (
	"fmt"
	"math"
	"slices"
)

// Distance returns the Euclidean distance between two descriptors.
func Distance(a, b *[Dim]float32) float32 {
	var s float32
	for i := range a {
		d := a[i] - b[i]
		s += d * d
	}
	return float32(math.Sqrt(float64(s)))
}

// Scores holds genuine (same person) and impostor (different people)
// distances, each sorted ascending.
type Scores struct {
	Genuine, Impostor []float32
}

// PairScores compares every pair of samples once.
func PairScores(samples []Sample) Scores {
	var s Scores
	for i := range samples {
		for j := i + 1; j < len(samples); j++ {
			d := Distance(&samples[i].Descriptor, &samples[j].Descriptor)
			if samples[i].Label == samples[j].Label {
				s.Genuine = append(s.Genuine, d)
			} else {
				s.Impostor = append(s.Impostor, d)
			}
		}
	}
	slices.Sort(s.Genuine)
	slices.Sort(s.Impostor)
	return s
}

// Split divides a dataset by label: labels at even positions of ds.Labels go
// to a (calibration), odd ones to b (held out). Nobody is in both.
func Split(ds *Dataset) (a, b *Dataset) {
	pos := make(map[string]int, len(ds.Labels))
	for i, l := range ds.Labels {
		pos[l] = i
	}
	a, b = &Dataset{}, &Dataset{}
	for i, l := range ds.Labels {
		if i%2 == 0 {
			a.Labels = append(a.Labels, l)
		} else {
			b.Labels = append(b.Labels, l)
		}
	}
	for _, s := range ds.Samples {
		if pos[s.Label]%2 == 0 {
			a.Samples = append(a.Samples, s)
		} else {
			b.Samples = append(b.Samples, s)
		}
	}
	return a, b
}

// Enrolment splits each label's samples: the first enrol are its templates,
// the rest are probes. Labels with fewer than enrol+1 samples are left out
// (see Strangers).
func Enrolment(ds *Dataset, enrol int) (templates map[string][]Sample, probes []Sample) {
	byLabel := make(map[string][]Sample)
	for _, s := range ds.Samples {
		byLabel[s.Label] = append(byLabel[s.Label], s)
	}
	templates = make(map[string][]Sample)
	for _, l := range ds.Labels {
		ss := byLabel[l]
		if len(ss) < enrol+1 {
			continue
		}
		templates[l] = ss[:enrol]
		probes = append(probes, ss[enrol:]...)
	}
	return templates, probes
}

// Strangers returns the samples of labels with too few samples to enrol
// (at most enrol): they cannot give a genuine comparison, but they are
// people nobody enrolled, so they serve as impostor probes in 1:1 and as
// strangers in 1:N. Small data sets need every such comparison.
func Strangers(ds *Dataset, enrol int) []Sample {
	n := make(map[string]int)
	for _, s := range ds.Samples {
		n[s.Label]++
	}
	var out []Sample
	for _, s := range ds.Samples {
		if n[s.Label] <= enrol {
			out = append(out, s)
		}
	}
	return out
}

// minDistance is the distance from p to the nearest of ts: how a subject
// enrolled with several templates is compared.
func minDistance(p *[Dim]float32, ts []Sample) float32 {
	best := float32(math.Inf(1))
	for i := range ts {
		if d := Distance(p, &ts[i].Descriptor); d < best {
			best = d
		}
	}
	return best
}

// TemplateScores is the 1:1 protocol the gallery uses: each label enrols its
// first enrol samples; every other sample is a probe, scored against every
// enrolled label by the distance to that label's nearest template. The
// samples of labels too small to enrol (Strangers) are impostor probes
// against every enrolled label.
func TemplateScores(ds *Dataset, enrol int) Scores {
	templates, probes := Enrolment(ds, enrol)
	probes = append(probes, Strangers(ds, enrol)...)
	var s Scores
	for i := range probes {
		p := &probes[i]
		for l, ts := range templates {
			d := minDistance(&p.Descriptor, ts)
			if l == p.Label {
				s.Genuine = append(s.Genuine, d)
			} else {
				s.Impostor = append(s.Impostor, d)
			}
		}
	}
	slices.Sort(s.Genuine)
	slices.Sort(s.Impostor)
	return s
}

// countLE returns how many of the sorted xs are <= t.
func countLE(xs []float32, t float32) int {
	n, _ := slices.BinarySearchFunc(xs, t, func(x, t float32) int {
		if x <= t {
			return -1
		}
		return 1
	})
	return n
}

// FMR is the fraction of impostor comparisons with distance <= t.
func (s Scores) FMR(t float32) float64 {
	if len(s.Impostor) == 0 {
		return 0
	}
	return float64(countLE(s.Impostor, t)) / float64(len(s.Impostor))
}

// FNMR is the fraction of genuine comparisons with distance > t.
func (s Scores) FNMR(t float32) float64 {
	if len(s.Genuine) == 0 {
		return 0
	}
	return float64(len(s.Genuine)-countLE(s.Genuine, t)) / float64(len(s.Genuine))
}

// Point is one row of a DET table.
type Point struct {
	Threshold       float32
	FMR, FNMR       float64
	FalseMatches    int // impostor comparisons accepted
	FalseNonMatches int // genuine comparisons rejected
}

// DET evaluates the error rates at each threshold.
func (s Scores) DET(thresholds []float32) []Point {
	ps := make([]Point, len(thresholds))
	for i, t := range thresholds {
		fm := countLE(s.Impostor, t)
		fnm := len(s.Genuine) - countLE(s.Genuine, t)
		ps[i] = Point{Threshold: t, FMR: s.FMR(t), FNMR: s.FNMR(t), FalseMatches: fm, FalseNonMatches: fnm}
	}
	return ps
}

// ThresholdAtFMR returns the largest threshold whose FMR does not exceed
// target, rounded down to a multiple of 0.005 so that defaults read
// cleanly and err on the strict side.
func (s Scores) ThresholdAtFMR(target float64) float32 {
	return s.thresholdAllowing(int(math.Floor(target * float64(len(s.Impostor)))))
}

// z95 is the one-sided 95% normal quantile used by UpperBound.
const z95 = 1.6448536269514722

// UpperBound is a one-sided 95% upper confidence bound (Wilson score) on
// an error rate observed as k errors in n trials. k may be fractional (a
// rate averaged over several draws, times the independent trials). With no
// errors it is about 2.7/n, the "rule of three": n trials can only
// support claiming a rate of about 3/n or more. With n = 0 it is 1.
func UpperBound(k, n float64) float64 {
	if n <= 0 {
		return 1
	}
	p, z2 := k/n, z95*z95
	c := p + z2/(2*n) + z95*math.Sqrt(p*(1-p)/n+z2/(4*n*n))
	return min(1, c/(1+z2/n))
}

// MinTrials is the fewest trials with no error whose UpperBound is within
// target: less data than this cannot support the target at all.
func MinTrials(target float64) int {
	if target <= 0 || target >= 1 {
		return 0
	}
	// UpperBound(0, n) = z²/(n+z²) <= target.
	return int(math.Ceil(z95 * z95 * (1 - target) / target))
}

// ThresholdAtBound is ThresholdAtFMR made conservative for the amount of
// data: the largest threshold whose false matches keep UpperBound within
// target. ok is false when there are too few impostor comparisons to
// support the target even with none accepted (see MinTrials).
func (s Scores) ThresholdAtBound(target float64) (t float32, ok bool) {
	n := float64(len(s.Impostor))
	if UpperBound(0, n) > target {
		return 0, false
	}
	allowed := 0
	for allowed+1 < len(s.Impostor) && UpperBound(float64(allowed+1), n) <= target {
		allowed++
	}
	return s.thresholdAllowing(allowed), true
}

// thresholdAllowing is the largest threshold on the 0.005 grid that
// accepts at most allowed impostor comparisons.
func (s Scores) thresholdAllowing(allowed int) float32 {
	var t float32
	if allowed >= len(s.Impostor) {
		t = s.Impostor[len(s.Impostor)-1]
	} else {
		// Any t below the (allowed+1)-th smallest impostor distance accepts
		// at most allowed impostors.
		t = math.Nextafter32(s.Impostor[allowed], 0)
	}
	return float32(math.Floor(float64(t)*200) / 200)
}

// EER returns the threshold where FMR and FNMR are closest, and their mean.
func (s Scores) EER() (float32, float64) {
	bestT, bestGap, rate := float32(0), math.Inf(1), 0.0
	for t := float32(0); t <= 1.5; t += 0.001 {
		fmr, fnmr := s.FMR(t), s.FNMR(t)
		if g := math.Abs(fmr - fnmr); g < bestGap {
			bestT, bestGap, rate = t, g, (fmr+fnmr)/2
		}
	}
	return bestT, rate
}

// Summary describes a distance distribution.
type Summary struct {
	Count                                        int
	Min, P1, P5, P25, Median, P75, P95, P99, Max float32
}

// Describe summarises sorted distances.
func Describe(xs []float32) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	q := func(p float64) float32 { return xs[int(p*float64(len(xs)-1)+0.5)] }
	return Summary{Count: len(xs), Min: xs[0], P1: q(0.01), P5: q(0.05), P25: q(0.25), Median: q(0.5),
		P75: q(0.75), P95: q(0.95), P99: q(0.99), Max: xs[len(xs)-1]}
}

// String is the summary on one line, as the evaluation reports print it.
func (s Summary) String() string {
	return fmt.Sprintf("n=%d min=%.3f p1=%.3f p5=%.3f p25=%.3f median=%.3f p75=%.3f p95=%.3f p99=%.3f max=%.3f",
		s.Count, s.Min, s.P1, s.P5, s.P25, s.Median, s.P75, s.P95, s.P99, s.Max)
}
