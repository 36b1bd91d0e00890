package biometrics

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/fare"
)

// The face decision at a gate: camera frames in, evidence and a decision
// out. A Gate is what cmd hands the terminal as its face matcher
// (terminal.FaceMatcher): the terminal never imports this package.

// DefaultGateMinFace is the smallest face side, in pixels, a gate frame
// may show. The descriptor network sees a 150-pixel chip; much smaller
// faces are upsampled into noise.
const DefaultGateMinFace = 60

// GateGallery is the gallery a gate matches against: a terminal's share
// of clearing's templates (galleryfeed.Feed), or a fixed one.
type GateGallery interface {
	// Galleries returns the face-only subjects (1:N) and the card
	// holders (1:1), or an error when they may not be used now (stale).
	Galleries() (identify, holders *gallery.Gallery, err error)
	// CardHolder is the subject enrolled as the holder of a card.
	CardHolder(card fare.DenyHash) (string, bool)
}

// PresentationCheck is where a presentation-attack detector (liveness)
// plugs in. No such model is available here (see README.md): the check a
// Gate always runs is MultiFrame, which refuses a presentation of fewer
// distinct frames than asked. That stops a single replayed still, not a
// photograph held to the camera.
type PresentationCheck interface {
	// CheckPresentation returns an error saying why the frames do not
	// look like a live person. faces[i] is frame i's only face.
	CheckPresentation(frames [][]byte, faces []Face) error
}

// MultiFrame is the minimum presentation check: at least Frames frames,
// no two of them the same bytes or the same descriptor (a replayed still).
type MultiFrame struct{ Frames int }

// ErrSamePicture is MultiFrame's refusal of a frame shown twice.
var ErrSamePicture = errors.New("the same picture twice")

// CheckPresentation implements PresentationCheck.
func (m MultiFrame) CheckPresentation(frames [][]byte, faces []Face) error {
	if len(frames) < m.Frames {
		return fmt.Errorf("%d frame(s), the check asks for %d", len(frames), m.Frames)
	}
	for i := range frames {
		for j := range i {
			if bytes.Equal(frames[i], frames[j]) || faces[i].Descriptor == faces[j].Descriptor {
				return fmt.Errorf("frames %d and %d: %w", j, i, ErrSamePicture)
			}
		}
	}
	return nil
}

// GateConfig configures a Gate.
type GateConfig struct {
	// Recognizer turns image frames into faces; nil accepts only
	// descriptor frames (DescriptorFrame), from a camera that computes
	// descriptors itself.
	Recognizer *Recognizer
	// DescriptorFrames takes descriptor frames beside images at a gate
	// with a Recognizer. Off, such a frame is refused (face-bad-frame):
	// whoever can write a camera's frames could otherwise present an
	// enrolled rider's template without a face in front of the camera.
	DescriptorFrames bool
	// Model is the descriptor model id the gallery's templates and any
	// descriptor frames were made with; default Recognizer.ModelID().
	Model string
	// Gallery is what the gate matches against.
	Gallery GateGallery
	// Policy is the operating point (gallery.DefaultPolicy or a calibrated
	// policy file); its Version goes into every event.
	Policy gallery.Policy
	// PAD, if set, runs after MultiFrame{Policy.Frames}.
	PAD PresentationCheck
	// Detector finds the faces (HOG by default: about 30 ms a frame).
	Detector Detector
	// MinFace is the smallest face side in pixels (default DefaultGateMinFace).
	MinFace int
	Logger  *slog.Logger
}

// Gate decides faces at a gate. It is safe for concurrent use.
type Gate struct {
	cfg    GateConfig
	log    *slog.Logger
	policy string
}

