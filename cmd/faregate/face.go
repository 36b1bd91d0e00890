package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/eval"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/templates"
)

// errRejected makes verify and identify exit non-zero when no match is
// accepted, after printing the decision.
var errRejected = errors.New("face not accepted")

// faceFlags are shared by the face subcommands.
type faceFlags struct {
	models    string
	store     string
	keyFile   string
	cnn       bool
	policy    gallery.Policy
	subject   string
	descs     []string
	consentBy string
	consentAt string
	purpose   string
	minFace   int
}

func newFaceCmd() *cobra.Command {
	f := &faceFlags{policy: gallery.DefaultPolicy()}
	cmd := &cobra.Command{
		Use:   "face",
		Short: "Face detection, enrolment and matching",
		Long: `Face detection, enrolment and matching with dlib's face recognition model.

Models come from --models, else $FAREGATE_MODELS, else ./models, else
../shared/models. The gallery store is encrypted with a 32-byte key from
--key-file or $FAREGATE_GALLERY_KEY (64 hex digits or 32 raw bytes).
Thresholds default to the operating points measured by 'face eval'.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.models, "models", "", "model directory (default $FAREGATE_MODELS, ./models, ../shared/models)")
	pf.StringVar(&f.store, "store", "face-gallery", "template store directory")
	pf.StringVar(&f.keyFile, "key-file", "", "file holding the store key (default $FAREGATE_GALLERY_KEY)")
	pf.BoolVar(&f.cnn, "cnn", false, "detect faces with the MMOD CNN instead of HOG")
	cmd.AddCommand(f.detectCmd(), f.enrollCmd(), f.identifyCmd(), f.verifyCmd(), f.forgetCmd(), f.evalCmd())
	return cmd
}

func (f *faceFlags) detector() biometrics.Detector {
	if f.cnn {
		return biometrics.CNN
	}
	return biometrics.HOG
}

func (f *faceFlags) recognizer() (*biometrics.Recognizer, error) {
	dir, err := biometrics.FindModelDir(f.models)
	if err != nil {
		return nil, err
	}
	return biometrics.New(biometrics.Config{ModelDir: dir})
}

// modelID is the pipeline descriptors given on the command line are
// assumed to come from: the one the model directory would use.
func (f *faceFlags) modelID() string {
	dir, _ := biometrics.FindModelDir(f.models)
	if filepath.Base(biometrics.FindLandmarkModel(dir)) == biometrics.Shape5ModelFile {
		return biometrics.ModelIDFor(5)
	}
	return biometrics.ModelIDFor(68)
}

func (f *faceFlags) openStore() (*templates.Store, error) {
	key, err := templates.LoadKey(f.keyFile)
	if err != nil {
		return nil, err
	}
	return templates.Open(f.store, key, templates.Options{})
}

// probes returns descriptors from --descriptor flags and from images (one
// face each, by the quality gate when gate is set), with the model id they
// belong to.
func (f *faceFlags) probes(ctx context.Context, images []string, gate bool) ([]gallery.Vector, string, error) {
	var out []gallery.Vector
	for _, s := range f.descs {
		d, err := eval.DecodeDescriptor(s)
		if err != nil {
			return nil, "", fmt.Errorf("--descriptor: %w", err)
		}
		out = append(out, d)
	}
	if len(images) == 0 {
		if len(out) == 0 {
			return nil, "", errors.New("give an image or --descriptor")
		}
		return out, f.modelID(), nil
	}
	r, err := f.recognizer()
	if err != nil {
		return nil, "", err
	}
	defer r.Close()
	q := biometrics.Quality{MinFaceSize: f.minFace}
	if !gate {
		q.MinFaceSize = 1
	}
	for _, img := range images {
		faces, err := r.RecognizeFileContext(ctx, img, f.detector())
		if err != nil {
			return nil, "", err
		}
		face, err := q.Single(faces)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", img, err)
		}
		out = append(out, face.Descriptor)
	}
	return out, r.ModelID(), nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type faceJSON struct {
	Rectangle  [4]int       `json:"rectangle"` // left, top, right, bottom (exclusive)
	Confidence float64      `json:"confidence"`
	Landmarks  [][2]int     `json:"landmarks"`
	Descriptor [128]float32 `json:"descriptor"`
}

func (f *faceFlags) detectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "detect IMAGE...",
		Short: "Print each face's rectangle, landmarks and descriptor as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.recognizer()
			if err != nil {
				return err
			}
			defer r.Close()
			type imageJSON struct {
				Image string     `json:"image"`
				Model string     `json:"model"`
				Faces []faceJSON `json:"faces"`
			}
			var out []imageJSON
			for _, path := range args {
				faces, err := r.RecognizeFileContext(cmd.Context(), path, f.detector())
				if err != nil {
					return err
				}
				ij := imageJSON{Image: path, Model: r.ModelID(), Faces: []faceJSON{}}
				for _, fc := range faces {
					fj := faceJSON{
						Rectangle:  [4]int{fc.Rectangle.Min.X, fc.Rectangle.Min.Y, fc.Rectangle.Max.X, fc.Rectangle.Max.Y},
						Confidence: fc.Confidence,
						Descriptor: fc.Descriptor,
					}
					for _, p := range fc.Shapes {
						fj.Landmarks = append(fj.Landmarks, [2]int{p.X, p.Y})
					}
					ij.Faces = append(ij.Faces, fj)
				}
				out = append(out, ij)
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
}

func (f *faceFlags) enrollCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enroll --subject ID --consent-by WHO --purpose WHY IMAGE...",
		Short: "Enrol a subject's face templates (descriptors only) with a consent record",
		Long: `Enrol a subject from images (exactly one face of at least --min-face pixels
each) or from --descriptor values (base64 of 128 little-endian float32).
Only descriptors are stored, never images. Aim for ` + fmt.Sprint(gallery.DefaultTemplates) + ` images: the default
thresholds were measured with that many templates per subject.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.subject == "" {
				return errors.New("--subject is required")
			}
			at := time.Now().UTC()
			if f.consentAt != "" {
				var err error
				if at, err = time.Parse(time.RFC3339, f.consentAt); err != nil {
					return fmt.Errorf("--consent-at: %w", err)
				}
			}
			consent := templates.Consent{GivenBy: f.consentBy, At: at, Purpose: f.purpose}
			descs, modelID, err := f.probes(cmd.Context(), args, true)
			if err != nil {
				return err
			}
			s, err := f.openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			ts, err := s.Enrol(cmd.Context(), f.subject, consent, modelID, descs...)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), map[string]any{"subject": f.subject, "templates": len(ts), "model": modelID})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.subject, "subject", "", "subject id")
	fl.StringVar(&f.consentBy, "consent-by", "", "who gave consent (required)")
	fl.StringVar(&f.consentAt, "consent-at", "", "when consent was given, RFC 3339 (default now)")
	fl.StringVar(&f.purpose, "purpose", "", "purpose consented to (required)")
	fl.StringArrayVar(&f.descs, "descriptor", nil, "a descriptor instead of an image (repeatable)")
	fl.IntVar(&f.minFace, "min-face", biometrics.DefaultMinFaceSize, "smallest face side in pixels")
	return cmd
}

