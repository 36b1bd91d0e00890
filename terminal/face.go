package terminal

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/faregate/faregate/fare"
)

// FaceMatcher decides who a gate camera's frames show. The terminal does
// not know how: cmd wires it to biometrics (detection, landmarks,
// descriptor, the gallery clearing distributes to this gate and the
// deployment's operating point). It never sees an image leave the gate: the
// event carries only the evidence.
type FaceMatcher interface {
	// MatchFace decides from consecutive frames of one presentation: 1:N
	// within the gate's gallery when holder is empty, else 1:1 against
	// that subject. Refused, reason says why (fare.FaceNoFace,
	// fare.FaceNoMatch, ...), and ev holds what was measured.
	MatchFace(ctx context.Context, frames [][]byte, holder string) (ev fare.FaceEvidence, accepted bool, reason string)
	// Holder returns the subject enrolled as the holder of a card (by its
	// deny-list hash) when this gate holds their templates.
	Holder(card fare.DenyHash) (subject string, ok bool)
	// Versions are the descriptor model's and the operating point's.
	Versions() (model, policy string)
}

var inf32 = float32(math.Inf(1))

// ErrNoCamera is returned by TapFace at a gate without a face matcher.
var ErrNoCamera = errors.New("terminal has no face matcher (camera)")

// ErrFaceWithoutCamera is returned by Tap for a face tap: a face is only
// what the gate's camera and matcher make of it (TapFace), never a subject
// id a reader claims.
var ErrFaceWithoutCamera = errors.New("a face tap comes from the gate's camera (TapFace), not from a subject id")

// FaceTap is one presentation at a camera gate: consecutive frames of
// whoever stands there.
type FaceTap struct {
	Gate      string
	Direction fare.Direction
	Frames    [][]byte
	Time      time.Time // zero: the terminal's clock
}

// TapFace identifies the rider in tap's frames (1:N within the gallery this
// gate holds) and takes the tap like any other: an accepted face travels as
// its subject (and is refused if the subject is on the deny list); a
// refused one is recorded as a denied tap of fare.UnmatchedFace with the
// reason, so the gate shows "tap a card". Either way the signed event
// carries the evidence (mode, subject, distance, margin, frames, model and
// policy versions), never an image or a descriptor.
func (t *Terminal) TapFace(ctx context.Context, tap FaceTap) (fare.Event, error) {
	if t.cfg.Faces == nil {
		return fare.Event{}, ErrNoCamera
	}
	if len(tap.Frames) == 0 {
		return fare.Event{}, fmt.Errorf("face tap at gate %q: no frames", tap.Gate)
	}
	ev, ok, why := t.cfg.Faces.MatchFace(ctx, tap.Frames, "")
	if ctx.Err() != nil {
		return fare.Event{}, ctx.Err()
	}
	ev.Mode = fare.FaceIdentify
	token := ev.Subject
	if !ok {
		ev.Subject, token = "", fare.UnmatchedFace
		if why == "" {
			why = fare.FaceNoMatch
		}
	}
	return t.Tap(ctx, Tap{Gate: tap.Gate, Direction: tap.Direction, Media: fare.Face, Token: token, Time: tap.Time,
		face: &faceOutcome{evidence: ev, accepted: ok, reason: why}})
}

// faceOutcome is what the matcher said, taken into the gate's decision.
type faceOutcome struct {
	evidence fare.FaceEvidence
	accepted bool
	reason   string
}

// verifyHolder runs 1:1 for a card tap at a camera gate: a concession card
// (its enrolment gives a rider category) whose holder's face this gate
// holds must be shown by that holder. The policy for a lent card is to
// refuse it (fare.FaceMismatch): the rider may travel on another card at the
// full fare. Clearing prices a rider day by its enrolled category, so
// charging one tap of the day at another category is not offered.
//
// An exit is not checked: the journey began on this card, and refusing
// the exit (a stale gallery, a camera that missed the face) would keep the
// rider inside and leave the journey at its maximum fare, as an exit is
// never refused for the deny list either (an outside review found
// concession holders unable to leave an exit gate offline for minutes).
func (t *Terminal) verifyHolder(ctx context.Context, tap *Tap) error {
	if t.cfg.Faces == nil || tap.Media != fare.Card || tap.face != nil || tap.Direction == fare.Exit {
		return nil
	}
	if tap.Time.IsZero() {
		// The time the category is judged at is the time the event is
		// signed at: read again after the match, a card whose enrolment
		// began meanwhile was signed a concession unchecked (an outside
		// review).
		tap.Time = t.tapClock()
	}
	at := tap.Time
	key := fare.HashDeny(tap.Media, tap.Token)
	if t.deny.categoryAt(key, at) == "" {
		return nil // not a concession card: nothing to verify
	}
	holder, ok := t.cfg.Faces.Holder(key)
	if !ok {
		return nil // no face enrolled for the card at this gate
	}
	if len(tap.Frames) == 0 {
		model, policy := t.cfg.Faces.Versions()
		tap.face = &faceOutcome{evidence: fare.FaceEvidence{Mode: fare.FaceVerify, Subject: holder, Distance: inf32,
			Model: model, Policy: policy}, reason: fare.FaceRequired}
		return nil
	}
	ev, accepted, why := t.cfg.Faces.MatchFace(ctx, tap.Frames, holder)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	ev.Mode, ev.Subject, ev.Margin = fare.FaceVerify, holder, 0
	if !accepted && why == "" {
		why = fare.FaceMismatch
	}
	tap.face = &faceOutcome{evidence: ev, accepted: accepted, reason: why}
	return nil
}
