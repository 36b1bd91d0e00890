package eval

import (
	"errors"
	"fmt"
	"math"
)

// Targets are the error rates the operating points are chosen for, and the
// deployment they are chosen for.
type Targets struct {
	Enrol     int     // templates per enrolled subject
	VerifyFMR float64 // 1:1: impostor attempts accepted
	FPIR      float64 // 1:N: strangers accepted as someone
	MIR       float64 // 1:N: enrolled people accepted as someone else
	// Gallery is the number of subjects one 1:N search covers in the
	// deployment; 0 means the largest the data can measure (all subjects
	// but one).
	Gallery int
	// Frames is how many consecutive probes must agree in 1:N (0 means 1).
	Frames int
}

// DefaultTargets are the targets behind gallery.DefaultPolicy: a lent
// concession card is refused 99% of the time; at most 1 in 100 strangers
// (and 1 in 100 enrolled riders) is taken for someone else, in a gallery
// of DefaultGallery subjects, each bound holding with 95% confidence.
var DefaultTargets = Targets{Enrol: 3, VerifyFMR: 0.01, FPIR: 0.01, MIR: 0.01, Gallery: DefaultGallery, Frames: 1}

// DefaultGallery is the 1:N gallery size the defaults are chosen for. On
// the calibration half of idols.json no point of the grids keeps FPIR's
// 95% bound within 1% at 20 subjects or more; 10 is the largest round
// size that does.
const DefaultGallery = 10

// Operating is a chosen pair of operating points and what was measured
// at them on the data they were chosen on.
type Operating struct {
	Targets
	Subjects, Samples int
	// 1:1 (template protocol, see TemplateScores).
	VerifyThreshold      float32
	VerifyFMR            float64
	VerifyFMRBound       float64 // UpperBound of VerifyFMR
	VerifyFNMR           float64
	Genuine, Impostor    int // comparisons behind the 1:1 rates
	Identify             IdentPoint
	IdentifyMet          bool // a point of the grids met the 1:N targets
	IdentifyFMR          float64
	IdentifyMaxGalleryFM int // MaxGallery(IdentifyFMR, FPIR): the bound without the margin
}

// Grids searched for the identification point.
var (
	ThresholdGrid = grid(0.20, 0.70, 0.01)
	MarginGrid    = grid(0, 0.20, 0.01)
)

func grid(from, to, step float64) []float32 {
	var g []float32
	for i := 0; from+float64(i)*step <= to+1e-9; i++ {
		g = append(g, float32(math.Round((from+float64(i)*step)*1000)/1000))
	}
	return g
}

// ErrTooLittleData reports labelled data too small to support the targets
// asked of it. Use errors.Is.
var ErrTooLittleData = errors.New("eval: too little data for the targets")

// Choose picks operating points on ds.
//
// 1:1: the largest threshold whose impostor acceptances keep the 95%
// upper bound on FMR (UpperBound) within VerifyFMR, in the template
// protocol. 1:N: among ThresholdGrid x MarginGrid, the point with the
// highest TPIR whose FPIR and MIR upper bounds are within the targets, at
// tg.Gallery subjects and tg.Frames frames, preferring the smaller margin
// and then the smaller threshold on ties; IdentifyMet is false when none
// is. Using upper bounds rather than the rates seen makes the points
// stricter the less data there is, and refuses data that cannot support
// a target at all: the error wraps ErrTooLittleData and says what is
// missing.
func Choose(ds *Dataset, tg Targets) (Operating, error) {
	op := Operating{Targets: tg, Samples: len(ds.Samples)}
	if tg.Enrol < 1 {
		return op, fmt.Errorf("eval: %d templates per subject; need at least 1", tg.Enrol)
	}
	templates, _ := Enrolment(ds, tg.Enrol)
	op.Subjects = len(templates)
	if op.Subjects < 2 {
		return op, fmt.Errorf("%w: %d subjects with at least %d captures (%d to enrol, 1 to probe); need at least 2",
			ErrTooLittleData, op.Subjects, tg.Enrol+1, tg.Enrol)
	}
	s := TemplateScores(ds, tg.Enrol)
	op.Genuine, op.Impostor = len(s.Genuine), len(s.Impostor)
	t, ok := s.ThresholdAtBound(tg.VerifyFMR)
	if !ok {
		return op, fmt.Errorf("%w: %d impostor comparisons cannot support 1:1 FMR <= %g; need at least %d (more subjects or captures), or a larger target",
			ErrTooLittleData, len(s.Impostor), tg.VerifyFMR, MinTrials(tg.VerifyFMR))
	}
	op.VerifyThreshold = t
	fm := countLE(s.Impostor, t)
	op.VerifyFMR, op.VerifyFNMR = s.FMR(t), s.FNMR(t)
	op.VerifyFMRBound = UpperBound(float64(fm), float64(len(s.Impostor)))

	if tg.Gallery >= op.Subjects {
		return op, fmt.Errorf("%w: a 1:N gallery of %d subjects needs labelled captures of at least %d (one left out as the stranger); there are %d",
			ErrTooLittleData, tg.Gallery, tg.Gallery+1, op.Subjects)
	}
	runs := RunOpenSet(ds, OpenSetParams{Enrol: tg.Enrol, Gallery: tg.Gallery, Frames: tg.Frames})
	if need := MinTrials(tg.MIR); runs.Passages < need {
		return op, fmt.Errorf("%w: %d probe passages of enrolled subjects (%d frames each) cannot support 1:N MIR <= %g; need at least %d",
			ErrTooLittleData, runs.Passages, runs.Frames, tg.MIR, need)
	}
	if need := MinTrials(tg.FPIR); runs.Strangers < need {
		return op, fmt.Errorf("%w: %d stranger passages (%d frames each) cannot support 1:N FPIR <= %g; need at least %d",
			ErrTooLittleData, runs.Strangers, runs.Frames, tg.FPIR, need)
	}
	op.Identify = runs.Point(0, 0)
	best := -1.0
	for _, m := range MarginGrid {
		for _, t := range ThresholdGrid {
			p := runs.Point(t, m)
			if p.FPIRBound() <= tg.FPIR && p.MIRBound() <= tg.MIR && p.TPIR > best {
				best, op.Identify, op.IdentifyMet = p.TPIR, p, true
			}
		}
	}
	op.IdentifyFMR = s.FMR(op.Identify.Threshold)
	op.IdentifyMaxGalleryFM = MaxGallery(op.IdentifyFMR, tg.FPIR)
	return op, nil
}
