package fare

import (
	"bytes"
	"crypto/ed25519"
	"errors"
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
		{"version 2", append([]byte{2}, raw[1:]...), ErrUnknownVersion, "version 2"},
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
	e := testEvent()
	e.MediaToken = ""
	if _, err := Sign(&e, testKey(t)); !errors.Is(err, ErrInvalidEventFields) {
		t.Fatalf("want ErrInvalidEventFields, got %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	key := testKey(f)
	e := testEvent()
	raw, _ := Sign(&e, key)
	f.Add(raw)
	f.Add(raw[:len(raw)/2])
	f.Add([]byte{1})
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
