package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/eval"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/templates"
	"github.com/faregate/faregate/fare"
)

// errRejected makes verify and identify exit non-zero when no match is
// accepted, after printing the decision.
var errRejected = errors.New("face not accepted")

// faceFlags are shared by the face subcommands.
type faceFlags struct {
	models    string
	store     string
	add       bool // enroll: to a subject enrolled already
	keyFile   string
	cnn       bool
	policy    gallery.Policy // flag values, over the defaults
	policyAt  string         // --policy FILE
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
Matching thresholds come from --policy FILE (written by 'face calibrate'
from the deployment's own labelled captures), else from the conservative
defaults; single flags override either.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.models, "models", "", "model directory (default $FAREGATE_MODELS, ./models, ../shared/models)")
	pf.StringVar(&f.store, "store", "face-gallery", "template store directory")
	pf.StringVar(&f.keyFile, "key-file", "", "file holding the store key (default $FAREGATE_GALLERY_KEY)")
	pf.BoolVar(&f.cnn, "cnn", false, "detect faces with the MMOD CNN instead of HOG")
	cmd.AddCommand(f.detectCmd(), f.enrollCmd(), f.identifyCmd(), f.verifyCmd(), f.forgetCmd(), f.evalCmd(), f.calibrateCmd())
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

// openStore opens the gallery store; a command that only reads or erases
// (existing) refuses a directory holding none rather than make an empty one
// and answer from it.
func (f *faceFlags) openStore(existing bool) (*templates.Store, error) {
	if existing {
		if _, err := os.Stat(filepath.Join(f.store, "MANIFEST")); err != nil {
			return nil, fmt.Errorf("--store %s holds no gallery (enrol faces into it first with `faregate face enroll --store %s`)", f.store, f.store)
		}
	}
	key, err := templates.LoadKey(f.keyFile)
	if err != nil {
		return nil, err
	}
	warnReadableByOthers(os.Stderr, "--key-file", f.keyFile, "anyone who reads it opens every face template in the store")
	return templates.Open(f.store, key, templates.Options{})
}

// probes returns descriptors from --descriptor flags and from images (one
// face each, by the quality gate when gate is set), with the model id they
// belong to.
func (f *faceFlags) probes(ctx context.Context, images []string, gate bool) ([]gallery.Vector, string, error) {
	if f.minFace < 1 {
		return nil, "", usageErrorf("--min-face %d: want a face side of 1 pixel or more", f.minFace)
	}
	var out []gallery.Vector
	for _, s := range f.descs {
		d, err := eval.DecodeDescriptor(s)
		if err != nil {
			return nil, "", usageErrorf("--descriptor: %w", err)
		}
		out = append(out, d)
	}
	if len(images) == 0 {
		if len(out) == 0 {
			return nil, "", usageErr("give an image or --descriptor")
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
				return usageErr("--subject is required")
			}
			// The subject is the token a face tap carries: the ids the
			// registry and clearing's gallery take, nothing else.
			if err := fare.ValidateID(f.subject); err != nil {
				return usageErrorf("--subject %q: %v", f.subject, err)
			}
			if f.subject == fare.UnmatchedFace {
				return usageErrorf("--subject %q is reserved: refused face taps carry it", f.subject)
			}
			at := time.Now().UTC()
			if f.consentAt != "" {
				var err error
				if at, err = time.Parse(time.RFC3339, f.consentAt); err != nil {
					return usageErrorf("--consent-at %q: want an RFC 3339 time with its zone, such as 2026-12-01T10:00:00+01:00", f.consentAt)
				}
				// Consent is recorded when given: one dated ahead is a
				// typo (or a record made up in advance).
				if at.After(time.Now().Add(5 * time.Minute)) {
					return usageErrorf("--consent-at %s is in the future: consent is recorded once given", f.consentAt)
				}
			}
			consent := templates.Consent{GivenBy: f.consentBy, At: at, Purpose: f.purpose}
			descs, modelID, err := f.probes(cmd.Context(), args, true)
			if err != nil {
				return err
			}
			// The same screen clearing applies: a template no face gives
			// (all zeros, a value past 1, the population's mean, which
			// matches strangers) is refused here too.
			for i := range descs {
				if err := gallery.ScreenTemplate(modelID, descs[i][:]); err != nil {
					return usageErrorf("template %d: %v", i+1, err)
				}
			}
			s, err := f.openStore(false)
			if err != nil {
				return err
			}
			defer s.Close()
			if held, err := s.Templates(cmd.Context(), f.subject); err != nil {
				return err
			} else if len(held) > 0 && !f.add {
				return fmt.Errorf("subject %s is enrolled already (%d templates): --add adds these under the new consent record; `faregate face forget --subject %s` erases the subject first", f.subject, len(held), f.subject)
			}
			ts, err := s.Enrol(cmd.Context(), f.subject, consent, modelID, descs...)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), map[string]any{"subject": f.subject, "templates": len(ts), "model": modelID})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.subject, "subject", "", "subject id")
	fl.BoolVar(&f.add, "add", false, "add templates to a subject enrolled already (its consent record replaced by this one)")
	fl.StringVar(&f.consentBy, "consent-by", "", "who gave consent (required)")
	fl.StringVar(&f.consentAt, "consent-at", "", "when consent was given, RFC 3339 (default now)")
	fl.StringVar(&f.purpose, "purpose", "", "purpose consented to (required)")
	fl.StringArrayVar(&f.descs, "descriptor", nil, "a descriptor instead of an image (repeatable)")
	fl.IntVar(&f.minFace, "min-face", biometrics.DefaultMinFaceSize, "smallest face side in pixels")
	return cmd
}

