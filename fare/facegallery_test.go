package fare

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func testFaceRecord() *FaceRecord {
	r := &FaceRecord{Subject: "subj-7", ModelID: "dlib_resnet_v1/shape68/chip150/pad0.25", FaceOnly: true, HasCard: true, Card: HashDeny(Card, "card-7")}
	for i := range 3 {
		var t [FaceDim]float32
		for j := range t {
			t[j] = float32(i+1)*0.001 + float32(j)*0.0025 - 0.16
		}
		r.Templates = append(r.Templates, t)
	}
	return r
}

func terminalKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	s[0], s[1] = seed, 0xfc
	return ed25519.NewKeyFromSeed(s)
}

// TestFaceKeys: the recipient key clearing computes from the registered
// ed25519 key is the one the terminal derives from its seed.
func TestFaceKeys(t *testing.T) {
	for seed := range byte(8) {
		k := terminalKey(seed)
		pub, err := FaceRecipientKey(k.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		priv, err := FaceDecryptionKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pub.Bytes(), priv.PublicKey().Bytes()) {
			t.Fatalf("seed %d: recipient key %x, terminal derives %x", seed, pub.Bytes(), priv.PublicKey().Bytes())
		}
	}
	if _, err := FaceRecipientKey(make([]byte, 31)); err == nil {
		t.Error("a 31-byte key gave a recipient key")
	}
}

