package fare

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
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
	for _, withRange := range []bool{false, true} {
		for _, nonce := range [][]byte{nil, []byte("sixteen byte nce"), bytes.Repeat([]byte{7}, MaxNonceSize)} {
			t.Run(fmt.Sprintf("nonce of %d bytes, range %v", len(nonce), withRange), func(t *testing.T) { testConfirmationRoundTrip(t, nonce, withRange) })
		}
	}
}

func testConfirmationRoundTrip(t *testing.T, nonce []byte, withRange bool) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	c := testConfirmation()
	c.Nonce = nonce
	if withRange {
		c.HasRange, c.RangeDigest = true, sha256.Sum256([]byte("range"))
	}
	b, err := c.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	// Without a nonce or a range, version 1: what terminals of every build
	// read; a range only to terminals that ask for it (version 3).
	want := byte(1)
	switch {
	case withRange:
		want = 3
	case len(nonce) > 0:
		want = 2
	}
	if b[0] != want {
		t.Fatalf("encoded as version %d, want %d", b[0], want)
	}
	got, err := VerifyConfirmation(b, []ed25519.PublicKey{other.Public().(ed25519.PublicKey), key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Terminal != c.Terminal || got.From != c.From || got.Watermark != c.Watermark || got.Digest != c.Digest ||
		got.Highest != c.Highest || !got.IssuedAt.Equal(c.IssuedAt) || len(got.Rejected) != 2 || got.Rejected[1] != c.Rejected[1] || !bytes.Equal(got.Nonce, nonce) ||
		got.HasRange != withRange || got.RangeDigest != c.RangeDigest {
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
		"nonce too long":       func(c *Confirmation) { c.Nonce = make([]byte, MaxNonceSize+1) },
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
	c.Nonce = []byte("sixteen byte nce")
	b, _ = c.Sign(key)
	f.Add(b)
	c.HasRange, c.RangeDigest = true, sha256.Sum256([]byte("range"))
	b, _ = c.Sign(key)
	f.Add(b)
	c.Nonce = nil
	b, _ = c.Sign(key)
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
		// One encoding per confirmation: what decodes encodes back to the
		// same bytes (the signature aside).
		again, err := c.Sign(key)
		if err != nil || !bytes.Equal(again[:len(again)-SignatureSize], b[:len(b)-SignatureSize]) {
			t.Fatalf("re-encoding differs: %v\n%x\n%x", err, b, again)
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

// TestWatermarkRequest: requests round-trip, the old form (a decimal only)
// still parses, and anything else is refused naming the part at fault.
func TestWatermarkRequest(t *testing.T) {
	nonce := []byte("sixteen byte nce")
	for _, c := range []struct {
		in        string
		watermark uint64
		nonce     []byte
		err       string
	}{
		{in: "0", watermark: 0},
		{in: "1234", watermark: 1234},
		{in: string(WatermarkRequest(0, nonce)), watermark: 0, nonce: nonce},
		{in: string(WatermarkRequest(77, nonce)), watermark: 77, nonce: nonce},
		{in: "", err: "not a decimal"},
		{in: "-1", err: "not a decimal"},
		{in: "0 abcd", err: "not 0x hex"},
		{in: "0 0x", err: "want a nonce of 1 to 32 bytes"},
		{in: "0 0xzz", err: "want a nonce of 1 to 32 bytes"},
		{in: "0 0x" + strings.Repeat("ab", MaxNonceSize+1), err: "want a nonce of 1 to 32 bytes"},
		{in: "0 0xab extra", err: "want a nonce"},
	} {
		w, n, err := ParseWatermarkRequest([]byte(c.in))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrMalformed) {
				t.Errorf("%q: %v, want an error saying %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || w != c.watermark || !bytes.Equal(n, c.nonce) {
			t.Errorf("%q: %d 0x%x %v, want %d 0x%x", c.in, w, n, err, c.watermark, c.nonce)
		}
	}
}

func FuzzParseWatermarkRequest(f *testing.F) {
	f.Add([]byte("0"))
	f.Add(WatermarkRequest(5, []byte("sixteen byte nce")))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, n, err := ParseWatermarkRequest(b)
		if err != nil {
			return
		}
		if len(n) > MaxNonceSize {
			t.Fatalf("%q: a nonce of %d bytes", b, len(n))
		}
		w2, n2, err := ParseWatermarkRequest(WatermarkRequest(w, n))
		if err != nil || w2 != w || !bytes.Equal(n2, n) {
			t.Fatalf("%q: does not round-trip: %d 0x%x %v", b, w2, n2, err)
		}
	})
}

// TestRangeHash: clearing and the terminal compute the same digest for the
// same events under the same sequences, and any other event, order, start
// or a skipped sequence gives another.
func TestRangeHash(t *testing.T) {
	d := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	sum := func(from uint64, ds ...[32]byte) [32]byte {
		r := NewRangeHash(from)
		for i, x := range ds {
			if err := r.Add(from+1+uint64(i), x); err != nil {
				t.Fatal(err)
			}
		}
		if r.Last() != from+uint64(len(ds)) {
			t.Fatalf("last %d after %d from %d", r.Last(), len(ds), from)
		}
		return r.Sum()
	}
	base := sum(10, d("a"), d("b"), d("c"))
	if sum(10, d("a"), d("b"), d("c")) != base {
		t.Fatal("the same range gave two digests")
	}
	for name, other := range map[string][32]byte{
		"another event": sum(10, d("a"), d("x"), d("c")),
		"another order": sum(10, d("b"), d("a"), d("c")),
		"another start": sum(11, d("a"), d("b"), d("c")),
		"one less":      sum(10, d("a"), d("b")),
		"empty":         sum(10),
	} {
		if other == base {
			t.Errorf("%s: same digest", name)
		}
	}
	r := NewRangeHash(10)
	if err := r.Add(12, d("a")); err == nil {
		t.Fatal("a skipped sequence was added")
	}
}
