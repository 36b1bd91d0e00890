package galleryfeed

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/fare"
)

// The watch itself runs against a real NATS server and clearing in
// clearing's tests (TestFaceGalleriesFollowEnrolmentAndErasure,
// TestFaceGalleryAttacks, TestFaceGalleryStale); these tests drive the
// copy's rules message by message.

const model = "test-pipeline/v1"

func key(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	s[0], s[1] = seed, 0x9a
	return ed25519.NewKeyFromSeed(s)
}

var (
	clearingKey = key(1)
	t1Key       = key(2)
	t2Key       = key(3)
)

func descriptor(seed, jitter float32) [fare.FaceDim]float32 {
	var d [fare.FaceDim]float32
	for i := range d {
		d[i] = float32((int(seed)*37+i*11)%200-100)/1000 + jitter
	}
	return d
}

func record(subject string, seed float32, faceOnly bool, card string) *fare.FaceRecord {
	r := &fare.FaceRecord{Subject: subject, ModelID: model, FaceOnly: faceOnly,
		Templates: [][fare.FaceDim]float32{descriptor(seed, 0), descriptor(seed, 0.002)}}
	if card != "" {
		r.HasCard, r.Card = true, fare.HashDeny(fare.Card, card)
	}
	return r
}

// value is what clearing would put under terminal's key k: rec sealed
// for the terminal whose key is pub, signed by signer.
func value(t testing.TB, rec *fare.FaceRecord, terminal string, pub ed25519.PrivateKey, k fare.FaceKeyToken, version uint64, signer ed25519.PrivateKey) []byte {
	t.Helper()
	e, err := fare.SealFaceEntry(rec, terminal, pub.Public().(ed25519.PublicKey), k, version)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// entry is what a head digests of one value: its key, version and record.
type entry struct {
	k       fare.FaceKeyToken
	version uint64
	rec     *fare.FaceRecord
}

func head(t *testing.T, terminal string, version uint64, at time.Time, entries ...entry) []byte {
	t.Helper()
	h := fare.FaceHead{Terminal: terminal, Version: version, Count: uint32(len(entries)), IssuedAt: at}
	for _, e := range entries {
		h.Digest.ToggleEntry(e.k, e.version, e.rec.Sum())
	}
	b, err := h.Sign(clearingKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func open(t testing.TB, dir string) *Feed {
	t.Helper()
	f, err := Open(Config{Terminal: "t1", Key: t1Key, ClearingKeys: []ed25519.PublicKey{clearingKey.Public().(ed25519.PublicKey)},
		DataDir: dir, ModelID: model, MaxAge: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func put(k string, b []byte) *update { return &update{key: k, data: b} }

var (
	kAlice = fare.FaceKeyToken{1}
	kBob   = fare.FaceKeyToken{2}
)

// TestCopyRules: what the copy takes and refuses, message by message, and
// what survives a restart.
func TestCopyRules(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir)
	s := &session{seen: map[fare.FaceKeyToken]bool{}}
	now := time.Now()
	alice := record("alice", 1, true, "")
	bob := record("bob", 2, false, "bob-card")
	aliceV := value(t, alice, "t1", t1Key, kAlice, 3, clearingKey)
	f.apply(s, put(fare.FaceEntryKey("t1", kAlice), aliceV))
	f.apply(s, put(fare.FaceEntryKey("t1", kBob), value(t, bob, "t1", t1Key, kBob, 4, clearingKey)))
	f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 4, now, entry{kAlice, 3, alice}, entry{kBob, 4, bob})))
	if _, ok := f.Fresh(); ok {
		t.Fatal("a head read before the keys were read whole took effect")
	}
	f.apply(s, nil)
	if st := f.Status(); !st.Fresh || st.Subjects != 2 || st.FaceOnly != 1 || st.CardHolders != 1 || st.HeadVersion != 4 {
		t.Fatalf("after the whole read: %+v", st)
	}
	probe := descriptor(1, 0.001)
	if d, err := f.Identify(probe, gallery.DefaultPolicy()); err != nil || d.Subject != "alice" || !d.Accepted {
		t.Fatalf("identify alice: %+v %v", d, err)
	}
	if d, err := f.VerifyCard(fare.HashDeny(fare.Card, "bob-card"), descriptor(2, 0.001), gallery.DefaultPolicy()); err != nil || !d.Accepted {
		t.Fatalf("verify bob's card: %+v %v", d, err)
	}

	_, stranger, _ := ed25519.GenerateKey(nil)
	eve := record("eve", 9, true, "")
	for _, tc := range []struct {
		name, reason string
		u            *update
	}{
		{"a stranger's signature", RefusedUntrusted, put(fare.FaceEntryKey("t1", fare.FaceKeyToken{9}), value(t, eve, "t1", t1Key, fare.FaceKeyToken{9}, 9, stranger))},
		{"garbage", RefusedMalformed, put(fare.FaceEntryKey("t1", fare.FaceKeyToken{9}), []byte(`{"type":"io.nats.jetstream.api.v1.stream_info_response"}`))},
		{"another terminal's key", RefusedForeign, put(fare.FaceEntryKey("t2", fare.FaceKeyToken{9}), value(t, eve, "t2", t2Key, fare.FaceKeyToken{9}, 9, clearingKey))},
		{"t2's value under t1's key", RefusedForeign, put(fare.FaceEntryKey("t1", fare.FaceKeyToken{9}), value(t, eve, "t2", t2Key, fare.FaceKeyToken{9}, 9, clearingKey))},
		{"another key's value", RefusedForeign, put(fare.FaceEntryKey("t1", fare.FaceKeyToken{8}), value(t, eve, "t1", t1Key, fare.FaceKeyToken{9}, 9, clearingKey))},
		{"sealed for t2, labelled t1", RefusedSeal, put(fare.FaceEntryKey("t1", fare.FaceKeyToken{9}), value(t, eve, "t1", t2Key, fare.FaceKeyToken{9}, 9, clearingKey))},
		{"another pipeline", RefusedModel, put(fare.FaceEntryKey("t1", fare.FaceKeyToken{9}), value(t, &fare.FaceRecord{Subject: "eve", ModelID: "other", FaceOnly: true, Templates: eve.Templates}, "t1", t1Key, fare.FaceKeyToken{9}, 9, clearingKey))},
		{"an older version", RefusedStale, put(fare.FaceEntryKey("t1", kAlice), value(t, record("mallory", 7, true, ""), "t1", t1Key, kAlice, 2, clearingKey))},
		{"an older head", RefusedOlder, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 3, now.Add(time.Second)))},
		{"a replayed head", RefusedStale, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 4, now.Add(-time.Second), entry{kAlice, 3, alice}, entry{kBob, 4, bob}))},
		{"another terminal's head", RefusedForeign, put(fare.FaceHeadBucketKey("t1"), head(t, "t2", 9, now.Add(time.Second)))},
		{"a bad key", RefusedMalformed, put("t1.nothex", aliceV)},
	} {
		before := f.Refusals()[tc.reason]
		f.apply(s, tc.u)
		if f.Refusals()[tc.reason] != before+1 {
			t.Errorf("%s: refusals %v, want one more %s", tc.name, f.Refusals(), tc.reason)
		}
		if f.Has("eve") || f.Has("mallory") || !f.Has("alice") {
			t.Fatalf("%s changed the gallery", tc.name)
		}
	}
	// A repeat of what the copy holds is quiet.
	refused := f.Refusals()
	f.apply(s, put(fare.FaceEntryKey("t1", kAlice), value(t, alice, "t1", t1Key, kAlice, 3, clearingKey)))
	if r := f.Refusals(); r[RefusedStale] != refused[RefusedStale] {
		t.Error("a repeat was refused as stale")
	}

	// Purged: alice goes at once; her genuine value put back is stale.
	f.apply(s, &update{key: fare.FaceEntryKey("t1", kAlice), op: "PURGE"})
	if f.Has("alice") {
		t.Fatal("a purge left alice")
	}
	if _, err := f.Identify(probe, gallery.DefaultPolicy()); !errors.Is(err, gallery.ErrEmpty) {
		t.Fatalf("identify after erasure: %v", err)
	}
	before := f.Refusals()[RefusedStale]
	f.apply(s, put(fare.FaceEntryKey("t1", kAlice), aliceV))
	if f.Has("alice") || f.Refusals()[RefusedStale] != before+1 {
		t.Fatalf("an erased subject's value replayed was taken: has %v, refusals %v (before %d)", f.Has("alice"), f.Refusals(), before)
	}
	// A new enrolment is a newer version: taken.
	f.apply(s, put(fare.FaceEntryKey("t1", kAlice), value(t, alice, "t1", t1Key, kAlice, 6, clearingKey)))
	if !f.Has("alice") {
		t.Fatal("re-enrolled alice not taken")
	}
	if err := f.flush(); err != nil {
		t.Fatal(err)
	}

	// Restart: the copy comes back, its ciphertexts only, and the rules
	// hold across it (a replay of bob's older value is stale).
	g := open(t, dir)
	if st := g.Status(); st.Subjects != 2 || !st.Fresh || st.HeadVersion != 4 {
		t.Fatalf("reopened: %+v", st)
	}
	b, _ := os.ReadFile(filepath.Join(dir, copyDir, entriesFile))
	for _, d := range alice.Templates {
		if bytes.Contains(b, descriptorLE(d)) {
			t.Fatal("the copy holds a descriptor in plain")
		}
	}
	s2 := &session{seen: map[fare.FaceKeyToken]bool{}}
	g.apply(s2, put(fare.FaceEntryKey("t1", kBob), value(t, bob, "t1", t1Key, kBob, 4, clearingKey)))
	// The next session reads the keys whole: only alice is in the bucket
	// now, under a newer head: bob is dropped, and a tombstone keeps his
	// older value out.
	s3 := &session{seen: map[fare.FaceKeyToken]bool{}}
	g.apply(s3, put(fare.FaceEntryKey("t1", kAlice), value(t, alice, "t1", t1Key, kAlice, 6, clearingKey)))
	g.apply(s3, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 7, now.Add(2*time.Second), entry{kAlice, 6, alice})))
	g.apply(s3, nil)
	if g.Has("bob") || !g.Has("alice") {
		t.Fatalf("after a whole read under a newer head: bob %v alice %v", g.Has("bob"), g.Has("alice"))
	}
	if _, ok := g.CardHolder(fare.HashDeny(fare.Card, "bob-card")); ok {
		t.Fatal("bob's card still has its holder")
	}
	before = g.Refusals()[RefusedStale]
	g.apply(s3, put(fare.FaceEntryKey("t1", kBob), value(t, bob, "t1", t1Key, kBob, 4, clearingKey)))
	if g.Has("bob") || g.Refusals()[RefusedStale] != before+1 {
		t.Fatal("a dropped subject's older value was taken")
	}
	if r := g.Refusals()[RefusedMismatch]; r != 0 {
		t.Errorf("head mismatch refusals: %d", r)
	}
}

