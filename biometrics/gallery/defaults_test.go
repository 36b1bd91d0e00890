package gallery

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/faregate/faregate/biometrics/eval"
)

// The defaults are eval.Choose's points with eval.DefaultTargets on the
// calibration half of idols.json, the 1:1 threshold rounded down to 0.01.
func TestDefaultsAreMeasured(t *testing.T) {
	tg := eval.DefaultTargets
	if tg.Enrol != DefaultTemplates || tg.Gallery != DefaultMaxGallery || tg.Frames != DefaultFrames {
		t.Fatalf("eval.DefaultTargets %+v do not describe the default policy %+v", tg, DefaultPolicy())
	}
	cal, _ := eval.Split(loadIdols(t))
	op, err := eval.Choose(cal, tg)
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()
	if want := float32(math.Floor(float64(op.VerifyThreshold)*100) / 100); p.VerifyThreshold != want {
		t.Errorf("verify threshold %v; measured %v, so the default should be %v", p.VerifyThreshold, op.VerifyThreshold, want)
	}
	if !op.IdentifyMet || op.Identify.Threshold != p.IdentifyThreshold || op.Identify.Margin != p.Margin || op.Identify.Gallery != p.MaxGallery {
		t.Errorf("1:N measured %+v, defaults %+v", op.Identify, p)
	}
	t.Logf("calibration half: 1:1 %.3f FMR %.2f%% FNMR %.1f%%; 1:N %.2f/%.2f at %d: FPIR %.2f%% MIR %.2f%% TPIR %.1f%%",
		op.VerifyThreshold, 100*op.VerifyFMR, 100*op.VerifyFNMR, op.Identify.Threshold, op.Identify.Margin, op.Identify.Gallery,
		100*op.Identify.FPIR, 100*op.Identify.MIR, 100*op.Identify.TPIR)
}

// enrolLabels enrols the templates of labels and returns the gallery.
func enrolLabels(t *testing.T, templates map[string][]eval.Sample, labels []string) *Gallery {
	g := New()
	for _, label := range labels {
		for _, s := range templates[label] {
			if err := g.Add(label, s.Descriptor); err != nil {
				t.Fatal(err)
			}
		}
	}
	return g
}

// 1:1 on the held-out half (identities never used to choose the
// threshold), through Gallery.Verify: impostors are refused at about the
// target FMR, and the right subject is accepted about as often as
// measured.
func TestVerifyHeldOut(t *testing.T) {
	_, held := eval.Split(loadIdols(t))
	templates, probes := eval.Enrolment(held, DefaultTemplates)
	g := enrolLabels(t, templates, held.Labels)
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
	if fmr > 0.01 {
		t.Errorf("FMR %.4f above the 1%% target", fmr)
	}
	if tar < 0.30 {
		t.Errorf("genuine acceptance %.3f, measured about 0.34", tar)
	}
}

// 1:N on the held-out half through Gallery.Identify: the held-out
// identities are cut into galleries of DefaultMaxGallery; each gallery is
// searched with its own people's probes (enrolled) and with every other
// held-out probe (strangers).
func TestIdentifyHeldOut(t *testing.T) {
	_, held := eval.Split(loadIdols(t))
	templates, probes := eval.Enrolment(held, DefaultTemplates)
	p := DefaultPolicy()
	var enrolled, right, wrong, strangers, let int
	for lo := 0; lo+p.MaxGallery <= len(held.Labels); lo += p.MaxGallery {
		labels := held.Labels[lo : lo+p.MaxGallery]
		in := map[string]bool{}
		for _, l := range labels {
			in[l] = true
		}
		g := enrolLabels(t, templates, labels)
		for _, pr := range probes {
			d, err := g.IdentifyFrames([]Vector{pr.Descriptor}, p)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case in[pr.Label]:
				enrolled++
				if d.Accepted && d.Subject == pr.Label {
					right++
				} else if d.Accepted {
					wrong++
				}
			default:
				strangers++
				if d.Accepted {
					let++
				}
			}
		}
		if lo == 0 {
			if err := g.Add("one too many", probes[0].Descriptor); err != nil {
				t.Fatal(err)
			}
			if _, err := g.Identify(probes[0].Descriptor, p); !errors.Is(err, ErrGalleryTooLarge) {
				t.Errorf("a gallery of %d searched with MaxGallery %d: %v", g.Subjects(), p.MaxGallery, err)
			}
		}
	}
	fpir, mir, tpir := float64(let)/float64(strangers), float64(wrong)/float64(enrolled), float64(right)/float64(enrolled)
	t.Logf("held out 1:N at %d subjects: strangers let in %d/%d (FPIR %.2f%%), enrolled right %d wrong %d of %d (TPIR %.1f%%, MIR %.2f%%)",
		p.MaxGallery, let, strangers, 100*fpir, right, wrong, enrolled, 100*tpir, 100*mir)
	if fpir > 0.01 || mir > 0.01 {
		t.Errorf("FPIR %.4f or MIR %.4f above the 1%% targets", fpir, mir)
	}
	if tpir < 0.05 {
		t.Errorf("TPIR %.3f, measured about 0.09", tpir)
	}
}

// The two small populations made with our own pipeline (see
// ../eval/testdata): the defaults accept none of their impostors or
// strangers. What they cost genuine riders there is logged, and on johns,
// the population the model was made for, most are accepted.
func TestDefaultsOnOtherPopulations(t *testing.T) {
	for _, tc := range []struct {
		file           string
		enrol          int
		minVerifyTAR   float64
		subjects, imps int
	}{
		{"johns.json", 3, 0.6, 5, 160},
		{"shared-images.json", 1, 0, 17, 154},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("..", "eval", "testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			ds, err := eval.DecodeIdols(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			p := DefaultPolicy()
			s := eval.TemplateScores(ds, tc.enrol)
			if len(ds.Labels) != tc.subjects || len(s.Impostor) != tc.imps {
				t.Fatalf("%d subjects, %d impostor comparisons; want %d, %d", len(ds.Labels), len(s.Impostor), tc.subjects, tc.imps)
			}
			if fmr := s.FMR(p.VerifyThreshold); fmr != 0 {
				t.Errorf("1:1 FMR %.4f; the defaults should accept none of these %d impostor comparisons", fmr, len(s.Impostor))
			}
			if tar := 1 - s.FNMR(p.VerifyThreshold); tar < tc.minVerifyTAR {
				t.Errorf("1:1 genuine acceptance %.3f, below %.2f", tar, tc.minVerifyTAR)
			}
			id := eval.RunOpenSet(ds, eval.OpenSetParams{Enrol: tc.enrol, Gallery: p.MaxGallery}).Point(p.IdentifyThreshold, p.Margin)
			if id.FPIR != 0 || id.MIR != 0 {
				t.Errorf("1:N FPIR %.4f, MIR %.4f; want none", id.FPIR, id.MIR)
			}
			t.Logf("1:1 FNMR %.1f%% of %d; 1:N at %d subjects TPIR %.1f%% of %d passages, %d stranger passages",
				100*s.FNMR(p.VerifyThreshold), len(s.Genuine), id.Gallery, 100*id.TPIR, id.Passages, id.Strangers)
		})
	}
}
