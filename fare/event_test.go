package fare

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

func testEvent() Event {
	return Event{
		ID:            NewEventID(time.Date(2026, 11, 21, 8, 30, 0, 0, time.UTC)),
		Terminal:      "T-0001",
		Operator:      "metro",
		Stop:          "S_Kievskaya",
		Gate:          "g3",
		Direction:     Entry,
		Media:         Card,
		MediaToken:    "tok_4f9a",
		RiderCategory: "adult",
		DeviceTime:    time.Date(2026, 11, 21, 8, 30, 0, 123456789, time.UTC),
		Decision:      Accepted,
		Reason:        "",
		Sequence:      42,
	}
}

func TestSignDecodeRoundTrip(t *testing.T) {
	key := testKey(t)
	e := testEvent()
	raw, err := Sign(&e, key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if s.Event != e {
		t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", s.Event, e)
	}
	if err := s.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	// Canonical: re-signing the decoded event gives the same bytes.
	again, err := Sign(&s.Event, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, raw) {
		t.Fatal("encoding is not canonical")
	}
}

func TestVerifyRejects(t *testing.T) {
	key := testKey(t)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	e := testEvent()
	raw, _ := Sign(&e, key)
	tests := []struct {
		name   string
		mutate func([]byte) []byte
		pub    ed25519.PublicKey
	}{
		{"other key", func(b []byte) []byte { return b }, other.Public().(ed25519.PublicKey)},
		{"flipped signature bit", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, key.Public().(ed25519.PublicKey)},
		{"changed sequence", func(b []byte) []byte { b[len(b)-SignatureSize-1]++; return b }, key.Public().(ed25519.PublicKey)},
		{"short public key", func(b []byte) []byte { return b }, ed25519.PublicKey{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mutate(bytes.Clone(raw))
			s, err := Decode(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if err := s.Verify(tt.pub); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("want ErrBadSignature, got %v", err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	key := testKey(t)
	e := testEvent()
	raw, _ := Sign(&e, key)
	tests := []struct {
		name    string
		b       []byte
		want    error
		mention string
	}{
		{"empty", nil, ErrMalformed, "empty"},
		{"version 3", append([]byte{3}, raw[1:]...), ErrUnknownVersion, "version 3"},
		{"too large", make([]byte, MaxEncodedSize+1), ErrTooLarge, "limit"},
		{"trailing byte", func() []byte {
			b := bytes.Clone(raw[:len(raw)-SignatureSize])
			b = append(b, 0)
			return append(b, raw[len(raw)-SignatureSize:]...)
		}(), ErrMalformed, "unexpected bytes"},
		{"short", raw[:20], ErrMalformed, "shorter"},
		{"zero sequence", func() []byte {
			e := testEvent()
			e.Sequence = 0
			b := append([]byte(nil), Version)
			body := e.appendBody(nil)
			b = append(b[:0], body...)
			return append(b, make([]byte, SignatureSize)...)
		}(), ErrInvalidEventFields, "sequence 0"},
		{"bad direction", func() []byte {
			e := testEvent()
			e.Direction = 9
			return append(e.appendBody(nil), make([]byte, SignatureSize)...)
		}(), ErrInvalidEventFields, "direction(9)"},
		{"dot in terminal id", func() []byte {
			e := testEvent()
			e.Terminal = "a.b"
			return append(e.appendBody(nil), make([]byte, SignatureSize)...)
		}(), ErrInvalidEventFields, "terminal id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("want %v, got %v", tt.want, err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

// Every truncation of a valid event is rejected, never mis-parsed.
func TestDecodeEveryTruncation(t *testing.T) {
	e := testEvent()
	raw, _ := Sign(&e, testKey(t))
	for n := 0; n < len(raw); n++ {
		s, err := Decode(raw[:n])
		if err == nil {
			// A truncation can only parse if the signature bytes happen to
			// parse as fields; it must then fail verification.
			if s.Verify(testKey(t).Public().(ed25519.PublicKey)) == nil {
				t.Fatalf("truncation to %d bytes verified", n)
			}
		}
	}
}

func TestSignRejectsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		change     func(*Event)
	}{
		{"no media token", "media token", func(e *Event) { e.MediaToken = "" }},
		// Its nanoseconds wrap int64: clearing would read another time.
		{"a device time in 2300", "outside the years 1678 to 2262", func(e *Event) { e.DeviceTime = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"a device time in 1600", "outside the years 1678 to 2262", func(e *Event) { e.DeviceTime = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) }},
	} {
		e := testEvent()
		tc.change(&e)
		if _, err := Sign(&e, testKey(t)); !errors.Is(err, ErrInvalidEventFields) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidEventFields naming %q", tc.name, err, tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	key := testKey(f)
	e := testEvent()
	raw, _ := Sign(&e, key)
	f.Add(raw)
	f.Add(raw[:len(raw)/2])
	f.Add([]byte{1})
	fe := faceEvent()
	rawFace, _ := Sign(&fe, key)
	f.Add(rawFace)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to exactly the same body.
		if body := s.Event.appendBody(nil); !bytes.Equal(body, s.Body()) {
			t.Fatalf("decode/encode not canonical:\n in  %x\n out %x", s.Body(), body)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	key := testKey(b)
	e := testEvent()
	for b.Loop() {
		if _, err := Sign(&e, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	e := testEvent()
	raw, _ := Sign(&e, testKey(b))
	var s Signed
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeInto(&s, raw); err != nil {
			b.Fatal(err)
		}
	}
}

func faceEvent() Event {
	e := testEvent()
	e.Media, e.MediaToken, e.RiderCategory = Face, "subj-7f3a", ""
	e.Face = &FaceEvidence{Mode: FaceIdentify, Subject: "subj-7f3a", Distance: 0.41, Margin: 0.12, Frames: 2,
		Model: "dlib-resnet-v1/5pt", Policy: "op-1a2b3c"}
	return e
}

// A face event round-trips in version 2; a card event keeps version 1 and
// its bytes.
func TestFaceEvidenceRoundTrip(t *testing.T) {
	key := testKey(t)
	lent := testEvent()
	lent.Decision, lent.Reason = Denied, "face-mismatch"
	lent.Face = &FaceEvidence{Mode: FaceVerify, Subject: "holder-1", Distance: 0.83, Frames: 3, Model: "m", Policy: "p"}
	unmatched := faceEvent()
	unmatched.Decision, unmatched.Reason, unmatched.MediaToken = Denied, "no-match", UnmatchedFace
	unmatched.Face.Subject, unmatched.Face.Distance, unmatched.Face.Margin = "", float32(math.Inf(1)), float32(math.Inf(1))
	for _, tc := range []struct {
		name    string
		e       Event
		version byte
	}{
		{"card", testEvent(), Version},
		{"1:N accepted", faceEvent(), FaceVersion},
		{"1:1 refused", lent, FaceVersion},
		{"1:N unmatched", unmatched, FaceVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := Sign(&tc.e, key)
			if err != nil {
				t.Fatal(err)
			}
			if raw[0] != tc.version {
				t.Fatalf("version %d, want %d", raw[0], tc.version)
			}
			s, err := Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			got, want := s.Event, tc.e
			if (got.Face == nil) != (want.Face == nil) || (got.Face != nil && *got.Face != *want.Face) {
				t.Fatalf("face evidence changed: got %+v, want %+v", got.Face, want.Face)
			}
			got.Face, want.Face = nil, nil
			if got != want {
				t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", got, want)
			}
			if err := s.Verify(key.Public().(ed25519.PublicKey)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFaceEvidenceRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Event)
		want string
	}{
		{"face tap without evidence", func(e *Event) { e.Face = nil }, "without face evidence"},
		{"bad mode", func(e *Event) { e.Face.Mode = 9 }, "face-mode(9)"},
		{"1:N on a card", func(e *Event) { e.Media = Card }, "1:N face evidence on a card tap"},
		{"1:1 on a face", func(e *Event) { e.Face.Mode = FaceVerify }, "1:1 face evidence on a face tap"},
		{"1:1 names no holder", func(e *Event) { e.Media, e.Face.Mode, e.Face.Subject = Card, FaceVerify, "" }, "names no card holder"},
		{"token is not the subject", func(e *Event) { e.MediaToken = "someone-else" }, "identifies subject"},
		{"unmatched with a token", func(e *Event) { e.Decision, e.Face.Subject = Denied, "" }, `must carry token "unmatched"`},
		{"NaN distance", func(e *Event) { e.Face.Distance = float32(math.NaN()) }, "face distance NaN"},
		{"negative margin", func(e *Event) { e.Face.Margin = -0.1 }, "face margin -0.1"},
		{"negative zero", func(e *Event) { e.Face.Distance = float32(math.Copysign(0, -1)) }, "face distance"},
		{"accepted from no frames", func(e *Event) { e.Face.Frames = 0 }, "accepted from 0 frames"},
		{"no model", func(e *Event) { e.Face.Model = "" }, "model version"},
		{"long policy", func(e *Event) { e.Face.Policy = strings.Repeat("p", MaxFaceVersionLen+1) }, "policy version"},
		{"bad subject id", func(e *Event) { e.Face.Subject, e.MediaToken = "a b", "a b" }, "face subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := faceEvent()
			tc.edit(&e)
			_, err := Sign(&e, testKey(t))
			if !errors.Is(err, ErrInvalidEventFields) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalidEventFields naming %q", err, tc.want)
			}
		})
	}
	// A version 1 body with face bytes after it is refused, as is a version
	// 2 body cut short of its face evidence.
	key := testKey(t)
	card := testEvent()
	raw1, _ := Sign(&card, key)
	body := append(append([]byte(nil), raw1[:len(raw1)-SignatureSize]...), 1, 0)
	if _, err := Decode(append(body, raw1[len(raw1)-SignatureSize:]...)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "after sequence") {
		t.Fatalf("trailing bytes after a version 1 body: %v", err)
	}
	card.Face = nil
	raw1[0] = FaceVersion
	if _, err := Decode(raw1); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "face mode") {
		t.Fatalf("version 2 without face evidence: %v", err)
	}
}

// TestDecoderRefusesANegativeLength: a length read as a negative int (a
// 32-bit length past int's range on a 32-bit build) is malformed input,
// never a slice out of range.
func TestDecoderRefusesANegativeLength(t *testing.T) {
	d := &decoder{b: make([]byte, 32), off: 16}
	if v := d.bytes(-1, "field"); v != nil || !errors.Is(d.err, ErrMalformed) {
		t.Errorf("bytes(-1): %v, %v", v, d.err)
	}
}
