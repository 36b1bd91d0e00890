package clearing_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestFaceTapsOnlyOfHeldSubjects, from a compromised terminal's side: a
// terminal signs accepted face taps itself and publishes them on its own
// subject. Clearing takes a face tap only of a subject it sent that
// terminal for face-only travel before the tap: one of a subject enrolled
// at another stop, or never enrolled, or enrolled as a card's holder only
// (1:1), or dated before the subject was enrolled, is rejected for good
// (charged to nobody); a refused face tap (no
// subject) is applied; after an erasure a tap the gate took before it
// still counts, one dated later does not.
func TestFaceTapsOnlyOfHeldSubjects(t *testing.T) {
	fc := startFaceCity(t)
	ctx := context.Background()
	alice := newFace(1)
	req := faceRequest("alice", alice.templates(3))
	req.Stops, req.FaceOnly = []string{"stop-t1"}, true
	if _, err := fc.cl.EnrolFace(ctx, req); err != nil {
		t.Fatal(err)
	}
	// Bob is enrolled at the same gate as the holder of a card only (1:1):
	// no honest gate's 1:N gallery holds him.
	bobReq := faceRequest("bob", newFace(2).templates(3))
	bobReq.Stops, bobReq.CardKey = []string{"stop-t1"}, fare.DenyKey(fare.Card, "card-bob")
	if _, err := fc.cl.EnrolFace(ctx, bobReq); err != nil {
		t.Fatal(err)
	}
	seq := map[string]uint64{}
	publish := func(term, op, subject string, decision fare.Decision, at time.Time) fare.EventID {
		t.Helper()
		seq[term]++
		ev := fare.Event{ID: fare.NewEventID(at), Terminal: term, Operator: op, Stop: "stop-" + term, Gate: "cam1", Direction: fare.Validate,
			Media: fare.Face, MediaToken: subject, DeviceTime: at, Decision: decision, Sequence: seq[term],
			Face: &fare.FaceEvidence{Mode: fare.FaceIdentify, Subject: subject, Distance: 0.2, Margin: 0.3, Frames: 1, Model: testModel, Policy: "fp1-test"}}
		if decision == fare.Denied {
			ev.Reason, ev.MediaToken, ev.Face.Subject, ev.Face.Distance = fare.FaceNoMatch, fare.UnmatchedFace, "", 0.7
		}
		raw, err := fare.Sign(&ev, fc.keys[term])
		if err != nil {
			t.Fatal(err)
		}
		nc := terminalConn(t, fc.url, fc.keys[term], term)
		defer nc.Close()
		publishEvent(t, nc, fare.EventSubject(op, term), raw)
		return ev.ID
	}
	settled := func(term string, want uint64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if w, _ := fc.cl.Store().Watermark(term); w >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not confirmed to %d: %+v", term, want, fc.cl.Stats())
			}
		}
	}
	applied := func(id fare.EventID) bool {
		_, err := fc.cl.Store().Event(id)
		if err != nil && !errors.Is(err, clearing.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	now := time.Now()
	held := publish("t1", "metro", "alice", fare.Accepted, now)
	elsewhere := publish("t2", "bus", "alice", fare.Accepted, now)
	invented := publish("t1", "metro", "mallory", fare.Accepted, now)
	refused := publish("t2", "bus", "", fare.Denied, now)
	holderOnly := publish("t1", "metro", "bob", fare.Accepted, now)
	beforeEnrolled := publish("t1", "metro", "alice", fare.Accepted, now.Add(-time.Hour))
	settled("t1", 4)
	settled("t2", 2)
	for _, c := range []struct {
		name string
		id   fare.EventID
		want bool
	}{
		{"alice at the gate that holds her", held, true},
		{"alice at a gate never sent her", elsewhere, false},
		{"a subject never enrolled", invented, false},
		{"a refused face (no subject, no charge)", refused, true},
		{"bob, held as a card's holder only, identified 1:N", holderOnly, false},
		{"alice dated an hour before she was enrolled", beforeEnrolled, false},
	} {
		if got := applied(c.id); got != c.want {
			t.Errorf("%s: applied %v, want %v", c.name, got, c.want)
		}
	}
	// The counters move once the batch's quarantine copies are acked, just
	// after the commit the watermark shows.
	for deadline := time.Now().Add(5 * time.Second); fc.cl.Stats().Rejected < 4 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := fc.cl.Stats(); st.Rejected != 4 || st.QuarantineByWhy[clearing.ReasonFaceNotHeld] != 4 {
		t.Fatalf("rejected %d, by reason %v; want 4 %s", st.Rejected, st.QuarantineByWhy, clearing.ReasonFaceNotHeld)
	}
	rider := fc.cl.RiderAccount(fare.Face, "alice")
	if b, err := fc.cl.Store().Balance(rider); err != nil || b.Debits != 250 {
		t.Fatalf("alice charged %d (%v), want one flat metro fare", b.Debits, err)
	}

	// Erased: a tap t1 took before the erasure reached it still counts,
	// and one within the grace (a gate's longest gallery max age, 15
	// minutes, and 5 for its clock); one it dates 25 minutes later does
	// not, whatever the gate's own max age.
	if _, err := fc.cl.EraseFace(ctx, "alice", "desk-1", "consent withdrawn"); err != nil {
		t.Fatal(err)
	}
	before := publish("t1", "metro", "alice", fare.Accepted, now.Add(time.Second))
	within := publish("t1", "metro", "alice", fare.Accepted, time.Now().Add(14*time.Minute))
	after := publish("t1", "metro", "alice", fare.Accepted, time.Now().Add(25*time.Minute))
	// After the erasures the same checks hold: bob, erased, was a card's
	// holder only; alice's tap dated before her enrolment (an outside
	// recheck saw both charged once the subjects were erased).
	if _, err := fc.cl.EraseFace(ctx, "bob", "desk-1", "consent withdrawn"); err != nil {
		t.Fatal(err)
	}
	bobErased := publish("t1", "metro", "bob", fare.Accepted, time.Now().Add(-time.Minute))
	aliceBefore := publish("t1", "metro", "alice", fare.Accepted, now.Add(-2*time.Hour))
	settled("t1", 9)
	if applied(bobErased) || applied(aliceBefore) {
		t.Errorf("after the erasures: bob (a holder only) identified 1:N applied %v, alice dated before her enrolment applied %v; want neither", applied(bobErased), applied(aliceBefore))
	}
	if !applied(before) || !applied(within) || applied(after) {
		t.Fatalf("after the erasure: tap taken before applied %v (want true), 14 minutes after %v (want true), 25 minutes after %v (want false)",
			applied(before), applied(within), applied(after))
	}
	// The API shows the face evidence the gate signed (mode, distance,
	// margin, frames, model, policy), not only inside the signed bytes.
	srv, tok := auditedAPI(t, fc.cl.Clearing, nil)
	_, out := apiCall(t, srv, http.MethodGet, "/v1/events/"+held.String(), tok, nil)
	var view struct {
		Face *clearing.FaceEvidenceView `json:"face"`
	}
	b, _ := json.Marshal(out)
	derr := json.Unmarshal(b, &view)
	if derr != nil || view.Face == nil || view.Face.Mode == "" || view.Face.Model == "" || view.Face.Policy == "" || view.Face.Frames == 0 {
		t.Errorf("a face tap's API view: %+v (%v), want its face evidence", view.Face, derr)
	}
}

// TestFaceTapsOnTheFareClock: a gate dates its taps on its own clock, or on
// clearing's fare clock when it follows it, and the two differ when the
// fare clock runs apart from the wall (a kept simulated city reopened): a
// face tap dated after the enrolment on either clock is taken, one dated
// before both is not (an outside recheck saw every tap of a subject
// enrolled while the fare clock ran an hour ahead rejected for good).
func TestFaceTapsOnTheFareClock(t *testing.T) {
	fc := startFaceCityWith(t, func(cfg *clearing.Config) {
		cfg.FareClock = func() time.Time { return time.Now().Add(time.Hour) }
		cfg.MaxDeviceTimeAhead = 48 * time.Hour
	})
	ctx := context.Background()
	req := faceRequest("carol", newFace(3).templates(3))
	req.Stops, req.FaceOnly = []string{"stop-t1"}, true
	if _, err := fc.cl.EnrolFace(ctx, req); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	publish := func(at time.Time) fare.EventID {
		t.Helper()
		seq++
		ev := fare.Event{ID: fare.NewEventID(at), Terminal: "t1", Operator: "metro", Stop: "stop-t1", Gate: "cam1", Direction: fare.Validate,
			Media: fare.Face, MediaToken: "carol", DeviceTime: at, Decision: fare.Accepted, Sequence: seq,
			Face: &fare.FaceEvidence{Mode: fare.FaceIdentify, Subject: "carol", Distance: 0.2, Margin: 0.3, Frames: 1, Model: testModel, Policy: "fp1-test"}}
		raw, err := fare.Sign(&ev, fc.keys["t1"])
		if err != nil {
			t.Fatal(err)
		}
		nc := terminalConn(t, fc.url, fc.keys["t1"], "t1")
		defer nc.Close()
		publishEvent(t, nc, fare.EventSubject("metro", "t1"), raw)
		return ev.ID
	}
	onWall := publish(time.Now().Add(time.Minute))
	onFare := publish(time.Now().Add(time.Hour + time.Minute))
	tooEarly := publish(time.Now().Add(-2 * time.Hour))
	waitFor(t, "the taps settled", 10*time.Second, func() bool { w, _ := fc.cl.Store().Watermark("t1"); return w >= 3 })
	for _, c := range []struct {
		name string
		id   fare.EventID
		want bool
	}{{"dated on the wall clock", onWall, true}, {"dated on the fare clock", onFare, true}, {"dated before the enrolment", tooEarly, false}} {
		_, err := fc.cl.Store().Event(c.id)
		if got := err == nil; got != c.want {
			t.Errorf("%s: applied %v, want %v (%v)", c.name, got, c.want, err)
		}
	}
}
