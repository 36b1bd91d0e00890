package gallery

import (
	"testing"

	"github.com/faregate/faregate/biometrics/eval"
)

// The defaults are the operating points measured on the calibration half.
func TestDefaultsAreMeasured(t *testing.T) {
	cal, _ := eval.Split(loadIdols(t))
	op := eval.Choose(cal, eval.DefaultTargets)
	p := DefaultPolicy()
	if op.VerifyThreshold != p.VerifyThreshold || op.Identify.Threshold != p.IdentifyThreshold ||
		op.Identify.Margin != p.Margin || op.Identify.Gallery != p.MaxGallery || op.Enrol != DefaultTemplates {
		t.Fatalf("measured %+v, defaults %+v", op, p)
	}
}

// enrolHalf enrols DefaultTemplates templates per identity of ds and
// returns the gallery and the remaining probes.
func enrolHalf(t *testing.T, ds *eval.Dataset) (*Gallery, []eval.Sample) {
	templates, probes := eval.Enrolment(ds, DefaultTemplates)
	g := New()
	for label, ts := range templates {
		for _, s := range ts {
			if err := g.Add(label, s.Descriptor); err != nil {
				t.Fatal(err)
			}
		}
	}
	return g, probes
}

// 1:1 on the held-out half (identities never used to choose the
// threshold): the right subject is accepted about as often as measured,
// and other subjects are refused at about the target FMR.
func TestVerifyHeldOut(t *testing.T) {
	_, held := eval.Split(loadIdols(t))
	g, probes := enrolHalf(t, held)
	p := DefaultPolicy()
	var gen, genOK, imp, impOK int
	for _, pr := range probes {
		for _, claim := range held.Labels {
			d, err := g.Verify(claim, pr.Descriptor, p)
			if err != nil {
				t.Fatal(err)
			}
			if claim == pr.Label {
				gen++
				if d.Accepted {
					genOK++
				}
			} else {
				imp++
				if d.Accepted {
					impOK++
				}
			}
		}
	}
	tar, fmr := float64(genOK)/float64(gen), float64(impOK)/float64(imp)
	t.Logf("held out: genuine accepted %d/%d (%.1f%%), impostors accepted %d/%d (FMR %.2f%%)", genOK, gen, 100*tar, impOK, imp, 100*fmr)
	if tar < 0.35 {
		t.Errorf("genuine acceptance %.3f, measured about 0.42", tar)
	}
	if fmr > 0.015 {
		t.Errorf("FMR %.4f above 1.5%% (target 1%%)", fmr)
	}
}

// 1:N on the held-out half, with each probe's identity enrolled and then
// left out (a stranger).
func TestIdentifyHeldOut(t *testing.T) {
	_, held := eval.Split(loadIdols(t))
	g, probes := enrolHalf(t, held)
	p := DefaultPolicy()
	var right, wrong int
	for _, pr := range probes {
		d, err := g.Identify(pr.Descriptor, p)
		if err != nil {
			t.Fatal(err)
		}
		if d.Accepted && d.Subject == pr.Label {
			right++
		} else if d.Accepted {
			wrong++
		}
	}
	mir := float64(wrong) / float64(len(probes))
	t.Logf("held out 1:N at %d subjects: right %d, wrong %d of %d probes", g.Subjects(), right, wrong, len(probes))
	if right == 0 || mir > 0.02 {
		t.Errorf("right %d, misidentified %.3f", right, mir)
	}
}
