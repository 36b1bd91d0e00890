package fare

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

func testPeriods(n int) []EnrolmentPeriod {
	var out []EnrolmentPeriod
	at := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	for i := range n {
		out = append(out, EnrolmentPeriod{From: at.Add(time.Duration(2*i) * 24 * time.Hour), Until: at.Add(time.Duration(2*i+1) * 24 * time.Hour), Category: "concession"})
	}
	return out
}

// TestGateEntryRoundTrip: entries and heads of both lists round-trip;
// another key, every flipped byte and every truncation are refused, and
// trailing bytes too.
func TestGateEntryRoundTrip(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	trusted := []ed25519.PublicKey{pubOf(other), pubOf(key)}
	k := HashDeny(Face, "subject-1")
	for _, tc := range []struct {
		name  string
		entry GateEntry
	}{
		{"listed", GateEntry{List: DenyGateList, Version: 42, Key: k, Listed: true}},
		{"unlisted", GateEntry{List: DenyGateList, Version: 43, Key: k}},
		{"enrolled", GateEntry{List: EnrolGateList, Version: 7, Key: k, Periods: testPeriods(2)}},
		{"longest enrolment", GateEntry{List: EnrolGateList, Version: 7, Key: k, Periods: testPeriods(MaxEnrolmentPeriods)}},
		{"revoked", GateEntry{List: EnrolGateList, Version: 8, Key: k}},
	} {
		b, err := tc.entry.Sign(key)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(b) > MaxGateEntrySize {
			t.Fatalf("%s: %d bytes, over %d", tc.name, len(b), MaxGateEntrySize)
		}
		got, err := VerifyGateEntry(b, trusted)
		if err != nil || got.List != tc.entry.List || got.Version != tc.entry.Version || got.Key != k || got.Listed != tc.entry.Listed || len(got.Periods) != len(tc.entry.Periods) {
			t.Fatalf("%s: %+v, %v", tc.name, got, err)
		}
		for i, p := range got.Periods {
			if !p.From.Equal(tc.entry.Periods[i].From) || !p.Until.Equal(tc.entry.Periods[i].Until) || p.Category != tc.entry.Periods[i].Category {
				t.Fatalf("%s: period %d %+v", tc.name, i, p)
			}
		}
		if _, err := VerifyGateEntry(b, []ed25519.PublicKey{pubOf(other)}); !errors.Is(err, ErrUntrustedGateList) {
			t.Fatalf("%s, another key: %v", tc.name, err)
		}
		for i := range b {
			m := bytes.Clone(b)
			m[i] ^= 0x20
			if _, err := VerifyGateEntry(m, trusted); err == nil {
				t.Fatalf("%s: byte %d flipped: accepted", tc.name, i)
			}
		}
		for n := range len(b) {
			if _, err := VerifyGateEntry(b[:n], trusted); err == nil {
				t.Fatalf("%s: truncated to %d bytes: accepted", tc.name, n)
			}
		}
		if _, err := DecodeGateEntry(append(b[:len(b)-SignatureSize:len(b)-SignatureSize], append([]byte{0}, b[len(b)-SignatureSize:]...)...)); err == nil {
			t.Fatalf("%s: a trailing byte before the signature: accepted", tc.name)
		}
	}
	h := GateHead{List: EnrolGateList, Version: 9, Count: 2, Digest: DigestDenyList(testDenyKeys(2))}
	b, err := h.Sign(key)
	if err != nil || len(b) != GateHeadSize {
		t.Fatalf("head: %d bytes, %v", len(b), err)
	}
	if got, err := VerifyGateHead(b, trusted); err != nil || *got != h {
		t.Fatalf("head round trip: %+v, %v", got, err)
	}
	for n := range len(b) {
		if _, err := VerifyGateHead(b[:n], trusted); err == nil {
			t.Fatalf("head truncated to %d bytes: accepted", n)
		}
	}
}

