package eval

import "math"

// probeResult is one probe's nearest and second-nearest enrolled identities,
// by distance to each identity's nearest template.
type probeResult struct {
	best, second float32
	correct      bool // the nearest identity is the probe's own
}

func nearestTwo(p *Sample, templates map[string][]Sample, exclude string) probeResult {
	r := probeResult{best: float32(math.Inf(1)), second: float32(math.Inf(1))}
	var bestLabel string
	for l, ts := range templates {
		if l == exclude {
			continue
		}
		d := minDistance(&p.Descriptor, ts)
		switch {
		case d < r.best:
			r.second = r.best
			r.best, bestLabel = d, l
		case d < r.second:
			r.second = d
		}
	}
	r.correct = bestLabel == p.Label
	return r
}

// IdentPoint is the open-set identification outcome at one threshold and
// margin, for a gallery of Gallery identities.
type IdentPoint struct {
	Threshold, Margin float32
	Gallery           int // enrolled identities searched per probe
	// Enrolled probes (the probe's identity is in the gallery).
	TPIR float64 // accepted as the right identity
	MIR  float64 // accepted as a wrong identity (misidentification)
	// FPIR: probes whose identity is not enrolled (left out of the gallery
	// for that probe) and that were accepted as someone: a stranger let in.
	FPIR                  float64
	Probes, FalsePositive int
}

// OpenSet runs open-set identification with enrol templates per identity.
// Every probe is searched twice: with its identity enrolled, and with its
// identity left out of the gallery (a stranger). An identification is
// accepted when the best distance is <= threshold and the second-best
// identity is at least margin farther.
func OpenSet(ds *Dataset, enrol int, thresholds, margins []float32) []IdentPoint {
	templates, probes := Enrolment(ds, enrol)
	in := make([]probeResult, len(probes))
	out := make([]probeResult, len(probes))
	for i := range probes {
		in[i] = nearestTwo(&probes[i], templates, "")
		out[i] = nearestTwo(&probes[i], templates, probes[i].Label)
	}
	accept := func(r probeResult, t, m float32) bool { return r.best <= t && r.second-r.best >= m }
	var pts []IdentPoint
	for _, t := range thresholds {
		for _, m := range margins {
			p := IdentPoint{Threshold: t, Margin: m, Gallery: len(templates), Probes: len(probes)}
			var tp, mi, fp int
			for i := range probes {
				if accept(in[i], t, m) {
					if in[i].correct {
						tp++
					} else {
						mi++
					}
				}
				if accept(out[i], t, m) {
					fp++
				}
			}
			n := float64(len(probes))
			p.TPIR, p.MIR, p.FPIR, p.FalsePositive = float64(tp)/n, float64(mi)/n, float64(fp)/n, fp
			pts = append(pts, p)
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
