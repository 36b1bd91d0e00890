package simulator

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"image"
	"image/jpeg"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/eval"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/galleryfeed"
	"github.com/faregate/faregate/biometrics/templates"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// Face riders. The city's face passengers are people of idols.json (real
// dlib descriptors): each is enrolled by clearing from three of their
// descriptors, with consent, for the stops they commute between, and every
// gate at those stops receives them through its gallery feed. At the gate
// a face rider's camera shows one of their other (held-out) descriptors,
// and now and then a person of idols.json nobody enrolled looks into a
// camera: the gate must refuse them. The gates run the real matcher
// (biometrics.Gate over galleryfeed.Feed); only the pictures are skipped,
// the camera sending descriptor frames as an on-board camera would.

// faceTemplates is how many descriptors enrol a face rider.
const faceTemplates = 3

// faceModel is the descriptor pipeline idols.json was made with (dlib's
// network, 5-point landmarks, 150-pixel chips, padding 0.25).
var faceModel = biometrics.ModelIDFor(5)

// faceCity is the face side of a run.
type faceCity struct {
	policy gallery.Policy
	people [][]biometrics.Descriptor // idols.json, one entry per person
	// probes are the enrolled riders' held-out descriptors, by subject;
	// strangers the people nobody enrolled.
	probes    map[string][]biometrics.Descriptor
	strangers [][]biometrics.Descriptor
	enrolled  int

	mu       sync.Mutex
	rng      *rand.Rand
	taps     int
	accepted int
	refused  int
	falseAcc int
	stranger int
	images   int // presentations of real pictures at the image gates
	// imageDecision is frames to decision at the image gates (dlib
	// included), decision all presentations'.
	imageDecision []time.Duration
	reasons       map[string]int
	decision      []time.Duration
}

// loadFaceCity reads idols.json.
func loadFaceCity(path string, policy gallery.Policy, seed uint64) (*faceCity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("face riders need real descriptors (idols.json, e.g. ../shared/testdata/faces/idols.json): %w", err)
	}
	defer f.Close()
	ds, err := eval.DecodeIdols(f)
	if err != nil {
		return nil, fmt.Errorf("face descriptors %s: %w", path, err)
	}
	byLabel := map[string][]biometrics.Descriptor{}
	for _, s := range ds.Samples {
		byLabel[s.Label] = append(byLabel[s.Label], biometrics.Descriptor(s.Descriptor))
	}
	fc := &faceCity{policy: policy, probes: map[string][]biometrics.Descriptor{}, reasons: map[string]int{},
		rng: rand.New(rand.NewPCG(seed, 0xface))}
	for _, l := range ds.Labels {
		if len(byLabel[l]) > faceTemplates {
			fc.people = append(fc.people, byLabel[l])
		}
	}
	if len(fc.people) < 2 {
		return nil, fmt.Errorf("face descriptors %s: %d people with more than %d descriptors, need several", path, len(fc.people), faceTemplates)
	}
	return fc, nil
}

// enrol picks the face riders clearing enrols. A rider commutes between a
// bus stop and two metro stations and is enrolled for those three stops;
// a stop's gallery may hold no more subjects than the operating point was
// measured for (Policy.MaxGallery), and there are only so many people in
// idols.json (a third of them stay unenrolled, as strangers). Face
// passengers who do not fit ride by card instead; those who do make share
// of the journeys.
func (fc *faceCity) enrol(ctx context.Context, cl *clearing.Clearing, g *generator, share float64, consentAt time.Time) error {
	perStop := map[string]int{}
	limit := len(fc.people) * 2 / 3
	next := 0
	for i := range g.riders {
		r := &g.riders[i]
		if r.p.Media != fare.Face {
			continue
		}
		stops := g.faceStops(r)
		fits := next < limit
		for _, s := range stops {
			fits = fits && perStop[s] < fc.policy.MaxGallery
		}
		if !fits {
			r.p.Media, r.p.Token = fare.Card, "card-"+r.p.Token
			g.city.Passengers[i] = r.p
			continue
		}
		person := fc.people[next]
		next++
		descs := make([][fare.FaceDim]float32, faceTemplates)
		for j := range descs {
			descs[j] = person[j]
		}
		_, err := cl.EnrolFace(ctx, clearing.FaceEnrolRequest{
			Subject: r.p.Token, ModelID: faceModel, Descriptors: descs, Stops: stops, FaceOnly: true,
			Consent: clearing.FaceConsent{GivenBy: "the rider (simulated)", At: consentAt, Purpose: "face-only travel at the stops of the rider's commute",
				LegalBasis: "GDPR Art. 9(2)(a) explicit consent"},
			EnrolledBy: "simulated enrolment desk",
		})
		if err != nil {
			return fmt.Errorf("enrol face rider %s: %w", r.p.Token, err)
		}
		for _, s := range stops {
			perStop[s]++
		}
		fc.probes[r.p.Token] = person[faceTemplates:]
		r.face = true
		g.faces = append(g.faces, i)
		fc.enrolled++
	}
	fc.strangers = fc.people[next:]
	g.faceShare = share
	return nil
}