// TestStaleness: the gallery is matched only while its head is within
// MaxAge on the gate's clock.
func TestStaleness(t *testing.T) {
	var skew time.Duration
	f, err := Open(Config{Terminal: "t1", Key: t1Key, ClearingKeys: []ed25519.PublicKey{clearingKey.Public().(ed25519.PublicKey)},
		DataDir: t.TempDir(), ModelID: model, MaxAge: time.Minute, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return time.Now().Add(skew) }})
	if err != nil {
		t.Fatal(err)
	}
	probe := descriptor(1, 0.001)
	if _, err := f.Identify(probe, gallery.DefaultPolicy()); !errors.Is(err, ErrStale) {
		t.Fatalf("no head yet: %v", err)
	}
	s := &session{seen: map[fare.FaceKeyToken]bool{}}
	alice := record("alice", 1, true, "card-a")
	f.apply(s, put(fare.FaceEntryKey("t1", kAlice), value(t, alice, "t1", t1Key, kAlice, 1, clearingKey)))
	f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 1, time.Now(), entry{kAlice, 1, alice})))
	f.apply(s, nil)
	for _, tc := range []struct {
		skew  time.Duration
		fresh bool
	}{{0, true}, {59 * time.Second, true}, {61 * time.Second, false}, {time.Hour, false}} {
		skew = tc.skew
		_, err1 := f.Identify(probe, gallery.DefaultPolicy())
		_, err2 := f.VerifyCard(fare.HashDeny(fare.Card, "card-a"), probe, gallery.DefaultPolicy())
		_, _, err3 := f.Galleries()
		for _, err := range []error{err1, err2, err3} {
			if errors.Is(err, ErrStale) == tc.fresh {
				t.Errorf("head %s old: %v, want fresh %v", tc.skew, err, tc.fresh)
			}
		}
	}
}

