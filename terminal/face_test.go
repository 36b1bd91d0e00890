package terminal

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/eval"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/fare/gatefeed"
)

// faceGallery is a gate's gallery held in memory (what galleryfeed keeps
// from clearing's bucket), for the terminal's own tests.
type faceGallery struct {
	identify, holders *gallery.Gallery
	cards             map[fare.DenyHash]string
}

func (g *faceGallery) Galleries() (*gallery.Gallery, *gallery.Gallery, error) {
	return g.identify, g.holders, nil
}

func (g *faceGallery) CardHolder(card fare.DenyHash) (string, bool) {
	s, ok := g.cards[card]
	return s, ok
}

// idolFaces returns real descriptors of idols.json's people by subject id
// "subject-<n>" (n from 0), reading ../shared next to the repository.
func idolFaces(t *testing.T) map[string][]biometrics.Descriptor {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "shared", "testdata", "faces", "idols.json"))
	if err != nil {
		t.Fatalf("shared test data (../shared next to the repository): %v", err)
	}
	defer f.Close()
	ds, err := eval.DecodeIdols(f)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for i, l := range ds.Labels {
		ids[l] = fmt.Sprintf("subject-%d", i)
	}
	out := map[string][]biometrics.Descriptor{}
	for _, s := range ds.Samples {
		out[ids[s.Label]] = append(out[ids[s.Label]], biometrics.Descriptor(s.Descriptor))
	}
	return out
}