// frame is what the camera shows of token's rider: one of their held-out
// descriptors.
func (fc *faceCity) frame(token string) []byte {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	ps := fc.probes[token]
	return biometrics.DescriptorFrame(ps[fc.rng.IntN(len(ps))])
}

// strangerFrame is a person nobody enrolled, or nil when there is none;
// roughly one face presentation in four is followed by one.
func (fc *faceCity) strangerFrame() []byte {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.strangers) == 0 || fc.rng.Float64() >= 0.25 {
		return nil
	}
	p := fc.strangers[fc.rng.IntN(len(fc.strangers))]
	return biometrics.DescriptorFrame(p[fc.rng.IntN(len(p))])
}

// count records one face decision; truth is the subject who really stood
// there ("" for a stranger).
func (fc *faceCity) count(ev fare.Event, truth string, took time.Duration) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.taps++
	fc.decision = append(fc.decision, took)
	if truth == "" {
		fc.stranger++
	}
	switch {
	case ev.Face == nil:
	case ev.Decision == fare.Accepted || ev.Face.Subject != "":
		// Identified (a subject on the deny list is identified, then refused).
		if ev.Face.Subject != truth {
			fc.falseAcc++
		}
		if ev.Decision == fare.Accepted {
			fc.accepted++
			return
		}
		fc.refused++
		fc.reasons[ev.Reason]++
	default:
		fc.refused++
		fc.reasons[ev.Reason]++
	}
}

// report fills the face fields of rep.
func (fc *faceCity) report(rep *Report) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	rep.FaceRidersEnrolled = fc.enrolled
	rep.FaceTaps, rep.FaceAccepted, rep.FaceRefused, rep.FaceFalseAccepts = fc.taps, fc.accepted, fc.refused, fc.falseAcc
	rep.FaceStrangerTaps, rep.FaceImageTaps = fc.stranger, fc.images
	rep.FaceRefusedByReason = maps.Clone(fc.reasons)
	rep.FaceDecisionMs = percentiles(fc.decision)
	rep.FaceImageDecisionMs = percentiles(fc.imageDecision)
	rep.FacePolicy = fc.policy.Version()
}

// faceGate is one terminal's camera: its gallery feed (following
// clearing's bucket as the terminal's NATS user) and the matcher over it.
type faceGate struct {
	feed *galleryfeed.Feed
	gate *biometrics.Gate
}

func openFaceGate(fc *faceCity, id string, key ed25519.PrivateKey, clearingKey ed25519.PublicKey, dataDir string) (*faceGate, error) {
	feed, err := galleryfeed.Open(galleryfeed.Config{Terminal: id, Key: key, ClearingKeys: []ed25519.PublicKey{clearingKey},
		DataDir: dataDir, ModelID: faceModel})
	if err != nil {
		return nil, err
	}
	gate, err := biometrics.NewGate(biometrics.GateConfig{Gallery: feed, Policy: fc.policy, Model: faceModel})
	if err != nil {
		return nil, err
	}
	return &faceGate{feed: feed, gate: gate}, nil
}

// follow runs the feed over its own connection as the terminal's NATS user.
func (fg *faceGate) follow(ctx context.Context, url string, t *terminal.Terminal) error {
	nc, err := nats.Connect(url, append(t.NATSOptions(), nats.Name("faregate-face-gallery-"+t.ID()),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))...)
	if err != nil {
		return fmt.Errorf("face gallery of %s: %w", t.ID(), err)
	}
	defer nc.Close()
	return fg.feed.Run(ctx, nc)
}

