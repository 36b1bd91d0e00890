package gallery

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// PolicyFormat names the policy file format; ReadPolicy refuses others.
const PolicyFormat = "faregate-face-policy/1"

// maxPolicyBytes bounds what ReadPolicy reads: a policy is a few hundred
// bytes.
const maxPolicyBytes = 64 << 10

// ErrBadPolicy reports a policy that is malformed or out of range. Use
// errors.Is.
var ErrBadPolicy = errors.New("gallery: bad policy")

// Validate reports the first value outside its range: thresholds in
// (0, 2) (descriptors are about unit length, so no distance reaches 2),
// margin in [0, 2), frames and max gallery at least 1.
func (p Policy) Validate() error {
	inOpen := func(name string, v float32) error {
		if !(v > 0 && v < 2) { // also refuses NaN
			return fmt.Errorf("%w: %s %v not in (0, 2)", ErrBadPolicy, name, v)
		}
		return nil
	}
	if err := inOpen("verify_threshold", p.VerifyThreshold); err != nil {
		return err
	}
	if err := inOpen("identify_threshold", p.IdentifyThreshold); err != nil {
		return err
	}
	if !(p.Margin >= 0 && p.Margin < 2) {
		return fmt.Errorf("%w: margin %v not in [0, 2)", ErrBadPolicy, p.Margin)
	}
	if p.MaxGallery < 1 {
		return fmt.Errorf("%w: max_gallery %d; need at least 1", ErrBadPolicy, p.MaxGallery)
	}
	if p.Frames < 1 {
		return fmt.Errorf("%w: frames %d; need at least 1", ErrBadPolicy, p.Frames)
	}
	return nil
}

// Version identifies the policy's values: "fp1-" and the first 12 hex
// digits of the SHA-256 of their canonical text. Equal values give equal
// versions on every machine, and any change to a value changes it, so a
// gate can write it into each signed event next to the model id, and an
// auditor can tell which operating point decided. Calibration notes do
// not enter it: they describe a policy, they do not change decisions.
func (p Policy) Version() string {
	f := func(v float32) string { return strconv.FormatFloat(float64(v), 'g', -1, 32) }
	canon := "verify_threshold=" + f(p.VerifyThreshold) +
		" identify_threshold=" + f(p.IdentifyThreshold) +
		" margin=" + f(p.Margin) +
		" max_gallery=" + strconv.Itoa(p.MaxGallery) +
		" frames=" + strconv.Itoa(p.Frames)
	sum := sha256.Sum256([]byte(canon))
	return "fp1-" + hex.EncodeToString(sum[:6])
}

// Calibration records where a policy's values came from. It is
// informational: nothing in it changes a decision.
type Calibration struct {
	// Population describes the labelled data, e.g. "station 12 enrolment
	// captures, 2026-11".
	Population string `json:"population"`
	// Model is the pipeline the descriptors came from
	// (Recognizer.ModelID); the thresholds are only valid for it.
	Model     string `json:"model,omitempty"`
	Subjects  int    `json:"subjects"`
	Samples   int    `json:"samples"`
	Templates int    `json:"templates"` // per subject
	// Targets asked for (95% upper bounds).
	TargetFMR  float64 `json:"target_fmr"`
	TargetFPIR float64 `json:"target_fpir"`
	TargetMIR  float64 `json:"target_mir"`
	// Measured at the chosen points.
	VerifyFMR      float64 `json:"verify_fmr"`
	VerifyFNMR     float64 `json:"verify_fnmr"`
	Impostor       int     `json:"impostor_comparisons"`
	Genuine        int     `json:"genuine_comparisons"`
	IdentifyFPIR   float64 `json:"identify_fpir"`
	IdentifyMIR    float64 `json:"identify_mir"`
	IdentifyTPIR   float64 `json:"identify_tpir"`
	Passages       int     `json:"passages"`
	Strangers      int     `json:"stranger_passages"`
	IdentifyFrames int     `json:"identify_frames"`
}

// policyJSON is the file format. Pointers tell a missing field from a
// zero one.
type policyJSON struct {
	Format            string       `json:"format"`
	Version           string       `json:"version,omitempty"`
	VerifyThreshold   *float32     `json:"verify_threshold"`
	IdentifyThreshold *float32     `json:"identify_threshold"`
	Margin            *float32     `json:"margin"`
	MaxGallery        *int         `json:"max_gallery"`
	Frames            *int         `json:"frames"`
	Calibration       *Calibration `json:"calibration,omitempty"`
}

