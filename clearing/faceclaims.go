package clearing

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/faregate/faregate/fare"
)

// A face tap charges the subject a gate says it identified. A gate can
// only have identified a subject clearing sent it: an accepted face tap
// naming a subject its terminal never received (or none, with face
// enrolment off) is a terminal charging someone it cannot have seen, and
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
// readable by the verifier without the faces lock (held across bucket
// I/O). Each value is an immutable sorted slice, replaced whole.
type faceClaims struct {
	sent sync.Map // subject -> []string
}

// note records r's terminals (under the faces lock, after r.Sent changed).
func (fc *faceClaims) note(r *faceRecord) {
	fc.sent.Store(r.Subject, slices.Sorted(slices.Values(r.Sent)))
}

// forget drops an erased subject.
func (fc *faceClaims) forget(subject string) { fc.sent.Delete(subject) }

func (fc *faceClaims) held(subject, terminal string) bool {
	v, ok := fc.sent.Load(subject)
	if !ok {
		return false
	}
	_, found := slices.BinarySearch(v.([]string), terminal)
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
	if c.faceClaims.held(e.MediaToken, e.Terminal) {
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
		if slices.Contains(er.Terminals, e.Terminal) {
			if !e.DeviceTime.After(er.ErasedAt.Add(grace)) {
				return "", ""
			}
			erasedAt = er.ErasedAt
		}
	}
	if !erasedAt.IsZero() {
		return ReasonFaceNotHeld, fmt.Sprintf("terminal %s took a face tap of subject %q dated %s, more than %s after the subject was erased (%s): the gate could not hold it by then",
			e.Terminal, e.MediaToken, e.DeviceTime.UTC().Format(time.RFC3339), grace, erasedAt.UTC().Format(time.RFC3339))
	}
	return ReasonFaceNotHeld, fmt.Sprintf("terminal %s took a face tap of subject %q, which clearing never sent it", e.Terminal, e.MediaToken)
}