// waitFaceGalleries waits until every gate's gallery is fresh and holds
// the face riders enrolled for its stop.
func waitFaceGalleries(ctx context.Context, terms []*simTerminal, g *generator, ic *imageCity, within time.Duration) error {
	want := map[string][]string{}
	if ic != nil {
		for _, p := range ic.probes {
			if p.truth != "" && !slices.Contains(want[ic.stop], p.truth) {
				want[ic.stop] = append(want[ic.stop], p.truth)
			}
		}
	}
	for i := range g.riders {
		r := &g.riders[i]
		if r.face {
			for _, s := range g.faceStops(r) {
				want[s] = append(want[s], r.p.Token)
			}
		}
	}
	deadline := time.Now().Add(within)
	for {
		missing := ""
		for _, t := range terms {
			if t.faces == nil {
				continue
			}
			if _, fresh := t.faces.feed.Fresh(); !fresh {
				missing = t.ID() + " (not fresh)"
				break
			}
			if i := slices.IndexFunc(want[t.stop.ID], func(s string) bool { return !t.faces.feed.Has(s) }); i >= 0 {
				missing = fmt.Sprintf("%s (lacks %s)", t.ID(), want[t.stop.ID][i])
				break
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("face galleries not at the gates within %s: %s", within, missing)
		}
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("interrupted waiting for the face galleries at the gates (%s): %w", missing, err)
		}
	}
}

// runFaceKey returns the run's face template store key, made on first use
// and kept (0600) in dir, so a kept run reopens its store.
// faceKeyFile is the run's face template store key, hex, in its data dir.
const faceKeyFile = "face-store.key"

func runFaceKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, faceKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		return templates.ParseKey(b)
	}
	key := make([]byte, 32)
	if _, err := crand.Read(key); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("face store key: %w", err)
	}
	return key, nil
}

// Image gates. The gates of one stop that no face rider commutes through
// (the first stop of an operator that is neither the metro nor its feeder
// bus) run real pictures through the whole dlib pipeline: the people of
// ../shared's labelled images with two pictures or more are enrolled from
// their first picture (by this recognizer: templates of another pipeline
// are never matched), and the gates are shown their other pictures and
// the pictures of people nobody enrolled.

// imageProbe is one picture a camera is shown and who is in it ("" for a
// person nobody enrolled).
type imageProbe struct {
	frame []byte
	truth string
	name  string
}

// imageCity is the image side of a run.
type imageCity struct {
	rec    *biometrics.Recognizer
	stop   string
	probes []imageProbe
}