// TestOpenUnreadableCopy: a corrupt copy is overwritten and the gate
// starts empty (and stale) rather than not at all.
func TestOpenUnreadableCopy(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, copyDir), 0o700); err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte("sealed-template-bytes"), 100)
	if err := os.WriteFile(filepath.Join(dir, copyDir, entriesFile), junk, 0o600); err != nil {
		t.Fatal(err)
	}
	f := open(t, dir)
	if st := f.Status(); st.Subjects != 0 || st.Fresh {
		t.Fatalf("%+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, copyDir, entriesFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the unreadable copy is still there: %v", err)
	}
}

// TestSecondCardHolderErased: a copy holding two subjects for one card
// (clearing refuses a second holder now, but a copy may hold records from
// before) keeps the card's face check when one of them is erased: the card
// alone must not open the gate.
func TestSecondCardHolderErased(t *testing.T) {
	f := open(t, t.TempDir())
	s := &session{seen: map[fare.FaceKeyToken]bool{}}
	now := time.Now()
	kSecond := fare.FaceKeyToken{3}
	card := fare.HashDeny(fare.Card, "shared-card")
	bob, second := record("bob", 2, false, "shared-card"), record("second", 5, false, "shared-card")
	f.apply(s, put(fare.FaceEntryKey("t1", kBob), value(t, bob, "t1", t1Key, kBob, 4, clearingKey)))
	f.apply(s, put(fare.FaceEntryKey("t1", kSecond), value(t, second, "t1", t1Key, kSecond, 5, clearingKey)))
	f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 5, now, entry{kBob, 4, bob}, entry{kSecond, 5, second})))
	f.apply(s, nil)
	if h, ok := f.CardHolder(card); !ok || h != "second" {
		t.Fatalf("the card's holder: %q %v, want the newer, second", h, ok)
	}
	f.mu.Lock()
	f.remove(kSecond)
	f.mu.Unlock()
	if h, ok := f.CardHolder(card); !ok || h != "bob" {
		t.Fatalf("after the newer holder's erasure: holder %q %v, want bob (still held)", h, ok)
	}
	if d, err := f.VerifyCard(card, descriptor(2, 0.001), gallery.DefaultPolicy()); err != nil || !d.Accepted {
		t.Fatalf("bob with the card: %+v %v", d, err)
	}
	if d, err := f.VerifyCard(card, descriptor(5, 0.001), gallery.DefaultPolicy()); err != nil || d.Accepted {
		t.Fatalf("the erased holder with the card: %+v %v, want refused", d, err)
	}
}

