package clearing_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
)

// TestEraseWithEndedContext: an erasure whose request ended before
// clearing got to it (the desk's client gave up waiting while clearing
// held the galleries' lock) still erases everything once its record is
// committed: the answer says done, the bucket is erased, and the same face
// enrols at once under another subject (before, the templates and consent
// stayed in the template store until the next start, and that enrolment
// was refused as the erased subject's face: an outside review).
func TestEraseWithEndedContext(t *testing.T) {
	fc := startFaceCity(t)
	descs := newFace(777).templates(3)
	req := faceRequest("bob", descs)
	req.FaceOnly, req.Stops = true, []string{"stop-t1"}
	if _, err := fc.cl.EnrolFace(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	e, err := fc.cl.EraseFace(ended, "bob", "desk-1", "consent withdrawn")
	if err != nil || !e.BucketErased {
		t.Fatalf("erasure with an ended request: %+v, %v; want done, bucket erased", e, err)
	}
	again := faceRequest("carol", descs)
	again.FaceOnly, again.Stops = true, []string{"stop-t1"}
	if _, err := fc.cl.EnrolFace(context.Background(), again); err != nil {
		t.Fatalf("the erased face enrolled as carol: %v (bob's templates still held)", err)
	}
}

// TestFaceRetryAfterRenumbering: a keyed enrolment retried after clearing
// renumbered the subject (a terminal of its line left the registry's legs
// and came back across restarts) is answered as the enrolment it made,
// not refused as erased since (an outside review got a 409 for an
// enrolled subject).
func TestFaceRetryAfterRenumbering(t *testing.T) {
	_, reg, _, withLeg, cfg := busLineFaceCity(t)
	cl := startClearing(t, cfg)
	req := faceRequest("bob", newFace(601).templates(3))
	req.FaceOnly, req.Lines = true, []string{"bus-L1"}
	req.IdempotencyKey = "desk-key-1"
	made, err := cl.EnrolFace(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, legs := range [][]clearing.TerminalLeg{{{Terminal: "t4", Route: "bus-L1"}}, withLeg} {
		cl.stop(t)
		reg.Legs = legs
		cl = startClearing(t, cfg)
	}
	defer func() { cl.stop(t) }()
	var now clearing.FaceSubject
	waitFor(t, "bob renumbered", 10*time.Second, func() bool {
		now, err = cl.FaceSubject(context.Background(), "bob")
		return err == nil && now.Version > made.Version
	})
	again, err := cl.EnrolFace(context.Background(), req)
	if err != nil || !again.Replayed || again.Version != now.Version {
		t.Fatalf("the keyed retry after renumbering (%d to %d): %+v, %v; want the enrolment, replayed", made.Version, now.Version, again, err)
	}
	// Erased, the key's enrolment is gone: a retry is refused.
	if _, err := cl.EraseFace(context.Background(), "bob", "desk-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.EnrolFace(context.Background(), req); !errors.Is(err, clearing.ErrFaceKeyUsed) {
		t.Fatalf("the keyed retry after an erasure: %v, want ErrFaceKeyUsed", err)
	}
}

// TestErasureRetryWhileTemplatesHeld: an erasure whose templates the
// template store has not forgotten yet is answered as unfinished, to its
// retries too (a retry was answered as done: an outside re-check), until
// the retry loop has forgotten them.
func TestErasureRetryWhileTemplatesHeld(t *testing.T) {
	fc := startFaceCity(t)
	req := faceRequest("bob", newFace(779).templates(3))
	req.FaceOnly, req.Stops = true, []string{"stop-t1"}
	if _, err := fc.cl.EnrolFace(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.cl.EraseFaceOnce(context.Background(), "bob", "desk-1", "", "key-1"); err != nil {
		t.Fatal(err)
	}
	fc.cl.MarkUnforgotten("bob")
	for _, key := range []string{"", "key-1"} {
		if e, err := fc.cl.EraseFaceOnce(context.Background(), "bob", "desk-1", "", key); err == nil || !e.AlreadyErased || !strings.Contains(err.Error(), "has not forgotten its templates yet") {
			t.Fatalf("a retry (key %q) while the templates are held: %+v, %v; want the erasure said unfinished", key, e, err)
		}
	}
	waitFor(t, "the templates forgotten on a retry", 10*time.Second, func() bool {
		e, err := fc.cl.EraseFace(context.Background(), "bob", "desk-1", "")
		return err == nil && e.AlreadyErased
	})
	// The key with another reason is another request, not a repeat (an
	// outside review had it replayed as one).
	if e, err := fc.cl.EraseFaceOnce(context.Background(), "bob", "desk-1", "a court order", "key-1"); !errors.Is(err, clearing.ErrIdempotencyConflict) || !strings.Contains(err.Error(), `"consent withdrawn", not "a court order"`) {
		t.Fatalf("the key with another reason: %+v, %v; want ErrIdempotencyConflict naming both reasons", e, err)
	}
	// A new key on a subject erased before answers that erasure; its own
	// repeat is a repeat, whatever reason the erasure had (a recheck's
	// desk retrying such a request was refused, its key bound to the
	// first request's reason).
	for i, reason := range []string{"a court order", "a court order"} {
		if e, err := fc.cl.EraseFaceOnce(context.Background(), "bob", "desk-1", reason, "key-2"); err != nil || !e.AlreadyErased {
			t.Fatalf("key-2, request %d: %+v, %v; want the erasure done before", i+1, e, err)
		}
	}
	if _, err := fc.cl.EraseFaceOnce(context.Background(), "bob", "desk-1", "", "key-2"); !errors.Is(err, clearing.ErrIdempotencyConflict) || !strings.Contains(err.Error(), `"a court order", not "consent withdrawn"`) {
		t.Fatalf("key-2 with another reason: %v; want ErrIdempotencyConflict naming key-2's", err)
	}
}