// TestFaceSealing: a record sealed for a terminal opens there and only
// there, under the key token and version it was sealed for; the signed
// entry round-trips and verifies only under clearing's key and label.
func TestFaceSealing(t *testing.T) {
	_, clearingKey, _ := ed25519.GenerateKey(nil)
	trusted := []ed25519.PublicKey{clearingKey.Public().(ed25519.PublicKey)}
	t1, t2 := terminalKey(1), terminalKey(2)
	k := FaceKeyToken{1, 2, 3}
	rec := testFaceRecord()
	e, err := SealFaceEntry(rec, "t1", t1.Public().(ed25519.PublicKey), k, 7)
	if err != nil {
		t.Fatal(err)
	}
	raw := rec.encode()
	if bytes.Contains(e.Sealed, raw[len(raw)-4*FaceDim:]) {
		t.Fatal("the sealed record holds a plaintext template")
	}
	b, err := e.Sign(clearingKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyFaceEntry(b, trusted)
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := FaceDecryptionKey(t1)
	p2, _ := FaceDecryptionKey(t2)
	opened, err := got.Open(p1)
	if err != nil {
		t.Fatal(err)
	}
	if opened.Subject != rec.Subject || opened.ModelID != rec.ModelID || opened.Card != rec.Card || !opened.FaceOnly || !opened.HasCard || len(opened.Templates) != 3 || opened.Templates[2] != rec.Templates[2] {
		t.Fatalf("opened %+v", opened)
	}

	// Refusals, each from the side of someone holding the entry.
	moved := func(edit func(*FaceEntry)) *FaceEntry {
		c := *got
		c.Sealed = bytes.Clone(got.Sealed)
		edit(&c)
		return &c
	}
	for _, tc := range []struct {
		name string
		e    *FaceEntry
		key  func() *FaceEntry
	}{
		{"another terminal's key", got, nil},
		{"moved to another terminal", moved(func(e *FaceEntry) { e.Terminal = "t2" }), nil},
		{"moved to another key token", moved(func(e *FaceEntry) { e.Key[0] ^= 1 }), nil},
		{"replayed as another version", moved(func(e *FaceEntry) { e.Version = 8 }), nil},
		{"a flipped ciphertext bit", moved(func(e *FaceEntry) { e.Sealed[40] ^= 1 }), nil},
	} {
		key := p1
		if tc.name == "another terminal's key" {
			key = p2
		}
		if _, err := tc.e.Open(key); !errors.Is(err, ErrFaceSeal) {
			t.Errorf("%s: opened (%v)", tc.name, err)
		}
	}

	// Signatures: a stranger's, or clearing's under the head label, do not
	// verify as an entry; an altered entry does not verify.
	_, stranger, _ := ed25519.GenerateKey(nil)
	forged, _ := e.Sign(stranger)
	if _, err := VerifyFaceEntry(forged, trusted); !errors.Is(err, ErrUntrustedFace) {
		t.Errorf("a stranger's entry: %v", err)
	}
	tampered := bytes.Clone(b)
	tampered[len(tampered)-SignatureSize-1] ^= 1
	if _, err := VerifyFaceEntry(tampered, trusted); !errors.Is(err, ErrUntrustedFace) {
		t.Errorf("an altered entry: %v", err)
	}
	h := FaceHead{Terminal: "t1", Version: 7, Count: 1, IssuedAt: time.Unix(1_800_000_000, 5)}
	h.Digest.ToggleEntry(k, 3, (&FaceRecord{Subject: "alice"}).Sum())
	hb, err := h.Sign(clearingKey)
	if err != nil {
		t.Fatal(err)
	}
	gh, err := VerifyFaceHead(hb, trusted)
	if err != nil || gh.Terminal != "t1" || gh.Version != 7 || gh.Count != 1 || gh.Digest != h.Digest || !gh.IssuedAt.Equal(h.IssuedAt) {
		t.Fatalf("head round trip: %+v, %v", gh, err)
	}
	// The same bytes under the other label: re-tag a head as an entry and
	// an entry as a head; neither decodes, and a signature never crosses.
	if _, err := VerifyFaceEntry(append([]byte{FaceEntryTag}, hb[1:]...), trusted); err == nil {
		t.Error("a head verified as an entry")
	}
	if _, err := VerifyFaceHead(append([]byte{FaceHeadTag}, b[1:]...), trusted); err == nil {
		t.Error("an entry verified as a head")
	}
	if _, err := VerifyGateEntry(b, trusted); err == nil {
		t.Error("a face entry verified as a gate-list entry")
	}
}

// TestFaceRecordRefusals: what a record may not hold, named.
func TestFaceRecordRefusals(t *testing.T) {
	nan := testFaceRecord()
	nan.Templates[1][5] = float32(math.NaN())
	inf := testFaceRecord()
	inf.Templates[0][0] = float32(math.Inf(-1))
	for _, tc := range []struct {
		name, want string
		edit       func(*FaceRecord)
	}{
		{"bad subject", "subject id", func(r *FaceRecord) { r.Subject = "has space" }},
		{"empty subject", "subject id", func(r *FaceRecord) { r.Subject = "" }},
		{"no model", "model id", func(r *FaceRecord) { r.ModelID = "" }},
		{"no templates", "no templates", func(r *FaceRecord) { r.Templates = nil }},
		{"too many templates", "at most", func(r *FaceRecord) {
			for len(r.Templates) <= MaxFaceTemplates {
				r.Templates = append(r.Templates, r.Templates[0])
			}
		}},
		{"NaN", "template 2: descriptor value 5 is NaN", func(r *FaceRecord) { *r = *nan }},
		{"infinity", "template 1: descriptor value 0 is -Inf", func(r *FaceRecord) { *r = *inf }},
		{"matches nothing", "neither face-only", func(r *FaceRecord) { r.FaceOnly, r.HasCard = false, false }},
	} {
		r := testFaceRecord()
		tc.edit(r)
		err := r.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	if err := ValidateDescriptor(make([]float32, 127)); err == nil || !strings.Contains(err.Error(), "127 values, want 128") {
		t.Errorf("short descriptor: %v", err)
	}
}

// TestFaceDecodeEveryTruncation: every prefix of a valid entry, head and
// record is refused, and so are trailing bytes and another format version.
func TestFaceDecodeEveryTruncation(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	e, err := SealFaceEntry(testFaceRecord(), "t1", terminalKey(1).Public().(ed25519.PublicKey), FaceKeyToken{9}, 3)
	if err != nil {
		t.Fatal(err)
	}
	eb, _ := e.Sign(key)
	hb, _ := (&FaceHead{Terminal: "t1", Version: 3, IssuedAt: time.Now()}).Sign(key)
	rb := testFaceRecord().encode()
	for _, tc := range []struct {
		name   string
		b      []byte
		decode func([]byte) error
	}{
		{"entry", eb, func(b []byte) error { _, err := DecodeFaceEntry(b); return err }},
		{"head", hb, func(b []byte) error { _, err := DecodeFaceHead(b); return err }},
		{"record", rb, func(b []byte) error { _, err := DecodeFaceRecord(b); return err }},
	} {
		if err := tc.decode(tc.b); err != nil {
			t.Fatalf("%s: whole: %v", tc.name, err)
		}
		for n := range len(tc.b) {
			if err := tc.decode(tc.b[:n]); err == nil {
				t.Fatalf("%s: %d of %d bytes decoded", tc.name, n, len(tc.b))
			}
		}
		if tc.name == "record" { // entries and heads end in a signature: a longer one is caught by it
			if err := tc.decode(append(bytes.Clone(tc.b), 0)); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: trailing byte: %v", tc.name, err)
			}
		}
		v := bytes.Clone(tc.b)
		v[1] = 2
		if err := tc.decode(v); !errors.Is(err, ErrUnknownVersion) {
			t.Errorf("%s: format 2: %v", tc.name, err)
		}
	}
}

func TestParseFaceKey(t *testing.T) {
	k := FaceKeyToken{0xab, 0xcd}
	for _, tc := range []struct {
		key      string
		terminal string
		head     bool
		bad      string
	}{
		{key: FaceEntryKey("t1", k), terminal: "t1"},
		{key: FaceHeadBucketKey("metro-s01-g1"), terminal: "metro-s01-g1", head: true},
		{key: "t1", bad: "want <terminal>"},
		{key: "t1.ABCD" + strings.Repeat("0", 28), bad: "lower-case hex"},
		{key: "t1.abc", bad: "token of 3 characters"},
		{key: "t1.x.head", bad: "token of 6 characters"},
		{key: "bad term." + FaceHeadKey, bad: "terminal"},
	} {
		term, got, head, err := ParseFaceKey(tc.key)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%q: %v, want an error naming %q", tc.key, err, tc.bad)
			}
			continue
		}
		if err != nil || term != tc.terminal || head != tc.head || (!head && got != k) {
			t.Errorf("%q: %q %v %v %v", tc.key, term, got, head, err)
		}
	}
}

