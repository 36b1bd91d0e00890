package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faregate/faregate/biometrics"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/galleryfeed"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/terminal"
)

// lockedBuffer is a bytes.Buffer the command writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCameraGateEndToEnd: `faregate terminal --camera DIR` at a metro gate
// of a live city (clearing on embedded NATS, the chain, the city's feed)
// decides the frames a camera writes into its directory through dlib and
// the gate's gallery, which clearing's faces desk filled: an enrolled
// rider's frame is a face tap of their subject, priced and applied by
// clearing with its evidence; a group photo, a corrupt frame, a frame with
// no face and a stranger are refused taps naming why; frame files do not
// outlive their decision. Then 1:1 at the same gate: a concession card's
// holder passes with her face, the card lent to someone else is refused,
// and so is the card shown with no face.
func TestCameraGateEndToEnd(t *testing.T) {
	c := startLiveCity(t, []gateSpec{
		{"metro-s01-g1", "metro", "metro-s01", "metro", "metro-L1"},
		{"bus-s01-g1", "bus", "bus-s01", "bus", "bus-L1"},
	}, func(cfg *clearing.Config) {
		cfg.FaceKey, cfg.FaceHeadEvery = []byte(strings.Repeat("f", 32)), 200*time.Millisecond
		cfg.MaxDeviceTimeAhead = 48 * time.Hour // the 1:1 taps run the gate on tomorrow's clock
	})
	c.stopGate("metro-s01-g1") // the command runs it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	images := filepath.Join(shared(t), "testdata", "faces", "images")
	rec, err := biometrics.New(biometrics.Config{ModelDir: filepath.Join(shared(t), "models"), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	describe := func(name string) [fare.FaceDim]float32 {
		f, err := rec.RecognizeSingleFile(filepath.Join(images, name))
		if err != nil || f == nil {
			t.Fatalf("%s: %v (or no face)", name, err)
		}
		return f.Descriptor
	}
	// The faces desk enrols Jimin for face-only travel at the station, and
	// Bona as the holder of concession card 7.
	consent := clearing.FaceConsent{GivenBy: "the subject", At: time.Now().Add(-time.Hour), Purpose: "travel", LegalBasis: "GDPR Art. 9(2)(a) explicit consent"}
	if _, err := c.cl.EnrolFace(ctx, clearing.FaceEnrolRequest{Subject: "rider-jimin", Consent: consent, ModelID: rec.ModelID(),
		Descriptors: [][fare.FaceDim]float32{describe("jimin.jpg"), describe("jimin2.jpg")}, Stops: []string{"metro-s01"}, FaceOnly: true, EnrolledBy: "test"}); err != nil {
		t.Fatal(err)
	}
	card := fare.DenyKey(fare.Card, "concession-7")
	if _, err := c.cl.EnrolFace(ctx, clearing.FaceEnrolRequest{Subject: "holder-bona", Consent: consent, ModelID: rec.ModelID(),
		Descriptors: [][fare.FaceDim]float32{describe("bona.jpg"), describe("bona2.jpg")}, Stops: []string{"metro-s01"}, CardKey: card, EnrolledBy: "test"}); err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	if _, err := c.cl.Enrol(ctx, fare.Card, "concession-7", clearing.EnrolRequest{Category: "concession", ApprovedBy: "test desk",
		ValidUntil: time.Now().Add(30 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}

	// The gate: its key, an empty camera directory, and card taps on stdin.
	gateDir := filepath.Join(c.dir, "metro-s01-g1")
	keyFile := filepath.Join(c.dir, "metro-s01-g1.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(c.keys["metro-s01-g1"].Seed())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	camDir := t.TempDir()
	stdinR, stdinW := io.Pipe()
	out := &lockedBuffer{}
	cmd := newTerminalCmd()
	cmd.SetArgs([]string{"--id", "metro-s01-g1", "--operator", "metro", "--stop", "metro-s01", "--key", keyFile, "--data", gateDir,
		"--nats", c.cl.NATSURL(), "--clearing-key", "0x" + hex.EncodeToString(c.cl.ConfirmationKey()),
		"--camera", camDir, "--models", filepath.Join(shared(t), "models"), "--face-gallery-max-age", "1m"})
	cmd.SetIn(stdinR)
	cmd.SetOut(out)
	cmd.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		stdinW.Close()
		cancel()
		<-done
	}()
	// Wait for the gate's gallery to hold both subjects: it answers.
	// The gate's decisions, one line a tap (a refused frame's diagnosis,
	// "camera FILE: why", is another line, not a decision).
	lines := func() []string {
		var l []string
		for _, s := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if strings.Contains(s, " seq=") {
				l = append(l, s)
			}
		}
		if len(l) == 0 {
			return []string{""}
		}
		return l
	}
	waitLines := func(n int) []string {
		t.Helper()
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if l := lines(); len(l) >= n && l[0] != "" {
				return l
			}
			if time.Now().After(deadline) {
				t.Fatalf("waited for %d decisions, have:\n%s", n, out.String())
			}
		}
	}
	copyFrame := func(src, dst string) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		// Written aside, then renamed in: the camera's frame appears whole.
		if err := os.WriteFile(filepath.Join(camDir, ".tmp"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(camDir, ".tmp"), filepath.Join(camDir, dst)); err != nil {
			t.Fatal(err)
		}
	}
	// Until the gallery arrives a frame is refused as stale or empty: wait
	// for the enrolled rider to pass.
	var accepted string
	for i := 0; accepted == ""; i++ {
		if i > 200 {
			t.Fatalf("the enrolled rider never passed:\n%s", out.String())
		}
		n := len(lines())
		if lines()[0] == "" {
			n = 0
		}
		copyFrame(filepath.Join(images, "jimin.jpg"), fmt.Sprintf("%03d-jimin.jpg", i))
		l := waitLines(n + 1)
		if last := l[len(l)-1]; strings.Contains(last, " accepted face ") {
			accepted = last
		}
	}
	if !strings.Contains(accepted, "face=rider-jimin subject=rider-jimin") || !strings.Contains(accepted, "1:N") || !strings.Contains(accepted, "policy=fp1-") {
		t.Fatalf("accepted line: %s", accepted)
	}
	before := len(lines())
	var blank bytes.Buffer
	if err := pngEncodeBlank(&blank); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(camDir, "500-blank.png"), blank.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	copyFrame(filepath.Join(images, "pristin.jpg"), "501-group.jpg")
	corrupt, _ := os.ReadFile(filepath.Join(images, "seulgi.jpg"))
	if err := os.WriteFile(filepath.Join(camDir, "502-corrupt.jpg"), corrupt[:len(corrupt)/4], 0o600); err != nil {
		t.Fatal(err)
	}
	copyFrame(filepath.Join(images, "seulgi.jpg"), "503-stranger.jpg")
	l := waitLines(before + 4)
	for i, want := range []string{fare.FaceNoFace, fare.FaceSeveral, fare.FaceBadFrame, fare.FaceNoMatch} {
		got := l[before+i]
		if !strings.Contains(got, " denied "+want+" face 1:N face="+fare.UnmatchedFace+" subject=none") || !strings.Contains(got, "(tap a card)") {
			t.Errorf("frame %d: %s, want refused for %s", i, got, want)
		}
	}
	if !strings.Contains(out.String(), "camera 502-corrupt.jpg: a 1000x1500 JPEG that does not decode") {
		t.Errorf("the corrupt frame is not named with why:\n%s", out.String())
	}
	// Frame files are gone once decided.
	if ents, _ := os.ReadDir(camDir); len(ents) != 0 {
		t.Errorf("%d frame files left in the camera directory", len(ents))
	}
	// Clearing applied every tap with its evidence, and priced the rider's.
	c.waitFor("the gate's taps applied", func() bool {
		w, _ := c.cl.Store().Watermark("metro-s01-g1")
		return w >= uint64(len(lines()))
	})
	ids := lines()
	stdinW.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("terminal command: %v", err)
	}
	done <- nil // for the deferred wait

	// 1:1: the card's enrolment holds from the next fare day, so the taps
	// are dated tomorrow (given their time: a gate whose own clock is a
	// day and a half ahead follows clearing's). Its holder passes with
	// her face; lent to someone else, the card is refused.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	tomorrow := func() time.Time { return time.Now().Add(36 * time.Hour) }
	feed, stopFeed, err := openFaceGallery(ctx2, faceGalleryConfig{ID: "metro-s01-g1", Key: c.keys["metro-s01-g1"], DataDir: gateDir,
		NATSURL: c.cl.NATSURL(), ClearingKeys: []ed25519.PublicKey{c.cl.ConfirmationKey()}, ModelID: rec.ModelID(), MaxAge: time.Minute, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer stopFeed()
	gate, err := biometrics.NewGate(biometrics.GateConfig{Recognizer: rec, Gallery: feed, Policy: gallery.DefaultPolicy()})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := terminal.Open(terminal.Config{ID: "metro-s01-g1", Operator: "metro", Stop: "metro-s01", Key: c.keys["metro-s01-g1"], DataDir: gateDir,
		NATSURL: c.cl.NATSURL(), ClearingKeys: []ed25519.PublicKey{c.cl.ConfirmationKey()}, Logger: quietLog, Faces: gate, Now: tomorrow})
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	go tm.Run(ctx2)
	c.waitFor("the gate's copy of the enrolment and the holder", func() bool {
		_, held := feed.CardHolder(fare.HashDeny(fare.Card, "concession-7"))
		return tm.Category(fare.Card, "concession-7", tomorrow()) == "concession" && held && feed.Status().Fresh
	})
	frame := func(name string) [][]byte {
		b, err := os.ReadFile(filepath.Join(images, name))
		if err != nil {
			t.Fatal(err)
		}
		return [][]byte{b}
	}
	holder, err := tm.Tap(ctx2, terminal.Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "concession-7", Time: tomorrow(), Frames: frame("bona.jpg")})
	if err != nil || holder.Decision != fare.Accepted || holder.Reason != "card-holder-verified" || holder.Face == nil ||
		holder.Face.Mode != fare.FaceVerify || holder.Face.Subject != "holder-bona" || holder.RiderCategory != "concession" {
		t.Fatalf("the holder: %+v %+v, %v", holder, holder.Face, err)
	}
	lent, err := tm.Tap(ctx2, terminal.Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "concession-7", Time: tomorrow(), Frames: frame("jimin.jpg")})
	if err != nil || lent.Decision != fare.Denied || lent.Reason != fare.FaceMismatch || lent.Face == nil || lent.Face.Subject != "holder-bona" {
		t.Fatalf("a lent card: %+v %+v, %v", lent, lent.Face, err)
	}
	noFace, err := tm.Tap(ctx2, terminal.Tap{Gate: "g1", Direction: fare.Entry, Media: fare.Card, Token: "concession-7", Time: tomorrow()})
	if err != nil || noFace.Decision != fare.Denied || noFace.Reason != fare.FaceRequired {
		t.Fatalf("no face shown: %+v, %v", noFace, err)
	}
	c.waitFor("the 1:1 taps applied", func() bool {
		w, _ := c.cl.Store().Watermark("metro-s01-g1")
		return w >= noFace.Sequence
	})
	for _, id := range []fare.EventID{holder.ID, lent.ID, noFace.ID} {
		ids = append(ids, id.String())
	}
	for _, line := range ids {
		id, err := fare.ParseEventID(strings.Fields(line)[0])
		if err != nil {
			t.Fatal(err)
		}
		rec, err := c.cl.Store().Event(id)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := fare.Decode(rec.Raw)
		if err != nil || ev.Face == nil {
			t.Fatalf("applied event %s: %v, face %+v", id, err, ev.Face)
		}
		if ev.MediaToken == "rider-jimin" && ev.Decision == fare.Accepted && rec.Fare <= 0 {
			t.Errorf("the face rider's entry was not charged: %+v", rec)
		}
	}
}

// pngEncodeBlank writes a grey 320x240 PNG: a camera frame of nobody.
func pngEncodeBlank(w io.Writer) error {
	img := image.NewGray(image.Rect(0, 0, 320, 240))
	for i := range img.Pix {
		img.Pix[i] = 128
	}
	return png.Encode(w, img)
}

// TestFrameProblem: a frame the gate refused as face-bad-frame is named
// with why: a JPEG cut short, one whose header is broken, bytes that are
// no picture, a PNG claiming 60000x60000 (named from its header, never
// decoded), a descriptor frame of the wrong size; a good JPEG and a good
// descriptor frame have no problem.
func TestFrameProblem(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(shared(t), "testdata", "faces", "images", "bona.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	var huge bytes.Buffer
	huge.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := []byte("IHDR\x00\x00\xea\x60\x00\x00\xea\x60\x08\x02\x00\x00\x00")
	binary.Write(&huge, binary.BigEndian, uint32(13))
	huge.Write(ihdr)
	binary.Write(&huge, binary.BigEndian, crc32.ChecksumIEEE(ihdr))
	desc := biometrics.DescriptorFrame(biometrics.Descriptor{})
	for _, c := range []struct {
		name  string
		frame []byte
		says  string
	}{
		{"a good JPEG", good, ""},
		{"a good descriptor frame", desc, ""},
		{"a JPEG cut short", good[:len(good)/2], "JPEG that does not decode"},
		{"a broken JPEG header", []byte("\xff\xd8\xff\xe0garbage"), "JPEG whose header does not decode"},
		{"random bytes", []byte("not a picture at all"), "no JPEG, PNG or descriptor frame"},
		{"a PNG claiming 60000x60000", huge.Bytes(), "60000x60000 pixels, more than a gate decodes"},
		{"a short descriptor frame", desc[:len(desc)-4], "descriptor frame of"},
		{"nothing", nil, "empty"},
	} {
		got := frameProblem(c.frame)
		if (c.says == "") != (got == "") || !strings.Contains(got, c.says) {
			t.Errorf("%s: %q, want %q", c.name, got, c.says)
		}
	}
}

// scriptedFrames is a frame source that gives its frames after their
// delays, waiting as a folder does (giving up when ctx ends), then io.EOF.
type scriptedFrames struct {
	frames []scriptedFrame
	n      int
}

type scriptedFrame struct {
	after time.Duration
	name  string
	err   error // a frame that cannot be read
}

func (s *scriptedFrames) next(ctx context.Context) ([]byte, string, error) {
	if s.n == len(s.frames) {
		return nil, "", io.EOF
	}
	f := &s.frames[s.n]
	t := time.NewTimer(f.after)
	defer t.Stop()
	started := time.Now()
	select {
	case <-ctx.Done():
		f.after -= time.Since(started) // the rest of the wait, next time
		return nil, "", ctx.Err()
	case <-t.C:
	}
	s.n++
	if f.err != nil {
		return nil, f.name, f.err
	}
	return []byte(f.name), f.name, nil
}

// TestPresentFrames: with --camera-frames 2, a presentation is two frames
// that come within cameraGroupGap of the first: a rider's lone frame (the
// other lost, or unreadable) is dropped, not decided with the next
// person's first frame, which let a stranger through as the rider, who was
// charged (an outside test).
func TestPresentFrames(t *testing.T) {
	gap := cameraGroupGap
	for _, tc := range []struct {
		name    string
		frames  []scriptedFrame
		decided []string // the presentations decided, frames joined by +
		dropped int      // presentations dropped
	}{
		{"two presentations", []scriptedFrame{{0, "a1", nil}, {10 * time.Millisecond, "a2", nil}, {100 * time.Millisecond, "b1", nil}, {10 * time.Millisecond, "b2", nil}},
			[]string{"a1+a2", "b1+b2"}, 0},
		{"a lone frame, then a stranger", []scriptedFrame{{0, "rider", nil}, {gap + 300*time.Millisecond, "stranger1", nil}, {10 * time.Millisecond, "stranger2", nil}},
			[]string{"stranger1+stranger2"}, 1},
		{"an unreadable frame breaks its presentation", []scriptedFrame{{0, "rider1", nil}, {10 * time.Millisecond, "broken", errors.New("cut short")}, {10 * time.Millisecond, "next1", nil}, {10 * time.Millisecond, "next2", nil}},
			[]string{"next1+next2"}, 1},
		{"a presentation cut short by the end of the stream", []scriptedFrame{{0, "a1", nil}, {10 * time.Millisecond, "a2", nil}, {10 * time.Millisecond, "b1", nil}},
			[]string{"a1+a2", "b1"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var decided []string
			var out bytes.Buffer
			err := presentFrames(context.Background(), &scriptedFrames{frames: tc.frames}, 2, &out, func(group [][]byte, names []string) error {
				decided = append(decided, strings.Join(names, "+"))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(decided, tc.decided) {
				t.Errorf("decided %q, want %q\n%s", decided, tc.decided, out.String())
			}
			if n := strings.Count(out.String(), "dropped, not decided"); n != tc.dropped {
				t.Errorf("%d presentations dropped, want %d:\n%s", n, tc.dropped, out.String())
			}
		})
	}
}

// TestSayBadFrames: a card tap line refused as face-bad-frame names each
// frames= file that cannot be read, and why (an outside test got the
// reason alone); readable frames are not named.
func TestSayBadFrames(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(shared(t), "testdata", "faces", "images", "bona.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sayBadFrames(&out, 7, "entry card concession-7 frames=/cam/a.jpg,/cam/b.jpg", [][]byte{good, good[:len(good)/4]})
	got := out.String()
	if !strings.Contains(got, "line 7: frame /cam/b.jpg: ") || !strings.Contains(got, "does not decode") || strings.Contains(got, "a.jpg") {
		t.Fatalf("said %q, want the cut-short frame b.jpg named with why, and a.jpg not", got)
	}
}

// TestFaceOnlyGateNotReadyWhileGalleryStale: a gate with a camera and no
// card reader (--source none) that has no fresh face gallery refuses every
// rider, so its /readyz says not ready, naming the gallery, and its
// /metrics show the gallery stale (an outside test saw such a gate ready
// and its metrics silent on faces).
func TestFaceOnlyGateNotReadyWhileGalleryStale(t *testing.T) {
	dir := t.TempDir()
	_, key, _ := ed25519.GenerateKey(nil)
	keyFile := filepath.Join(dir, "gate.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key.Seed())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clearingKey, _, _ := ed25519.GenerateKey(nil)
	metrics := freeLoopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newTerminalCmd()
	cmd.SetArgs([]string{"--id", "metro-s01-g1", "--operator", "metro", "--stop", "metro-s01", "--key", keyFile, "--data", filepath.Join(dir, "gate"),
		"--nats", "nats://" + freeLoopbackAddr(t), "--clearing-key", "0x" + hex.EncodeToString(clearingKey), "--list-wait", "0",
		"--source", "none", "--camera", t.TempDir(), "--models", filepath.Join(shared(t), "models"), "--metrics", metrics})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + metrics + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var code int
	var body string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, body = get("/readyz"); code != 0 {
			break
		}
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "face gallery has no head from clearing yet") {
		t.Fatalf("/readyz of a face-only gate with no gallery: %d %q, want 503 naming the gallery", code, body)
	}
	code, body = get("/metrics")
	for _, want := range []string{`faregate_terminal_face_gallery_fresh{terminal="metro-s01-g1"} 0`, `faregate_terminal_face_gallery_version{terminal="metro-s01-g1"} 0`,
		`faregate_terminal_face_gallery_subjects{kind="face_only",terminal="metro-s01-g1"} 0`, `faregate_terminal_face_gallery_refused_total{reason="untrusted",terminal="metro-s01-g1"} 0`} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s (status %d)", want, code)
		}
	}
}

// TestFaceGalleryNotReadyReason: a head of version 0 (clearing's before any
// face enrolment) gone stale is said to be old, not missing (an outside
// re-check was sent looking for a connection problem).
func TestFaceGalleryNotReadyReason(t *testing.T) {
	issued := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		st   galleryfeed.Status
		want string
	}{
		{galleryfeed.Status{}, "has no head from clearing yet"},
		{galleryfeed.Status{HeadIssued: issued, Age: 42 * time.Second}, "head (version 0) is 42s old, over --face-gallery-max-age 40s"},
		{galleryfeed.Status{HeadIssued: issued, HeadVersion: 7, Age: 3 * time.Minute}, "head (version 7) is 3m0s old"},
	} {
		if got := faceGalleryNotReady(c.st, 40*time.Second); !strings.Contains(got, c.want) {
			t.Errorf("%+v: %q, want it to say %q", c.st, got, c.want)
		}
	}
}