func (f *faceFlags) policyFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.policyAt, "policy", "", "policy file written by 'face calibrate' (default: the built-in conservative policy)")
	fl.Float32Var(&f.policy.VerifyThreshold, "verify-threshold", f.policy.VerifyThreshold, "1:1 distance threshold (overrides the policy)")
	fl.Float32Var(&f.policy.IdentifyThreshold, "identify-threshold", f.policy.IdentifyThreshold, "1:N distance threshold (overrides the policy)")
	fl.Float32Var(&f.policy.Margin, "margin", f.policy.Margin, "1:N margin to the second-nearest subject (overrides the policy)")
	fl.IntVar(&f.policy.MaxGallery, "max-gallery", f.policy.MaxGallery, "most subjects 1:N may search (overrides the policy)")
	fl.IntVar(&f.policy.Frames, "frames", f.policy.Frames, "consecutive images that must agree in 1:N (overrides the policy)")
	fl.StringArrayVar(&f.descs, "descriptor", nil, "a descriptor instead of an image (repeatable)")
}

// resolvePolicy is the policy a matching command uses: --policy FILE (or
// the defaults), with each matching flag given on the command line put
// over it. The result is validated, so a flag like --frames 0 is refused
// instead of silently meaning something else.
func (f *faceFlags) resolvePolicy(cmd *cobra.Command) (gallery.Policy, error) {
	p := gallery.DefaultPolicy()
	var cal *gallery.Calibration
	if f.policyAt != "" {
		var err error
		if p, cal, err = loadPolicyFile(f.policyAt); err != nil {
			return p, err
		}
	}
	measured := p
	fl := cmd.Flags()
	if fl.Changed("verify-threshold") {
		p.VerifyThreshold = f.policy.VerifyThreshold
	}
	if fl.Changed("identify-threshold") {
		p.IdentifyThreshold = f.policy.IdentifyThreshold
	}
	if fl.Changed("margin") {
		p.Margin = f.policy.Margin
	}
	if fl.Changed("max-gallery") {
		p.MaxGallery = f.policy.MaxGallery
	}
	if fl.Changed("frames") {
		p.Frames = f.policy.Frames
	}
	if err := p.Validate(); err != nil {
		return p, err
	}
	if why := unmeasuredGallery(p.MaxGallery, measured, cal); why != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+why)
	}
	return p, nil
}

type decisionJSON struct {
	Accepted bool `json:"accepted"`
	// Policy is the version of the policy that decided (Policy.Version),
	// the value a gate signs into its event.
	Policy         string   `json:"policy"`
	Subject        string   `json:"subject"`
	Distance       float32  `json:"distance"`
	Second         string   `json:"second,omitempty"`
	SecondDistance *float32 `json:"second_distance,omitempty"`
	Reason         string   `json:"reason,omitempty"`
}