// faceGate is a real biometrics gate over descriptor frames: subjects 0-5
// enrolled for face-only travel (three templates each), subject-3 also the
// holder of card "concession-3".
func faceGate(t *testing.T) (*biometrics.Gate, map[string][]biometrics.Descriptor) {
	t.Helper()
	faces := idolFaces(t)
	g := &faceGallery{identify: gallery.New(), holders: gallery.New(), cards: map[fare.DenyHash]string{}}
	for i := range 6 {
		s := fmt.Sprintf("subject-%d", i)
		for _, d := range faces[s][:3] {
			if err := g.identify.Add(s, gallery.Vector(d)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range faces["subject-3"][:3] {
		if err := g.holders.Add("subject-3", gallery.Vector(d)); err != nil {
			t.Fatal(err)
		}
	}
	g.cards[fare.HashDeny(fare.Card, "concession-3")] = "subject-3"
	gate, err := biometrics.NewGate(biometrics.GateConfig{Gallery: g, Policy: gallery.DefaultPolicy(), Model: "dlib-test"})
	if err != nil {
		t.Fatal(err)
	}
	return gate, faces
}

// again is a second capture of an enrolled face (about 0.01 away).
func again(d biometrics.Descriptor) []byte {
	for i := range d {
		d[i] += float32(i%3-1) * 0.001
	}
	return biometrics.DescriptorFrame(d)
}

func openFaceTest(t *testing.T, dir string, faces FaceMatcher) *Terminal {
	t.Helper()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	term, err := Open(Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: filepath.Join(dir, "outbox"),
		NATSURL: "nats://127.0.0.1:1", Faces: faces, ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	return term
}

// TestFaceTaps: a face is what the camera's frames show, through the real
// biometrics gate: an enrolled rider travels as their subject, a stranger
// or a bad frame is a refused tap of no subject, a listed subject is
// refused, and every event carries the evidence, signed, with no image or
// descriptor in it. A concession card's holder must show their face; a
// lent card is refused.
func TestFaceTaps(t *testing.T) {
	gate, faces := faceGate(t)
	dir := t.TempDir()
	term := openFaceTest(t, dir, gate)
	defer term.Close()
	ctx := context.Background()
	// The gate's copy of clearing's lists: subject-4 denied (debt), card
	// concession-3 enrolled as a concession.
	f := &gateFollower{t: term}
	deny := &listSession{list: fare.DenyGateList, seen: map[fare.DenyHash]struct{}{}}
	enrol := &listSession{list: fare.EnrolGateList, seen: map[fare.DenyHash]struct{}{}}
	now := time.Now().UTC().Truncate(time.Second)
	for _, e := range []struct {
		s *listSession
		e fare.GateEntry
	}{
		{deny, fare.GateEntry{List: fare.DenyGateList, Version: 1, Key: fare.HashDeny(fare.Face, "subject-4"), Listed: true}},
		{enrol, fare.GateEntry{List: fare.EnrolGateList, Version: 1, Key: fare.HashDeny(fare.Card, "concession-3"),
			Periods: []fare.EnrolmentPeriod{{From: now.Add(-time.Hour), Until: now.Add(time.Hour), Category: "concession"}}}},
		{enrol, fare.GateEntry{List: fare.EnrolGateList, Version: 2, Key: fare.HashDeny(fare.Card, "concession-9"),
			Periods: []fare.EnrolmentPeriod{{From: now.Add(-time.Hour), Until: now.Add(time.Hour), Category: "concession"}}}},
	} {
		b, err := e.e.Sign(testClearingKey)
		if err != nil {
			t.Fatal(err)
		}
		f.apply(e.s, &gatefeed.Entry{Key: e.e.Key.String(), Value: b})
	}
	model, policy := gate.Versions()
	stranger := biometrics.DescriptorFrame(faces["subject-40"][0])
	tests := []struct {
		name     string
		face     *FaceTap
		card     *Tap
		decision fare.Decision
		reason   string
		token    string
		mode     fare.FaceMode
		subject  string
	}{
		{name: "enrolled face", face: &FaceTap{Gate: "g1", Direction: fare.Entry, Frames: [][]byte{again(faces["subject-2"][0])}},
			decision: fare.Accepted, reason: "face", token: "subject-2", mode: fare.FaceIdentify, subject: "subject-2"},
		{name: "stranger", face: &FaceTap{Gate: "g1", Direction: fare.Entry, Frames: [][]byte{stranger}},
			decision: fare.Denied, reason: fare.FaceNoMatch, token: fare.UnmatchedFace, mode: fare.FaceIdentify},
		{name: "not a picture", face: &FaceTap{Gate: "g1", Direction: fare.Entry, Frames: [][]byte{[]byte("GIF89a")}},
			decision: fare.Denied, reason: fare.FaceBadFrame, token: fare.UnmatchedFace, mode: fare.FaceIdentify},
		{name: "subject in debt", face: &FaceTap{Gate: "g1", Direction: fare.Entry, Frames: [][]byte{again(faces["subject-4"][1])}},
			decision: fare.Denied, reason: "deny-list", token: "subject-4", mode: fare.FaceIdentify, subject: "subject-4"},
		{name: "concession card, its holder", card: &Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "concession-3",
			Frames: [][]byte{again(faces["subject-3"][2])}},
			decision: fare.Accepted, reason: "card-holder-verified", token: "concession-3", mode: fare.FaceVerify, subject: "subject-3"},
		{name: "concession card lent", card: &Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "concession-3",
			Frames: [][]byte{again(faces["subject-5"][0])}},
			decision: fare.Denied, reason: fare.FaceMismatch, token: "concession-3", mode: fare.FaceVerify, subject: "subject-3"},
		{name: "concession card, no face shown", card: &Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "concession-3"},
			decision: fare.Denied, reason: fare.FaceRequired, token: "concession-3", mode: fare.FaceVerify, subject: "subject-3"},
		// An exit is never refused for the holder: the journey began on
		// the card (an outside review found holders kept inside).
		{name: "concession card lent, at an exit", card: &Tap{Gate: "g1", Direction: fare.Exit, Media: fare.Card, Token: "concession-3",
			Frames: [][]byte{again(faces["subject-5"][0])}},
			decision: fare.Accepted, reason: "card", token: "concession-3"},
		{name: "concession card, no face shown, at an exit", card: &Tap{Gate: "g1", Direction: fare.Exit, Media: fare.Card, Token: "concession-3"},
			decision: fare.Accepted, reason: "card", token: "concession-3"},
		{name: "concession card whose holder has no face here", card: &Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "concession-9"},
			decision: fare.Accepted, reason: "card", token: "concession-9"},
		{name: "adult card", card: &Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "adult-1", Frames: [][]byte{stranger}},
			decision: fare.Accepted, reason: "card", token: "adult-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ev fare.Event
			var err error
			if tc.face != nil {
				ev, err = term.TapFace(ctx, *tc.face)
			} else {
				ev, err = term.Tap(ctx, *tc.card)
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Decision != tc.decision || ev.Reason != tc.reason || ev.MediaToken != tc.token {
				t.Fatalf("%s/%s token %q, want %s/%s token %q", ev.Decision, ev.Reason, ev.MediaToken, tc.decision, tc.reason, tc.token)
			}
			if tc.mode == 0 {
				if ev.Face != nil {
					t.Fatalf("a card tap with no face check carries %+v", ev.Face)
				}
				return
			}
			fe := ev.Face
			if fe == nil || fe.Mode != tc.mode || fe.Subject != tc.subject || fe.Model != model || fe.Policy != policy {
				t.Fatalf("face evidence %+v, want mode %s subject %q model %q policy %q", fe, tc.mode, tc.subject, model, policy)
			}
			// What the outbox holds is the signed event, evidence included,
			// and nothing that looks like a descriptor.
			raw := term.outboxEvent(t, ev.Sequence)
			s, err := fare.Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Verify(term.PublicKey()); err != nil || s.Face == nil || *s.Face != *fe {
				t.Fatalf("stored event: %v, face %+v", err, s.Face)
			}
			if len(raw) > 300 {
				t.Fatalf("a %d-byte event: is an image or descriptor in it?", len(raw))
			}
		})
	}
	// A face claimed by a reader, not seen by the camera, is no tap.
	if _, err := term.Tap(ctx, Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Face, Token: "subject-2"}); !errors.Is(err, ErrFaceWithoutCamera) {
		t.Fatalf("a claimed face: %v", err)
	}
	// No frames is a caller's mistake, not a tap.
	if _, err := term.TapFace(ctx, FaceTap{Gate: "g1", Direction: fare.Entry}); err == nil {
		t.Fatal("a face tap without frames was taken")
	}
	// A gate without a camera refuses face taps.
	plain := openTest(t, t.TempDir())
	defer plain.Close()
	if _, err := plain.TapFace(ctx, FaceTap{Gate: "g1", Direction: fare.Entry, Frames: [][]byte{stranger}}); !errors.Is(err, ErrNoCamera) {
		t.Fatalf("face tap without a camera: %v", err)
	}
}