// NewGate checks cfg and returns a Gate.
func NewGate(cfg GateConfig) (*Gate, error) {
	if cfg.Gallery == nil {
		return nil, errors.New("biometrics: gate without a gallery")
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("biometrics: gate policy: %w", err)
	}
	if cfg.Model == "" {
		if cfg.Recognizer == nil {
			return nil, errors.New("biometrics: gate without a recognizer must name the descriptor model")
		}
		cfg.Model = cfg.Recognizer.ModelID()
	}
	if cfg.MinFace <= 0 {
		cfg.MinFace = DefaultGateMinFace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Gate{cfg: cfg, log: cfg.Logger, policy: cfg.Policy.Version()}, nil
}

// Versions returns the descriptor model's and the policy's versions.
func (g *Gate) Versions() (model, policy string) { return g.cfg.Model, g.policy }

// Holder returns the subject enrolled as the holder of a card here.
func (g *Gate) Holder(card fare.DenyHash) (string, bool) { return g.cfg.Gallery.CardHolder(card) }

// descriptorMagic starts a descriptor frame.
var descriptorMagic = []byte("FGD1")

// DescriptorFrameSize is the size of a descriptor frame.
const DescriptorFrameSize = 4 + 4*128

// DescriptorFrame encodes a descriptor as a frame: what a camera that
// computes descriptors on board sends instead of a picture ("FGD1" and 128
// little-endian float32). The simulator's gates send these.
func DescriptorFrame(d Descriptor) []byte {
	b := make([]byte, 0, DescriptorFrameSize)
	b = append(b, descriptorMagic...)
	for _, x := range d {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// ParseDescriptorFrame decodes a descriptor frame; ok is false for any
// other frame (an image). A frame with the magic but a bad length or
// values outside a descriptor's range is an error.
func ParseDescriptorFrame(b []byte) (d Descriptor, ok bool, err error) {
	if !bytes.HasPrefix(b, descriptorMagic) {
		return d, false, nil
	}
	if len(b) != DescriptorFrameSize {
		return d, true, fmt.Errorf("descriptor frame of %d bytes, want %d", len(b), DescriptorFrameSize)
	}
	for i := range d {
		x := math.Float32frombits(binary.LittleEndian.Uint32(b[4+4*i:]))
		if x != x || x < -1 || x > 1 {
			return d, true, fmt.Errorf("descriptor frame value %d is %v, want within [-1, 1]", i, x)
		}
		d[i] = x
	}
	return d, true, nil
}

// frameFace returns the only usable face of a frame, or the refusal
// reason and why.
func (g *Gate) frameFace(ctx context.Context, frame []byte) (Face, string, error) {
	if d, ok, err := ParseDescriptorFrame(frame); ok {
		if err != nil {
			return Face{}, fare.FaceBadFrame, err
		}
		if g.cfg.Recognizer != nil && !g.cfg.DescriptorFrames {
			return Face{}, fare.FaceBadFrame, errors.New("a descriptor frame at a gate that takes images only (a camera that computes descriptors on board needs --camera-descriptors)")
		}
		return Face{Descriptor: d}, "", nil
	}
	if g.cfg.Recognizer == nil {
		return Face{}, fare.FaceBadFrame, errors.New("an image frame at a gate that takes only descriptor frames")
	}
	// Several faces are refused before any is recognised.
	f, err := g.cfg.Recognizer.RecognizeOneContext(ctx, frame, g.cfg.Detector)
	if err == nil {
		f, err = Quality{MinFaceSize: g.cfg.MinFace}.Single([]Face{f})
	}
	var ie *ImageLoadError
	switch {
	case err == nil:
	case errors.Is(err, ErrNoFace):
		return Face{}, fare.FaceNoFace, err
	case errors.Is(err, ErrMultipleFaces):
		return Face{}, fare.FaceSeveral, err
	case errors.Is(err, ErrFaceTooSmall):
		return Face{}, fare.FacePoorQuality, err
	case ctx.Err() != nil:
		return Face{}, fare.FaceMatcherFailed, ctx.Err()
	case errors.As(err, &ie), errors.Is(err, ErrUnsupportedFormat), errors.Is(err, ErrEmptyImage), errors.Is(err, ErrImageTooLarge), errors.Is(err, ErrImageTooSmall):
		return Face{}, fare.FaceBadFrame, err
	default:
		return Face{}, fare.FaceMatcherFailed, err
	}
	return f, "", nil
}

// MatchFace decides from consecutive frames of one presentation: 1:N
// within the gate's face-only gallery when holder is empty, else 1:1
// against holder. Refused, reason says why (fare.FaceNoFace ...).
// It implements terminal.FaceMatcher.
//
// Every frame must show exactly one usable face: a frame with none, or
// several (whose face would it be?), refuses the presentation. Then the
// presentation check, then the policy: 1:N accepts a subject only when
// Policy.Frames consecutive frames agree on it, each within the threshold
// and the margin; 1:1 when as many frames are within the threshold of the
// holder's templates.
func (g *Gate) MatchFace(ctx context.Context, frames [][]byte, holder string) (ev fare.FaceEvidence, accepted bool, reason string) {
	start := time.Now()
	ev = fare.FaceEvidence{Mode: fare.FaceIdentify, Subject: holder, Distance: inf32(), Margin: inf32(),
		Frames: uint8(min(len(frames), math.MaxUint8)), Model: g.cfg.Model, Policy: g.policy}
	if holder != "" {
		ev.Mode, ev.Margin = fare.FaceVerify, 0
	}
	refuse := func(reason string, err error) (fare.FaceEvidence, bool, string) {
		g.log.Debug("face refused", "reason", reason, "err", err, "frames", len(frames), "took", time.Since(start))
		return ev, false, reason
	}
	if len(frames) == 0 {
		return refuse(fare.FaceNoFace, errors.New("no frames"))
	}
	faces := make([]Face, len(frames))
	for i, fr := range frames {
		f, why, err := g.frameFace(ctx, fr)
		if err != nil {
			if why == fare.FaceMatcherFailed {
				g.log.Warn("face matcher failed", "frame", i, "err", err)
			}
			return refuse(why, fmt.Errorf("frame %d: %w", i, err))
		}
		faces[i] = f
	}
	if err := (MultiFrame{Frames: g.cfg.Policy.Frames}).CheckPresentation(frames, faces); err != nil {
		if errors.Is(err, ErrSamePicture) {
			return refuse(fare.FacePresentation, err)
		}
		return refuse(fare.FaceTooFewFrames, err)
	}
	if g.cfg.PAD != nil {
		if err := g.cfg.PAD.CheckPresentation(frames, faces); err != nil {
			return refuse(fare.FacePresentation, err)
		}
	}
	identify, holders, err := g.cfg.Gallery.Galleries()
	if err != nil {
		return refuse(fare.FaceGalleryStale, err)
	}
	probes := make([]gallery.Vector, len(faces))
	for i := range faces {
		probes[i] = gallery.Vector(faces[i].Descriptor)
	}
	if holder != "" {
		return g.verify(holders, holder, probes, ev, refuse)
	}
	if identify == nil || identify.Subjects() == 0 {
		return refuse(fare.FaceNoGallery, errors.New("no face-only subject enrolled at this gate"))
	}
	d, err := identify.IdentifyFrames(probes, g.cfg.Policy)
	switch {
	case errors.Is(err, gallery.ErrGalleryTooLarge):
		return refuse(fare.FaceGalleryLarge, err)
	case errors.Is(err, gallery.ErrEmpty):
		return refuse(fare.FaceNoGallery, err)
	case err != nil:
		return refuse(fare.FaceMatcherFailed, err)
	}
	ev.Distance, ev.Margin = d.Distance, d.SecondDistance-d.Distance
	if math.IsInf(float64(d.SecondDistance), 1) {
		ev.Margin = inf32()
	}
	if !d.Accepted {
		switch {
		case d.Distance > g.cfg.Policy.IdentifyThreshold:
			return refuse(fare.FaceNoMatch, errors.New(d.Reason))
		case d.SecondDistance-d.Distance < g.cfg.Policy.Margin:
			return refuse(fare.FaceAmbiguous, errors.New(d.Reason))
		default:
			return refuse(fare.FaceTooFewFrames, errors.New(d.Reason))
		}
	}
	ev.Subject, ev.Frames = d.Subject, uint8(max(g.cfg.Policy.Frames, 1))
	g.log.Debug("face accepted", "mode", ev.Mode, "distance", ev.Distance, "margin", ev.Margin, "took", time.Since(start))
	return ev, true, ""
}

func (g *Gate) verify(holders *gallery.Gallery, holder string, probes []gallery.Vector, ev fare.FaceEvidence,
	refuse func(string, error) (fare.FaceEvidence, bool, string)) (fare.FaceEvidence, bool, string) {
	if holders == nil {
		return refuse(fare.FaceNoGallery, errors.New("no card holder enrolled at this gate"))
	}
	need := max(g.cfg.Policy.Frames, 1)
	run, worst, best := 0, float32(0), inf32()
	for _, pr := range probes {
		d, err := holders.Verify(holder, pr, g.cfg.Policy)
		if errors.Is(err, gallery.ErrUnknownSubject) {
			return refuse(fare.FaceNoGallery, err)
		}
		if err != nil {
			return refuse(fare.FaceMatcherFailed, err)
		}
		best = min(best, d.Distance)
		if !d.Accepted {
			run, worst = 0, 0
			continue
		}
		run++
		worst = max(worst, d.Distance)
		if run >= need {
			ev.Distance, ev.Frames = worst, uint8(need)
			return ev, true, ""
		}
	}
	// The refusal carries the closest frame's distance: refuse returns
	// MatchFace's evidence, not this copy (an outside test saw every 1:1
	// refusal signed with no distance, a near miss and a lent card alike).
	_, _, why := refuse(fare.FaceMismatch, fmt.Errorf("%d of %d consecutive frames within %.3f of the card holder", run, need, g.cfg.Policy.VerifyThreshold))
	ev.Distance = best
	return ev, false, why
}

func inf32() float32 { return float32(math.Inf(1)) }