// A terminal's permissions reach no JetStream API and no bucket: its
// feeds are consumers clearing makes (GateFeedSubject); it may ask only
// for its own, and answer only its feeds' flow control.
func TestTerminalPermissionsNoJetStreamAPI(t *testing.T) {
	pub, sub := TerminalPermissions("metro", "t1")
	for _, s := range append(pub, sub...) {
		if strings.HasPrefix(s, "$JS.API") || strings.HasPrefix(s, "$KV.") || strings.Contains(s, ">") && s != TerminalInboxPrefix("t1")+".>" {
			t.Errorf("a terminal may reach %s", s)
		}
	}
	if !slices.Contains(pub, "faregate.feed.t1.*") {
		t.Errorf("t1 may not ask for its feeds: %v", pub)
	}
	for _, feed := range []string{FeedDeny, FeedEnrol, FeedFace} {
		stream, _, ok := GateFeedStream("t1", feed)
		if !ok || !slices.Contains(pub, "$JS.FC."+stream+"."+GateFeedConsumer("t1", feed)+".*") {
			t.Errorf("feed %s: stream %q (%v), flow control not answerable: %v", feed, stream, ok, pub)
		}
	}
	if _, filter, _ := GateFeedStream("t1", FeedFace); filter != "$KV."+FaceBucket+".t1.*" {
		t.Errorf("t1's face feed filter %q, not its own keys", filter)
	}
	if _, _, ok := GateFeedStream("t1", "faces"); ok {
		t.Error("a feed of no bucket granted")
	}
}