// outboxEvent reads the signed event at seq from the outbox.
func (t *Terminal) outboxEvent(tb *testing.T, seq uint64) []byte {
	tb.Helper()
	var raw []byte
	txn := t.db.NewTransaction(false)
	defer txn.Discard()
	item, err := txn.Get(outboxKey(seq))
	if err != nil {
		tb.Fatal(err)
	}
	if raw, err = item.ValueCopy(nil); err != nil {
		tb.Fatal(err)
	}
	return raw
}

// TestHolderJudgedAtTheSignedTime: a card presented as its concession
// enrolment begins is judged at one instant: the time its holder check
// reads the category at is the time the event is signed with. Read twice
// (before and after the match), a card judged not yet a concession was
// signed a concession with no face checked (an outside review).
func TestHolderJudgedAtTheSignedTime(t *testing.T) {
	gate, _ := faceGate(t)
	begins := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	var armed atomic.Bool
	var calls atomic.Int64
	now := func() time.Time {
		if !armed.Load() {
			return time.Now()
		}
		if calls.Add(1) == 1 {
			return begins.Add(-time.Second) // the check
		}
		return begins.Add(time.Second) // anything after it
	}
	dir := t.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	term, err := Open(Config{ID: "t1", Operator: "metro", Stop: "S1", Key: key, DataDir: filepath.Join(dir, "outbox"), Now: now,
		NATSURL: "nats://127.0.0.1:1", Faces: gate, ClearingKeys: []ed25519.PublicKey{testClearingKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	f := &gateFollower{t: term}
	enrol := &listSession{list: fare.EnrolGateList, seen: map[fare.DenyHash]struct{}{}}
	e := fare.GateEntry{List: fare.EnrolGateList, Version: 1, Key: fare.HashDeny(fare.Card, "concession-3"),
		Periods: []fare.EnrolmentPeriod{{From: begins, Until: begins.Add(time.Hour), Category: "concession"}}}
	b, err := e.Sign(testClearingKey)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(enrol, &gatefeed.Entry{Key: e.Key.String(), Value: b})
	armed.Store(true)
	ev, err := term.Tap(context.Background(), Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "concession-3"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.RiderCategory != "" || ev.Face != nil || ev.Decision != fare.Accepted || !ev.DeviceTime.Equal(begins.Add(-time.Second)) {
		t.Fatalf("signed %s/%s category %q at %s, face %+v; want the card as judged at %s: no category, no face check",
			ev.Decision, ev.Reason, ev.RiderCategory, ev.DeviceTime, ev.Face, begins.Add(-time.Second))
	}
}
