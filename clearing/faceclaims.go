package clearing

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/faregate/faregate/fare"
)

// A face tap charges the subject a gate says it identified. A gate can
// only have identified a subject clearing sent it for face-only travel
// before the tap: an accepted face tap naming a subject its terminal never
// received so (or none, with face enrolment off) is a terminal charging
// someone it cannot have seen, and
// is rejected for good like any event its registry entry refuses. A tap a
// gate took before an erasure reached it is still accepted: the subject's
// erasure record names the gates it was erased from, and a tap up to
// FaceTapGrace after the erasure is taken (a gate that cannot hear from
// clearing matches for at most its gallery's max age).

// ReasonFaceNotHeld: an accepted face tap names a subject clearing never
// sent to its terminal.
const ReasonFaceNotHeld = "face-not-held"

// DefaultFaceTapGrace is how long after an erasure (by the tap's device
// time: an outbox that reaches clearing late is judged by when the gate
// took the tap) a face tap of the erased subject is still taken from a
// gate that held it: the longest gallery max age a gate may set
// (galleryfeed.MaxMaxAge, 15 minutes) and 5 minutes for its clock.
const DefaultFaceTapGrace = 20 * time.Minute

// faceClaims records which terminals each enrolled subject was sent to,
// whether to their 1:N galleries (face-only travel) and since when,
// readable by the verifier without the faces lock (held across bucket
// I/O). Each value is immutable, replaced whole.
type faceClaims struct {
	sent sync.Map // subject -> *faceClaim
}

// faceClaim is what a subject's current enrolment lets a gate claim.
type faceClaim struct {
	terminals []string // sorted
	faceOnly  bool     // in the 1:N galleries (else 1:1, as a card's holder)
	since     time.Time
}

// faceClockSlack is how far before a subject's enrolment a gate's clock
// may date a face tap of it: the most a gate's clock is off clearing's
// and still followed (terminal: clockWarnAfter).
const faceClockSlack = 5 * time.Minute

// note records r's terminals (under the faces lock, after r.Sent changed).
func (fc *faceClaims) note(r *faceRecord) {
	fc.sent.Store(r.Subject, &faceClaim{terminals: slices.Sorted(slices.Values(r.Sent)), faceOnly: r.FaceOnly, since: r.claimSince()})
}

// forget drops an erased subject.
func (fc *faceClaims) forget(subject string) { fc.sent.Delete(subject) }

// held says whether terminal can have identified subject 1:N at the tap's
// time at: its current enrolment is for face-only travel, was sent to the
// terminal, and was made before then (within faceClockSlack). An outside
// test's rogue gate charged a subject enrolled only as a card's holder
// (1:1), and one dated before the subject was enrolled.
func (fc *faceClaims) held(subject, terminal string, at time.Time) bool {
	v, ok := fc.sent.Load(subject)
	if !ok {
		return false
	}
	cl := v.(*faceClaim)
	if !cl.faceOnly || !cl.since.IsZero() && at.Before(cl.since.Add(-faceClockSlack)) {
		return false
	}
	_, found := slices.BinarySearch(cl.terminals, terminal)
	return found
}

// checkFaceTap returns why an accepted face tap must be refused, or "".
func (c *Clearing) checkFaceTap(e *fare.Event) (reason, detail string) {
	if e.Media != fare.Face || e.Decision != fare.Accepted {
		return "", ""
	}
	if c.faces == nil {
		return ReasonFaceNotHeld, fmt.Sprintf("terminal %s took a face tap of %q, and clearing runs without face enrolment: no gate holds a face", e.Terminal, e.MediaToken)
	}
	if c.faceClaims.held(e.MediaToken, e.Terminal, e.DeviceTime) {
		return "", ""
	}
	erasures, err := c.FaceErasures(e.MediaToken)
	if err != nil {
		// The store cannot say: let the tap through rather than lose it;
		// the audit still has the event.
		c.log.Error("face tap: reading erasure records", "subject", e.MediaToken, "err", err)
		return "", ""
	}
	grace := c.cfg.FaceTapGrace
	if grace <= 0 {
		grace = DefaultFaceTapGrace
	}
	var erasedAt time.Time
	for _, er := range erasures {
		if !slices.Contains(er.Terminals, e.Terminal) {
			continue
		}
		// The erased enrolment must have let the gate identify the subject
		// then, as a current one must (held): an outside recheck saw an
		// erased card holder charged 1:N, and a tap dated before the
		// enrolment, once the subject was erased.
		if er.HolderOnly || !er.EnrolledSince.IsZero() && e.DeviceTime.Before(er.EnrolledSince.Add(-faceClockSlack)) {
			continue
		}
		if !e.DeviceTime.After(er.ErasedAt.Add(grace)) {
			return "", ""
		}
		erasedAt = er.ErasedAt
	}
	if !erasedAt.IsZero() {
		return ReasonFaceNotHeld, fmt.Sprintf("terminal %s took a face tap of subject %q dated %s, more than %s after the subject was erased (%s): the gate could not hold it by then",
			e.Terminal, e.MediaToken, e.DeviceTime.UTC().Format(time.RFC3339), grace, erasedAt.UTC().Format(time.RFC3339))
	}
	return ReasonFaceNotHeld, fmt.Sprintf("terminal %s took a face tap of subject %q dated %s, which clearing never sent it for face-only travel by then (not to this gate, only as a card's holder, or enrolled later)",
		e.Terminal, e.MediaToken, e.DeviceTime.UTC().Format(time.RFC3339))
}