// TestWholeReadTakesTheBucketsValues: a clearing restored from a backup
// numbers new templates with versions the gate has seen (or holds a
// subject's older templates under an older version): read whole, such
// values are not newer than the copy's and were dropped as repeats or
// stale, and the gate kept templates clearing no longer has. The head
// digests each entry's record, so the copy does not make it; the values
// the read set aside do, and are taken. Set-aside values that do not make
// the head are not, and neither is a value of a subject the copy saw
// erased.
func TestWholeReadTakesTheBucketsValues(t *testing.T) {
	now := time.Now()
	alice, alice2 := record("alice", 1, true, ""), record("alice", 7, true, "")
	bob, bobOld := record("bob", 2, true, ""), record("bob", 8, true, "")
	start := func(t *testing.T) *Feed {
		f := open(t, t.TempDir())
		s := &session{seen: map[fare.FaceKeyToken]bool{}}
		f.apply(s, put(fare.FaceEntryKey("t1", kAlice), value(t, alice, "t1", t1Key, kAlice, 3, clearingKey)))
		f.apply(s, put(fare.FaceEntryKey("t1", kBob), value(t, bob, "t1", t1Key, kBob, 4, clearingKey)))
		f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 4, now, entry{kAlice, 3, alice}, entry{kBob, 4, bob})))
		f.apply(s, nil)
		if st := f.Status(); st.Subjects != 2 || !st.Fresh {
			t.Fatalf("before: %+v", st)
		}
		return f
	}
	matches := func(f *Feed, seed float32, subject string) bool {
		d, err := f.Identify(descriptor(seed, 0.001), gallery.DefaultPolicy())
		return err == nil && d.Accepted && d.Subject == subject
	}
	t.Run("taken when they make the head", func(t *testing.T) {
		f := start(t)
		// Restored: alice's other templates at version 3 again, bob's
		// older ones at 2; the head at 5 (numbered past the gate's).
		s := &session{seen: map[fare.FaceKeyToken]bool{}}
		f.apply(s, put(fare.FaceEntryKey("t1", kAlice), value(t, alice2, "t1", t1Key, kAlice, 3, clearingKey)))
		f.apply(s, put(fare.FaceEntryKey("t1", kBob), value(t, bobOld, "t1", t1Key, kBob, 2, clearingKey)))
		f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 5, now.Add(time.Second), entry{kAlice, 3, alice2}, entry{kBob, 2, bobOld})))
		f.apply(s, nil)
		if !matches(f, 7, "alice") || matches(f, 1, "alice") || !matches(f, 8, "bob") || matches(f, 2, "bob") {
			t.Fatalf("after the whole read: alice's new %v old %v, bob's restored %v lost %v", matches(f, 7, "alice"), matches(f, 1, "alice"), matches(f, 8, "bob"), matches(f, 2, "bob"))
		}
		if st := f.Status(); !st.Fresh || st.HeadVersion != 5 || f.Refusals()[RefusedMismatch] != 0 {
			t.Fatalf("after the whole read: %+v, refusals %v", st, f.Refusals())
		}
	})
	t.Run("kept when they do not", func(t *testing.T) {
		f := start(t)
		s := &session{seen: map[fare.FaceKeyToken]bool{}}
		f.apply(s, put(fare.FaceEntryKey("t1", kAlice), value(t, alice2, "t1", t1Key, kAlice, 3, clearingKey)))
		f.apply(s, put(fare.FaceEntryKey("t1", kBob), value(t, bob, "t1", t1Key, kBob, 4, clearingKey)))
		// A head saying alice's templates are the ones the copy holds.
		f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 5, now.Add(time.Second), entry{kAlice, 3, alice}, entry{kBob, 4, bob})))
		f.apply(s, nil)
		if !matches(f, 1, "alice") || matches(f, 7, "alice") {
			t.Fatal("a value that does not make the head was taken")
		}
	})
	t.Run("an erased subject's", func(t *testing.T) {
		f := start(t)
		s := &session{seen: map[fare.FaceKeyToken]bool{}}
		f.apply(s, &update{key: fare.FaceEntryKey("t1", kBob), op: "PURGE"})
		f.apply(s, put(fare.FaceEntryKey("t1", kBob), value(t, bobOld, "t1", t1Key, kBob, 4, clearingKey)))
		f.apply(s, put(fare.FaceEntryKey("t1", kAlice), value(t, alice, "t1", t1Key, kAlice, 3, clearingKey)))
		f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 5, now.Add(time.Second), entry{kAlice, 3, alice}, entry{kBob, 4, bobOld})))
		f.apply(s, nil)
		if f.Has("bob") {
			t.Fatal("a value of a subject the copy saw erased was taken")
		}
	})
}