func printDecision(w io.Writer, d gallery.Decision, p gallery.Policy) error {
	dj := decisionJSON{Accepted: d.Accepted, Policy: p.Version(), Subject: d.Subject, Distance: d.Distance, Second: d.Second, Reason: d.Reason}
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
	s, err := f.openStore(true)
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
			p, err := f.resolvePolicy(cmd)
			if err != nil {
				return err
			}
			probes, modelID, err := f.probes(cmd.Context(), args, false)
			if err != nil {
				return err
			}
			g, err := f.loadGallery(cmd.Context(), modelID)
			if err != nil {
				return err
			}
			d, err := g.IdentifyFrames(probes, p)
			if err != nil {
				return err
			}
			return printDecision(cmd.OutOrStdout(), d, p)
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
				return usageErr("--subject is required")
			}
			if len(args)+len(f.descs) != 1 {
				return usageErr("verify takes one image or one --descriptor")
			}
			p, err := f.resolvePolicy(cmd)
			if err != nil {
				return err
			}
			probes, modelID, err := f.probes(cmd.Context(), args, false)
			if err != nil {
				return err
			}
			g, err := f.loadGallery(cmd.Context(), modelID)
			if err != nil {
				return err
			}
			d, err := g.Verify(f.subject, probes[0], p)
			if err != nil {
				return err
			}
			return printDecision(cmd.OutOrStdout(), d, p)
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
				return usageErr("--subject is required")
			}
			s, err := f.openStore(true)
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
	var path, half string
	tg := eval.DefaultTargets
	cmd := &cobra.Command{
		Use:   "eval --descriptors FILE [--policy FILE]",
		Short: "Print distance distributions, the 1:1 and 1:N DET tables, the points they support and a policy's rates",
		Long: `Eval measures labelled descriptors (go-face's idols.json format, or what
'face calibrate --save-descriptors' writes): distance distributions, the
1:1 DET table, the 1:N DET table at --gallery subjects and --frames frames,
the points eval.Choose would pick for the default targets, and the rates
of the policy in force (--policy FILE, else the defaults) on these data.
Unlike 'face calibrate' it writes nothing and reports too little data
instead of failing. --half calibration|held-out keeps one half of the
subjects (even or odd positions), as the defaults were chosen and checked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if tg.Enrol < 1 || tg.Gallery < 0 || tg.Frames < 1 {
				return usageErrorf("--enrol %d, --gallery %d, --frames %d: need enrol and frames >= 1, gallery >= 0", tg.Enrol, tg.Gallery, tg.Frames)
			}
			p, err := f.resolvePolicy(cmd)
			if err != nil {
				return err
			}
			r, _, err := openInputFile("--descriptors", path)
			if err != nil {
				return err
			}
			defer r.Close()
			ds, err := eval.DecodeIdols(r)
			if err != nil {
				return err
			}
			name := filepath.Base(path)
			switch half {
			case "":
			case "calibration", "held-out":
				cal, held := eval.Split(ds)
				if ds = cal; half == "held-out" {
					ds = held
				}
				name += ", " + half + " half"
			default:
				return usageErrorf("--half %q: want calibration or held-out", half)
			}
			w := cmd.OutOrStdout()
			eval.Report(w, ds, name, tg) // too little data is part of the report
			writePolicyRates(w, ds, tg, p)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&path, "descriptors", "", "labelled descriptors in go-face's idols.json format")
	fl.StringVar(&half, "half", "", "measure only the calibration or the held-out half of the subjects")
	fl.IntVar(&tg.Enrol, "enrol", gallery.DefaultTemplates, "templates per enrolled subject")
	fl.IntVar(&tg.Gallery, "gallery", gallery.DefaultMaxGallery, "subjects per 1:N search (0: all but one)")
	fl.IntVar(&tg.Frames, "frames", gallery.DefaultFrames, "consecutive probes that must agree in 1:N")
	fl.StringVar(&f.policyAt, "policy", "", "policy file whose rates to report (default: the built-in policy)")
	cmd.MarkFlagRequired("descriptors")
	return cmd
}

// writePolicyRates prints what policy p does on ds: 1:1 at its verify
// threshold, 1:N at its identify threshold and margin with galleries of
// tg.Gallery subjects and p.Frames frames.
func writePolicyRates(w io.Writer, ds *eval.Dataset, tg eval.Targets, p gallery.Policy) {
	s := eval.TemplateScores(ds, tg.Enrol)
	fmt.Fprintf(w, "Policy %s on these data (%d templates per subject):\n\n", p.Version(), tg.Enrol)
	fmt.Fprintf(w, "| mode | threshold | margin | gallery | measured |\n|---|---|---|---|---|\n")
	fm := int(float64(len(s.Impostor))*s.FMR(p.VerifyThreshold) + 0.5)
	fmt.Fprintf(w, "| 1:1 verify | %.3f | - | any | FMR %.2f%% (%d of %d; bound %.2f%%), FNMR %.2f%% of %d |\n",
		p.VerifyThreshold, 100*s.FMR(p.VerifyThreshold), fm, len(s.Impostor), 100*eval.UpperBound(float64(fm), float64(len(s.Impostor))),
		100*s.FNMR(p.VerifyThreshold), len(s.Genuine))
	runs := eval.RunOpenSet(ds, eval.OpenSetParams{Enrol: tg.Enrol, Gallery: tg.Gallery, Frames: p.Frames})
	if runs.Passages == 0 {
		fmt.Fprintf(w, "| 1:N identify | %.3f | %.3f | - | no probe passages |\n\n", p.IdentifyThreshold, p.Margin)
		return
	}
	id := runs.Point(p.IdentifyThreshold, p.Margin)
	fmt.Fprintf(w, "| 1:N identify | %.3f | %.3f | %d subjects, %d frame(s) | FPIR %.2f%% (bound %.2f%%), MIR %.2f%%, TPIR %.2f%% of %d passages |\n\n",
		p.IdentifyThreshold, p.Margin, id.Gallery, id.Frames, 100*id.FPIR, 100*id.FPIRBound(), 100*id.MIR, 100*id.TPIR, id.Passages)
}