func (f *faceFlags) policyFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.Float32Var(&f.policy.VerifyThreshold, "verify-threshold", f.policy.VerifyThreshold, "1:1 distance threshold")
	fl.Float32Var(&f.policy.IdentifyThreshold, "identify-threshold", f.policy.IdentifyThreshold, "1:N distance threshold")
	fl.Float32Var(&f.policy.Margin, "margin", f.policy.Margin, "1:N margin to the second-nearest subject")
	fl.IntVar(&f.policy.MaxGallery, "max-gallery", f.policy.MaxGallery, "most subjects 1:N may search")
	fl.IntVar(&f.policy.Frames, "frames", f.policy.Frames, "consecutive images that must agree in 1:N")
	fl.StringArrayVar(&f.descs, "descriptor", nil, "a descriptor instead of an image (repeatable)")
}

type decisionJSON struct {
	Accepted       bool     `json:"accepted"`
	Subject        string   `json:"subject"`
	Distance       float32  `json:"distance"`
	Second         string   `json:"second,omitempty"`
	SecondDistance *float32 `json:"second_distance,omitempty"`
	Reason         string   `json:"reason,omitempty"`
}

func printDecision(w io.Writer, d gallery.Decision) error {
	dj := decisionJSON{Accepted: d.Accepted, Subject: d.Subject, Distance: d.Distance, Second: d.Second, Reason: d.Reason}
	if d.Second != "" {
		dj.SecondDistance = &d.SecondDistance
	}
	if err := printJSON(w, dj); err != nil {
		return err
	}
	if !d.Accepted {
		return errRejected
	}
	return nil
}

