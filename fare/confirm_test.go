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

func TestKeyRotation(t *testing.T) {
	_, k0, _ := ed25519.GenerateKey(nil)
	_, k1, _ := ed25519.GenerateKey(nil)
	pub := func(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }
	r := KeyRotation{NewKey: pub(k1), IssuedAt: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	b, err := r.Sign(k0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyKeyRotation(b, []ed25519.PublicKey{pub(k0)})
	if err != nil || !got.NewKey.Equal(pub(k1)) || !got.IssuedAt.Equal(r.IssuedAt) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// Signed by the new key itself: not trusted by a terminal knowing k0.
	self, _ := r.Sign(k1)
	if _, err := VerifyKeyRotation(self, []ed25519.PublicKey{pub(k0)}); !errors.Is(err, ErrUntrustedConfirmation) {
		t.Fatalf("self-signed rotation: %v", err)
	}
	for i := range b {
		m := append([]byte(nil), b...)
		m[i] ^= 1
		if _, err := VerifyKeyRotation(m, []ed25519.PublicKey{pub(k0)}); err == nil {
			t.Fatalf("byte %d flipped: accepted", i)
		}
	}
	// A confirmation is no rotation and a rotation no confirmation.
	c := testConfirmation()
	cb, _ := c.Sign(k0)
	if _, err := VerifyKeyRotation(cb, []ed25519.PublicKey{pub(k0)}); err == nil {
		t.Fatal("confirmation accepted as a rotation")
	}
	if _, err := VerifyConfirmation(b, []ed25519.PublicKey{pub(k0)}); err == nil {
		t.Fatal("rotation accepted as a confirmation")
	}
}

func FuzzVerifyKeyRotation(f *testing.F) {
	_, k0, _ := ed25519.GenerateKey(nil)
	r := KeyRotation{NewKey: k0.Public().(ed25519.PublicKey), IssuedAt: time.Now()}
	b, _ := r.Sign(k0)
	f.Add(b)
	f.Add([]byte{KeyRotationTag})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := VerifyKeyRotation(b, []ed25519.PublicKey{k0.Public().(ed25519.PublicKey)}); err == nil && len(r.NewKey) != ed25519.PublicKeySize {
			t.Fatal("verified a rotation without a full key")
		}
	})
}

func TestBundle(t *testing.T) {
	_, k0, _ := ed25519.GenerateKey(nil)
	_, k1, _ := ed25519.GenerateKey(nil)
	r := KeyRotation{NewKey: k1.Public().(ed25519.PublicKey), IssuedAt: time.Now()}
	rb, _ := r.Sign(k0)
	c := testConfirmation()
	cb, _ := c.Sign(k1)
	if rot, conf, err := Unbundle(Bundle(nil, cb)); err != nil || rot != nil || string(conf) != string(cb) {
		t.Fatalf("bare confirmation: %v %v", rot, err)
	}
	rot, conf, err := Unbundle(Bundle([][]byte{rb}, cb))
	if err != nil || len(rot) != 1 || string(rot[0]) != string(rb) || string(conf) != string(cb) {
		t.Fatalf("bundle: %d rotations, %v", len(rot), err)
	}
	for _, bad := range [][]byte{{BundleTag}, {BundleTag, 0}, {BundleTag, 2, 1, 2, 3}} {
		if _, _, err := Unbundle(bad); err == nil {
			t.Errorf("%x: accepted", bad)
		}
	}
}

func FuzzUnbundle(f *testing.F) {
	f.Add([]byte{BundleTag, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		rot, conf, err := Unbundle(b)
		if err != nil {
			return
		}
		n := len(conf)
		for _, r := range rot {
			n += len(r)
		}
		if len(rot) > 0 && n+2 != len(b) || len(rot) == 0 && n != len(b) {
			t.Fatalf("bundle of %d bytes split into %d", len(b), n)
		}
	})
}

// BenchmarkConfirmation measures what one confirmation costs clearing to
// sign and a terminal to verify.
func BenchmarkConfirmation(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	c := testConfirmation()
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Sign(key); err != nil {
				b.Fatal(err)
			}
		}
	})
	raw, _ := c.Sign(key)
	trusted := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := VerifyConfirmation(raw, trusted); err != nil {
				b.Fatal(err)
			}
		}
	})
}