// BenchmarkOpenCopy: a gate's start with a copy of n subjects (the stored
// values opened, the galleries built).
func BenchmarkOpenCopy(b *testing.B) {
	for _, n := range []int{2000, 8000} {
		b.Run(fmt.Sprintf("subjects=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			f := open(b, dir)
			s := &session{seen: map[fare.FaceKeyToken]bool{}}
			for i := range n {
				var k fare.FaceKeyToken
				binary.BigEndian.PutUint64(k[:], uint64(i+1))
				f.apply(s, put(fare.FaceEntryKey("t1", k), value(b, record(fmt.Sprintf("s-%d", i), float32(i), true, ""), "t1", t1Key, k, uint64(i+1), clearingKey)))
			}
			if err := f.flush(); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				g := open(b, dir)
				if st := g.Status(); st.Subjects != n {
					b.Fatalf("%d subjects", st.Subjects)
				}
			}
		})
	}
}

// TestSubjectUnderTwoKeys: a subject arriving under a second key (a copy
// holding records from before) is held under the newer only, and erasing
// that key leaves nothing of it.
func TestSubjectUnderTwoKeys(t *testing.T) {
	f := open(t, t.TempDir())
	s := &session{seen: map[fare.FaceKeyToken]bool{}}
	alice := record("alice", 1, true, "")
	f.apply(s, put(fare.FaceEntryKey("t1", kAlice), value(t, alice, "t1", t1Key, kAlice, 1, clearingKey)))
	f.apply(s, put(fare.FaceEntryKey("t1", kBob), value(t, alice, "t1", t1Key, kBob, 2, clearingKey)))
	if st := f.Status(); st.Subjects != 1 || f.keys[kAlice] != nil || f.keys[kBob] == nil || f.bySubject["alice"] != kBob {
		t.Fatalf("alice under two keys: %+v", st)
	}
	f.apply(s, &update{key: fare.FaceEntryKey("t1", kBob), op: "PURGE"})
	if f.Has("alice") || len(f.bySubject) != 0 {
		t.Fatalf("after the newer key's erasure: held %v, index %v", f.Has("alice"), f.bySubject)
	}
}

