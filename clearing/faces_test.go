package clearing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/faregate/faregate/biometrics/eval"
	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/galleryfeed"
	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
	"github.com/faregate/faregate/ledger"
	"github.com/faregate/faregate/terminal"
)

// testFaceKey is the face template store's key in these tests.
var testFaceKey = bytes.Repeat([]byte{0x5a}, 32)

const testModel = "test-pipeline/v1"

// faceCity is clearing with face enrolment on over testRegistry(4): t1..t4
// at stop-t1..stop-t4; t3 and t4 are on-board validators of route bus-L1.
type faceCity struct {
	dir  string
	reg  *clearing.Registry
	keys map[string]ed25519.PrivateKey
	cl   *running
	url  string
	led  *ledger.Embedded
}

func startFaceCity(t *testing.T) *faceCity {
	t.Helper()
	return startFaceCityWith(t, func(*clearing.Config) {})
}

// startFaceCityWith is startFaceCity with clearing's configuration edited
// by edit.
func startFaceCityWith(t *testing.T, edit func(*clearing.Config)) *faceCity {
	t.Helper()
	fc := &faceCity{dir: t.TempDir()}
	reg, keys := testRegistry(4)
	reg.Legs = []clearing.TerminalLeg{{Terminal: "t3", Route: "bus-L1"}, {Terminal: "t4", Route: "bus-L1"}}
	b, _ := json.Marshal(reg)
	var err error
	if fc.reg, err = clearing.ParseRegistry(b); err != nil {
		t.Fatal(err)
	}
	fc.keys = keys
	led := openLedger(t, filepath.Join(fc.dir, "chain"))
	t.Cleanup(func() { led.Close() })
	fc.led = led
	cfg := clearing.Config{DataDir: filepath.Join(fc.dir, "clearing"), Registry: fc.reg, Ledger: led, Period: time.Hour,
		FaceKey: testFaceKey, FaceHeadEvery: 300 * time.Millisecond, RegistryPoll: 200 * time.Millisecond,
		FaceModels: append([]string{testModel}, gallery.DlibModels...)}
	edit(&cfg)
	fc.cl = startClearing(t, cfg)
	t.Cleanup(func() { fc.cl.stop(t) })
	fc.url = fc.cl.NATSURL()
	return fc
}

// runningFeed is a terminal's face gallery following the bucket over its
// own NATS connection.
type runningFeed struct {
	*galleryfeed.Feed
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
	skew   *atomic.Int64 // added to the feed's wall clock
}

func (fc *faceCity) feedDir(id string) string { return filepath.Join(fc.dir, "terminal-"+id) }

// startFeed opens id's gallery from its data dir and follows the bucket at
// url ("" leaves it offline: it decides from its copy).
func (fc *faceCity) startFeed(t *testing.T, id, url string, maxAge time.Duration) *runningFeed {
	t.Helper()
	skew := new(atomic.Int64)
	f, err := galleryfeed.Open(galleryfeed.Config{Terminal: id, Key: fc.keys[id], ClearingKeys: []ed25519.PublicKey{testConfirmKey.Public().(ed25519.PublicKey)},
		DataDir: fc.feedDir(id), ModelID: testModel, MaxAge: maxAge, Logger: quietLogger(),
		Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	if err != nil {
		t.Fatalf("open %s's gallery: %v", id, err)
	}
	r := &runningFeed{Feed: f, cancel: func() {}, done: make(chan error, 1), skew: skew}
	if url == "" {
		r.done <- nil
		return r
	}
	r.nc = terminalConn(t, url, fc.keys[id], id, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- f.Run(ctx, r.nc) }()
	return r
}

func (r *runningFeed) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("gallery run: %v", err)
	}
	r.done <- nil // stop is idempotent
	if r.nc != nil {
		r.nc.Close()
	}
}

// faceOf is a subject's synthetic face: a random point, templates and
// probes within a small distance of it, other subjects about 0.9 away.
type faceOf struct {
	base [fare.FaceDim]float32
	rng  *rand.Rand
}

func newFace(seed uint64) *faceOf {
	f := &faceOf{rng: rand.New(rand.NewPCG(seed, 0xface))}
	for i := range f.base {
		f.base[i] = float32(f.rng.Float64()*0.2 - 0.1)
	}
	return f
}

func (f *faceOf) sample() [fare.FaceDim]float32 {
	v := f.base
	for i := range v {
		v[i] += float32(f.rng.Float64()*0.01 - 0.005)
	}
	return v
}

func (f *faceOf) templates(n int) [][fare.FaceDim]float32 {
	out := make([][fare.FaceDim]float32, n)
	for i := range out {
		out[i] = f.sample()
	}
	return out
}

func faceRequest(subject string, descs [][fare.FaceDim]float32) clearing.FaceEnrolRequest {
	return clearing.FaceEnrolRequest{Subject: subject, ModelID: testModel, Descriptors: descs, EnrolledBy: "desk-1",
		Consent: clearing.FaceConsent{GivenBy: "the subject", At: time.Now().Add(-time.Hour), Purpose: "face-only travel",
			LegalBasis: "GDPR Art. 9(2)(a) explicit consent"}}
}

// descriptorBytes are a template as any store would hold it in plain:
// 128 float32, little- and big-endian.
func descriptorBytes(d [fare.FaceDim]float32) [][]byte {
	le, be := make([]byte, 0, 4*fare.FaceDim), make([]byte, 0, 4*fare.FaceDim)
	for _, v := range d {
		le = binary.LittleEndian.AppendUint32(le, math.Float32bits(v))
		be = binary.BigEndian.AppendUint32(be, math.Float32bits(v))
	}
	return [][]byte{le, be}
}

// filesHolding lists the files under dirs that contain any of needles.
func filesHolding(t *testing.T, needles [][]byte, dirs ...string) []string {
	t.Helper()
	var out []string
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a file removed while walking
			}
			if err != nil || d.IsDir() || !d.Type().IsRegular() {
				return err
			}
			i, err := scanFile(p, needles)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			if i >= 0 {
				out = append(out, fmt.Sprintf("%s (needle %d)", p, i))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// scanFile returns the index of a needle the file holds, or -1. It reads
// only the file's data: Badger's value logs are sparse files of 2 GiB.
func scanFile(p string, needles [][]byte) (int, error) {
	f, err := os.Open(p)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return -1, err
	}
	longest := 0
	for _, n := range needles {
		longest = max(longest, len(n))
	}
	const seekData, seekHole = 3, 4 // lseek(2) on Linux
	buf := make([]byte, 4<<20)
	for off := int64(0); off < st.Size(); {
		data, err := f.Seek(off, seekData)
		if err != nil {
			if errors.Is(err, syscall.ENXIO) {
				return -1, nil // no data after off
			}
			data = off // no SEEK_DATA here: read everything
		}
		hole, err := f.Seek(data, seekHole)
		if err != nil || hole <= data {
			hole = st.Size()
		}
		// [data, hole) in chunks that overlap by a needle's length.
		for pos := data; pos < hole; {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), hole-pos)], pos)
			if n == 0 && err != nil {
				break
			}
			for i, nd := range needles {
				if bytes.Contains(buf[:n], nd) {
					return i, nil
				}
			}
			if pos+int64(n) >= hole {
				break
			}
			pos += int64(max(n-longest+1, 1))
		}
		off = hole
	}
	return -1, nil
}

// bucketValue reads key's current value as clearing's NATS user.
func bucketValue(t *testing.T, kv jetstream.KeyValue, key string) []byte {
	t.Helper()
	e, err := kv.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("bucket %s: %v", key, err)
	}
	return e.Value()
}