func (f *faceFlags) loadGallery(ctx context.Context, modelID string) (*gallery.Gallery, error) {
	s, err := f.openStore()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.LoadGallery(ctx, modelID)
}

func (f *faceFlags) identifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identify IMAGE...",
		Short: "1:N: who in the (bounded) gallery is this? Several images are consecutive frames",
		RunE: func(cmd *cobra.Command, args []string) error {
			probes, modelID, err := f.probes(cmd.Context(), args, false)
			if err != nil {
				return err
			}
			g, err := f.loadGallery(cmd.Context(), modelID)
			if err != nil {
				return err
			}
			d, err := g.IdentifyFrames(probes, f.policy)
			if err != nil {
				return err
			}
			return printDecision(cmd.OutOrStdout(), d)
		},
	}
	f.policyFlags(cmd)
	return cmd
}

func (f *faceFlags) verifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify --subject ID IMAGE",
		Short: "1:1: is this the enrolled owner of the presented card?",
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.subject == "" {
				return errors.New("--subject is required")
			}
			probes, modelID, err := f.probes(cmd.Context(), args, false)
			if err != nil {
				return err
			}
			if len(probes) != 1 {
				return errors.New("verify takes one image or one --descriptor")
			}
			g, err := f.loadGallery(cmd.Context(), modelID)
			if err != nil {
				return err
			}
			d, err := g.Verify(f.subject, probes[0], f.policy)
			if err != nil {
				return err
			}
			return printDecision(cmd.OutOrStdout(), d)
		},
	}
	cmd.Flags().StringVar(&f.subject, "subject", "", "claimed subject id")
	f.policyFlags(cmd)
	return cmd
}

func (f *faceFlags) forgetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "forget --subject ID",
		Short: "Erase a subject's templates and consent record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.subject == "" {
				return errors.New("--subject is required")
			}
			s, err := f.openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			n, err := s.Forget(cmd.Context(), f.subject)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), map[string]any{"subject": f.subject, "erased_templates": n})
		},
	}
	cmd.Flags().StringVar(&f.subject, "subject", "", "subject id")
	return cmd
}

func (f *faceFlags) evalCmd() *cobra.Command {
	var path string
	var enrol int
	cmd := &cobra.Command{
		Use:   "eval --descriptors idols.json",
		Short: "Print genuine/impostor distributions, the DET table and the chosen operating points",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := os.Open(path)
			if err != nil {
				return err
			}
			defer r.Close()
			ds, err := eval.DecodeIdols(r)
			if err != nil {
				return err
			}
			tg := eval.DefaultTargets
			tg.Enrol = enrol
			writeEval(cmd.OutOrStdout(), ds, tg)
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "descriptors", "", "labelled descriptors in go-face's idols.json format")
	cmd.Flags().IntVar(&enrol, "enrol", gallery.DefaultTemplates, "templates per enrolled subject")
	cmd.MarkFlagRequired("descriptors")
	return cmd
}