// openImageCity loads the models and the labelled pictures of dir
// (file names say who: jimin2.jpg is jimin) and enrols, through clearing,
// the people with two pictures or more at stop.
func openImageCity(ctx context.Context, cl *clearing.Clearing, dir, models, stop string, consentAt time.Time) (*imageCity, error) {
	md, err := biometrics.FindModelDir(models)
	if err != nil {
		return nil, fmt.Errorf("image gates need the dlib models: %w", err)
	}
	rec, err := biometrics.New(biometrics.Config{ModelDir: md})
	if err != nil {
		return nil, err
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.jpg"))
	if err != nil || len(names) == 0 {
		rec.Close()
		return nil, fmt.Errorf("image gates need labelled pictures (e.g. ../shared/testdata/faces/images): none in %s", dir)
	}
	slices.Sort(names)
	byPerson := map[string][]string{}
	for _, n := range names {
		person := strings.TrimRight(strings.TrimSuffix(filepath.Base(n), filepath.Ext(n)), "0123456789")
		byPerson[person] = append(byPerson[person], n)
	}
	ic := &imageCity{rec: rec, stop: stop}
	for _, person := range slices.Sorted(maps.Keys(byPerson)) {
		pics := byPerson[person]
		enrolled := false
		for i, p := range pics {
			b, err := os.ReadFile(p)
			if err != nil {
				rec.Close()
				return nil, err
			}
			if i == 0 && len(pics) > 1 {
				f, err := rec.RecognizeSingle(b)
				if err != nil || f == nil {
					continue // no single face: not an enrolment picture
				}
				subject := "img-" + person
				if _, err := cl.EnrolFace(ctx, clearing.FaceEnrolRequest{Subject: subject, ModelID: rec.ModelID(),
					Descriptors: [][fare.FaceDim]float32{f.Descriptor}, Stops: []string{stop}, FaceOnly: true,
					Consent: clearing.FaceConsent{GivenBy: "the rider (simulated)", At: consentAt, Purpose: "face-only travel at " + stop,
						LegalBasis: "GDPR Art. 9(2)(a) explicit consent"},
					EnrolledBy: "simulated enrolment desk"}); err != nil {
					rec.Close()
					return nil, fmt.Errorf("enrol %s: %w", subject, err)
				}
				enrolled = true
				continue
			}
			truth := ""
			if enrolled {
				truth = "img-" + person
			}
			frame, err := cameraFrame(b)
			if err != nil {
				rec.Close()
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			ic.probes = append(ic.probes, imageProbe{frame: frame, truth: truth, name: filepath.Base(p)})
		}
	}
	return ic, nil
}

// present shows the image gates a picture every interval until ctx ends.
func (ic *imageCity) present(ctx context.Context, fc *faceCity, gates []*simTerminal, interval time.Duration, clock *cityClock,
	record func(*simTerminal, fare.Event, time.Time), failed func(*simTerminal, error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fc.mu.Lock()
		p := ic.probes[fc.rng.IntN(len(ic.probes))]
		fc.mu.Unlock()
		t := gates[i%len(gates)]
		t0 := time.Now()
		ev, err := t.TapFace(ctx, terminal.FaceTap{Gate: "cam1", Direction: fare.Validate, Frames: [][]byte{p.frame}, Time: clock.Now()})
		if err != nil {
			if ctx.Err() == nil {
				failed(t, fmt.Errorf("%s: %w", p.name, err))
			}
			continue
		}
		d := time.Since(t0)
		fc.count(ev, p.truth, d)
		fc.mu.Lock()
		fc.images++
		fc.imageDecision = append(fc.imageDecision, d)
		fc.mu.Unlock()
		record(t, ev, t0)
	}
}

// openImageGate is a gate that runs pictures through the recognizer,
// against a gallery of the recognizer's own pipeline.
func openImageGate(fc *faceCity, ic *imageCity, id string, key ed25519.PrivateKey, clearingKey ed25519.PublicKey, dataDir string) (*faceGate, error) {
	feed, err := galleryfeed.Open(galleryfeed.Config{Terminal: id, Key: key, ClearingKeys: []ed25519.PublicKey{clearingKey},
		DataDir: dataDir, ModelID: ic.rec.ModelID()})
	if err != nil {
		return nil, err
	}
	gate, err := biometrics.NewGate(biometrics.GateConfig{Recognizer: ic.rec, Gallery: feed, Policy: fc.policy})
	if err != nil {
		return nil, err
	}
	return &faceGate{feed: feed, gate: gate}, nil
}

// cameraFrameMax is the largest frame an image gate's camera gives: the
// labelled pictures (up to 2667x4000) are scaled down to fit, as a
// turnstile camera's 1280x960 frames would show the rider.
const cameraFrameW, cameraFrameH = 1280, 960

// cameraFrame re-encodes a picture as a camera frame: JPEG, at most
// cameraFrameW x cameraFrameH (scaled with a box filter).
func cameraFrame(b []byte) ([]byte, error) {
	src, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	r := src.Bounds()
	scale := min(1, float64(cameraFrameW)/float64(r.Dx()), float64(cameraFrameH)/float64(r.Dy()))
	w, h := max(int(float64(r.Dx())*scale), 1), max(int(float64(r.Dy())*scale), 1)
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		sy0 := r.Min.Y + int(float64(y)/scale)
		sy1 := max(sy0+1, r.Min.Y+int(float64(y+1)/scale))
		for x := range w {
			sx0 := r.Min.X + int(float64(x)/scale)
			sx1 := max(sx0+1, r.Min.X+int(float64(x+1)/scale))
			var rs, gs, bs, n uint64
			for yy := sy0; yy < min(sy1, r.Max.Y); yy++ {
				for xx := sx0; xx < min(sx1, r.Max.X); xx++ {
					cr, cg, cb, _ := src.At(xx, yy).RGBA()
					rs, gs, bs, n = rs+uint64(cr), gs+uint64(cg), bs+uint64(cb), n+1
				}
			}
			i := dst.PixOffset(x, y)
			dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = uint8(rs/n>>8), uint8(gs/n>>8), uint8(bs/n>>8), 255
		}
	}
	var out bytes.Buffer
	if err := jpeg.Encode(&out, dst, &jpeg.Options{Quality: 90}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