// WritePolicy writes p as an indented JSON policy file with its version
// and, when c is not nil, how it was calibrated:
//
//	{
//	  "format": "faregate-face-policy/1",
//	  "version": "fp1-…",
//	  "verify_threshold": 0.33,
//	  "identify_threshold": 0.29,
//	  "margin": 0.06,
//	  "max_gallery": 10,
//	  "frames": 1,
//	  "calibration": {…}
//	}
func WritePolicy(w io.Writer, p Policy, c *Calibration) error {
	if err := p.Validate(); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(policyJSON{
		Format: PolicyFormat, Version: p.Version(),
		VerifyThreshold: &p.VerifyThreshold, IdentifyThreshold: &p.IdentifyThreshold,
		Margin: &p.Margin, MaxGallery: &p.MaxGallery, Frames: &p.Frames,
		Calibration: c,
	})
}

// ReadPolicy reads a policy file written by WritePolicy (or by hand). It
// refuses unknown fields, missing values, values out of range (Validate),
// trailing data and another format. A "version" is optional; when present
// it must match the values, so a hand-edited file whose version was not
// removed is refused rather than signed with the wrong version. The
// calibration notes, if any, are returned too (nil when absent).
func ReadPolicy(r io.Reader) (Policy, *Calibration, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPolicyBytes+1))
	if err != nil {
		return Policy{}, nil, fmt.Errorf("gallery: read policy: %w", err)
	}
	if len(data) > maxPolicyBytes {
		return Policy{}, nil, fmt.Errorf("%w: larger than %d bytes", ErrBadPolicy, maxPolicyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f policyJSON
	if err := dec.Decode(&f); err != nil {
		return Policy{}, nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Policy{}, nil, fmt.Errorf("%w: data after the policy object", ErrBadPolicy)
	}
	if f.Format != PolicyFormat {
		return Policy{}, nil, fmt.Errorf("%w: format %q, want %q", ErrBadPolicy, f.Format, PolicyFormat)
	}
	var missing []string
	if f.VerifyThreshold == nil {
		missing = append(missing, "verify_threshold")
	}
	if f.IdentifyThreshold == nil {
		missing = append(missing, "identify_threshold")
	}
	if f.Margin == nil {
		missing = append(missing, "margin")
	}
	if f.MaxGallery == nil {
		missing = append(missing, "max_gallery")
	}
	if f.Frames == nil {
		missing = append(missing, "frames")
	}
	if len(missing) > 0 {
		return Policy{}, nil, fmt.Errorf("%w: missing %v", ErrBadPolicy, missing)
	}
	p := Policy{
		VerifyThreshold: *f.VerifyThreshold, IdentifyThreshold: *f.IdentifyThreshold,
		Margin: *f.Margin, MaxGallery: *f.MaxGallery, Frames: *f.Frames,
	}
	if err := p.Validate(); err != nil {
		return Policy{}, nil, err
	}
	if f.Version != "" && f.Version != p.Version() {
		return Policy{}, nil, fmt.Errorf("%w: version %q does not match the values (their version is %q); remove the version line after editing a value",
			ErrBadPolicy, f.Version, p.Version())
	}
	if c := f.Calibration; c != nil {
		for _, v := range []float64{c.TargetFMR, c.TargetFPIR, c.TargetMIR, c.VerifyFMR, c.VerifyFNMR, c.IdentifyFPIR, c.IdentifyMIR, c.IdentifyTPIR} {
			if !(v >= 0 && v <= 1) || math.IsNaN(v) {
				return Policy{}, nil, fmt.Errorf("%w: calibration rate %v not in [0, 1]", ErrBadPolicy, v)
			}
		}
		for _, n := range []int{c.Subjects, c.Samples, c.Templates, c.Impostor, c.Genuine, c.Passages, c.Strangers, c.IdentifyFrames} {
			if n < 0 {
				return Policy{}, nil, fmt.Errorf("%w: calibration count %d is negative", ErrBadPolicy, n)
			}
		}
	}
	return p, f.Calibration, nil
}
