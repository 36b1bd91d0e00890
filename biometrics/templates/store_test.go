package templates

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

var testKey = bytes.Repeat([]byte{0x5a}, 32)

func consent() Consent {
	return Consent{GivenBy: "the subject", At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Purpose: "concession card verification"}
}

func desc(seed float32) [Dim]float32 {
	var d [Dim]float32
	for i := range d {
		d[i] = seed + float32(i)/1000
	}
	return d
}

func openT(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, testKey, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEnrolAndLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir)
	if _, err := s.Enrol(ctx, "alice", consent(), "m1", desc(0.1), desc(0.11)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Enrol(ctx, "al", consent(), "m1", desc(0.5)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir) // survives reopening
	defer s.Close()
	ts, err := s.Templates(ctx, "alice")
	if err != nil || len(ts) != 2 || ts[0].Descriptor != desc(0.1) || ts[0].ModelID != "m1" || ts[0].Subject != "alice" {
		t.Fatalf("templates: %v %+v", err, ts)
	}
	c, err := s.Consent(ctx, "alice")
	if err != nil || c != consent() {
		t.Fatalf("consent: %v %+v", err, c)
	}
	g, err := s.LoadGallery(ctx, "m1")
	if err != nil || g.Len() != 3 || g.Subjects() != 2 {
		t.Fatalf("gallery: %v", err)
	}
	if _, err := s.LoadGallery(ctx, "other-model"); err == nil {
		t.Fatal("loaded templates of another model")
	}
}

func TestEnrolRequiresConsent(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	for name, c := range map[string]Consent{
		"none":       {},
		"no who":     {At: time.Now(), Purpose: "x"},
		"no time":    {GivenBy: "x", Purpose: "x"},
		"no purpose": {GivenBy: "x", At: time.Now()},
	} {
		if _, err := s.Enrol(ctx, "bob", c, "m1", desc(0)); !errors.Is(err, ErrNoConsent) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, id := range []string{"", "a\x00b", strings.Repeat("x", 300)} {
		if _, err := s.Enrol(ctx, id, consent(), "m1", desc(0)); !errors.Is(err, ErrBadSubject) {
			t.Errorf("subject %q: %v", id, err)
		}
	}
	if _, err := s.Enrol(ctx, "bob", consent(), "m1"); err == nil {
		t.Error("enrolled no descriptors")
	}
	// One capture given twice is one template, refused as two.
	if _, err := s.Enrol(ctx, "bob", consent(), "m1", desc(1), desc(2), desc(1)); err == nil || !strings.Contains(err.Error(), "descriptor 3 is descriptor 1 again") {
		t.Errorf("one capture twice: %v, want refused", err)
	}
	if ts, _ := s.Templates(ctx, "bob"); len(ts) != 0 {
		t.Errorf("rejected enrolments left %d templates", len(ts))
	}
}

func rawFiles(t *testing.T, dir string) []byte {
	var all []byte
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			all = append(all, b...)
		}
		return nil
	})
	return all
}

