package eval

import "math"

// Targets are the error rates the operating points are chosen for.
type Targets struct {
	Enrol     int     // templates per enrolled subject
	VerifyFMR float64 // 1:1: impostor attempts accepted
	FPIR      float64 // 1:N: strangers accepted as someone
	MIR       float64 // 1:N: enrolled people accepted as someone else
}

// DefaultTargets are the targets behind gallery.DefaultPolicy: a lent
// concession card is refused 99% of the time; at most 1 in 100 strangers
// (and 1 in 100 enrolled riders) is taken for someone else.
var DefaultTargets = Targets{Enrol: 3, VerifyFMR: 0.01, FPIR: 0.01, MIR: 0.01}

// Operating is a chosen pair of operating points and what was measured
// at them on the data they were chosen on.
type Operating struct {
	Targets
	VerifyThreshold float32
	VerifyFMR       float64
	VerifyFNMR      float64
	Identify        IdentPoint // threshold, margin, gallery size and rates
}

// Grids searched for the identification point.
var (
	ThresholdGrid = grid(0.26, 0.46, 0.01)
	MarginGrid    = grid(0, 0.15, 0.01)
)

func grid(from, to, step float64) []float32 {
	var g []float32
	for i := 0; from+float64(i)*step <= to+1e-9; i++ {
		g = append(g, float32(math.Round((from+float64(i)*step)*1000)/1000))
	}
	return g
}

// Choose picks operating points on ds: the verification threshold is the
// largest with FMR <= VerifyFMR (template protocol); the identification
// point maximises TPIR subject to FPIR <= FPIR and MIR <= MIR, preferring
// the smaller margin and then the smaller threshold on ties.
func Choose(ds *Dataset, tg Targets) Operating {
	op := Operating{Targets: tg}
	s := TemplateScores(ds, tg.Enrol)
	op.VerifyThreshold = s.ThresholdAtFMR(tg.VerifyFMR)
	op.VerifyFMR, op.VerifyFNMR = s.FMR(op.VerifyThreshold), s.FNMR(op.VerifyThreshold)
	best := -1.0
	for _, p := range OpenSet(ds, tg.Enrol, ThresholdGrid, MarginGrid) {
		if p.FPIR <= tg.FPIR && p.MIR <= tg.MIR && p.TPIR > best {
			best, op.Identify = p.TPIR, p
		}
	}
	return op
}
