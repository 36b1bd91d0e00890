package fare

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"
)

func testConfirmation() Confirmation {
	return Confirmation{
		Terminal: "t1", From: 10, Watermark: 20, Digest: [32]byte{1, 2, 3}, Highest: 25,
		IssuedAt: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC),
		Rejected: []Rejection{{Sequence: 12, Digest: [32]byte{9}, Reason: "stop-mismatch"}, {Sequence: 20, Reason: "bad-signature"}},
	}
}

func TestConfirmationRoundTrip(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	c := testConfirmation()
	b, err := c.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyConfirmation(b, []ed25519.PublicKey{other.Public().(ed25519.PublicKey), key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Terminal != c.Terminal || got.From != c.From || got.Watermark != c.Watermark || got.Digest != c.Digest ||
		got.Highest != c.Highest || !got.IssuedAt.Equal(c.IssuedAt) || len(got.Rejected) != 2 || got.Rejected[1] != c.Rejected[1] {
		t.Fatalf("round trip: got %+v, want %+v", got, c)
	}
	if _, err := VerifyConfirmation(b, []ed25519.PublicKey{other.Public().(ed25519.PublicKey)}); !errors.Is(err, ErrUntrustedConfirmation) {
		t.Fatalf("untrusted key: %v", err)
	}
	// Any flipped byte breaks it; any truncation is refused.
	for i := range b {
		m := append([]byte(nil), b...)
		m[i] ^= 0x40
		if _, err := VerifyConfirmation(m, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	for n := range len(b) {
		if _, err := VerifyConfirmation(b[:n], []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}); err == nil {
			t.Fatalf("truncated to %d bytes: accepted", n)
		}
	}
	// An event signature is no confirmation signature (domain separation).
	ev := Event{ID: NewEventID(time.Now()), Terminal: "t1", Operator: "op", Stop: "s", Gate: "g", Direction: Entry, Media: Card,
		MediaToken: "c", DeviceTime: time.Now(), Decision: Accepted, Sequence: 1}
	raw, _ := Sign(&ev, key)
	if _, err := VerifyConfirmation(raw, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}); err == nil {
		t.Fatal("an event decodes as a confirmation")
	}
}

func TestConfirmationInvalid(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	for name, mut := range map[string]func(*Confirmation){
		"from above watermark": func(c *Confirmation) { c.From = 30 },
		"rejection below from": func(c *Confirmation) { c.Rejected[0].Sequence = 10 },
		"rejection above mark": func(c *Confirmation) { c.Rejected[1].Sequence = 21 },
		"rejections unordered": func(c *Confirmation) { c.Rejected[0].Sequence, c.Rejected[1].Sequence = 20, 12 },
		"empty reason":         func(c *Confirmation) { c.Rejected[0].Reason = "" },
		"bad terminal id":      func(c *Confirmation) { c.Terminal = "t.1" },
		"too many rejections":  func(c *Confirmation) { c.Rejected = make([]Rejection, MaxRejections+1) },
	} {
		c := testConfirmation()
		mut(&c)
		if _, err := c.Sign(key); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}

func FuzzDecodeConfirmation(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	c := testConfirmation()
	b, _ := c.Sign(key)
	f.Add(b)
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeConfirmation(b)
		if err != nil {
			return
		}
		if c.validate() != nil {
			t.Fatalf("decoded an invalid confirmation: %+v", c)
		}
	})
}