// entryOf decodes a bucket value into its signed entry.
func entryOf(t *testing.T, v []byte) *fare.FaceEntry {
	t.Helper()
	_, b, err := fare.Unbundle(v)
	if err != nil {
		t.Fatal(err)
	}
	e, err := fare.VerifyFaceEntry(b, []ed25519.PublicKey{testConfirmKey.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// keysOf lists the bucket's keys of terminal (entries, not its head).
func keysOf(t *testing.T, kv jetstream.KeyValue, terminal string) []string {
	t.Helper()
	lister, err := kv.ListKeysFiltered(context.Background(), terminal+".*")
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
		errors.Is(err, nats.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrNoResponders) {
		// The server answers no JetStream API request for a moment while
		// it reloads its accounts (a registry change): none yet. (A
		// listing's consumer reports it as nats.go's older error: a
		// fresh run failed on it.)
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range lister.Keys() {
		if !strings.HasSuffix(k, "."+fare.FaceHeadKey) {
			out = append(out, k)
		}
	}
	return out
}

func identifies(f *galleryfeed.Feed, face *faceOf, subject string) bool {
	d, err := f.Identify(face.sample(), gallery.DefaultPolicy())
	return err == nil && d.Accepted && d.Subject == subject
}

// TestFaceGalleriesFollowEnrolmentAndErasure: subjects enrolled centrally
// reach exactly the terminals of their scope (stops or lines), sealed for
// each; a terminal offline meanwhile catches up when it reconnects; a gate
// restarted without the network has its gallery; an erasure reaches a
// watching gate at once and an offline one when it reconnects, after which
// neither can match the subject; and no file under clearing's data dir
// (template store, clearing's store, JetStream) or any terminal's holds the
// subject's descriptors or the ciphertexts published for it.
func TestFaceGalleriesFollowEnrolmentAndErasure(t *testing.T) {
	ctx := context.Background()
	fc := startFaceCity(t)
	kv := adminKV(t, fc.url, fare.FaceBucket)
	feeds := map[string]*runningFeed{}
	for _, id := range []string{"t1", "t2", "t3"} {
		feeds[id] = fc.startFeed(t, id, fc.url, time.Minute)
	}
	defer func() {
		for _, f := range feeds {
			f.stop(t)
		}
	}()
	// t4 was online once (it has a head), then went offline.
	feeds["t4"] = fc.startFeed(t, "t4", fc.url, time.Minute)
	waitFor(t, "t4's first head", 10*time.Second, func() bool { return feeds["t4"].Status().HeadVersion == 0 && !feeds["t4"].Status().HeadIssued.IsZero() })
	feeds["t4"].stop(t)

	alice, bob := newFace(1), newFace(2)
	aliceT, bobT := alice.templates(3), bob.templates(3)
	// alice travels face-only at stop-t1; bob holds a concession card,
	// verified at stop-t2 and on route bus-L1 (t3, t4).
	reqA := faceRequest("alice-7f3a", aliceT)
	reqA.FaceOnly, reqA.Stops = true, []string{"stop-t1"}
	sa, err := fc.cl.EnrolFace(ctx, reqA)
	if err != nil {
		t.Fatal(err)
	}
	card := fare.HashDeny(fare.Card, "bob-card")
	reqB := faceRequest("bob-91c2", bobT)
	reqB.CardKey, reqB.Stops, reqB.Lines = card.String(), []string{"stop-t2"}, []string{"bus-L1"}
	sb, err := fc.cl.EnrolFace(ctx, reqB)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(sa.Terminals); got != 1 || sa.Terminals[0].Terminal != "t1" || !sa.Terminals[0].Held {
		t.Fatalf("alice's terminals: %+v", sa.Terminals)
	}
	if got := len(sb.Terminals); got != 3 {
		t.Fatalf("bob's terminals: %+v", sb.Terminals)
	}

	// Each watching terminal has exactly its scope's subjects.
	waitFor(t, "alice at t1", 10*time.Second, func() bool { return identifies(feeds["t1"].Feed, alice, "alice-7f3a") })
	for _, id := range []string{"t2", "t3"} {
		f := feeds[id]
		waitFor(t, "bob at "+id, 10*time.Second, func() bool {
			d, err := f.VerifyCard(card, bob.sample(), gallery.DefaultPolicy())
			return err == nil && d.Accepted && d.Subject == "bob-91c2"
		})
		if f.Has("alice-7f3a") {
			t.Errorf("%s holds alice, who is not in its scope", id)
		}
		if _, err := f.Identify(bob.sample(), gallery.DefaultPolicy()); !errors.Is(err, gallery.ErrEmpty) {
			t.Errorf("%s: bob is a card holder, not a face-only rider: 1:N gives %v", id, err)
		}
		if d, err := f.VerifyCard(card, alice.sample(), gallery.DefaultPolicy()); err != nil || d.Accepted {
			t.Errorf("%s: alice's face accepted for bob's card: %+v %v", id, d, err)
		}
	}
	if feeds["t1"].Has("bob-91c2") {
		t.Error("t1 holds bob, who is not in its scope")
	}
	if _, err := feeds["t1"].VerifyCard(card, bob.sample(), gallery.DefaultPolicy()); !errors.Is(err, galleryfeed.ErrNoHolder) {
		t.Errorf("t1 verifying bob's card: %v", err)
	}
	// The bucket: one key per terminal in scope, sealed for it.
	for id, want := range map[string]int{"t1": 1, "t2": 1, "t3": 1, "t4": 1} {
		if got := len(keysOf(t, kv, id)); got != want {
			t.Errorf("bucket keys of %s: %d, want %d", id, got, want)
		}
	}

	// What was published for alice and bob: the ciphertexts.
	var published [][]byte
	sealed := map[string][]byte{}
	for _, id := range []string{"t1", "t2", "t3", "t4"} {
		for _, k := range keysOf(t, kv, id) {
			e := entryOf(t, bucketValue(t, kv, k))
			published = append(published, e.Sealed)
			sealed[id] = e.Sealed
		}
	}
	var plain [][]byte
	for _, d := range append(append([][fare.FaceDim]float32{}, aliceT...), bobT...) {
		plain = append(plain, descriptorBytes(d)...)
	}
	clearingDir := filepath.Join(fc.dir, "clearing")
	// The scan finds what is there: the ciphertexts are in JetStream's
	// files and in the terminals' copies (encrypted at rest); the
	// descriptors in plain are nowhere, even before erasure.
	waitFor(t, "the ciphertexts on disk", 10*time.Second, func() bool {
		return len(filesHolding(t, [][]byte{sealed["t1"]}, filepath.Join(clearingDir, "jetstream"))) > 0 &&
			len(filesHolding(t, [][]byte{sealed["t1"]}, fc.feedDir("t1"))) > 0
	})
	if f := filesHolding(t, plain, fc.dir); len(f) > 0 {
		t.Fatalf("descriptors in plain on disk: %v", f)
	}

	// t4, offline while bob was enrolled, restarts without the network:
	// its copy predates bob, and is stale past its bound.
	feeds["t4"] = fc.startFeed(t, "t4", "", time.Minute)
	if feeds["t4"].Has("bob-91c2") {
		t.Fatal("offline t4 knows bob")
	}
	// Back online: it catches up.
	feeds["t4"].stop(t)
	start := time.Now()
	feeds["t4"] = fc.startFeed(t, "t4", fc.url, time.Minute)
	waitFor(t, "bob at t4 after reconnecting", 10*time.Second, func() bool {
		d, err := feeds["t4"].VerifyCard(card, bob.sample(), gallery.DefaultPolicy())
		return err == nil && d.Accepted
	})
	t.Logf("t4 caught up %s after reconnecting", time.Since(start).Round(time.Millisecond))

	// t2 goes offline; bob withdraws consent (erasure) meanwhile.
	feeds["t2"].stop(t)
	feeds["t2"] = fc.startFeed(t, "t2", "", time.Minute)
	if !feeds["t2"].Has("bob-91c2") {
		t.Fatal("t2 restarted offline lost its copy")
	}
	if d, err := feeds["t2"].VerifyCard(card, bob.sample(), gallery.DefaultPolicy()); err != nil || !d.Accepted {
		t.Fatalf("t2 restarted offline within its bound cannot match: %+v %v", d, err)
	}
	start = time.Now()
	e, err := fc.cl.EraseFace(ctx, "bob-91c2", "desk-1", "consent withdrawn")
	if err != nil {
		t.Fatal(err)
	}
	if !e.BucketErased || len(e.Terminals) != 3 {
		t.Fatalf("erasure: %+v", e)
	}
	for _, id := range []string{"t3", "t4"} {
		f := feeds[id]
		waitFor(t, "bob erased at watching "+id, 5*time.Second, func() bool { return !f.Has("bob-91c2") })
		if _, err := f.VerifyCard(card, bob.sample(), gallery.DefaultPolicy()); !errors.Is(err, galleryfeed.ErrNoHolder) {
			t.Errorf("%s after erasure: %v", id, err)
		}
	}
	t.Logf("erasure reached the watching gates in %s", time.Since(start).Round(time.Millisecond))
	// Offline t2 reconnects: the erasure reaches it.
	feeds["t2"].stop(t)
	feeds["t2"] = fc.startFeed(t, "t2", fc.url, time.Minute)
	waitFor(t, "bob erased at t2 after reconnecting", 10*time.Second, func() bool { return !feeds["t2"].Has("bob-91c2") && feeds["t2"].Status().Fresh })
	if _, err := feeds["t2"].VerifyCard(card, bob.sample(), gallery.DefaultPolicy()); !errors.Is(err, galleryfeed.ErrNoHolder) {
		t.Errorf("t2 after erasure: %v", err)
	}

	// alice is erased while t1 watches.
	if _, err := fc.cl.EraseFace(ctx, "alice-7f3a", "desk-1", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice erased at t1", 5*time.Second, func() bool { return !feeds["t1"].Has("alice-7f3a") })
	if _, err := feeds["t1"].Identify(alice.sample(), gallery.DefaultPolicy()); !errors.Is(err, gallery.ErrEmpty) {
		t.Errorf("t1 identifying alice after erasure: %v", err)
	}
	for _, id := range []string{"t1", "t2", "t3", "t4"} {
		if k := keysOf(t, kv, id); len(k) != 0 {
			t.Errorf("bucket keys of %s after erasure: %v", id, k)
		}
	}
	// No template bytes anywhere: not in plain, not as the ciphertexts that
	// were published (JetStream rewrites a block without an overwritten
	// message; the terminals rewrite their copies).
	dirs := []string{clearingDir, fc.feedDir("t1"), fc.feedDir("t2"), fc.feedDir("t3"), fc.feedDir("t4")}
	waitFor(t, "no template bytes in any file", 10*time.Second, func() bool {
		return len(filesHolding(t, append(append([][]byte{}, plain...), published...), dirs...)) == 0
	})
	if f := filesHolding(t, append(append([][]byte{}, plain...), published...), dirs...); len(f) > 0 {
		t.Fatalf("template bytes left: %v", f)
	}
	// The erasure records stay: who, when, why, where; no template.
	es, err := fc.cl.FaceErasures("bob-91c2")
	if err != nil || len(es) != 1 || es[0].ErasedBy != "desk-1" || es[0].Reason != "consent withdrawn" || !es[0].BucketErased {
		t.Fatalf("bob's erasure records: %+v %v", es, err)
	}
	if _, err := fc.cl.FaceSubject(ctx, "bob-91c2"); !errors.Is(err, clearing.ErrNotFound) {
		t.Errorf("bob after erasure: %v", err)
	}
	// Re-enrolment after an erasure is a new enrolment at a newer version,
	// which the gates take; only of the same person, said so (the id's
	// account and deny listing stay with it: an outside test enrolled
	// another person under an erased id, who inherited both).
	reqA.Descriptors = alice.templates(2)
	if _, err := fc.cl.EnrolFace(ctx, reqA); !errors.Is(err, clearing.ErrFaceConflict) || !strings.Contains(err.Error(), "was erased at") {
		t.Fatalf("an erased id enrolled again, not said to be the same person: %v, want refused", err)
	}
	reqA.SamePersonAsErased = true
	// On a consent given again since: the erasure withdrew the first (an
	// outside review re-enrolled a subject on the withdrawn one).
	if _, err := fc.cl.EnrolFace(ctx, reqA); !errors.Is(err, clearing.ErrInvalidFace) || !strings.Contains(err.Error(), "erasure at") {
		t.Fatalf("alice re-enrolled on the consent her erasure withdrew: %v, want refused", err)
	}
	reqA.Consent.At = time.Now()
	if _, err := fc.cl.EnrolFace(ctx, reqA); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice again at t1", 10*time.Second, func() bool { return identifies(feeds["t1"].Feed, alice, "alice-7f3a") })
	if v, err := fc.cl.EnrolFace(ctx, reqA); err != nil || !v.Replayed {
		t.Errorf("the same enrolment of alice again: %+v, %v (want it answered, replayed)", v, err)
	}
	reqA.Descriptors = alice.templates(2)
	if _, err := fc.cl.EnrolFace(ctx, reqA); !errors.Is(err, clearing.ErrFaceConflict) {
		t.Errorf("enrolling alice twice: %v", err)
	}
	for id, f := range feeds {
		if by := f.Refusals(); by[galleryfeed.RefusedUntrusted]+by[galleryfeed.RefusedSeal]+by[galleryfeed.RefusedMalformed]+by[galleryfeed.RefusedMismatch] != 0 {
			t.Errorf("%s refused genuine values: %v", id, by)
		}
	}
	if r, d := fc.cl.FaceGuard(); r != 0 || d != 0 {
		t.Errorf("with nobody attacking, clearing repaired %d face values and deleted %d consumers", r, d)
	}
}

// TestFaceGalleryStale: a gate matches faces only while its last head is
// within its bound: with clearing gone, past the bound Identify and
// VerifyCard refuse (the gate falls back to cards), also after a restart
// without the network; with clearing back, it matches again.
func TestFaceGalleryStale(t *testing.T) {
	ctx := context.Background()
	fc := startFaceCity(t)
	face := newFace(3)
	req := faceRequest("carol-22", face.templates(3))
	req.FaceOnly, req.CardKey, req.Stops = true, fare.DenyKey(fare.Card, "carol-card"), []string{"stop-t1"}
	if _, err := fc.cl.EnrolFace(ctx, req); err != nil {
		t.Fatal(err)
	}
	const bound = 2 * time.Second
	f := fc.startFeed(t, "t1", fc.url, bound)
	defer func() { f.stop(t) }()
	waitFor(t, "carol at t1", 10*time.Second, func() bool { return identifies(f.Feed, face, "carol-22") })

	// The gate's clock says its head is older than the bound.
	f.skew.Store(int64(bound + time.Second))
	if _, err := f.Identify(face.sample(), gallery.DefaultPolicy()); !errors.Is(err, galleryfeed.ErrStale) {
		t.Fatalf("stale 1:N: %v", err)
	}
	if _, err := f.VerifyCard(fare.HashDeny(fare.Card, "carol-card"), face.sample(), gallery.DefaultPolicy()); !errors.Is(err, galleryfeed.ErrStale) {
		t.Fatalf("stale 1:1: %v", err)
	}
	if _, _, err := f.Galleries(); !errors.Is(err, galleryfeed.ErrStale) {
		t.Fatalf("stale galleries: %v", err)
	}
	f.skew.Store(0)
	if !identifies(f.Feed, face, "carol-22") {
		t.Fatal("fresh again, no match")
	}

	// Clearing stops: no more heads; past the bound the gate refuses.
	fc.cl.stop(t)
	waitFor(t, "the gallery stale without clearing", 10*time.Second, func() bool {
		_, err := f.Identify(face.sample(), gallery.DefaultPolicy())
		return errors.Is(err, galleryfeed.ErrStale)
	})
	if age, ok := f.Fresh(); ok || age <= bound {
		t.Fatalf("fresh %v at age %s", ok, age)
	}
	f.stop(t)
	// Restarted without the network, it has its gallery but does not use
	// a stale one.
	f = fc.startFeed(t, "t1", "", bound)
	if !f.Has("carol-22") {
		t.Fatal("restarted gate lost its copy")
	}
	if _, err := f.Identify(face.sample(), gallery.DefaultPolicy()); !errors.Is(err, galleryfeed.ErrStale) {
		t.Fatalf("restarted gate with a stale copy: %v", err)
	}
}

// TestFaceGalleryAttacks, from the side of a terminal (and of anyone with
// full access to the broker): a terminal may watch its own keys and
// nothing else (no other terminal's keys, no stream info, no direct get, no
// writing, deleting or purging); what it can make the server write into
// the bucket, a value signed by a stranger, a value sealed for another
// terminal, another terminal's genuine value, an older head and an erased
// subject's genuine value put back are all refused by the gate, which
// keeps matching what clearing sent, and clearing puts its own values
// back; consumers that deliver elsewhere or are durable are deleted.
func TestFaceGalleryAttacks(t *testing.T) {
	// What each step waits for takes milliseconds; on a machine busy with
	// other work a gate's feed took over 5 s (CI is such a machine).
	const attackWait = 20 * time.Second
	ctx := context.Background()
	fc := startFaceCity(t)
	alice, bob := newFace(11), newFace(12)
	reqA := faceRequest("alice-a1", alice.templates(3))
	reqA.FaceOnly, reqA.Stops = true, []string{"stop-t1"}
	if _, err := fc.cl.EnrolFace(ctx, reqA); err != nil {
		t.Fatal(err)
	}
	card := fare.HashDeny(fare.Card, "bob-card")
	reqB := faceRequest("bob-b2", bob.templates(3))
	reqB.CardKey, reqB.Stops = card.String(), []string{"stop-t2"}
	if _, err := fc.cl.EnrolFace(ctx, reqB); err != nil {
		t.Fatal(err)
	}
	f1 := fc.startFeed(t, "t1", fc.url, time.Minute)
	defer f1.stop(t)
	f2 := fc.startFeed(t, "t2", fc.url, time.Minute)
	defer f2.stop(t)
	waitFor(t, "alice at t1", 10*time.Second, func() bool { return identifies(f1.Feed, alice, "alice-a1") })
	waitFor(t, "bob at t2", 10*time.Second, func() bool { return f2.Has("bob-b2") && f2.Status().Fresh })

	admin := adminConn(t, fc.url)
	defer admin.Close()
	ajs, _ := jetstream.New(admin)
	kv, err := ajs.KeyValue(ctx, fare.FaceBucket)
	if err != nil {
		t.Fatal(err)
	}
	aliceKey, bobKey := keysOf(t, kv, "t1")[0], keysOf(t, kv, "t2")[0]
	genuineAlice := bucketValue(t, kv, aliceKey)
	oldHead := bucketValue(t, kv, fare.FaceHeadBucketKey("t1"))
	stillAlice := func(what string) {
		t.Helper()
		if !identifies(f1.Feed, alice, "alice-a1") {
			t.Fatalf("after %s t1 no longer identifies alice", what)
		}
	}
	isClearings := func(key string, version uint64) func() bool {
		return func() bool {
			e, err := kv.Get(ctx, key)
			if err != nil {
				return false
			}
			_, b, err := fare.Unbundle(e.Value())
			if err != nil {
				return false
			}
			fe, err := fare.VerifyFaceEntry(b, []ed25519.PublicKey{testConfirmKey.Public().(ed25519.PublicKey)})
			return err == nil && fe.Version == version
		}
	}
	aliceVersion := entryOf(t, genuineAlice).Version
	gone := func(key string) func() bool {
		return func() bool { _, err := kv.Get(ctx, key); return errors.Is(err, jetstream.ErrKeyNotFound) }
	}

	// What NATS lets t2 do, and not do.
	stream := fare.FaceStream
	errs := make(chan error, 64)
	nc2 := terminalConn(t, fc.url, fc.keys["t2"], "t2", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	defer nc2.Close()
	checkPermissions(t, nc2, errs, []permCase{
		{name: "its own face feed", pub: fare.GateFeedSubject("t2", fare.FeedFace)},
		{name: "t1's face feed", pub: fare.GateFeedSubject("t1", fare.FeedFace), denied: true},
		{name: "a watch of its own keys", pub: "$JS.API.CONSUMER.CREATE." + stream + ".x." + fare.FaceWatchFilter("t2"), denied: true},
		{name: "a watch of t1's keys", pub: "$JS.API.CONSUMER.CREATE." + stream + ".x." + fare.FaceWatchFilter("t1"), denied: true},
		{name: "a watch of every key", pub: "$JS.API.CONSUMER.CREATE." + stream + ".x.$KV." + fare.FaceBucket + ".>", denied: true},
		{name: "a consumer without filter", pub: "$JS.API.CONSUMER.CREATE." + stream + ".x", denied: true},
		{name: "a legacy ephemeral consumer", pub: "$JS.API.CONSUMER.CREATE." + stream, denied: true},
		{name: "a durable consumer (legacy API)", pub: "$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".x", denied: true},
		{name: "the bucket's stream info (it would list every key)", pub: "$JS.API.STREAM.INFO." + stream, denied: true},
		{name: "a direct get of t1's value", pub: "$JS.API.DIRECT.GET." + stream + ".$KV." + fare.FaceBucket + "." + aliceKey, denied: true},
		{name: "a message get", pub: "$JS.API.STREAM.MSG.GET." + stream, denied: true},
		{name: "a put under t1's key", pub: "$KV." + fare.FaceBucket + "." + aliceKey, denied: true},
		{name: "a put under its own head", pub: "$KV." + fare.FaceBucket + "." + fare.FaceHeadBucketKey("t2"), denied: true},
		{name: "a message delete", pub: "$JS.API.STREAM.MSG.DELETE." + stream, denied: true},
		{name: "a purge", pub: "$JS.API.STREAM.PURGE." + stream, denied: true},
		{name: "the bucket's deletion", pub: "$JS.API.STREAM.DELETE." + stream, denied: true},
		{name: "the bucket's update", pub: "$JS.API.STREAM.UPDATE." + stream, denied: true},
		{name: "the consumer list", pub: "$JS.API.CONSUMER.LIST." + stream, denied: true},
		{name: "a subscription to the bucket's subjects", sub: "$KV." + fare.FaceBucket + ".>", denied: true},
		{name: "a subscription to t1's inbox", sub: fare.TerminalInboxPrefix("t1") + ".>", denied: true},
	})
	// Its own feed delivering into t1's inbox: clearing refuses.
	peek, _ := json.Marshal(fare.GateFeedRequest{Deliver: fare.TerminalInboxPrefix("t1") + ".peek"})
	resp, err := nc2.Request(fare.GateFeedSubject("t2", fare.FeedFace), peek, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var g fare.GateFeedGrant
	if json.Unmarshal(resp.Data, &g) != nil || !strings.Contains(g.Error, "delivery subject") {
		t.Fatalf("t2's face feed into t1's inbox: %s, want refused", resp.Data)
	}
	// nats.go as t2, asking for t1's keys: refused.
	js2, _ := nc2.JetStream(nats.APIPrefix(lentAPI))
	if sub, err := js2.SubscribeSync(fare.FaceWatchFilter("t1"), nats.BindStream(stream), nats.OrderedConsumer(), nats.Context(ctx)); err == nil {
		if m, err := sub.NextMsg(time.Second); err == nil {
			t.Fatalf("t2 read t1's value %s", m.Subject)
		}
		sub.Unsubscribe()
	}
	drain(errs)

	// Clearing's answers to feed requests t1 aims at its own key, and a
	// feed delivering there: neither reaches the bucket (clearing answers
	// and delivers only into the terminal's inbox; when terminals shared
	// clearing's account, the server wrote JetStream's answers there).
	nc1 := terminalConn(t, fc.url, fc.keys["t1"], "t1")
	defer nc1.Close()
	was, err := kv.Get(ctx, aliceKey)
	if err != nil {
		t.Fatal(err)
	}
	ownInbox, _ := json.Marshal(fare.GateFeedRequest{Deliver: nc1.NewInbox()})
	intoKey, _ := json.Marshal(fare.GateFeedRequest{Deliver: "$KV." + fare.FaceBucket + "." + aliceKey})
	for range 10 {
		if err := nc1.PublishRequest(fare.GateFeedSubject("t1", fare.FeedFace), "$KV."+fare.FaceBucket+"."+aliceKey, ownInbox); err != nil {
			t.Fatal(err)
		}
		if err := nc1.PublishRequest(fare.GateFeedSubject("t1", fare.FeedFace), nc1.NewInbox(), intoKey); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc1.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if now, err := kv.Get(ctx, aliceKey); err != nil || now.Revision() != was.Revision() {
		t.Fatalf("t1's aimed feed requests wrote alice's key: revision %d, was %d (%v)", now.Revision(), was.Revision(), err)
	}
	// Junk there from a party with full access: the gate refuses it and
	// clearing puts its value back.
	before := f1.Refusals()[galleryfeed.RefusedMalformed]
	if _, err := kv.Put(ctx, aliceKey, []byte(`{"type":"io.nats.jetstream.api.v1.stream_info_response"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the junk refused at t1", attackWait, func() bool { return f1.Refusals()[galleryfeed.RefusedMalformed] > before })
	stillAlice("junk under its key")
	waitFor(t, "clearing's value put back", attackWait, isClearings(aliceKey, aliceVersion))

	// A value signed by a stranger, put by a party with full access.
	_, stranger, _ := ed25519.GenerateKey(nil)
	e := entryOf(t, genuineAlice)
	forged, _ := e.Sign(stranger)
	before = f1.Refusals()[galleryfeed.RefusedUntrusted]
	if _, err := kv.Put(ctx, aliceKey, forged); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forged value refused", attackWait, func() bool { return f1.Refusals()[galleryfeed.RefusedUntrusted] > before })
	stillAlice("a forged value")
	waitFor(t, "clearing's value put back after the forgery", attackWait, isClearings(aliceKey, aliceVersion))

	// bob's genuine value for t2, put under t1's key: another terminal's.
	before = f1.Refusals()[galleryfeed.RefusedForeign]
	if _, err := kv.Put(ctx, aliceKey, bucketValue(t, kv, bobKey)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "another terminal's value refused", attackWait, func() bool { return f1.Refusals()[galleryfeed.RefusedForeign] > before })
	stillAlice("another terminal's value")
	waitFor(t, "clearing's value put back after the swap", attackWait, isClearings(aliceKey, aliceVersion))

	// Sealed for t2, relabelled for t1 under a key of its own and signed
	// with clearing's key itself: the signature holds, the seal does not.
	sealedForT2 := entryOf(t, bucketValue(t, kv, bobKey))
	moved := &fare.FaceEntry{Terminal: "t1", Key: fare.FaceKeyToken{0xee, 1}, Version: sealedForT2.Version + 100, Sealed: sealedForT2.Sealed}
	mb, err := moved.Sign(testConfirmKey)
	if err != nil {
		t.Fatal(err)
	}
	movedKey := fare.FaceEntryKey("t1", moved.Key)
	before = f1.Refusals()[galleryfeed.RefusedSeal]
	if _, err := kv.Put(ctx, movedKey, mb); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a value sealed for t2 refused at t1", attackWait, func() bool { return f1.Refusals()[galleryfeed.RefusedSeal] > before })
	if f1.Has("bob-b2") {
		t.Fatal("t1 opened a record sealed for t2")
	}
	waitFor(t, "the relabelled value purged", attackWait, gone(movedKey))

	// An older genuine head put back: stale, the gate's own is newer.
	waitFor(t, "a newer head at t1", attackWait, func() bool {
		_, b, _ := fare.Unbundle(oldHead)
		h, _ := fare.DecodeFaceHead(b)
		return f1.Status().HeadIssued.After(h.IssuedAt)
	})
	oldOnes := func() uint64 { r := f1.Refusals(); return r[galleryfeed.RefusedStale] + r[galleryfeed.RefusedOlder] }
	before = oldOnes()
	if _, err := kv.Put(ctx, fare.FaceHeadBucketKey("t1"), oldHead); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old head refused", attackWait, func() bool { return oldOnes() > before })

	// Consumers clearing deletes, made by a party of clearing's account that
	// is not clearing (terminals can make none): t1's keys into t2's inbox,
	// durable.
	for _, tc := range []struct{ name, deliver, durable string }{
		{"its keys into t2's inbox", fare.TerminalInboxPrefix("t2") + ".leak", ""},
		{"durable, into its own inbox", fare.TerminalInboxPrefix("t1") + ".kept", "evil"},
	} {
		name := "evil"
		cfg := map[string]any{"name": name, "deliver_subject": tc.deliver, "ack_policy": "none", "filter_subject": fare.FaceWatchFilter("t1")}
		if tc.durable != "" {
			cfg["durable_name"], cfg["ack_policy"] = tc.durable, "explicit"
		}
		req, _ := json.Marshal(map[string]any{"stream_name": stream, "config": cfg})
		resp, err := admin.Request("$JS.API.CONSUMER.CREATE."+stream+"."+name+"."+fare.FaceWatchFilter("t1"), req, 2*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if strings.Contains(string(resp.Data), `"error"`) {
			t.Fatalf("%s: refused by the server itself: %s", tc.name, resp.Data)
		}
		// Made with clearing's own credentials, so no advisory pins it on
		// a terminal: the sweep (every 5 s) finds it; asked for now.
		start := time.Now()
		fc.cl.SweepConsumers(ctx)
		waitFor(t, tc.name+": deleted by clearing", attackWait, func() bool {
			_, err := ajs.Consumer(ctx, stream, name)
			return errors.Is(err, jetstream.ErrConsumerNotFound)
		})
		t.Logf("%s: deleted %s after creation", tc.name, time.Since(start).Round(time.Millisecond))
	}

	// alice is erased; her genuine value, kept by an attacker, is put back.
	if _, err := fc.cl.EraseFace(ctx, "alice-a1", "desk-1", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice erased at t1", attackWait, func() bool { return !f1.Has("alice-a1") })
	before = f1.Refusals()[galleryfeed.RefusedStale]
	if _, err := kv.Put(ctx, aliceKey, genuineAlice); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the erased subject's value refused", attackWait, func() bool { return f1.Refusals()[galleryfeed.RefusedStale] > before })
	if f1.Has("alice-a1") {
		t.Fatal("a replayed value brought an erased subject back")
	}
	waitFor(t, "the replayed value purged", attackWait, gone(aliceKey))
	// Also after a restart, reading the keys whole.
	f1.stop(t)
	f1 = fc.startFeed(t, "t1", fc.url, time.Minute)
	waitFor(t, "t1 fresh again", attackWait, func() bool { return f1.Status().Fresh })
	if f1.Has("alice-a1") {
		t.Fatal("alice back after a restart")
	}

	// Through it all t2's gallery is untouched, and a new enrolment still
	// reaches t1's watch.
	if d, err := f2.VerifyCard(card, bob.sample(), gallery.DefaultPolicy()); err != nil || !d.Accepted {
		t.Fatalf("t2 lost bob: %+v %v", d, err)
	}
	dave := newFace(14)
	reqD := faceRequest("dave-d4", dave.templates(2))
	reqD.FaceOnly, reqD.Stops = true, []string{"stop-t1"}
	if _, err := fc.cl.EnrolFace(ctx, reqD); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dave at t1", 10*time.Second, func() bool { return identifies(f1.Feed, dave, "dave-d4") })
	if r, d := fc.cl.FaceGuard(); r < 6 || d != 2 {
		t.Errorf("clearing repaired %d values and deleted %d consumers; want at least 6 (junk, forged, swapped, relabelled, old head, replay) and 2", r, d)
	}
	for id, f := range map[string]*runningFeed{"t1": f1, "t2": f2} {
		if _, ok := f.Fresh(); !ok {
			t.Errorf("%s stale after the attacks", id)
		}
	}
}

// TestFaceAPI: only the faces desk enrols and erases; auditors read;
// operators, the concessions and payments desks are refused, and so is a
// request without a valid token. Refusals name what is wrong. No answer
// holds a descriptor or a card token.
func TestFaceAPI(t *testing.T) {
	fc := startFaceCity(t)
	ts, err := clearing.LoadTokenStore(filepath.Join(fc.dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{"none": "", "bad": clearing.TokenPrefix + strings.Repeat("A", 43)}
	for _, g := range []struct {
		name     string
		role     clearing.Role
		operator string
	}{
		{"faces-desk", clearing.RoleFaces, ""}, {"auditor", clearing.RoleAuditor, ""}, {"metro", clearing.RoleOperator, "metro"},
		{"concessions", clearing.RoleConcessions, ""}, {"payments", clearing.RolePayments, ""},
	} {
		if tokens[g.name], err = ts.Issue(g.role, g.operator, g.name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.Issue(clearing.RoleFaces, "metro", "x"); err == nil {
		t.Error("a faces token bound to an operator was issued")
	}
	srv := httptest.NewServer(clearing.NewAPI(fc.cl.Clearing, nil, clearing.WithTokens(ts)))
	defer srv.Close()

	face := newFace(21)
	descs := face.templates(2)
	asJSON := func(ds [][fare.FaceDim]float32) [][]float64 {
		out := make([][]float64, len(ds))
		for i, d := range ds {
			for _, v := range d {
				out[i] = append(out[i], float64(v))
			}
		}
		return out
	}
	consentAt := time.Now().Add(-time.Minute).Format(time.RFC3339)
	body := func(edit func(map[string]any)) map[string]any {
		b := map[string]any{
			"subject": "erin-5e", "model_id": testModel, "descriptors": asJSON(descs), "stops": []string{"stop-t1"}, "face_only": true,
			"card_token": "erin-card-token",
			"consent":    map[string]any{"given_by": "the subject", "at": consentAt, "purpose": "face-only travel", "legal_basis": "GDPR Art. 9(2)(a) explicit consent"},
		}
		if edit != nil {
			edit(b)
		}
		return b
	}
	raw := func(status int, out map[string]any) string {
		b, _ := json.Marshal(out)
		return fmt.Sprintf("%d %s", status, b)
	}

	// Who may enrol.
	for party, want := range map[string]int{"none": 401, "bad": 401, "auditor": 403, "metro": 403, "concessions": 403, "payments": 403} {
		if st, out := apiCall(t, srv, "POST", "/v1/faces", tokens[party], body(nil)); st != want {
			t.Errorf("POST /v1/faces as %s: %s, want %d", party, raw(st, out), want)
		}
	}
	// What is wrong, named.
	for _, tc := range []struct {
		name, want string
		edit       func(map[string]any)
	}{
		{"bad subject id", "bad subject id", func(b map[string]any) { b["subject"] = "Erin Example" }},
		{"short descriptor", "descriptor 2: 127 values, want 128", func(b map[string]any) {
			d := asJSON(descs)
			d[1] = d[1][:127]
			b["descriptors"] = d
		}},
		{"value beyond float32", "outside float32", func(b map[string]any) {
			d := asJSON(descs)
			d[0][3] = 1e39
			b["descriptors"] = d
		}},
		{"no descriptors", "no descriptors", func(b map[string]any) { b["descriptors"] = [][]float64{} }},
		{"one capture sent twice", "descriptor 2 is descriptor 1 again: the same capture counts once", func(b map[string]any) {
			d := asJSON(descs)
			d[1] = d[0]
			b["descriptors"] = d
		}},
		{"unknown stop", `unknown stop "stop-t9"`, func(b map[string]any) { b["stops"] = []string{"stop-t9"} }},
		{"unknown line", `unknown line "tram-9"`, func(b map[string]any) { b["lines"] = []string{"tram-9"} }},
		{"no scope", "no scope", func(b map[string]any) { b["stops"] = nil }},
		{"missing consent", "missing consent given_by", func(b map[string]any) { b["consent"] = map[string]any{} }},
		{"consent of blanks", "missing consent given_by", func(b map[string]any) {
			b["consent"].(map[string]any)["given_by"], b["consent"].(map[string]any)["purpose"] = "   ", " "
		}},
		{"consent without a legal basis", "missing consent legal_basis", func(b map[string]any) {
			b["consent"].(map[string]any)["legal_basis"] = ""
		}},
		{"consent time", "consent at", func(b map[string]any) { b["consent"].(map[string]any)["at"] = "yesterday" }},
		{"consent time without its zone", `consent at "2026-12-01T10:00:00": want an RFC 3339 time with its zone (e.g. 2026-12-01T10:00:00+01:00 or ...Z)`, func(b map[string]any) {
			b["consent"].(map[string]any)["at"] = "2026-12-01T10:00:00"
		}},
		{"consent at the year 1", "consent at 0001-01-01T00:00:01Z is before 2000-01-01", func(b map[string]any) {
			b["consent"].(map[string]any)["at"] = "0001-01-01T00:00:01Z"
		}},
		// Go's zero time, sent: not said to be missing only (an outside
		// review's was).
		{"consent at Go's zero time", "missing consent at (when consent was given), or 0001-01-01T00:00:00Z, which is no such time", func(b map[string]any) {
			b["consent"].(map[string]any)["at"] = "0001-01-01T00:00:00Z"
		}},
		{"no model", "model id", func(b map[string]any) { b["model_id"] = "" }},
		{"a pipeline no gate runs", `model id "not-a-pipeline": clearing takes templates of test-pipeline/v1, dlib_resnet_v1`, func(b map[string]any) { b["model_id"] = "not-a-pipeline" }},
		{"neither face-only nor card", "neither face_only nor card_key", func(b map[string]any) { b["face_only"], b["card_token"] = false, "" }},
		{"a card key that is no hash", "card key", func(b map[string]any) { b["card_token"], b["card_key"] = "", "4111111111111111" }},
		// A token no card reader sends: its key would be no tap's, and the
		// card unchecked at the gate.
		{"a card token with a space", "card_token: the token has a space, control or invisible character", func(b map[string]any) { b["card_token"] = "a b" }},
		{"a card token with an invisible character", "card_token: the token has a space, control or invisible character", func(b map[string]any) { b["card_token"] = "abc\u200bdef" }},
		{"an unknown field", "unknown field", func(b map[string]any) { b["photo"] = "..." }},
	} {
		st, out := apiCall(t, srv, "POST", "/v1/faces", tokens["faces-desk"], body(tc.edit))
		if msg, _ := out["error"].(string); st != 400 || !strings.Contains(msg, tc.want) || strings.Contains(msg, "missing consent at") && tc.name != "missing consent" && tc.name != "consent at Go's zero time" {
			t.Errorf("%s: %s, want 400 naming %q (and only what is wrong)", tc.name, raw(st, out), tc.want)
		}
	}
	if v, _ := fc.cl.FaceGalleriesVersion(); v != 0 {
		t.Fatalf("refused enrolments changed the galleries (version %d)", v)
	}
	// The Go API checks what JSON cannot carry.
	nan := faceRequest("erin-5e", face.templates(1))
	nan.FaceOnly, nan.Stops = true, []string{"stop-t1"}
	nan.Descriptors[0][7] = float32(math.NaN())
	if _, err := fc.cl.EnrolFace(context.Background(), nan); !errors.Is(err, clearing.ErrInvalidFace) || !strings.Contains(err.Error(), "descriptor 1: descriptor value 7 is NaN") {
		t.Errorf("NaN descriptor: %v", err)
	}

	// The faces desk enrols; the answer holds no descriptor, no card token.
	st, out := apiCall(t, srv, "POST", "/v1/faces", tokens["faces-desk"], body(nil))
	if st != 201 {
		t.Fatalf("enrol: %s", raw(st, out))
	}
	for _, want := range []string{`"enrolled_by":"faces-desk"`, `"card_key":"` + fare.DenyKey(fare.Card, "erin-card-token") + `"`, `"legal_basis":"GDPR Art. 9(2)(a) explicit consent"`, `"terminal":"t1"`} {
		if !strings.Contains(raw(st, out), want) {
			t.Errorf("enrolment answer lacks %s: %s", want, raw(st, out))
		}
	}
	leaks := func(s string) bool {
		return strings.Contains(s, "erin-card-token") || strings.Contains(s, "descriptors") || strings.Contains(s, fmt.Sprint(descs[0][0])) || strings.Contains(s, fmt.Sprint(float64(descs[0][0])))
	}
	if leaks(raw(st, out)) {
		t.Errorf("enrolment answer leaks: %s", raw(st, out))
	}
	// The same request again (a desk's retry after a timeout, with or
	// without an Idempotency-Key) is answered with the subject it enrolled,
	// enrolling nothing again; another request for the subject is refused.
	version, _ := fc.cl.FaceGalleriesVersion()
	for _, hdr := range [][]string{nil, {"Idempotency-Key", "retry-1"}} {
		st, h, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], body(nil), hdr...)
		if st != 200 || h.Get("Idempotent-Replayed") != "true" || out["replayed"] != true || out["subject"] != "erin-5e" {
			t.Errorf("the same enrolment again (%v): %s", hdr, raw(st, out))
		}
	}
	for name, edit := range map[string]func(map[string]any){
		"another scope":      func(b map[string]any) { b["stops"] = []string{"stop-t1", "stop-t2"} },
		"another descriptor": func(b map[string]any) { b["descriptors"] = asJSON(face.templates(3)) },
		"another consent":    func(b map[string]any) { b["consent"].(map[string]any)["purpose"] = "other" },
	} {
		if st, out := apiCall(t, srv, "POST", "/v1/faces", tokens["faces-desk"], body(edit)); st != 409 {
			t.Errorf("enrolling erin-5e again with %s: %s, want 409", name, raw(st, out))
		}
	}
	if v, _ := fc.cl.FaceGalleriesVersion(); v != version {
		t.Errorf("repeats changed the galleries: version %d, was %d", v, version)
	}
	// With a key: a repeat is answered however late, even once the subject
	// is erased (an erasure is not undone by a late retry); the key with
	// another request is refused.
	fionaDescs := asJSON(newFace(22).templates(2))
	fionaBody := func(edit func(map[string]any)) map[string]any {
		return body(func(b map[string]any) {
			b["subject"], b["descriptors"], b["card_token"] = "fiona-6f", fionaDescs, "fiona-card"
			if edit != nil {
				edit(b)
			}
		})
	}
	st, h, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], fionaBody(nil), "Idempotency-Key", `"fiona-1"`)
	if st != 201 || h.Get("Idempotent-Replayed") != "" || out["replayed"] != nil {
		t.Fatalf("enrol fiona with a key: %s", raw(st, out))
	}
	if st, _, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], fionaBody(func(b map[string]any) { b["face_only"] = false }), "Idempotency-Key", "fiona-1"); st != 422 {
		t.Errorf("the key with another request: %s, want 422", raw(st, out))
	}
	if st, _, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], fionaBody(nil), "Idempotency-Key", strings.Repeat("k", 300)); st != 400 || !strings.Contains(raw(st, out), "Idempotency-Key") {
		t.Errorf("a bad key: %s, want 400 naming it", raw(st, out))
	}
	if st, out := apiCall(t, srv, "DELETE", "/v1/faces/fiona-6f", tokens["faces-desk"], nil); st != 200 {
		t.Fatalf("erase fiona: %s", raw(st, out))
	}
	if st, _, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], fionaBody(nil), "Idempotency-Key", "fiona-1"); st != 409 || !strings.Contains(raw(st, out), "erased since") {
		t.Errorf("a late retry of an erased enrolment: %s, want 409 saying it was erased", raw(st, out))
	}
	if _, err := fc.cl.FaceSubject(context.Background(), "fiona-6f"); !errors.Is(err, clearing.ErrNotFound) {
		t.Errorf("a late retry re-enrolled an erased subject: %v", err)
	}
	// A new key enrols again once erased; the same request under yet
	// another key is a replay, and that key too then names the enrolment:
	// after the next erasure a retry with it is refused, not enrolled.
	if st, _, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], fionaBody(nil), "Idempotency-Key", "fiona-x"); st != 409 || !strings.Contains(raw(st, out), "same_person_as_erased") {
		t.Errorf("enrol under fiona's erased id, not said to be her: %s, want 409", raw(st, out))
	}
	samePerson := fionaBody(func(b map[string]any) { b["same_person_as_erased"] = true })
	if st, _, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], samePerson, "Idempotency-Key", "fiona-old"); st != 400 || !strings.Contains(raw(st, out), "which withdrew it") {
		t.Errorf("enrol fiona again on the consent her erasure withdrew: %s, want 400", raw(st, out))
	}
	samePerson = fionaBody(func(b map[string]any) {
		b["same_person_as_erased"] = true
		b["consent"].(map[string]any)["at"] = time.Now().Format(time.RFC3339Nano)
	})
	if st, _, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], samePerson, "Idempotency-Key", "fiona-2"); st != 201 {
		t.Errorf("enrol fiona again with a new key: %s", raw(st, out))
	}
	if st, _, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], samePerson, "Idempotency-Key", "fiona-3"); st != 200 || out["replayed"] != true {
		t.Errorf("the same enrolment under another key: %s, want 200 replayed", raw(st, out))
	}
	if st, out := apiCall(t, srv, "DELETE", "/v1/faces/fiona-6f", tokens["faces-desk"], nil); st != 200 {
		t.Fatalf("erase fiona again: %s", raw(st, out))
	}
	if st, _, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], samePerson, "Idempotency-Key", "fiona-3"); st != 409 {
		t.Errorf("a late retry under the replay's key after an erasure: %s, want 409", raw(st, out))
	}
	// An erasure with a key: its late retry answers the erasure it made and
	// leaves a re-enrolment since alone (an outside review's retry erased
	// it); the key for another subject is 422.
	enrolAgain := func(key string) {
		t.Helper()
		b := fionaBody(func(b map[string]any) {
			b["same_person_as_erased"] = true
			b["consent"].(map[string]any)["at"] = time.Now().Format(time.RFC3339Nano)
		})
		if st, _, out := apiCallWith(t, srv, "POST", "/v1/faces", tokens["faces-desk"], b, "Idempotency-Key", key); st != 201 {
			t.Fatalf("enrol fiona again (%s): %s", key, raw(st, out))
		}
	}
	enrolAgain("fiona-4")
	st, _, first := apiCallWith(t, srv, "DELETE", "/v1/faces/fiona-6f", tokens["faces-desk"], nil, "Idempotency-Key", "del-1")
	if st != 200 || first["already_erased"] != nil {
		t.Fatalf("erase fiona with a key: %s", raw(st, first))
	}
	enrolAgain("fiona-5")
	if st, _, out := apiCallWith(t, srv, "DELETE", "/v1/faces/fiona-6f", tokens["faces-desk"], nil, "Idempotency-Key", "del-1"); st != 200 ||
		out["already_erased"] != true || out["enrolled_version"] != first["enrolled_version"] || out["version"] != first["version"] {
		t.Errorf("a late retry of a keyed erasure: %s, want the first erasure %s, already erased", raw(st, out), raw(200, first))
	}
	if v, err := fc.cl.FaceSubject(context.Background(), "fiona-6f"); err != nil || v.Subject != "fiona-6f" {
		t.Errorf("a keyed erasure's retry erased the re-enrolment: %+v, %v", v, err)
	}
	if st, _, out := apiCallWith(t, srv, "DELETE", "/v1/faces/erin-5e", tokens["faces-desk"], nil, "Idempotency-Key", "del-1"); st != 422 {
		t.Errorf("an erasure's key for another subject: %s, want 422", raw(st, out))
	}
	// Who may read.
	for party, want := range map[string]int{"none": 401, "faces-desk": 200, "auditor": 200, "metro": 403, "concessions": 403, "payments": 403} {
		for _, path := range []string{"/v1/faces/erin-5e", "/v1/faces"} {
			st, out := apiCall(t, srv, "GET", path, tokens[party], nil)
			if st != want {
				t.Errorf("GET %s as %s: %s, want %d", path, party, raw(st, out), want)
			}
			// The refusal names the caller's role, not "operators" (an
			// outside review saw that said to a concessions token).
			if party == "concessions" && !strings.Contains(raw(st, out), "concessions tokens do not see riders' faces records") {
				t.Errorf("GET %s as %s: %s, want the refusal to name its role", path, party, raw(st, out))
			}
			if st == 200 && leaks(raw(st, out)) {
				t.Errorf("GET %s leaks: %s", path, raw(st, out))
			}
		}
	}
	st, out = apiCall(t, srv, "GET", "/v1/faces/erin-5e", tokens["auditor"], nil)
	enrolled, _ := out["enrolled"].(map[string]any)
	terms, _ := enrolled["terminals"].([]any)
	if len(terms) != 1 || terms[0].(map[string]any)["held"] != true {
		t.Errorf("which terminals hold erin: %s", raw(st, out))
	}
	if st, out := apiCall(t, srv, "GET", "/v1/faces/nobody", tokens["auditor"], nil); st != 404 {
		t.Errorf("a subject never enrolled: %s", raw(st, out))
	}
	// Who may erase.
	for party, want := range map[string]int{"none": 401, "bad": 401, "auditor": 403, "metro": 403, "concessions": 403, "payments": 403} {
		if st, out := apiCall(t, srv, "DELETE", "/v1/faces/erin-5e", tokens[party], nil); st != want {
			t.Errorf("DELETE as %s: %s, want %d", party, raw(st, out), want)
		}
	}
	if _, err := fc.cl.FaceSubject(context.Background(), "erin-5e"); err != nil {
		t.Fatalf("refused erasures erased: %v", err)
	}
	// A reason in a body would be ignored: refused, nothing erased.
	if st, out := apiCall(t, srv, "DELETE", "/v1/faces/erin-5e", tokens["faces-desk"], map[string]any{"reason": "rider asked"}); st != 400 || !strings.Contains(raw(st, out), "takes no request body") {
		t.Errorf("DELETE with a body: %s", raw(st, out))
	}
	if _, err := fc.cl.FaceSubject(context.Background(), "erin-5e"); err != nil {
		t.Fatalf("a refused erasure erased: %v", err)
	}
	st, out = apiCall(t, srv, "DELETE", "/v1/faces/erin-5e?reason=consent+withdrawn+at+the+desk", tokens["faces-desk"], nil)
	if st != 200 || out["erased_by"] != "faces-desk" || out["reason"] != "consent withdrawn at the desk" || out["bucket_erased"] != true {
		t.Fatalf("erase: %s", raw(st, out))
	}
	// Erasing again (a retry after a timeout) answers with the erasure
	// done, saying so; a subject never enrolled is not found.
	if st, out := apiCall(t, srv, "DELETE", "/v1/faces/erin-5e", tokens["faces-desk"], nil); st != 200 || out["already_erased"] != true || out["reason"] != "consent withdrawn at the desk" {
		t.Errorf("erasing twice: %s", raw(st, out))
	}
	if st, out := apiCall(t, srv, "DELETE", "/v1/faces/nobody-9", tokens["faces-desk"], nil); st != 404 {
		t.Errorf("erasing a subject never enrolled: %s", raw(st, out))
	}
	st, out = apiCall(t, srv, "GET", "/v1/faces/erin-5e", tokens["faces-desk"], nil)
	if es, _ := out["erasures"].([]any); st != 200 || out["enrolled"] != nil || len(es) != 1 {
		t.Errorf("after erasure: %s", raw(st, out))
	}
}

// TestFacesOff: without a template key clearing refuses face enrolment,
// saying how to turn it on.
func TestFacesOff(t *testing.T) {
	_, _, _, cl := startCity(t, 1)
	req := faceRequest("frank-6", newFace(6).templates(1))
	req.FaceOnly, req.Stops = true, []string{"stop-t1"}
	if _, err := cl.EnrolFace(context.Background(), req); !errors.Is(err, clearing.ErrFacesOff) || !strings.Contains(err.Error(), "--face-key-file") {
		t.Fatalf("enrol with faces off: %v", err)
	}
	if _, err := cl.EraseFace(context.Background(), "frank-6", "desk", ""); !errors.Is(err, clearing.ErrFacesOff) {
		t.Fatalf("erase with faces off: %v", err)
	}
}

// TestFaceGalleriesFollowTheRegistry: a terminal registered at a stop in a
// subject's scope while clearing runs receives the subject; a revoked
// terminal's keys and head leave the bucket, its values overwritten.
func TestFaceGalleriesFollowTheRegistry(t *testing.T) {
	ctx := context.Background()
	fc := startFaceCity(t)
	alice := newFace(31)
	req := faceRequest("alice-r1", alice.templates(3))
	req.FaceOnly, req.Stops = true, []string{"stop-t1"}
	if _, err := fc.cl.EnrolFace(ctx, req); err != nil {
		t.Fatal(err)
	}
	kv := adminKV(t, fc.url, fare.FaceBucket)
	sealedT1 := entryOf(t, bucketValue(t, kv, keysOf(t, kv, "t1")[0])).Sealed

	metro, err := fc.led.OperatorAccount(ctx, "metro")
	if err != nil {
		t.Fatal(err)
	}
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 0x77
	newKey := ed25519.NewKeyFromSeed(seed)
	if _, err := metro.RegisterTerminals(ctx, []ledger.TerminalRegistration{provenRegistration(newKey, "t-new", "metro", "stop-t1")}); err != nil {
		t.Fatal(err)
	}
	fc.keys["t-new"] = newKey
	waitFor(t, "t-new admitted and sent alice", 10*time.Second, func() bool { return len(keysOf(t, kv, "t-new")) == 1 })
	var f *runningFeed
	waitFor(t, "t-new connects", 10*time.Second, func() bool {
		ident, _ := fare.NewNATSIdentity(newKey, "t-new")
		nc, err := nats.Connect(fc.url, terminal.NATSOptions(ident, "t-new", "")...)
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
	f = fc.startFeed(t, "t-new", fc.url, time.Minute)
	defer f.stop(t)
	waitFor(t, "alice at t-new", 10*time.Second, func() bool { return identifies(f.Feed, alice, "alice-r1") })

	if _, err := metro.RevokeTerminal(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "t1's keys and head gone", 10*time.Second, func() bool {
		_, err := kv.Get(ctx, fare.FaceHeadBucketKey("t1"))
		return len(keysOf(t, kv, "t1")) == 0 && errors.Is(err, jetstream.ErrKeyNotFound)
	})
	waitFor(t, "t1's ciphertext overwritten", 10*time.Second, func() bool {
		return len(filesHolding(t, [][]byte{sealedT1}, filepath.Join(fc.dir, "clearing", "jetstream"))) == 0
	})
	s, err := fc.cl.FaceSubject(ctx, "alice-r1")
	if err != nil || len(s.Terminals) != 1 || s.Terminals[0].Terminal != "t-new" || !s.Terminals[0].Held {
		t.Fatalf("alice's terminals after the changes: %+v %v", s.Terminals, err)
	}
}

// idolsDataset reads the shared data's real dlib descriptors.
func idolsDataset(t *testing.T) *eval.Dataset {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "shared", "testdata", "faces", "idols.json"))
	if err != nil {
		t.Fatalf("the shared face data (../shared beside the repo): %v", err)
	}
	defer f.Close()
	ds, err := eval.DecodeIdols(f)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestFaceEnrolmentScreening: with real dlib descriptors, the faces desk
// cannot enrol what no face gives (the population's mean, which would
// match many strangers; an all-zero vector) nor one face under a second
// subject (a rider on the deny list would travel as the other); two real
// people are enrolled side by side. Clearing restarted without the
// template key on a store holding subjects refuses to start: erasure
// could not be done, and gates still holding the subjects would open for
// faces clearing then refuses to bill.
func TestFaceEnrolmentScreening(t *testing.T) {
	fc := startFaceCity(t)
	ds := idolsDataset(t)
	model := gallery.DlibModels[0] // the 5-point pipeline idols.json was made with
	person := func(label string) [][fare.FaceDim]float32 {
		var out [][fare.FaceDim]float32
		for _, s := range ds.Samples {
			if s.Label == label && len(out) < 3 {
				out = append(out, s.Descriptor)
			}
		}
		return out
	}
	req := func(subject, stop string, descs [][fare.FaceDim]float32) clearing.FaceEnrolRequest {
		r := faceRequest(subject, descs)
		r.ModelID, r.FaceOnly, r.Stops = model, true, []string{stop}
		return r
	}
	a, b := person(ds.Labels[0]), person(ds.Labels[1])
	ctx := context.Background()
	if _, err := fc.cl.EnrolFace(ctx, req("rider-a", "stop-t1", a)); err != nil {
		t.Fatalf("a real face: %v", err)
	}
	if _, err := fc.cl.EnrolFace(ctx, req("rider-b", "stop-t1", b)); err != nil {
		t.Fatalf("a second real person: %v", err)
	}
	holder := req("rider-c", "stop-t1", person(ds.Labels[2]))
	holder.FaceOnly, holder.CardKey = false, fare.DenyKey(fare.Card, "card-c")
	if _, err := fc.cl.EnrolFace(ctx, holder); err != nil {
		t.Fatalf("a card's holder: %v", err)
	}
	second := req("rider-d", "stop-t1", person(ds.Labels[3]))
	second.FaceOnly, second.CardKey = false, fare.DenyKey(fare.Card, "card-c")
	var mean, zero [fare.FaceDim]float32
	for _, s := range ds.Samples {
		for i, x := range s.Descriptor {
			mean[i] += x / float32(len(ds.Samples))
		}
	}
	near := a[0]
	near[5] += 0.01 // a copy, nudged
	otherModel := req("rider-a4", "stop-t2", a)
	otherModel.ModelID = gallery.DlibModels[1]
	for _, tc := range []struct {
		name string
		r    clearing.FaceEnrolRequest
		is   error
		want string
	}{
		{"the same face under a second subject, elsewhere", req("rider-a2", "stop-t2", a), clearing.ErrFaceConflict, `enrolled subject "rider-a"`},
		{"a nudged copy of it", req("rider-a3", "stop-t2", [][fare.FaceDim]float32{near}), clearing.ErrFaceConflict, `enrolled subject "rider-a"`},
		{"the same face claimed under the other pipeline", otherModel, clearing.ErrFaceConflict, `enrolled subject "rider-a"`},
		{"the token refused face taps carry", req(fare.UnmatchedFace, "stop-t2", person(ds.Labels[4])), clearing.ErrInvalidFace, "is reserved"},
		{"the population's mean (a hub)", req("rider-wolf", "stop-t2", [][fare.FaceDim]float32{mean}), clearing.ErrInvalidFace, "from the mean"},
		{"all zeros", req("rider-zero", "stop-t2", [][fare.FaceDim]float32{zero}), clearing.ErrInvalidFace, "norm 0.000"},
		{"another person as a second holder of the card", second, clearing.ErrFaceConflict, `has a holder enrolled already (subject "rider-c")`},
	} {
		if _, err := fc.cl.EnrolFace(ctx, tc.r); !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.is, tc.want)
		}
	}
	if _, n := fc.cl.FaceGalleriesVersion(); n != 3 {
		t.Fatalf("%d subjects enrolled, want the 3 real ones", n)
	}

	fc.cl.stop(t)
	cfg := clearing.Config{DataDir: filepath.Join(fc.dir, "clearing"), Registry: fc.reg, Ledger: fc.led, Period: time.Hour, NATSPort: -1,
		NATSSeedFile: clearingSeedFile(t), ConfirmKey: testConfirmKey, Logger: quietLogger()}
	if cl, err := clearing.Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), "3 enrolled face subjects and no face template key") {
		if err == nil {
			cl.Close()
		}
		t.Fatalf("restart without the face key: %v", err)
	}
}

// TestFaceGalleryFull: a face-only subject that would put a gate's 1:N
// gallery past its bound is refused with 422 naming the gate, and nothing
// is enrolled; a card holder (1:1) at the same gate is not bounded.
func TestFaceGalleryFull(t *testing.T) {
	fc := startFaceCity(t)
	ctx := context.Background()
	for i := range gallery.DefaultMaxGallery {
		req := faceRequest(fmt.Sprintf("rider-%02d", i), newFace(uint64(100+i)).templates(2))
		req.FaceOnly, req.Stops = true, []string{"stop-t2"}
		if _, err := fc.cl.EnrolFace(ctx, req); err != nil {
			t.Fatalf("subject %d of %d: %v", i+1, gallery.DefaultMaxGallery, err)
		}
	}
	ts, err := clearing.LoadTokenStore(filepath.Join(fc.dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	token, err := ts.Issue(clearing.RoleFaces, "", "faces-desk")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(clearing.NewAPI(fc.cl.Clearing, nil, clearing.WithTokens(ts)))
	defer srv.Close()
	var descs [][]float64
	for _, d := range newFace(200).templates(2) {
		var row []float64
		for _, v := range d {
			row = append(row, float64(v))
		}
		descs = append(descs, row)
	}
	body := map[string]any{"subject": "rider-full", "model_id": testModel, "descriptors": descs, "stops": []string{"stop-t2"}, "face_only": true,
		"consent": map[string]any{"given_by": "the subject", "at": time.Now().Add(-time.Minute).Format(time.RFC3339), "purpose": "face-only travel", "legal_basis": "GDPR Art. 9(2)(a) explicit consent"}}
	st, out := apiCall(t, srv, "POST", "/v1/faces", token, body)
	if msg, _ := out["error"].(string); st != http.StatusUnprocessableEntity || !strings.Contains(msg, "the 1:N galleries of t2 (10) hold 10 face-only subjects already") {
		t.Errorf("the eleventh face-only subject at t2: %d %v, want 422 naming t2's gallery", st, out)
	}
	if st, _ := apiCall(t, srv, "GET", "/v1/faces/rider-full", token, nil); st != http.StatusNotFound {
		t.Errorf("the refused subject: GET %d, want 404 (nothing enrolled)", st)
	}
	card := faceRequest("holder-01", newFace(201).templates(2))
	card.CardKey, card.Stops = fare.HashDeny(fare.Card, "holder-card").String(), []string{"stop-t2"}
	if _, err := fc.cl.EnrolFace(ctx, card); err != nil {
		t.Errorf("a card holder at the full gate: %v, want enrolled (1:1 is not bounded)", err)
	}
}

// TestFaceHubRefused: a template pushed from the population's mean, the
// 0.24 the mean-distance screen asks for, towards many people at once
// (greedily, as an outside review built one that identified 23 of 134 real
// people at a gate) passes that screen, but is refused at enrolment as
// near too many of the enrolled subjects; every real face enrolled
// before it passes (up to 3 templates each of 80 people, as card holders).
func TestFaceHubRefused(t *testing.T) {
	fc := startFaceCity(t)
	ds := idolsDataset(t)
	model := gallery.DlibModels[0]
	byLabel := map[string][][fare.FaceDim]float32{}
	var mean [fare.FaceDim]float32
	for _, s := range ds.Samples {
		byLabel[s.Label] = append(byLabel[s.Label], s.Descriptor)
		for i, x := range s.Descriptor {
			mean[i] += x / float32(len(ds.Samples))
		}
	}
	avg := map[string][fare.FaceDim]float64{}
	for l, ds := range byLabel {
		var a [fare.FaceDim]float64
		for _, d := range ds {
			for i, x := range d {
				a[i] += float64(x-mean[i]) / float64(len(ds))
			}
		}
		avg[l] = a
	}
	// The hub: mean + 0.2405 u, u the direction of the summed average
	// offsets of a greedily grown set of people, each step taking the
	// person that makes the point near the most people.
	point := func(set []string) (x [fare.FaceDim]float32) {
		var u [fare.FaceDim]float64
		for _, l := range set {
			for i, v := range avg[l] {
				u[i] += v
			}
		}
		var n float64
		for _, v := range u {
			n += v * v
		}
		n = math.Sqrt(n)
		for i := range x {
			x[i] = mean[i] + float32(0.2405*u[i]/n)
		}
		return x
	}
	nearOf := func(x [fare.FaceDim]float32, labels []string) int {
		c := 0
		for _, l := range labels {
			for _, d := range byLabel[l][:min(3, len(byLabel[l]))] {
				if gallery.Distance(&x, &d) <= gallery.DefaultIdentifyThreshold {
					c++
					break
				}
			}
		}
		return c
	}
	var set []string
	best := 0
	for range 40 {
		add := ""
		for _, l := range ds.Labels {
			if c := nearOf(point(append(set, l)), ds.Labels); c > best {
				best, add = c, l
			}
		}
		if add == "" {
			break
		}
		set = append(set, add)
	}
	hub := point(set)
	if err := gallery.ScreenTemplate(model, hub[:]); err != nil || best < 10 {
		t.Fatalf("the built hub: screen %v, near %d of %d people; want it past the mean screen and near many", err, best, len(ds.Labels))
	}
	t.Logf("the hub passes the mean screen and is near %d of %d people at %.2f", best, len(ds.Labels), gallery.DefaultIdentifyThreshold)

	ctx := context.Background()
	enrolled := 0
	for i, l := range ds.Labels[:80] {
		descs := byLabel[l][:min(3, len(byLabel[l]))]
		r := faceRequest(fmt.Sprintf("person-%03d", i), descs)
		r.ModelID, r.Stops, r.CardKey = model, []string{"stop-t2"}, fare.DenyKey(fare.Card, fmt.Sprintf("card-%03d", i))
		_, err := fc.cl.EnrolFace(ctx, r)
		switch {
		case err == nil:
			enrolled++
		case errors.Is(err, clearing.ErrFaceConflict): // one photograph filed under two names in the shared data
		default:
			t.Fatalf("real person %d (%s): %v, want enrolled", i, l, err)
		}
	}
	t.Logf("%d real people enrolled; the hub is near %d of them", enrolled, nearOf(hub, ds.Labels[:80]))
	r := faceRequest("the-hub", [][fare.FaceDim]float32{hub})
	r.ModelID, r.Stops, r.CardKey = model, []string{"stop-t2"}, fare.DenyKey(fare.Card, "card-hub")
	if _, err := fc.cl.EnrolFace(ctx, r); !errors.Is(err, clearing.ErrInvalidFace) || !strings.Contains(err.Error(), "no face is that near so many") {
		t.Fatalf("the hub after %d real people: %v, want refused as near too many", enrolled, err)
	}
}

// erasureLogCity is clearing's configuration with face enrolment on over
// testRegistry(2) and a chain that goes on, its face erasure log kept apart
// from its data dir (dir/clearing), as a restore of the data dir leaves it;
// natsPort 0: any.
func erasureLogCity(t *testing.T, natsPort int) (dir string, reg *clearing.Registry, keys map[string]ed25519.PrivateKey, cfg clearing.Config) {
	t.Helper()
	dir = t.TempDir()
	reg, keys = testRegistry(2)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cfg = clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour, FaceKey: testFaceKey,
		FaceHeadEvery: 300 * time.Millisecond, FaceModels: []string{testModel},
		FaceErasureLog: filepath.Join(dir, "erasures", clearing.FaceErasureLogFile), NATSPort: natsPort}
	if err := os.Mkdir(filepath.Dir(cfg.FaceErasureLog), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir, reg, keys, cfg
}

// TestFaceErasureSurvivesARestore: clearing's store restored from a backup
// made before an erasure (the whole data dir, its embedded NATS with the
// old bucket too) does not bring the erased subject back: the erasure log,
// kept apart from the store, applies the erasure again at start, and a new
// gate (one that never held the erasure) gets nothing of the subject. A
// subject enrolled again after its erasure is kept. (An outside test saw a
// fresh gate admit an erased face after such a restore.)
func TestFaceErasureSurvivesARestore(t *testing.T) {
	ctx := context.Background()
	dir, reg, keys, cfg := erasureLogCity(t, 0)
	data := cfg.DataDir
	alice, bob := newFace(31), newFace(32)
	reqA, reqB := faceRequest("alice-r1", alice.templates(3)), faceRequest("bob-r2", bob.templates(3))
	reqA.FaceOnly, reqA.Stops = true, []string{"stop-t1"}
	reqB.FaceOnly, reqB.Stops = true, []string{"stop-t1"}
	cl := startClearing(t, cfg)
	for _, r := range []clearing.FaceEnrolRequest{reqA, reqB} {
		if _, err := cl.EnrolFace(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	cl.stop(t)
	backup := filepath.Join(dir, "backup")
	backUpDataDir(t, data, backup)
	cl = startClearing(t, cfg)
	for _, s := range []string{"alice-r1", "bob-r2"} {
		if _, err := cl.EraseFace(ctx, s, "desk-1", "consent withdrawn"); err != nil {
			t.Fatal(err)
		}
	}
	// Bob comes back (the same person, consenting again): kept.
	reqB.SamePersonAsErased, reqB.Consent.At = true, time.Now()
	if _, err := cl.EnrolFace(ctx, reqB); err != nil {
		t.Fatal(err)
	}
	cl.stop(t)
	// A restart on the same store keeps bob's new enrolment (the log's
	// erasure is of his older one) and alice erased once.
	cl = startClearing(t, cfg)
	if _, err := cl.FaceSubject(ctx, "bob-r2"); err != nil {
		t.Fatalf("bob enrolled again, after a restart: %v", err)
	}
	if es, _ := cl.FaceErasures("alice-r1"); len(es) != 1 {
		t.Fatalf("alice's erasures after a restart: %+v, want one", es)
	}
	cl.stop(t)
	// A second copy of the backup, without its store id file (the store
	// restored into a new data dir).
	noID := filepath.Join(dir, "backup-no-id")
	if out, err := exec.Command("cp", "-a", backup, noID).CombinedOutput(); err != nil {
		t.Fatalf("copy the backup: %v %s", err, out)
	}
	if err := os.Remove(filepath.Join(noID, clearing.StoreIDFile)); err != nil {
		t.Fatal(err)
	}
	// The restore: the data dir as it was backed up.
	restoreDataDir(t, data, backup)
	cl = startClearing(t, cfg)
	defer func() { cl.stop(t) }()
	if _, err := cl.FaceSubject(ctx, "alice-r1"); !errors.Is(err, clearing.ErrNotFound) {
		t.Fatalf("alice after the restore: %v, want her erased again", err)
	}
	es, err := cl.FaceErasures("alice-r1")
	if err != nil || len(es) != 1 || !strings.Contains(es[0].Reason, "erasure log") || es[0].ErasedBy != "desk-1" {
		t.Fatalf("alice's erasure records: %+v, %v; want the erasure applied again", es, err)
	}
	// Bob's re-enrolment came after the backup too: the restored store has
	// his first enrolment, which was erased; it goes (he enrols again).
	if _, err := cl.FaceSubject(ctx, "bob-r2"); !errors.Is(err, clearing.ErrNotFound) {
		t.Fatalf("bob's first enrolment after the restore: %v, want it erased again", err)
	}
	fc := &faceCity{dir: dir, reg: reg, keys: keys, url: cl.NATSURL()}
	f := fc.startFeed(t, "t1", fc.url, time.Minute)
	defer f.stop(t)
	waitFor(t, "the new gate's gallery fresh", 10*time.Second, func() bool { return f.Status().Fresh })
	if f.Has("alice-r1") || f.Has("bob-r2") {
		t.Fatal("a new gate got an erased subject after the restore")
	}
	cl.stop(t)

	// Restored into a new data dir without its store id file, the store
	// reads as another: clearing refuses to start on the stream the
	// backed-up store owns; with the file put back, the log's erasures
	// are applied to it.
	_, err = clearing.Open(ctx, func() clearing.Config {
		c := cfg
		c.DataDir, c.NATSPort, c.Logger, c.ConfirmKey, c.NATSSeedFile = noID, -1, quietLogger(), testConfirmKey, clearingSeedFile(t)
		return c
	}())
	if err == nil || !strings.Contains(err.Error(), "belongs to another clearing store") {
		t.Fatalf("a restore without its store id: %v, want it refused as another store", err)
	}
	id, err := os.ReadFile(filepath.Join(data, clearing.StoreIDFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(noID, clearing.StoreIDFile), id, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg2 := cfg
	cfg2.DataDir = noID
	cl = startClearing(t, cfg2)
	if _, err := cl.FaceSubject(ctx, "alice-r1"); !errors.Is(err, clearing.ErrNotFound) {
		t.Fatalf("alice with the store id put back: %v, want her erased again", err)
	}
	cl.stop(t)
	// A log line of another store (a log copied or shared) is not applied,
	// and the log says so, naming the remedy, rather than skipping it
	// without a word.
	line := `{"subject":"carol-r3","enrolled_version":1,"version":9,"erased_at":"2026-12-04T10:00:00Z","erased_by":"desk-9","store":"0x` + strings.Repeat("ab", 16) + `"}` + "\n"
	lf, err := os.OpenFile(cfg.FaceErasureLog, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lf.WriteString(line); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	var logs syncBuffer
	cfg2.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cl = startClearing(t, cfg2)
	if got := logs.String(); !strings.Contains(got, "put back its "+clearing.StoreIDFile+" file") || !strings.Contains(got, strings.Repeat("ab", 16)) {
		t.Errorf("a log line of another store skipped without a word:\n%s", got)
	}
}

// TestFaceGalleryResumes: a gate whose face gallery copy knows where it
// stands in the bucket's stream resumes from there when it starts again:
// clearing sends only what changed (a new subject; an erasure's purge
// marker, which erases at once). A gate away longer than the markers are
// kept (an hour; here the markers are purged by hand) finds its resumed
// copy does not make its signed head, does not take the head, and reads
// its keys whole, dropping the erased subject.
func TestFaceGalleryResumes(t *testing.T) {
	ctx := context.Background()
	fc := startFaceCity(t)
	kv := adminKV(t, fc.url, fare.FaceBucket)
	faces := map[string]*faceOf{"alice-g1": newFace(41), "carol-g2": newFace(42), "dave-g3": newFace(43)}
	enrol := func(subject string) {
		t.Helper()
		req := faceRequest(subject, faces[subject].templates(3))
		req.FaceOnly, req.Stops = true, []string{"stop-t1"}
		if _, err := fc.cl.EnrolFace(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	erase := func(subject string) {
		t.Helper()
		if _, err := fc.cl.EraseFace(ctx, subject, "desk-1", "consent withdrawn"); err != nil {
			t.Fatal(err)
		}
	}
	enrol("alice-g1")
	enrol("carol-g2")
	f := fc.startFeed(t, "t1", fc.url, time.Minute)
	waitFor(t, "alice and carol at t1", 10*time.Second, func() bool {
		return identifies(f.Feed, faces["alice-g1"], "alice-g1") && identifies(f.Feed, faces["carol-g2"], "carol-g2")
	})
	if st := f.Status(); st.Resumed != 0 {
		t.Fatalf("a gate without a copy resumed: %+v", st)
	}
	f.stop(t)

	// Off: alice erased, dave enrolled. Started again, it resumes.
	erase("alice-g1")
	enrol("dave-g3")
	f = fc.startFeed(t, "t1", fc.url, time.Minute)
	waitFor(t, "dave at t1, alice gone", 10*time.Second, func() bool {
		return f.Status().Fresh && identifies(f.Feed, faces["dave-g3"], "dave-g3") && !f.Has("alice-g1")
	})
	st := f.Status()
	if st.Resumed != 1 || st.Sessions != 1 || !identifies(f.Feed, faces["carol-g2"], "carol-g2") {
		t.Fatalf("restarted gate: %+v (carol matched: %v); want one session, resumed", st, identifies(f.Feed, faces["carol-g2"], "carol-g2"))
	}
	resumedHead := st.HeadVersion
	f.stop(t)

	// Off longer than the markers are kept: carol's erasure leaves no
	// marker by the time the gate is back.
	erase("carol-g2")
	if err := kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
		t.Fatal(err)
	}
	f = fc.startFeed(t, "t1", fc.url, time.Minute)
	defer f.stop(t)
	// (A gate away that long has a head older than its MaxAge, at most 15
	// minutes: it matches no face until a session takes a head.)
	// The head issued at carol's erasure is taken only by a whole read (the
	// resumed copy does not make it); a second session alone may still be
	// reading (the project's CI once caught it there, carol not yet dropped).
	waitFor(t, "a whole read after the resumed one", 10*time.Second, func() bool {
		st := f.Status()
		return st.Fresh && st.Sessions >= 2 && st.HeadVersion > resumedHead
	})
	if f.Has("carol-g2") || !identifies(f.Feed, faces["dave-g3"], "dave-g3") {
		t.Fatalf("after the whole read: carol held %v, dave matched %v", f.Has("carol-g2"), identifies(f.Feed, faces["dave-g3"], "dave-g3"))
	}
	if st, refused := f.Status(), f.Refusals()[galleryfeed.RefusedMismatch]; st.Resumed != 1 || refused == 0 {
		t.Fatalf("%+v, %d head mismatches; want the resumed session's copy found not to make the head, then a whole read", st, refused)
	}
}

// TestFaceErasureLoggedAfterTheBackup: a subject enrolled after clearing's
// last backup and erased (the erasure logged outside the data dir) while a
// gate that held it is off; clearing is then restored from the backup,
// whose store never held the subject. The erasure log takes the galleries'
// version past the erasure's, so the gate, back, takes the restored
// clearing's head rather than refusing it as older, finds its copy does
// not make it, reads its keys whole and drops the subject before it is
// fresh; one more change elsewhere does not bring it back. (An outside
// review: the gate refused every head as older, went stale keeping the
// erased subject, and once the store's version caught up with its own took
// a head while following and matched the subject, fresh.)
func TestFaceErasureLoggedAfterTheBackup(t *testing.T) {
	ctx := context.Background()
	dir, reg, keys, cfg := erasureLogCity(t, freePort(t)) // a port the gate reconnects to
	data := cfg.DataDir
	faces := map[string]*faceOf{"alice-b1": newFace(61), "carol-b3": newFace(63), "dave-b4": newFace(64)}
	cl := startClearing(t, cfg)
	enrol := func(s, stop string) {
		t.Helper()
		r := faceRequest(s, faces[s].templates(3))
		r.FaceOnly, r.Stops = true, []string{stop}
		if _, err := cl.EnrolFace(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	enrol("alice-b1", "stop-t1")
	fc := &faceCity{dir: dir, reg: reg, keys: keys, url: cl.NATSURL()}
	f := fc.startFeed(t, "t1", fc.url, time.Minute)
	waitFor(t, "alice at t1", 10*time.Second, func() bool { return identifies(f.Feed, faces["alice-b1"], "alice-b1") })
	cl.stop(t)
	backup := filepath.Join(dir, "backup")
	backUpDataDir(t, data, backup)
	cl = startClearing(t, cfg)
	enrol("carol-b3", "stop-t1")
	waitFor(t, "carol at t1", 10*time.Second, func() bool { return identifies(f.Feed, faces["carol-b3"], "carol-b3") })
	f.stop(t)
	if _, err := cl.EraseFace(ctx, "carol-b3", "desk-1", "consent withdrawn"); err != nil {
		t.Fatal(err)
	}
	cl.stop(t)
	restoreDataDir(t, data, backup)
	cl = startClearing(t, cfg)
	defer func() { cl.stop(t) }()
	f = fc.startFeed(t, "t1", fc.url, time.Minute)
	defer f.stop(t)
	waitFor(t, "t1 taking the restored clearing's head", 10*time.Second, func() bool { return f.Status().HeadVersion >= 3 })
	if f.Has("carol-b3") {
		t.Fatalf("t1 holds carol, erased, under the restored clearing's head: %+v", f.Status())
	}
	enrol("dave-b4", "stop-t2")
	time.Sleep(time.Second)
	if st := f.Status(); !st.Fresh || f.Has("carol-b3") || !identifies(f.Feed, faces["alice-b1"], "alice-b1") {
		t.Fatalf("after a change elsewhere: %+v, carol held %v, alice matched %v", st, f.Has("carol-b3"), identifies(f.Feed, faces["alice-b1"], "alice-b1"))
	}
}

// TestFaceGalleryRestoredClearing: a face enrolment lost with a restore
// (made after the backup and never erased: the erasure log has nothing to
// say of it). The gate that took it refuses the restored clearing's older
// heads; its terminal shows clearing the head it follows on its watermark
// requests (fare.FaceHeadHeader), clearing numbers its galleries past it,
// and the gate, finding its copy does not make the newer head, reads its
// keys whole and drops the lost subject: fresh again, without waiting for
// the city's face changes to pass its version (before, its gallery stayed
// stale that long and then kept the subject, whose taps clearing refuses).
func TestFaceGalleryRestoredClearing(t *testing.T) {
	dir, reg, keys, cfg := erasureLogCity(t, freePort(t)) // a port the gate reconnects to
	data := cfg.DataDir
	faces := map[string]*faceOf{"alice-b1": newFace(71), "carol-b3": newFace(73)}
	cl := startClearing(t, cfg)
	enrol := func(s string) {
		t.Helper()
		enrolFaceOnly(t, cl, s, faces[s], []string{"stop-t1"}, nil)
	}
	enrol("alice-b1")
	fc := &faceCity{dir: dir, reg: reg, keys: keys, url: cl.NATSURL()}
	f := fc.startFeed(t, "t1", fc.url, time.Minute)
	defer f.stop(t)
	t1 := startTerminalWith(t, dir, fc.url, reg, keys, "t1", func(c *terminal.Config) { c.FaceHead = f.SignedHead })
	defer t1.stop(t)
	waitFor(t, "alice at t1", 10*time.Second, func() bool { return identifies(f.Feed, faces["alice-b1"], "alice-b1") })
	cl.stop(t)
	backup := filepath.Join(dir, "backup")
	backUpDataDir(t, data, backup)
	cl = startClearing(t, cfg)
	before := f.Status().HeadVersion
	enrol("carol-b3") // lost with the restore
	// Carol's key may come before the head that counts her: the version the
	// gate holds is read once it has both.
	waitFor(t, "carol at t1 under a newer head", 10*time.Second, func() bool {
		return identifies(f.Feed, faces["carol-b3"], "carol-b3") && f.Status().HeadVersion > before
	})
	held := f.Status().HeadVersion
	cl.stop(t)
	restoreDataDir(t, data, backup)
	cl = startClearing(t, cfg)
	defer func() { cl.stop(t) }()
	if v, _ := cl.FaceGalleriesVersion(); v >= held {
		t.Fatalf("the restored clearing's galleries at version %d, the gate's at %d: nothing to test", v, held)
	}
	// The restored clearing's older heads are refused, unless t1's
	// terminal showed it the gate's head first and it numbered its
	// galleries past it before issuing any (a busy CI machine's way).
	waitFor(t, "the restored clearing's older head refused, or its galleries raised past the gate's", 20*time.Second, func() bool {
		v, _ := cl.FaceGalleriesVersion()
		return f.Refusals()[galleryfeed.RefusedOlder] > 0 || v > held
	})
	waitFor(t, "t1 following the restored galleries", 20*time.Second, func() bool {
		st := f.Status()
		return st.HeadVersion > held && st.Fresh && !f.Has("carol-b3")
	})
	if v, n := cl.FaceGalleriesVersion(); v <= held || n != 1 {
		t.Fatalf("the restored clearing's galleries at version %d with %d subjects, the gate had %d", v, n, held)
	}
	if !identifies(f.Feed, faces["alice-b1"], "alice-b1") || identifies(f.Feed, faces["carol-b3"], "carol-b3") {
		t.Fatalf("after the raise: alice matched %v, carol matched %v", identifies(f.Feed, faces["alice-b1"], "alice-b1"), identifies(f.Feed, faces["carol-b3"], "carol-b3"))
	}
	// Which way carol went depends on timing, both right: the raised head
	// came while the gate followed (its copy found short of it,
	// RefusedMismatch, then read whole), or the gate's session after the
	// reconnect read whole under it at once and dropped what the bucket
	// lacks (the project's CI once took this way).
	t.Logf("older heads refused %d times, copy found short of the raised head %d times", f.Refusals()[galleryfeed.RefusedOlder], f.Refusals()[galleryfeed.RefusedMismatch])
}

// TestGateHeadsShownForged: the heads a gate shows on its watermark
// requests (fare.DenyHeadHeader, fare.EnrolHeadHeader, fare.FaceHeadHeader)
// make clearing number a list or the galleries past them only when
// clearing signed them, for that list, and (a face head) for the terminal
// showing it: a terminal cannot push clearing's versions up with a head of
// its own making, the other list's head, or another gate's. The last case
// shows the path is live: a head clearing's key signed is taken.
func TestGateHeadsShownForged(t *testing.T) {
	_, _, keys, cfg := erasureLogCity(t, 0)
	cl := startClearing(t, cfg)
	defer cl.stop(t)
	nc := terminalConn(t, cl.NATSURL(), keys["t1"], "t1")
	defer nc.Close()
	_, attacker, _ := ed25519.GenerateKey(nil)
	const high = uint64(1) << 40
	gateHead := func(key ed25519.PrivateKey, l fare.GateList) string {
		b, err := (&fare.GateHead{List: l, Version: high}).Sign(key)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	faceHead := func(key ed25519.PrivateKey, term string) string {
		b, err := (&fare.FaceHead{Terminal: term, Version: high, IssuedAt: time.Now().UTC()}).Sign(key)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(b)
	}
	versions := func() [3]uint64 {
		d, _ := cl.DenyListVersion()
		e, _ := cl.EnrolmentListVersion()
		f, _ := cl.FaceGalleriesVersion()
		return [3]uint64{d, e, f}
	}
	show := func(headers map[string]string) {
		t.Helper()
		m := nats.NewMsg(fare.WatermarkSubject("t1"))
		m.Data = fare.WatermarkRequest(0, nil)
		for k, v := range headers {
			m.Header.Set(k, v)
		}
		if _, err := nc.RequestMsg(m, 2*time.Second); err != nil {
			t.Fatalf("watermark request: %v", err)
		}
		time.Sleep(300 * time.Millisecond) // under the terminal's request rate, and time to act
	}
	before := versions()
	for _, c := range []struct {
		name    string
		headers map[string]string
	}{
		{"not base64", map[string]string{fare.DenyHeadHeader: "!!", fare.EnrolHeadHeader: "!!", fare.FaceHeadHeader: "!!"}},
		{"not a head", map[string]string{fare.DenyHeadHeader: "AAAA", fare.EnrolHeadHeader: "AAAA", fare.FaceHeadHeader: "AAAA"}},
		{"the attacker's key", map[string]string{fare.DenyHeadHeader: gateHead(attacker, fare.DenyGateList),
			fare.EnrolHeadHeader: gateHead(attacker, fare.EnrolGateList), fare.FaceHeadHeader: faceHead(attacker, "t1")}},
		{"the other list's head", map[string]string{fare.DenyHeadHeader: gateHead(testConfirmKey, fare.EnrolGateList),
			fare.EnrolHeadHeader: gateHead(testConfirmKey, fare.DenyGateList)}},
		{"another gate's face head", map[string]string{fare.FaceHeadHeader: faceHead(testConfirmKey, "t2")}},
	} {
		show(c.headers)
		if got := versions(); got != before {
			t.Fatalf("%s: versions (deny, enrolments, faces) %v, were %v", c.name, got, before)
		}
	}
	// Clearing's own heads at 2^64-1 would wrap the next version to 0.
	show(map[string]string{fare.DenyHeadHeader: gateHeadAt(t, testConfirmKey, fare.DenyGateList, math.MaxUint64),
		fare.EnrolHeadHeader: gateHeadAt(t, testConfirmKey, fare.EnrolGateList, math.MaxUint64), fare.FaceHeadHeader: faceHeadAt(t, testConfirmKey, "t1", math.MaxUint64)})
	if got := versions(); got != before {
		t.Fatalf("heads at 2^64-1: versions %v, were %v", got, before)
	}
	// One list's head raises that list only.
	show(map[string]string{fare.EnrolHeadHeader: gateHeadAt(t, testConfirmKey, fare.EnrolGateList, 5)})
	waitFor(t, "the enrolments numbered past 5", 5*time.Second, func() bool { return versions() == [3]uint64{before[0], 6, before[2]} })
	show(map[string]string{fare.DenyHeadHeader: gateHead(testConfirmKey, fare.DenyGateList),
		fare.EnrolHeadHeader: gateHead(testConfirmKey, fare.EnrolGateList), fare.FaceHeadHeader: faceHead(testConfirmKey, "t1")})
	waitFor(t, "clearing numbering past the heads it signed", 5*time.Second, func() bool {
		return versions() == [3]uint64{high + 1, high + 1, high + 1}
	})
}

// gateHeadAt is list l's head at version v, signed with key (base64, as a
// gate shows it).
func gateHeadAt(t *testing.T, key ed25519.PrivateKey, l fare.GateList, v uint64) string {
	t.Helper()
	b, err := (&fare.GateHead{List: l, Version: v}).Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// faceHeadAt is terminal term's face head at version v, signed with key.
func faceHeadAt(t *testing.T, key ed25519.PrivateKey, term string, v uint64) string {
	t.Helper()
	b, err := (&fare.FaceHead{Terminal: term, Version: v, IssuedAt: time.Now().UTC()}).Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// TestFaceHeadShownAcrossRestarts: a gate showing the head it follows while
// clearing restarts (no restore) moves nothing: clearing starts answering
// watermark requests before it issues its first heads, and took the gate's
// current head as newer than what it had issued (none yet), raising the
// galleries and warning of enrolments lost on every restart (an outside
// review).
func TestFaceHeadShownAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	dir, reg, keys, cfg := erasureLogCity(t, freePort(t))
	cl := startClearing(t, cfg)
	alice := newFace(81)
	enrolFaceOnly(t, cl, "alice-b1", alice, []string{"stop-t1"}, nil)
	fc := &faceCity{dir: dir, reg: reg, keys: keys, url: cl.NATSURL()}
	f := fc.startFeed(t, "t1", fc.url, time.Minute)
	defer f.stop(t)
	waitFor(t, "alice at t1", 10*time.Second, func() bool { return identifies(f.Feed, alice, "alice-b1") })
	before, _ := cl.FaceGalleriesVersion()
	// Asking as fast as clearing lets a terminal (5 a second), so that a
	// request lands in the first moments of every start.
	nc := terminalConn(t, cl.NATSURL(), keys["t1"], "t1", nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	defer nc.Close()
	ctxAsk, stopAsking := context.WithCancel(ctx)
	asked := make(chan struct{})
	go func() {
		defer close(asked)
		for ctxAsk.Err() == nil {
			time.Sleep(205 * time.Millisecond)
			m := nats.NewMsg(fare.WatermarkSubject("t1"))
			m.Data = fare.WatermarkRequest(0, nil)
			m.Header.Set(fare.FaceHeadHeader, base64.StdEncoding.EncodeToString(f.SignedHead()))
			_, _ = nc.RequestMsg(m, time.Second)
		}
	}()
	for range 5 {
		cl.stop(t)
		cl = startClearing(t, cfg)
		time.Sleep(700 * time.Millisecond)
	}
	stopAsking()
	<-asked
	defer cl.stop(t)
	if v, _ := cl.FaceGalleriesVersion(); v != before {
		t.Fatalf("restarts without a restore moved the galleries from version %d to %d", before, v)
	}
}

// TestFaceTemplatesAfterRestore: a subject's templates a restore changed
// under a version the gate has seen. carol, enrolled after the backup
// (templates A, lost with the restore), is enrolled again after it with
// templates B, at the same version: the face head digests each entry's
// record, so the gate's copy does not make it, and its whole read takes
// the bucket's value (an outside review: the gate kept matching carol by
// the lost templates, and not by clearing's).
func TestFaceTemplatesAfterRestore(t *testing.T) {
	dir, reg, keys, cfg := erasureLogCity(t, freePort(t))
	data := cfg.DataDir
	backup := filepath.Join(dir, "backup")
	enrol := func(cl *running, s string, fa *faceOf) uint64 {
		t.Helper()
		return enrolFaceOnly(t, cl, s, fa, []string{"stop-t1"}, nil)
	}
	alice, carolA, carolB := newFace(201), newFace(202), newFace(203)
	cl := startClearing(t, cfg)
	defer func() { cl.stop(t) }()
	enrol(cl, "alice", alice)
	fc := &faceCity{dir: dir, reg: reg, keys: keys, url: cl.NATSURL()}
	f := fc.startFeed(t, "t1", fc.url, time.Minute)
	defer f.stop(t)
	t1 := startTerminalWith(t, dir, fc.url, reg, keys, "t1", func(c *terminal.Config) { c.FaceHead = f.SignedHead })
	defer t1.stop(t)
	waitFor(t, "alice at t1", 10*time.Second, func() bool { return identifies(f.Feed, alice, "alice") })
	cl.stop(t)
	backUpDataDir(t, data, backup)
	cl = startClearing(t, cfg)
	va := enrol(cl, "carol", carolA)
	waitFor(t, "carol (A) at t1", 10*time.Second, func() bool { return identifies(f.Feed, carolA, "carol") })
	cl.stop(t)
	restoreDataDir(t, data, backup)
	cl = startClearing(t, cfg)
	if vb := enrol(cl, "carol", carolB); vb != va {
		t.Logf("carol enrolled at %d before the restore, at %d after (the gate's head raised it first)", va, vb)
	}
	waitFor(t, "t1 matching carol by clearing's templates", 20*time.Second, func() bool {
		return identifies(f.Feed, carolB, "carol") && !identifies(f.Feed, carolA, "carol") && f.Status().Fresh
	})
	if !identifies(f.Feed, alice, "alice") {
		t.Fatal("alice no longer matched")
	}
}

// TestFaceRecordsSummedAtStart: face records of an earlier build carry no
// sum of what their gates receive (the heads' digest needs it): a start
// sums them from the template store, once, and a gate's resumed copy
// makes the heads as before, with no whole read.
func TestFaceRecordsSummedAtStart(t *testing.T) {
	dir, reg, keys, cfg := erasureLogCity(t, freePort(t))
	cl := startClearing(t, cfg)
	defer func() { cl.stop(t) }()
	faces := []*faceOf{newFace(301), newFace(302)}
	for i, fa := range faces {
		enrolFaceOnly(t, cl, fmt.Sprintf("s%d-b1", i), fa, []string{"stop-t1"}, nil)
	}
	fc := &faceCity{dir: dir, reg: reg, keys: keys, url: cl.NATSURL()}
	f := fc.startFeed(t, "t1", fc.url, time.Minute)
	defer f.stop(t)
	waitFor(t, "both at t1", 10*time.Second, func() bool { return f.Status().Subjects == 2 && f.Status().Fresh })
	cl.stop(t)
	// The records as an earlier build wrote them: no sum.
	db, err := badger.Open(badger.DefaultOptions(clearing.StoreDir(cfg.DataDir)).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	stripped := 0
	if err := db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{'F'}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var rec map[string]any
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return err
			}
			if _, ok := rec["sum"]; !ok {
				return fmt.Errorf("record %s has no sum", it.Item().Key())
			}
			delete(rec, "sum")
			b, _ := json.Marshal(rec)
			if err := txn.Set(it.Item().KeyCopy(nil), b); err != nil {
				return err
			}
			stripped++
		}
		return nil
	}); err != nil || stripped != 2 {
		t.Fatalf("strip the sums: %d, %v", stripped, err)
	}
	db.Close()
	sessions := f.Status().Sessions
	cl = startClearing(t, cfg)
	enrolFaceOnly(t, cl, "s2-b1", newFace(303), []string{"stop-t1"}, nil)
	waitFor(t, "the new subject at t1", 15*time.Second, func() bool {
		st := f.Status()
		return st.Subjects == 3 && st.Fresh && st.Sessions > sessions
	})
	if st := f.Status(); st.Resumed != st.Sessions-1 || f.Refusals()[galleryfeed.RefusedMismatch] != 0 {
		t.Fatalf("after the start that summed the records: %+v, refusals %v", st, f.Refusals())
	}
	for i, fa := range faces {
		if !identifies(f.Feed, fa, fmt.Sprintf("s%d-b1", i)) {
			t.Fatalf("s%d no longer matched", i)
		}
	}
}

// TestFaceErasedTemplatesNotTakenBack: bob is erased and enrolled again
// (the same person, new templates), then clearing is restored from a
// backup made before the erasure, with and without the face erasure log (a
// log restored with the data dir says as little as none). The restored
// bucket holds bob's first templates at a version the gate saw erased: a
// whole read never takes them, whatever the head says (an outside review:
// the gate took them back and matched bob by templates he had erased).
func TestFaceErasedTemplatesNotTakenBack(t *testing.T) {
	for _, withLog := range []bool{false, true} {
		t.Run(fmt.Sprintf("erasure log %v", withLog), func(t *testing.T) {
			ctx := context.Background()
			dir, reg, keys, cfg := erasureLogCity(t, freePort(t))
			data := cfg.DataDir
			alice, bob1, bob2 := newFace(500), newFace(501), newFace(502)
			cl := startClearing(t, cfg)
			defer func() { cl.stop(t) }()
			enrol := func(s string, fa *faceOf, same bool) {
				t.Helper()
				r := faceRequest(s, fa.templates(3))
				r.FaceOnly, r.Stops, r.SamePersonAsErased = true, []string{"stop-t1"}, same
				if same {
					r.Consent.At = time.Now() // given again since the erasure
				}
				if _, err := cl.EnrolFace(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			enrol("alice", alice, false)
			enrol("bob", bob1, false)
			fc := &faceCity{dir: dir, reg: reg, keys: keys, url: cl.NATSURL()}
			f := fc.startFeed(t, "t1", fc.url, time.Minute)
			defer f.stop(t)
			t1 := startTerminalWith(t, dir, fc.url, reg, keys, "t1", func(c *terminal.Config) { c.FaceHead = f.SignedHead })
			defer t1.stop(t)
			waitFor(t, "bob's first templates at t1", 10*time.Second, func() bool { return identifies(f.Feed, bob1, "bob") })
			cl.stop(t)
			backup := filepath.Join(dir, "backup")
			backUpDataDir(t, data, backup)
			cl = startClearing(t, cfg)
			if _, err := cl.EraseFace(ctx, "bob", "desk-1", "consent withdrawn"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "bob erased at t1", 10*time.Second, func() bool { return !f.Has("bob") })
			enrol("bob", bob2, true)
			waitFor(t, "bob's new templates at t1", 10*time.Second, func() bool {
				return identifies(f.Feed, bob2, "bob") && !identifies(f.Feed, bob1, "bob")
			})
			held := f.Status().HeadVersion
			cl.stop(t)
			restoreDataDir(t, data, backup)
			if !withLog {
				if err := os.Remove(cfg.FaceErasureLog); err != nil {
					t.Fatal(err)
				}
			}
			restarted := time.Now()
			cl = startClearing(t, cfg)
			// Following the restored galleries: a fresh head the restored
			// clearing issued. Its version is the gate's or past it:
			// erasing bob again from the log may number the galleries to
			// exactly the version the gate held (its content differs, and
			// the gate reads its keys whole: the head digests content), or
			// a head the gate showed first makes clearing number past it.
			waitFor(t, "t1 following the restored galleries", 20*time.Second, func() bool {
				st := f.Status()
				return st.HeadVersion >= held && st.Fresh && st.HeadIssued.After(restarted)
			})
			if identifies(f.Feed, bob1, "bob") {
				t.Fatalf("t1 matches bob by the templates he had erased: %+v, refusals %v", f.Status(), f.Refusals())
			}
			if !identifies(f.Feed, alice, "alice") {
				t.Fatal("alice no longer matched")
			}
		})
	}
}

// TestFaceSubjectBackInScope: a registry change takes bob off t3 (its leg
// leaves route bus-L1, bob's line) and a later one puts him back. The gate
// dropped him with a tombstone at his version, so clearing numbers him
// anew when it sends him to a terminal it had sent him to before (an
// outside review: t3 refused his value at the old version for good and
// never made the head again). t4, which kept him, takes the new version.
func TestFaceSubjectBackInScope(t *testing.T) {
	dir, reg, keys, withLeg, cfg := busLineFaceCity(t)
	cl := startClearing(t, cfg)
	bob := newFace(601)
	enrolFaceOnly(t, cl, "bob", bob, nil, []string{"bus-L1"})
	fc := &faceCity{dir: dir, reg: reg, keys: keys, url: cl.NATSURL()}
	f3, f4 := fc.startFeed(t, "t3", fc.url, time.Minute), fc.startFeed(t, "t4", fc.url, time.Minute)
	defer f3.stop(t)
	defer f4.stop(t)
	waitFor(t, "bob at t3 and t4", 10*time.Second, func() bool { return identifies(f3.Feed, bob, "bob") && identifies(f4.Feed, bob, "bob") })
	restart := func(legs []clearing.TerminalLeg) {
		cl.stop(t)
		reg.Legs = legs
		cl = startClearing(t, cfg)
	}
	restart([]clearing.TerminalLeg{{Terminal: "t4", Route: "bus-L1"}})
	waitFor(t, "bob gone from t3", 10*time.Second, func() bool { return !f3.Has("bob") })
	restart(withLeg)
	defer func() { cl.stop(t) }()
	waitFor(t, "bob back at t3, both gates at clearing's heads", 15*time.Second, func() bool {
		v, _ := cl.FaceGalleriesVersion()
		return identifies(f3.Feed, bob, "bob") && identifies(f4.Feed, bob, "bob") &&
			f3.Status().HeadVersion == v && f4.Status().HeadVersion == v && f3.Status().Fresh && f4.Status().Fresh
	})
	// Both copies make the heads: a reconnect resumes without a mismatch.
	if n3, n4 := f3.Refusals()[galleryfeed.RefusedMismatch], f4.Refusals()[galleryfeed.RefusedMismatch]; n3+n4 > 0 {
		t.Logf("head mismatches on the way (whole reads): t3 %d, t4 %d", n3, n4)
	}
	restart(withLeg)
	m3 := f3.Refusals()[galleryfeed.RefusedMismatch]
	sessions := f3.Status().Sessions
	waitFor(t, "t3 reconnected", 15*time.Second, func() bool { return f3.Status().Sessions > sessions && f3.Status().Fresh })
	if f3.Refusals()[galleryfeed.RefusedMismatch] != m3 || !identifies(f3.Feed, bob, "bob") {
		t.Fatalf("t3 after a restart: %+v, refusals %v", f3.Status(), f3.Refusals())
	}
}

// backUpDataDir copies a stopped clearing's data dir to backup (cp -a:
// modes and times as they are).
func backUpDataDir(t *testing.T, data, backup string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", data, backup).CombinedOutput(); err != nil {
		t.Fatalf("back up: %v %s", err, out)
	}
}

// restoreDataDir puts backup in place of a stopped clearing's data dir.
func restoreDataDir(t *testing.T, data, backup string) {
	t.Helper()
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(backup, data); err != nil {
		t.Fatal(err)
	}
}

// enrolFaceOnly enrols subject for face-only travel with three templates
// of fa, at stops and on lines, and returns its version.
func enrolFaceOnly(t *testing.T, cl *running, subject string, fa *faceOf, stops, lines []string) uint64 {
	t.Helper()
	r := faceRequest(subject, fa.templates(3))
	r.FaceOnly, r.Stops, r.Lines = true, stops, lines
	v, err := cl.EnrolFace(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return v.Version
}

// busLineFaceCity is a face city of four terminals whose t3 and t4 are the
// gates of line bus-L1 (withLeg, the registry's legs), for tests that
// take t3 off the line and put it back across restarts.
func busLineFaceCity(t *testing.T) (dir string, reg *clearing.Registry, keys map[string]ed25519.PrivateKey, withLeg []clearing.TerminalLeg, cfg clearing.Config) {
	t.Helper()
	dir = t.TempDir()
	reg, keys = testRegistry(4)
	withLeg = []clearing.TerminalLeg{{Terminal: "t3", Route: "bus-L1"}, {Terminal: "t4", Route: "bus-L1"}}
	reg.Legs = withLeg
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	cfg = clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour,
		FaceKey: testFaceKey, FaceHeadEvery: 300 * time.Millisecond, FaceModels: []string{testModel}, NATSPort: freePort(t)}
	return dir, reg, keys, withLeg, cfg
}
