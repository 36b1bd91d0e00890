package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/eval"
	"github.com/faregate/faregate/biometrics/gallery"
)

// calibrateFlags are the flags of `face calibrate`.
type calibrateFlags struct {
	descriptors string
	saveDescs   string
	out         string
	population  string
	minFace     int
	tg          eval.Targets
}

func (f *faceFlags) calibrateCmd() *cobra.Command {
	c := &calibrateFlags{tg: eval.DefaultTargets}
	c.tg.Gallery = gallery.DefaultMaxGallery
	cmd := &cobra.Command{
		Use:   "calibrate (DIR | --descriptors FILE) [--out policy.json]",
		Short: "Measure the DET tables on labelled enrolment captures and write the policy they support",
		Long: `Calibrate measures error rates on an operator's own labelled captures and
chooses the operating points a deployment should use.

DIR holds one subdirectory per subject, each with that subject's JPEG or
PNG captures (exactly one face of at least --min-face pixels each); they
go through the same detector and descriptor pipeline as enrolment. Or give
--descriptors FILE: labelled descriptors in go-face's idols.json format
(--save-descriptors writes that file from DIR, so later runs skip
detection).

Each subject's first --enrol captures are its templates, the rest probes.
It prints the 1:1 DET table (FMR/FNMR) and the 1:N DET table (FPIR/FNIR)
for galleries of --gallery subjects, the deployment's gallery size, with
--frames consecutive captures agreeing. It then chooses the 1:1 threshold
and the 1:N threshold and margin whose 95% upper bounds on FMR, FPIR and
MIR are within the targets, and writes them to --out as a policy file for
'face verify/identify --policy'. Too little data for the targets is
refused: with n comparisons and no error the data can only support a rate
of about 3/n, so a 1% target needs about 270 impostor comparisons and 270
probe passages.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := c.check(args); err != nil {
				return err
			}
			ds, model, what, err := c.load(cmd.Context(), f, args)
			if err != nil {
				return err
			}
			if c.saveDescs != "" {
				// Descriptors are biometric data: owner-only.
				if err := writeFileAtomic(c.saveDescs, 0o600, func(w io.Writer) error { return eval.EncodeIdols(w, ds) }); err != nil {
					return fmt.Errorf("--save-descriptors: %w", err)
				}
			}
			if c.population == "" {
				c.population = what
			}
			return c.calibrate(cmd.OutOrStdout(), ds, model)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.descriptors, "descriptors", "", "labelled descriptors (idols.json format) instead of DIR")
	fl.StringVar(&c.saveDescs, "save-descriptors", "", "write the descriptors read from DIR to this file (idols.json format)")
	fl.StringVar(&c.out, "out", "", "write the chosen policy to this file")
	fl.StringVar(&c.population, "population", "", "what the captures are, for the policy's calibration notes (default DIR or FILE)")
	fl.IntVar(&c.minFace, "min-face", biometrics.DefaultMinFaceSize, "smallest face side in pixels in a capture")
	fl.IntVar(&c.tg.Enrol, "enrol", gallery.DefaultTemplates, "templates per subject (each subject's first captures)")
	fl.IntVar(&c.tg.Gallery, "gallery", c.tg.Gallery, "subjects one 1:N search covers in the deployment")
	fl.IntVar(&c.tg.Frames, "frames", gallery.DefaultFrames, "consecutive captures that must agree in 1:N")
	fl.Float64Var(&c.tg.VerifyFMR, "target-fmr", c.tg.VerifyFMR, "1:1 false match rate to hold (95% upper bound)")
	fl.Float64Var(&c.tg.FPIR, "target-fpir", c.tg.FPIR, "1:N rate of strangers accepted to hold (95% upper bound)")
	fl.Float64Var(&c.tg.MIR, "target-mir", c.tg.MIR, "1:N rate of enrolled riders taken for someone else to hold (95% upper bound)")
	return cmd
}

// check refuses bad flags before any model or file is opened.
func (c *calibrateFlags) check(args []string) error {
	switch {
	case len(args) == 1 && c.descriptors != "":
		return errors.New("give DIR or --descriptors, not both")
	case len(args) == 0 && c.descriptors == "":
		return errors.New("give a directory of captures (one subdirectory per subject) or --descriptors FILE")
	case len(args) == 0 && c.saveDescs != "":
		return usageErr("--save-descriptors needs DIR")
	}
	for _, t := range []struct {
		name string
		v    float64
	}{{"--target-fmr", c.tg.VerifyFMR}, {"--target-fpir", c.tg.FPIR}, {"--target-mir", c.tg.MIR}} {
		if !(t.v > 0 && t.v < 1) {
			return fmt.Errorf("%s %v: must be in (0, 1)", t.name, t.v)
		}
	}
	switch {
	case c.tg.Enrol < 1:
		return fmt.Errorf("--enrol %d: need at least 1", c.tg.Enrol)
	case c.tg.Gallery < 1:
		return fmt.Errorf("--gallery %d: need at least 1", c.tg.Gallery)
	case c.tg.Frames < 1:
		return fmt.Errorf("--frames %d: need at least 1", c.tg.Frames)
	case c.minFace < 1:
		return fmt.Errorf("--min-face %d: need at least 1", c.minFace)
	}
	return nil
}

// load returns the labelled descriptors, the pipeline they come from and
// a short description of where they came from.
func (c *calibrateFlags) load(ctx context.Context, f *faceFlags, args []string) (*eval.Dataset, string, string, error) {
	if c.descriptors != "" {
		r, _, err := openInputFile("--descriptors", c.descriptors)
		if err != nil {
			return nil, "", "", err
		}
		defer r.Close()
		ds, err := eval.DecodeIdols(r)
		if err != nil {
			return nil, "", "", fmt.Errorf("%s: %w", c.descriptors, err)
		}
		return ds, "", "descriptors " + filepath.Base(c.descriptors), nil
	}
	subjects, err := listCaptures(args[0])
	if err != nil {
		return nil, "", "", err
	}
	r, err := f.recognizer()
	if err != nil {
		return nil, "", "", err
	}
	defer r.Close()
	ds, err := describeCaptures(ctx, r, f.detector(), c.minFace, subjects)
	if err != nil {
		return nil, "", "", err
	}
	return ds, r.ModelID(), "captures " + filepath.Base(filepath.Clean(args[0])), nil
}

// subjectCaptures is one subject's capture files, in name order.
type subjectCaptures struct {
	subject string
	files   []string
}

// captureExts are the file types a capture may have.
var captureExts = []string{".jpg", ".jpeg", ".png"}

// listCaptures reads DIR: one subdirectory per subject, each holding at
// least one capture. Anything else is refused with the path, so a
// misplaced file is never silently left out of the measurement. Names
// starting with "." are skipped.
func listCaptures(dir string) ([]subjectCaptures, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []subjectCaptures
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			return nil, fmt.Errorf("%s: not a directory: captures go in one subdirectory per subject", p)
		}
		files, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		s := subjectCaptures{subject: e.Name()}
		for _, fe := range files {
			if strings.HasPrefix(fe.Name(), ".") {
				continue
			}
			fp := filepath.Join(p, fe.Name())
			if !fe.Type().IsRegular() && fe.Type()&os.ModeSymlink == 0 {
				return nil, fmt.Errorf("%s: not a capture file", fp)
			}
			if !slices.Contains(captureExts, strings.ToLower(filepath.Ext(fe.Name()))) {
				return nil, fmt.Errorf("%s: not a capture (want %s)", fp, strings.Join(captureExts, ", "))
			}
			s.files = append(s.files, fp)
		}
		if len(s.files) == 0 {
			return nil, fmt.Errorf("%s: no captures", p)
		}
		out = append(out, s)
	}
	switch len(out) {
	case 0:
		return nil, fmt.Errorf("%s: no subject directories", dir)
	case 1:
		return nil, fmt.Errorf("%s: only one subject (%s); calibration compares different people, so it needs captures of at least 2", dir, out[0].subject)
	}
	return out, nil
}

// describeCaptures runs every capture through the recognizer, as many at
// once as it has workers, and labels each descriptor with its subject.
// Every capture must pass the enrolment quality gate.
func describeCaptures(ctx context.Context, r *biometrics.Recognizer, det biometrics.Detector, minFace int, subjects []subjectCaptures) (*eval.Dataset, error) {
	type job struct {
		label, path string
		desc        biometrics.Descriptor
		err         error
	}
	var jobs []*job
	for _, s := range subjects {
		for _, p := range s.files {
			jobs = append(jobs, &job{label: s.subject, path: p})
		}
	}
	q := biometrics.Quality{MinFaceSize: minFace}
	sem := make(chan struct{}, r.Workers())
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			faces, err := r.RecognizeFileContext(ctx, j.path, det)
			if err != nil {
				j.err = err
				return
			}
			face, err := q.Single(faces)
			if err != nil {
				j.err = fmt.Errorf("%s: %w", j.path, err)
				return
			}
			j.desc = face.Descriptor
		}()
	}
	wg.Wait()
	ds := &eval.Dataset{}
	for _, j := range jobs {
		if j.err != nil {
			return nil, j.err
		}
		if len(ds.Labels) == 0 || ds.Labels[len(ds.Labels)-1] != j.label {
			ds.Labels = append(ds.Labels, j.label)
		}
		ds.Samples = append(ds.Samples, eval.Sample{Label: j.label, Descriptor: j.desc})
	}
	return ds, nil
}

// calibrate prints the DET tables and chooses and writes the policy.
func (c *calibrateFlags) calibrate(w io.Writer, ds *eval.Dataset, model string) error {
	op, err := eval.Report(w, ds, "Calibration on "+c.population, c.tg)
	if err != nil {
		return err
	}
	if !op.IdentifyMet {
		return fmt.Errorf("no 1:N point meets FPIR <= %g and MIR <= %g (95%% bounds) at %d subjects per search: use a smaller --gallery, more --frames or looser targets",
			c.tg.FPIR, c.tg.MIR, op.Identify.Gallery)
	}
	p := gallery.Policy{
		VerifyThreshold:   op.VerifyThreshold,
		IdentifyThreshold: op.Identify.Threshold,
		Margin:            op.Identify.Margin,
		MaxGallery:        op.Identify.Gallery,
		Frames:            op.Identify.Frames,
	}
	notes := &gallery.Calibration{
		Population: c.population, Model: model,
		Subjects: op.Subjects, Samples: op.Samples, Templates: c.tg.Enrol,
		TargetFMR: c.tg.VerifyFMR, TargetFPIR: c.tg.FPIR, TargetMIR: c.tg.MIR,
		VerifyFMR: op.VerifyFMR, VerifyFNMR: op.VerifyFNMR, Impostor: op.Impostor, Genuine: op.Genuine,
		IdentifyFPIR: op.Identify.FPIR, IdentifyMIR: op.Identify.MIR, IdentifyTPIR: op.Identify.TPIR,
		Passages: op.Identify.Passages, Strangers: op.Identify.Strangers, IdentifyFrames: op.Identify.Frames,
	}
	fmt.Fprintf(w, "Policy %s:\n\n```json\n", p.Version())
	if err := gallery.WritePolicy(w, p, notes); err != nil {
		return err
	}
	fmt.Fprintf(w, "```\n")
	if c.out == "" {
		return nil
	}
	if err := writeFileAtomic(c.out, 0o644, func(w io.Writer) error { return gallery.WritePolicy(w, p, notes) }); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	fmt.Fprintf(w, "\nWrote %s.\n", c.out)
	return nil
}

// writeFileAtomic writes a file with mode perm through a temporary file in
// the same directory and renames it into place, so a reader never sees
// half a policy.
func writeFileAtomic(path string, perm os.FileMode, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