func FuzzDecodeFaceEntry(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	e, _ := SealFaceEntry(testFaceRecord(), "t1", terminalKey(1).Public().(ed25519.PublicKey), FaceKeyToken{1}, 1)
	b, _ := e.Sign(key)
	f.Add(b)
	f.Add([]byte{FaceEntryTag, FaceFormat})
	f.Add([]byte{})
	trusted := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	priv, _ := FaceDecryptionKey(terminalKey(1))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeFaceEntry(b)
		if err != nil {
			return
		}
		if e.validate() != nil {
			t.Fatalf("decoded an invalid entry: %+v", e)
		}
		if _, err := VerifyFaceEntry(b, trusted); err == nil {
			if r, err := e.Open(priv); err == nil && r.Validate() != nil {
				t.Fatal("opened an invalid record")
			}
		}
	})
}

func FuzzDecodeFaceHead(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	b, _ := (&FaceHead{Terminal: "t1", Version: 4, Count: 2, IssuedAt: time.Now()}).Sign(key)
	f.Add(b)
	f.Add([]byte{FaceHeadTag, FaceFormat, 2, 't'})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeFaceHead(b)
		if err != nil {
			return
		}
		if h.validate() != nil {
			t.Fatalf("decoded an invalid head: %+v", h)
		}
	})
}

func FuzzDecodeFaceRecord(f *testing.F) {
	f.Add(testFaceRecord().encode())
	f.Add([]byte{FaceRecordTag, FaceFormat, 1, 'a', 1, 'm', 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeFaceRecord(b)
		if err != nil {
			return
		}
		if r.Validate() != nil {
			t.Fatalf("decoded an invalid record: %+v", r)
		}
		if !bytes.Equal(r.encode(), b) {
			t.Fatal("decoded record does not encode to its input")
		}
	})
}

func FuzzParseFaceKey(f *testing.F) {
	f.Add(FaceEntryKey("t1", FaceKeyToken{1}))
	f.Add("t1.head")
	f.Fuzz(func(t *testing.T, key string) {
		term, k, head, err := ParseFaceKey(key)
		if err != nil {
			return
		}
		want := FaceEntryKey(term, k)
		if head {
			want = FaceHeadBucketKey(term)
		}
		if want != key {
			t.Fatalf("%q parsed to %q", key, want)
		}
	})
}

// TestFaceRecordSum: a record's sum does not depend on the order of its
// templates (clearing seals them in request order at enrolment and in its
// template store's order later) and changes with every field a gate uses.
func TestFaceRecordSum(t *testing.T) {
	tpl := func(x float32) (v [FaceDim]float32) {
		for i := range v {
			v[i] = x + float32(i)/1000
		}
		return v
	}
	base := FaceRecord{Subject: "alice", ModelID: "dlib", FaceOnly: true, HasCard: true, Card: DenyHash{7}, Templates: [][FaceDim]float32{tpl(0.1), tpl(0.2), tpl(0.3)}}
	sum := base.Sum()
	if base.Templates[0] != tpl(0.1) {
		t.Fatal("Sum reordered the record's templates")
	}
	edit := func(f func(r *FaceRecord)) [32]byte {
		r := base
		r.Templates = slices.Clone(base.Templates)
		f(&r)
		return r.Sum()
	}
	if got := edit(func(r *FaceRecord) { slices.Reverse(r.Templates) }); got != sum {
		t.Error("the templates' order changed the sum")
	}
	for name, f := range map[string]func(r *FaceRecord){
		"subject":         func(r *FaceRecord) { r.Subject = "bob" },
		"model":           func(r *FaceRecord) { r.ModelID = "other" },
		"face-only":       func(r *FaceRecord) { r.FaceOnly = false },
		"card":            func(r *FaceRecord) { r.Card = DenyHash{8} },
		"no card":         func(r *FaceRecord) { r.HasCard = false },
		"a template":      func(r *FaceRecord) { r.Templates[1][5] += 0.0001 },
		"fewer templates": func(r *FaceRecord) { r.Templates = r.Templates[:2] },
	} {
		if edit(f) == sum {
			t.Errorf("%s: the sum did not change", name)
		}
	}
}
