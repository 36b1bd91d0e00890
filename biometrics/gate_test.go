package biometrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/faregate/faregate/biometrics/eval"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/internal/testenv"
	"github.com/faregate/faregate/fare"
)

// fixedGallery is a GateGallery held in memory: what a gate's feed hands
// over, without the feed.
type fixedGallery struct {
	identify, holders *gallery.Gallery
	cards             map[fare.DenyHash]string
	err               error
}

func (f *fixedGallery) Galleries() (*gallery.Gallery, *gallery.Gallery, error) {
	return f.identify, f.holders, f.err
}

func (f *fixedGallery) CardHolder(card fare.DenyHash) (string, bool) {
	s, ok := f.cards[card]
	return s, ok
}

func idolsDataset(t testing.TB) *eval.Dataset {
	t.Helper()
	f, err := os.Open(testenv.Idols(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ds, err := eval.DecodeIdols(f)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

var testTime = time.Date(2026, 12, 2, 8, 30, 0, 0, time.UTC)

// nudge moves a descriptor by about 0.01: a second capture of the same
// face, close enough that any operating point accepts it.
func nudge(d [128]float32, by float32) Descriptor {
	for i := range d {
		if i%2 == 0 {
			d[i] += by
		} else {
			d[i] -= by
		}
	}
	return Descriptor(d)
}

// TestGateDescriptorFrames drives the gate's decision with descriptor
// frames from idols.json: 8 idols enrolled with 3 templates each for
// face-only travel, one of them also the holder of a concession card.
func TestGateDescriptorFrames(t *testing.T) {
	ds := idolsDataset(t)
	// Subject ids are pseudonyms, not names: "idol-<index>".
	byLabel := map[string][][128]float32{}
	ids := map[string]string{}
	for i, l := range ds.Labels {
		ids[l] = fmt.Sprintf("idol-%03d", i)
	}
	for _, s := range ds.Samples {
		byLabel[ids[s.Label]] = append(byLabel[ids[s.Label]], s.Descriptor)
	}
	var enrolled []string
	for _, l := range ds.Labels[:8] {
		enrolled = append(enrolled, ids[l])
	}
	stranger := byLabel[ids[ds.Labels[20]]][0]
	identify, holders := gallery.New(), gallery.New()
	for _, l := range enrolled {
		for _, d := range byLabel[l][:3] {
			if err := identify.Add(l, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	holder := enrolled[2]
	for _, d := range byLabel[holder][:3] {
		if err := holders.Add(holder, d); err != nil {
			t.Fatal(err)
		}
	}
	card := fare.HashDeny(fare.Card, "concession-card-1")
	src := &fixedGallery{identify: identify, holders: holders, cards: map[fare.DenyHash]string{card: holder}}
	policy := gallery.DefaultPolicy()
	gate, err := NewGate(GateConfig{Gallery: src, Policy: policy, Model: "dlib-test"})
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := gate.Holder(card); !ok || h != holder {
		t.Fatalf("holder of the card: %q %v", h, ok)
	}
	frame := func(d Descriptor) []byte { return DescriptorFrame(d) }
	genuine := frame(nudge(byLabel[enrolled[5]][1], 0.001))
	genuine2 := frame(nudge(byLabel[enrolled[5]][1], -0.001))
	badLength := frame(Descriptor{})[:100]
	nan := frame(Descriptor{})
	copy(nan[4:], []byte{0, 0, 0xc0, 0x7f}) // a float32 NaN
	tests := []struct {
		name     string
		frames   [][]byte
		holder   string
		policy   *gallery.Policy
		stale    bool
		accepted bool
		reason   string
		subject  string
	}{
		{name: "enrolled rider", frames: [][]byte{genuine}, accepted: true, subject: enrolled[5]},
		{name: "stranger", frames: [][]byte{frame(Descriptor(stranger))}, reason: fare.FaceNoMatch},
		{name: "two frames agree", frames: [][]byte{genuine, genuine2}, policy: &gallery.Policy{VerifyThreshold: 0.33, IdentifyThreshold: 0.29, Margin: 0.06, MaxGallery: 10, Frames: 2}, accepted: true, subject: enrolled[5]},
		{name: "one frame where two are asked", frames: [][]byte{genuine}, policy: &gallery.Policy{VerifyThreshold: 0.33, IdentifyThreshold: 0.29, Margin: 0.06, MaxGallery: 10, Frames: 2}, reason: fare.FaceTooFewFrames},
		{name: "the same frame twice", frames: [][]byte{genuine, genuine}, reason: fare.FacePresentation},
		{name: "frames disagree", frames: [][]byte{genuine, frame(Descriptor(stranger))}, policy: &gallery.Policy{VerifyThreshold: 0.33, IdentifyThreshold: 0.29, Margin: 0.06, MaxGallery: 10, Frames: 2}, reason: fare.FaceNoMatch},
		{name: "gallery larger than the policy holds for", frames: [][]byte{genuine}, policy: &gallery.Policy{VerifyThreshold: 0.33, IdentifyThreshold: 0.29, Margin: 0.06, MaxGallery: 5, Frames: 1}, reason: fare.FaceGalleryLarge},
		{name: "stale gallery", frames: [][]byte{genuine}, stale: true, reason: fare.FaceGalleryStale},
		{name: "descriptor frame of a bad length", frames: [][]byte{badLength}, reason: fare.FaceBadFrame},
		{name: "descriptor frame with NaN", frames: [][]byte{nan}, reason: fare.FaceBadFrame},
		{name: "a picture at a gate without a recognizer", frames: [][]byte{[]byte("\xff\xd8\xff\xe0 not really")}, reason: fare.FaceBadFrame},
		{name: "no frames", reason: fare.FaceNoFace},
		{name: "1:1 the holder", frames: [][]byte{frame(nudge(byLabel[holder][0], 0.001))}, holder: holder, accepted: true, subject: holder},
		{name: "1:1 a lent card", frames: [][]byte{genuine}, holder: holder, reason: fare.FaceMismatch, subject: holder},
		{name: "1:1 a holder not held here", frames: [][]byte{genuine}, holder: enrolled[0], reason: fare.FaceNoGallery, subject: enrolled[0]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := gate
			if tc.policy != nil {
				if g, err = NewGate(GateConfig{Gallery: src, Policy: *tc.policy, Model: "dlib-test"}); err != nil {
					t.Fatal(err)
				}
			}
			src.err = nil
			if tc.stale {
				src.err = errors.New("last head is 5m0s old, the bound is 3m0s")
			}
			ev, ok, why := g.MatchFace(context.Background(), tc.frames, tc.holder)
			if ok != tc.accepted || why != tc.reason {
				t.Fatalf("accepted %v (%q), want %v (%q); evidence %+v", ok, why, tc.accepted, tc.reason, ev)
			}
			wantMode := fare.FaceIdentify
			if tc.holder != "" {
				wantMode = fare.FaceVerify
			}
			model, pol := g.Versions()
			if ev.Mode != wantMode || ev.Model != model || ev.Policy != pol || pol == "" {
				t.Fatalf("evidence %+v: mode %s, model %q, policy %q", ev, wantMode, model, pol)
			}
			if tc.subject != "" && ev.Subject != tc.subject {
				t.Fatalf("subject %q, want %q", ev.Subject, tc.subject)
			}
			if ok && (ev.Distance > 0.05 || ev.Frames == 0) {
				t.Fatalf("accepted at distance %v from %d frames", ev.Distance, ev.Frames)
			}
			if why == fare.FaceMismatch && !(ev.Distance > g.cfg.Policy.VerifyThreshold && ev.Distance < 2) {
				t.Fatalf("a 1:1 refusal signs distance %v, want the closest frame's, beyond the threshold %v", ev.Distance, g.cfg.Policy.VerifyThreshold)
			}
			if ok && tc.holder == "" && !(ev.Margin >= g.cfg.Policy.Margin) {
				t.Fatalf("accepted with margin %v below the policy's %v", ev.Margin, g.cfg.Policy.Margin)
			}
			// Whatever the gate decided, the event it goes into is valid.
			e := fare.Event{ID: fare.NewEventID(testTime), Terminal: "t1", Operator: "metro", Stop: "s1", Gate: "g1",
				Direction: fare.Entry, Media: fare.Face, MediaToken: ev.Subject, DeviceTime: testTime, Decision: fare.Accepted,
				Sequence: 1, Face: &ev}
			if !ok {
				e.Decision, e.Reason = fare.Denied, why
				if tc.holder == "" {
					e.MediaToken, e.Face.Subject = fare.UnmatchedFace, ""
				}
			}
			if tc.holder != "" {
				e.Media, e.MediaToken = fare.Card, "concession-card-1"
			}
			if err := e.Validate(); err != nil {
				t.Fatalf("the gate's evidence makes an invalid event: %v", err)
			}
		})
	}
}

// TestGateImages: camera frames (640x480 JPEG, as a gate's camera gives
// them) through detection, landmarks, descriptor and the gallery.
func TestGateImages(t *testing.T) {
	r := testRecognizer(t)
	ctx := context.Background()
	encode := func(img image.Image) []byte {
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	camera := func(name string) []byte { return encode(testenv.Frame640(t, name)) }
	identify := gallery.New()
	var enrolled Descriptor
	for _, e := range []struct{ subject, image string }{
		{"jimin", "jimin.jpg"}, {"bona", "bona.jpg"}, {"tzuyu", "tzuyu.jpg"}, {"chaeyeon", "chaeyeon.jpg"},
	} {
		f, err := r.RecognizeSingle(camera(e.image))
		if err != nil || f == nil {
			t.Fatalf("%s: %v (or no face)", e.image, err)
		}
		if e.subject == "jimin" {
			enrolled = f.Descriptor
		}
		if err := identify.Add(e.subject, gallery.Vector(f.Descriptor)); err != nil {
			t.Fatal(err)
		}
	}
	gate, err := NewGate(GateConfig{Recognizer: r, Gallery: &fixedGallery{identify: identify}, Policy: gallery.DefaultPolicy()})
	if err != nil {
		t.Fatal(err)
	}
	var blank bytes.Buffer
	if err := png.Encode(&blank, image.NewGray(image.Rect(0, 0, 640, 480))); err != nil {
		t.Fatal(err)
	}
	tiny := encode(testenv.Fit(testenv.Frame640(t, "jimin.jpg"), 120, 90))
	whole := camera("jimin.jpg")
	group, err := os.ReadFile(testenv.Image(t, "pristin.jpg")) // ten faces, at its own size
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		frames   [][]byte
		accepted bool
		reasons  []string // any of
	}{
		{name: "an enrolled rider's frame", frames: [][]byte{whole}, accepted: true},
		{name: "a group", frames: [][]byte{group}, reasons: []string{fare.FaceSeveral}},
		{name: "nobody there", frames: [][]byte{blank.Bytes()}, reasons: []string{fare.FaceNoFace}},
		{name: "a face too small", frames: [][]byte{tiny}, reasons: []string{fare.FacePoorQuality, fare.FaceNoFace}},
		{name: "a corrupt frame", frames: [][]byte{whole[:len(whole)/3]}, reasons: []string{fare.FaceBadFrame}},
		{name: "not a picture", frames: [][]byte{[]byte("GIF89a")}, reasons: []string{fare.FaceBadFrame}},
		{name: "a stranger", frames: [][]byte{camera("seulgi.jpg")}, reasons: []string{fare.FaceNoMatch, fare.FaceAmbiguous}},
		// Images only: an enrolled rider's template written as a frame
		// is no face in front of the camera.
		{name: "an enrolled rider's descriptor frame", frames: [][]byte{DescriptorFrame(enrolled)}, reasons: []string{fare.FaceBadFrame}},
	}
	// A gate told its camera sends descriptor frames takes them.
	onBoard, err := NewGate(GateConfig{Recognizer: r, Gallery: &fixedGallery{identify: identify}, Policy: gallery.DefaultPolicy(), DescriptorFrames: true})
	if err != nil {
		t.Fatal(err)
	}
	if ev, ok, why := onBoard.MatchFace(ctx, [][]byte{DescriptorFrame(enrolled)}, ""); !ok || ev.Subject != "jimin" {
		t.Errorf("a descriptor frame at a gate taking them: accepted %v (%q), %+v", ok, why, ev)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, ok, why := gate.MatchFace(ctx, tc.frames, "")
			if ok != tc.accepted {
				t.Fatalf("accepted %v (%q), want %v; evidence %+v", ok, why, tc.accepted, ev)
			}
			if ok {
				if ev.Subject != "jimin" || ev.Distance > 0.01 {
					t.Fatalf("evidence %+v, want jimin at distance 0", ev)
				}
				return
			}
			found := false
			for _, r := range tc.reasons {
				found = found || r == why
			}
			if !found {
				t.Fatalf("refused for %q, want one of %v", why, tc.reasons)
			}
			if ev.Subject != "" && ev.Mode == fare.FaceIdentify {
				t.Fatalf("a refused 1:N presentation names subject %q", ev.Subject)
			}
		})
	}
}

func TestDescriptorFrame(t *testing.T) {
	var d Descriptor
	for i := range d {
		d[i] = float32(i-64) / 200
	}
	got, ok, err := ParseDescriptorFrame(DescriptorFrame(d))
	if !ok || err != nil || got != d {
		t.Fatalf("round trip: %v %v", ok, err)
	}
	if _, ok, _ := ParseDescriptorFrame([]byte("\xff\xd8\xff")); ok {
		t.Fatal("a JPEG read as a descriptor frame")
	}
	inf := DescriptorFrame(d)
	copy(inf[4:], []byte{0, 0, 0x80, 0x7f})
	if _, ok, err := ParseDescriptorFrame(inf); !ok || err == nil {
		t.Fatalf("+Inf accepted: %v %v", ok, err)
	}
}

func FuzzParseDescriptorFrame(f *testing.F) {
	f.Add(DescriptorFrame(Descriptor{}))
	f.Add([]byte("FGD1"))
	f.Add([]byte("\xff\xd8\xff\xe0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, ok, err := ParseDescriptorFrame(b)
		if !ok || err != nil {
			return
		}
		if !bytes.Equal(DescriptorFrame(d), b) {
			t.Fatalf("not canonical: %x", b)
		}
	})
}

// TestModelIDsAreScreened: the pipelines this package names are those
// whose templates clearing screens as dlib's (gallery.ScreenTemplate).
func TestModelIDsAreScreened(t *testing.T) {
	for _, parts := range []int{5, 68} {
		if id := ModelIDFor(parts); !slices.Contains(gallery.DlibModels, id) {
			t.Errorf("ModelIDFor(%d) = %q, not in gallery.DlibModels %v", parts, id, gallery.DlibModels)
		}
	}
}