// TestGateEntryInvalid: what Sign and the decoder refuse, each named.
func TestGateEntryInvalid(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	k := HashDeny(Card, "c")
	p := testPeriods(3)
	for _, tc := range []struct {
		name  string
		entry GateEntry
		want  string
	}{
		{"version 0", GateEntry{List: DenyGateList, Key: k}, "version 0"},
		{"no list", GateEntry{List: 'X', Version: 1, Key: k}, "list byte"},
		{"deny entry with periods", GateEntry{List: DenyGateList, Version: 1, Key: k, Periods: p}, "with enrolment periods"},
		{"listed enrolment", GateEntry{List: EnrolGateList, Version: 1, Key: k, Listed: true}, "marked listed"},
		{"periods out of order", GateEntry{List: EnrolGateList, Version: 1, Key: k, Periods: []EnrolmentPeriod{p[1], p[0]}}, "before period 1 ends"},
		{"empty period", GateEntry{List: EnrolGateList, Version: 1, Key: k, Periods: []EnrolmentPeriod{{From: p[0].From, Until: p[0].From, Category: "c"}}}, "is not before"},
		{"bad category", GateEntry{List: EnrolGateList, Version: 1, Key: k, Periods: []EnrolmentPeriod{{From: p[0].From, Until: p[0].Until, Category: "a b"}}}, "category"},
		{"too many periods", GateEntry{List: EnrolGateList, Version: 1, Key: k, Periods: testPeriods(MaxEnrolmentPeriods + 1)}, "at most"},
	} {
		if _, err := tc.entry.Sign(key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	if _, err := (&GateHead{List: DenyGateList, Version: 1, Count: 2}).Sign(key); err == nil {
		t.Error("signed a head counting more media than versions")
	}
	for _, b := range [][]byte{nil, {GateEntryTag}, {GateEntryTag, 2}, {'X', 1}} {
		if _, err := DecodeGateEntry(b); err == nil {
			t.Errorf("decoded %x", b)
		}
	}
}

// TestGateListDomainSeparation: no deny entry verifies as an enrolment
// entry, a head, a confirmation or a rotation, nor any of them as another;
// bundled with the rotation chain, like confirmations.
func TestGateListDomainSeparation(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	trusted := []ed25519.PublicKey{pubOf(key)}
	deny, _ := (&GateEntry{List: DenyGateList, Version: 1, Key: HashDeny(Card, "x"), Listed: true}).Sign(key)
	enrol, _ := (&GateEntry{List: EnrolGateList, Version: 1, Key: HashDeny(Card, "x"), Periods: testPeriods(1)}).Sign(key)
	denyHead, _ := (&GateHead{List: DenyGateList, Version: 1, Count: 1}).Sign(key)
	enrolHead, _ := (&GateHead{List: EnrolGateList, Version: 1, Count: 1}).Sign(key)
	conf := testConfirmation()
	cb, _ := conf.Sign(key)
	rot, _ := (&KeyRotation{NewKey: pubOf(key), IssuedAt: time.Now()}).Sign(key)
	msgs := map[string][]byte{"deny entry": deny, "enrolment entry": enrol, "deny head": denyHead, "enrolment head": enrolHead, "confirmation": cb, "rotation": rot}
	for name, b := range msgs {
		e, err := VerifyGateEntry(b, trusted)
		if (err == nil) != strings.HasSuffix(name, "entry") || (err == nil && (e.List == DenyGateList) != (name == "deny entry")) {
			t.Errorf("%s as an entry: %+v, %v", name, e, err)
		}
		if _, err := VerifyGateHead(b, trusted); (err == nil) != strings.HasSuffix(name, "head") {
			t.Errorf("%s as a head: %v", name, err)
		}
		if _, err := VerifyConfirmation(b, trusted); (err == nil) != (name == "confirmation") {
			t.Errorf("%s as a confirmation: %v", name, err)
		}
		if _, err := VerifyKeyRotation(b, trusted); (err == nil) != (name == "rotation") {
			t.Errorf("%s as a rotation: %v", name, err)
		}
	}
	// The list byte is signed under the list's own label: a deny entry
	// relabelled as an enrolment entry does not verify.
	m := bytes.Clone(deny)
	m[2] = byte(EnrolGateList)
	if _, err := VerifyGateEntry(m, trusted); err == nil {
		t.Error("a deny entry relabelled verifies as an enrolment entry")
	}
	rots, msg, err := Unbundle(Bundle([][]byte{rot}, enrol))
	if err != nil || len(rots) != 1 || !bytes.Equal(msg, enrol) {
		t.Fatalf("bundled entry: %d rotations, %v", len(rots), err)
	}
}

// TestCategoryAt: a period covers [From, Until).
func TestCategoryAt(t *testing.T) {
	p := testPeriods(2)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{p[0].From.Add(-time.Second), ""},
		{p[0].From, "concession"},
		{p[0].Until.Add(-time.Second), "concession"},
		{p[0].Until, ""},
		{p[1].From, "concession"},
		{p[1].Until, ""},
	} {
		if got := CategoryAt(p, tc.at); got != tc.want {
			t.Errorf("at %s: %q, want %q", tc.at, got, tc.want)
		}
	}
}

func FuzzDecodeGateEntry(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	for _, e := range []GateEntry{
		{List: DenyGateList, Version: 5, Key: HashDeny(Card, "c"), Listed: true},
		{List: EnrolGateList, Version: 5, Key: HashDeny(Card, "c"), Periods: testPeriods(2)},
	} {
		b, _ := e.Sign(key)
		f.Add(b)
	}
	f.Add([]byte{GateEntryTag, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeGateEntry(b)
		if err != nil {
			return
		}
		if e.validate() != nil || len(b) > MaxGateEntrySize {
			t.Fatalf("decoded an invalid entry: %+v", e)
		}
		if _, err := VerifyGateEntry(b, []ed25519.PublicKey{pubOf(key)}); err == nil {
			again, serr := e.Sign(key)
			if serr != nil || !bytes.Equal(again, b) {
				t.Fatal("verified bytes that are not the entry's encoding")
			}
		}
	})
}

func FuzzDecodeGateHead(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	b, _ := (&GateHead{List: DenyGateList, Version: 5, Count: 3, Digest: DigestDenyList(testDenyKeys(3))}).Sign(key)
	f.Add(b)
	f.Add([]byte{GateHeadTag, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeGateHead(b)
		if err != nil {
			return
		}
		if !h.List.valid() || h.Count > h.Version || len(b) != GateHeadSize {
			t.Fatalf("decoded an invalid head: %+v", h)
		}
	})
}
