package gallery

import (
	"errors"
	"fmt"
	"math"
)

// Policy is a matching operating point. Thresholds are Euclidean distances
// between descriptors (not squared, unlike go-face's ClassifyThreshold).
//
// The defaults were measured on idols.json (see the "Biometrics" section of the top-level BENCHMARKS.md and
// `faregate face eval`): they are only valid for descriptors made the same
// way (dlib ResNet v1, 150-pixel chips with padding 0.25) and for subjects
// enrolled with about DefaultTemplates templates each.
type Policy struct {
	// VerifyThreshold: 1:1 accepts when the probe is within this distance
	// of the claimed subject's nearest template.
	VerifyThreshold float32
	// IdentifyThreshold: 1:N accepts the nearest subject only within this
	// distance...
	IdentifyThreshold float32
	// ...and only if the second-nearest subject is at least Margin farther.
	Margin float32
	// MaxGallery is the most subjects 1:N may search: the chance that a
	// stranger matches someone grows with every enrolled subject.
	MaxGallery int
	// Frames is how many consecutive frames must identify the same subject
	// in IdentifyFrames (1 = any single accepted frame).
	Frames int
}

// Measured operating points: eval.Choose with eval.DefaultTargets on the
// calibration half of idols.json (even-numbered identities), checked on
// the held-out half by TestDefaultsHoldOut. See the "Biometrics" section of the top-level BENCHMARKS.md.
const (
	// DefaultTemplates is the enrolment the points assume.
	DefaultTemplates = 3
	// 1:1: FMR 0.95% (calibration), 1.06% (held out); FNMR 55-58%.
	DefaultVerifyThreshold = 0.34
	// 1:N at 67 subjects: FPIR 0.9% and MIR 0.9% (calibration), 1.3% and
	// 1.1% (held out); only 6-12% of enrolled riders are identified.
	DefaultIdentifyThreshold = 0.35
	DefaultMargin            = 0.08
	// DefaultMaxGallery is the gallery size the 1:N point was measured at.
	// On all 134 identities no point of the grid kept FPIR <= 1%.
	DefaultMaxGallery = 67
)

// DefaultPolicy returns the measured defaults.
func DefaultPolicy() Policy {
	return Policy{
		VerifyThreshold:   DefaultVerifyThreshold,
		IdentifyThreshold: DefaultIdentifyThreshold,
		Margin:            DefaultMargin,
		MaxGallery:        DefaultMaxGallery,
		Frames:            1,
	}
}

// Errors of the matching policy.
var (
	ErrUnknownSubject  = errors.New("gallery: subject not enrolled")
	ErrGalleryTooLarge = errors.New("gallery: too many subjects for 1:N identification")
	ErrEmpty           = errors.New("gallery: empty")
)

// Decision is the outcome of a verification or identification.
type Decision struct {
	Accepted bool
	Subject  string  // claimed (1:1) or nearest (1:N) subject
	Distance float32 // to Subject's nearest template
	// Second is the nearest other subject in 1:N, and its distance
	// (+Inf when there is none).
	Second         string
	SecondDistance float32
	// Reason says why a probe was rejected; empty when accepted.
	Reason string
}

// Verify is 1:1: does probe belong to subject?
func (g *Gallery) Verify(subject string, probe Vector, p Policy) (Decision, error) {
	g.mu.RLock()
	rows := g.rows[subject]
	best := float32(math.Inf(1))
	for _, r := range rows {
		best = min(best, g.exact(&probe, int(r)))
	}
	g.mu.RUnlock()
	if len(rows) == 0 {
		return Decision{}, fmt.Errorf("%w: %q", ErrUnknownSubject, subject)
	}
	d := Decision{Subject: subject, Distance: best, SecondDistance: float32(math.Inf(1))}
	if best <= p.VerifyThreshold {
		d.Accepted = true
	} else {
		d.Reason = fmt.Sprintf("distance %.3f above threshold %.3f", best, p.VerifyThreshold)
	}
	return d, nil
}

// Identify is 1:N within this gallery: the nearest subject is accepted if
// it is within the threshold and the runner-up is at least the margin
// farther. Galleries larger than p.MaxGallery subjects are refused.
func (g *Gallery) Identify(probe Vector, p Policy) (Decision, error) {
	g.mu.RLock()
	subjects, depth := len(g.rows), g.maxPer+1
	g.mu.RUnlock()
	if subjects == 0 {
		return Decision{}, ErrEmpty
	}
	if p.MaxGallery > 0 && subjects > p.MaxGallery {
		return Decision{}, fmt.Errorf("%w: %d enrolled, policy allows %d", ErrGalleryTooLarge, subjects, p.MaxGallery)
	}
	// The nearest maxPer+1 templates always include two subjects (if two
	// exist): one subject fills at most maxPer of them. A concurrent Add
	// can raise maxPer; that only risks understating the runner-up's
	// distance, which errs towards rejecting.
	ms := g.Search(probe, depth)
	d := Decision{Subject: ms[0].Subject, Distance: ms[0].Distance, SecondDistance: float32(math.Inf(1))}
	for _, m := range ms[1:] {
		if m.Subject != d.Subject {
			d.Second, d.SecondDistance = m.Subject, m.Distance
			break
		}
	}
	switch {
	case d.Distance > p.IdentifyThreshold:
		d.Reason = fmt.Sprintf("nearest distance %.3f above threshold %.3f", d.Distance, p.IdentifyThreshold)
	case d.SecondDistance-d.Distance < p.Margin:
		d.Reason = fmt.Sprintf("margin %.3f to %q below %.3f", d.SecondDistance-d.Distance, d.Second, p.Margin)
	default:
		d.Accepted = true
	}
	return d, nil
}

// IdentifyFrames identifies each frame and accepts only if p.Frames
// consecutive frames (at least) were accepted as the same subject. It
// returns the decision of the last frame of the agreeing run, or of the
// last frame when none agreed.
func (g *Gallery) IdentifyFrames(probes []Vector, p Policy) (Decision, error) {
	need := max(p.Frames, 1)
	if len(probes) == 0 {
		return Decision{}, errors.New("gallery: no frames")
	}
	var last Decision
	run, runSubject := 0, ""
	for _, pr := range probes {
		d, err := g.Identify(pr, p)
		if err != nil {
			return Decision{}, err
		}
		if d.Accepted && d.Subject == runSubject {
			run++
		} else if d.Accepted {
			run, runSubject = 1, d.Subject
		} else {
			run, runSubject = 0, ""
		}
		last = d
		if run >= need {
			return d, nil
		}
	}
	if last.Accepted {
		last.Accepted = false
		last.Reason = fmt.Sprintf("only %d of %d consecutive frames agreed", run, need)
	}
	return last, nil
}