// writeEval prints the evaluation as Markdown, ready for BENCHMARKS.md.
func writeEval(w io.Writer, ds *eval.Dataset, tg eval.Targets) {
	cal, held := eval.Split(ds)
	pairs := eval.PairScores(ds.Samples)
	tmpl := eval.TemplateScores(ds, tg.Enrol)
	fmt.Fprintf(w, "## Face matching error rates\n\n%d descriptors of %d people. Distances are Euclidean.\n\n", len(ds.Samples), len(ds.Labels))
	fmt.Fprintf(w, "### Distance distributions\n\n| comparisons | count | min | p1 | p5 | p25 | median | p75 | p95 | p99 | max |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	row := func(name string, s eval.Summary) {
		fmt.Fprintf(w, "| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", name, s.Count, s.Min, s.P1, s.P5, s.P25, s.Median, s.P75, s.P95, s.P99, s.Max)
	}
	row("genuine pairs", eval.Describe(pairs.Genuine))
	row("impostor pairs", eval.Describe(pairs.Impostor))
	row(fmt.Sprintf("genuine, probe vs %d templates", tg.Enrol), eval.Describe(tmpl.Genuine))
	row(fmt.Sprintf("impostor, probe vs %d templates", tg.Enrol), eval.Describe(tmpl.Impostor))
	dup := 0
	for _, d := range pairs.Impostor {
		if d < 0.15 {
			dup++
		}
	}
	fmt.Fprintf(w, "\n%d impostor pairs are closer than 0.15 (most likely the same photo under two labels); they are kept.\n", dup)
	pt, prate := pairs.EER()
	tt, trate := tmpl.EER()
	fmt.Fprintf(w, "EER: pairs %.1f%% at %.3f; probe vs %d templates %.1f%% at %.3f.\n\n", 100*prate, pt, tg.Enrol, 100*trate, tt)

	fmt.Fprintf(w, "### DET table\n\n| threshold | FMR pairs | FNMR pairs | FMR vs %d templates | FNMR vs %d templates |\n|---|---|---|---|---|\n", tg.Enrol, tg.Enrol)
	var ths []float32
	for t := float32(0.25); t <= 0.601; t += 0.025 {
		ths = append(ths, float32(int(t*1000+0.5))/1000)
	}
	pp, tp := pairs.DET(ths), tmpl.DET(ths)
	for i := range ths {
		fmt.Fprintf(w, "| %.3f | %s | %.1f%% | %s | %.1f%% |\n", ths[i], pct(pp[i].FMR, pp[i].FalseMatches), 100*pp[i].FNMR, pct(tp[i].FMR, tp[i].FalseMatches), 100*tp[i].FNMR)
	}

	op := eval.Choose(cal, tg)
	hs := eval.TemplateScores(held, tg.Enrol)
	fmt.Fprintf(w, "\n### Operating points\n\nChosen on the calibration half (%d identities at even positions), checked on the held-out half (%d others). Each subject enrols %d templates; a probe's distance to a subject is to its nearest template.\n\n",
		len(cal.Labels), len(held.Labels), tg.Enrol)
	fmt.Fprintf(w, "| mode | rule | threshold | margin | gallery | calibration | held out |\n|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| 1:1 verify | FMR <= %.2g | %.3f | - | any (one comparison) | FMR %.2f%%, FNMR %.1f%% | FMR %.2f%%, FNMR %.1f%% |\n",
		tg.VerifyFMR, op.VerifyThreshold, 100*op.VerifyFMR, 100*op.VerifyFNMR, 100*hs.FMR(op.VerifyThreshold), 100*hs.FNMR(op.VerifyThreshold))
	id := op.Identify
	if id.Gallery == 0 {
		fmt.Fprintf(w, "| 1:N identify | FPIR <= %.2g, MIR <= %.2g | none | none | - | no point of the grid meets the targets | - |\n", tg.FPIR, tg.MIR)
	} else {
		hp := eval.OpenSet(held, tg.Enrol, []float32{id.Threshold}, []float32{id.Margin})[0]
		fmt.Fprintf(w, "| 1:N identify | max TPIR with FPIR <= %.2g, MIR <= %.2g | %.3f | %.3f | <= %d subjects | TPIR %.1f%%, FPIR %.2f%%, MIR %.2f%% | TPIR %.1f%%, FPIR %.2f%%, MIR %.2f%% (%d subjects) |\n",
			tg.FPIR, tg.MIR, id.Threshold, id.Margin, id.Gallery, 100*id.TPIR, 100*id.FPIR, 100*id.MIR, 100*hp.TPIR, 100*hp.FPIR, 100*hp.MIR, hp.Gallery)
		all := eval.OpenSet(ds, tg.Enrol, []float32{id.Threshold}, []float32{id.Margin})[0]
		fmt.Fprintf(w, "\nThe same 1:N point on all %d identities: TPIR %.1f%%, FPIR %.2f%%, MIR %.2f%%: the stranger rate grows with the gallery.\n",
			all.Gallery, 100*all.TPIR, 100*all.FPIR, 100*all.MIR)
	}
	fmr := tmpl.FMR(id.Threshold)
	fmt.Fprintf(w, "Per-comparison FMR at the 1:N threshold %.3f (vs %d templates) is %.3g: without the margin a stranger searched against N subjects is let in with probability about 1-(1-FMR)^N, which stays within 1%% only up to N = %d. The margin is what keeps 1:N usable at all.\n",
		id.Threshold, tg.Enrol, fmr, eval.MaxGallery(fmr, 0.01))
}

func pct(rate float64, n int) string {
	return strings.TrimSpace(fmt.Sprintf("%.3f%% (%d)", 100*rate, n))
}