func descBytes(d [Dim]float32) []byte {
	var b []byte
	for _, v := range d[:16] {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// The files on disk hold neither subject ids nor descriptor bytes in the
// clear.
func TestEncryptedAtRest(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	if _, err := s.Enrol(context.Background(), "subject-7f3a9c", consent(), "m1", desc(0.25)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw := rawFiles(t, dir)
	if len(raw) == 0 {
		t.Fatal("no files written")
	}
	if bytes.Contains(raw, []byte("subject-7f3a9c")) || bytes.Contains(raw, descBytes(desc(0.25))) || bytes.Contains(raw, []byte("concession card")) {
		t.Fatal("plaintext found in the store's files")
	}
	other := bytes.Repeat([]byte{1}, 32)
	if _, err := Open(dir, other, Options{}); err == nil {
		t.Fatal("opened with the wrong key")
	}
}

func TestForget(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir)
	s.Enrol(ctx, "alice", consent(), "m1", desc(0.1), desc(0.12))
	s.Enrol(ctx, "alice2", consent(), "m1", desc(0.3))
	g, _ := s.LoadGallery(ctx, "m1")
	if ms := g.Search(desc(0.1), 1); ms[0].Subject != "alice" {
		t.Fatalf("before: %v", ms)
	}
	n, err := s.Forget(ctx, "alice")
	if err != nil || n != 2 {
		t.Fatalf("forget: %d %v", n, err)
	}
	if _, err := s.Consent(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("consent survived: %v", err)
	}
	if ts, _ := s.Templates(ctx, "alice2"); len(ts) != 1 {
		t.Errorf("forgetting alice touched alice2: %d", len(ts))
	}
	g, _ = s.LoadGallery(ctx, "m1")
	for _, m := range g.Search(desc(0.1), 10) {
		if m.Subject == "alice" {
			t.Fatalf("erased subject in search results: %v", m)
		}
	}
	s.Close()
	// No version of any alice key is left, even to a reader of all versions.
	db, err := badger.Open(badger.DefaultOptions(dir).WithEncryptionKey(testKey).WithIndexCacheSize(1 << 20).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if bytes.Contains(k, []byte("alice\x00")) {
				t.Errorf("key left behind: %q (deleted=%v)", k, it.Item().IsDeletedOrExpired())
			}
		}
		return nil
	})
}

func TestParseKey(t *testing.T) {
	hexKey := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{hexKey, true},
		{hexKey + "\n", true},
		{string(testKey), true},
		{"short", false},
		{strings.Repeat("zz", 32), false},
		{"", false},
	} {
		k, err := ParseKey([]byte(tc.in))
		if (err == nil) != tc.ok || (tc.ok && len(k) != 32) {
			t.Errorf("ParseKey(%q) = %x, %v", tc.in, k, err)
		}
	}
	t.Setenv(KeyEnv, "")
	if _, err := LoadKey(""); !errors.Is(err, ErrNoKey) {
		t.Errorf("no key: %v", err)
	}
	t.Setenv(KeyEnv, hexKey)
	if k, err := LoadKey(""); err != nil || len(k) != 32 {
		t.Errorf("env key: %v", err)
	}
	t.Setenv(KeyEnv, "zz")
	if _, err := LoadKey(""); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "$"+KeyEnv) {
		t.Errorf("a bad env key: %v, want ErrBadKey naming the variable", err)
	}
	f := filepath.Join(t.TempDir(), "key")
	os.WriteFile(f, testKey, 0o600)
	if k, err := LoadKey(f); err != nil || !bytes.Equal(k, testKey) {
		t.Errorf("file key: %v", err)
	}
	if _, err := Open(t.TempDir(), []byte("short"), Options{}); !errors.Is(err, ErrBadKey) {
		t.Errorf("open with short key: %v", err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	tm := Template{Descriptor: desc(0.2), ModelID: "dlib", Created: time.Unix(0, 123).UTC()}
	got, err := decodeTemplate(encodeTemplate(tm))
	if err != nil || got != tm {
		t.Fatalf("template: %v %+v", err, got)
	}
	c := consent()
	gc, err := decodeConsent(encodeConsent(c))
	if err != nil || gc != c {
		t.Fatalf("consent: %v %+v", err, gc)
	}
	for _, b := range [][]byte{nil, {2}, {1, 0, 0}, encodeTemplate(tm)[:100]} {
		if _, err := decodeTemplate(b); err == nil {
			t.Errorf("decoded corrupt template %x", b)
		}
	}
}

func FuzzDecodeTemplate(f *testing.F) {
	f.Add(encodeTemplate(Template{Descriptor: desc(0.1), ModelID: "m", Created: time.Unix(5, 0)}))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tm, err := decodeTemplate(b)
		if err != nil {
			return
		}
		again, err := decodeTemplate(encodeTemplate(tm))
		if err != nil || again.Descriptor != tm.Descriptor || again.ModelID != tm.ModelID || !again.Created.Equal(tm.Created) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzDecodeConsent(f *testing.F) {
	f.Add(encodeConsent(consent()))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'x', 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeConsent(b)
		if err != nil {
			return
		}
		again, err := decodeConsent(encodeConsent(c))
		if err != nil || again != c {
			t.Fatalf("round trip: %v %+v %+v", err, c, again)
		}
	})
}