// TestForgedCopyRefused: a copy written into the gate's data dir by
// someone without clearing's key or the terminal's (an entry sealed to the
// terminal's public key, as anyone can, signed with a key of their own;
// a head so signed; that key listed as trusted) is not taken at Open: the
// forger's face is matched as nobody, and the gate has no head (an outside
// review's forgery was matched as the victim, fresh). A copy the gate wrote
// itself, a learnt key included, is taken whole.
func TestForgedCopyRefused(t *testing.T) {
	dir := t.TempDir()
	forger := key(9)
	victim := record("victim-rider-42", 5, true, "")
	now := time.Now()
	hv := fare.FaceHead{Terminal: "t1", Version: 1 << 40, Count: 1, IssuedAt: now}
	hv.Digest.ToggleEntry(kAlice, 1, victim.Sum())
	hb, err := hv.Sign(forger)
	if err != nil {
		t.Fatal(err)
	}
	entries := []storedEntry{{key: kAlice, signed: value(t, victim, "t1", t1Key, kAlice, 1, forger)}}
	trusted := []ed25519.PublicKey{clearingKey.Public().(ed25519.PublicKey), forger.Public().(ed25519.PublicKey)}
	copyDir := filepath.Join(dir, copyDir)
	if err := os.MkdirAll(copyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(macKey []byte) {
		t.Helper()
		if err := writeFile(filepath.Join(copyDir, entriesFile), encodeEntries(entries, nil), false); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(filepath.Join(copyDir, headFile), encodeHead(hb, trusted, nil, macKey), false); err != nil {
			t.Fatal(err)
		}
	}
	write([]byte("the forger's guess"))
	f := open(t, dir)
	if st := f.Status(); st.Subjects != 0 || st.HeadVersion != 0 || st.Fresh || f.Has("victim-rider-42") {
		t.Fatalf("a forged copy taken: %+v", st)
	}
	if _, err := f.Identify(descriptor(5, 0.001), gallery.DefaultPolicy()); err == nil {
		t.Fatal("the forger's face identified with no head")
	}
	// The same files under this gate's own mac: the learnt key is the
	// gate's word, and what it signed is taken (a rotation learnt online).
	write(f.macKey)
	g := open(t, dir)
	if st := g.Status(); st.Subjects != 1 || st.HeadVersion != 1<<40 || !g.Has("victim-rider-42") {
		t.Fatalf("the gate's own copy with a learnt key: %+v", st)
	}
}

// TestHeadsAfterClearingsClockSetBack: a clearing whose clock ran two hours
// ahead and was set back issues its next heads earlier than the one the
// gate holds: a newer version is taken whenever it was issued, and one of
// the same version while the copy's is dated ahead of the gate's clock;
// only a head of the copy's version issued earlier than a head dated by a
// right clock is stale (an outside review: every head was refused as
// stale, and the gate matched no face for two hours).
func TestHeadsAfterClearingsClockSetBack(t *testing.T) {
	f := open(t, t.TempDir())
	s := &session{seen: map[fare.FaceKeyToken]bool{}}
	alice := record("alice", 1, true, "")
	now := time.Now()
	ahead := now.Add(2 * time.Hour)
	f.apply(s, put(fare.FaceEntryKey("t1", kAlice), value(t, alice, "t1", t1Key, kAlice, 3, clearingKey)))
	f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 3, ahead, entry{kAlice, 3, alice})))
	f.apply(s, nil)
	if st := f.Status(); st.HeadVersion != 3 || st.HeadIssued.Before(now.Add(time.Hour)) {
		t.Fatalf("the future-dated head: %+v", st)
	}
	// The same version again, issued by the set-back clock: taken.
	f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 3, now, entry{kAlice, 3, alice})))
	if st := f.Status(); st.HeadVersion != 3 || st.HeadIssued.After(now.Add(time.Minute)) || !st.Fresh {
		t.Fatalf("a head of the same version by the set-back clock: %+v", st)
	}
	// Once the copy's head is dated by a right clock, an earlier one of its
	// version is stale; a newer version is taken whenever it was issued.
	stale := f.Refusals()[RefusedStale]
	f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 3, now.Add(-time.Minute), entry{kAlice, 3, alice})))
	if f.Refusals()[RefusedStale] != stale+1 {
		t.Errorf("an earlier head of the same version: refusals %v", f.Refusals())
	}
	bob := record("bob", 2, true, "")
	f.apply(s, put(fare.FaceEntryKey("t1", kBob), value(t, bob, "t1", t1Key, kBob, 4, clearingKey)))
	f.apply(s, put(fare.FaceHeadBucketKey("t1"), head(t, "t1", 4, now.Add(-30*time.Second), entry{kAlice, 3, alice}, entry{kBob, 4, bob})))
	if st := f.Status(); st.HeadVersion != 4 {
		t.Errorf("a newer version issued earlier than the copy's head: %+v", st)
	}
}
