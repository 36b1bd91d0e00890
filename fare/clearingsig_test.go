package fare

import (
	"crypto/ed25519"
	"math/big"
	"testing"
)

// FuzzVerifyClearingMatchesStdlib: verifyClearing (curve25519-voi with an
// expanded key) answers as crypto/ed25519 does, for genuine signatures and
// every mangling of key, message and signature the fuzzer finds.
func FuzzVerifyClearingMatchesStdlib(f *testing.F) {
	seed := make([]byte, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	msg := []byte("faregate/confirmation/v3\x00 a confirmation")
	sig := ed25519.Sign(priv, msg)
	// S + L: the same signature with a non-canonical scalar, which both
	// must refuse.
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	s := new(big.Int).SetBytes(reverse(sig[32:]))
	s.Add(s, l)
	malleable := append(append([]byte(nil), sig[:32]...), reverse(s.FillBytes(make([]byte, 32)))...)
	f.Add([]byte(pub), msg, sig)
	f.Add([]byte(pub), msg, malleable)
	f.Add([]byte(pub), append(msg, 0), sig)
	f.Add(make([]byte, 32), msg, sig)
	f.Add([]byte(pub[:31]), msg, sig)
	f.Fuzz(func(t *testing.T, k, m, sg []byte) {
		want := len(k) == ed25519.PublicKeySize && len(sg) == ed25519.SignatureSize && ed25519.Verify(k, m, sg)
		if got := verifyClearing(k, m, sg); got != want {
			t.Fatalf("key %x message %x signature %x: verifyClearing %v, crypto/ed25519 %v", k, m, sg, got, want)
		}
	})
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}

// TestVerifyClearingGenuine: the seeds' verdicts, spelt out.
func TestVerifyClearingGenuine(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	msg := []byte("a gate-list entry")
	sig := ed25519.Sign(priv, msg)
	other := ed25519.NewKeyFromSeed(append(make([]byte, ed25519.SeedSize-1), 1)).Public().(ed25519.PublicKey)
	for _, c := range []struct {
		name string
		k    ed25519.PublicKey
		m    []byte
		s    []byte
		want bool
	}{
		{"genuine", pub, msg, sig, true},
		{"genuine again (the expanded key kept)", pub, msg, sig, true},
		{"another key", other, msg, sig, false},
		{"another message", pub, []byte("a gate-list entrY"), sig, false},
		{"a short signature", pub, msg, sig[:63], false},
		{"a short key", pub[:31], msg, sig, false},
	} {
		if got := verifyClearing(c.k, c.m, c.s); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// BenchmarkVerifyClearing: one clearing signature over a confirmation-sized
// message, checked by crypto/ed25519 (which expands the key every time) and
// by verifyClearing (the key expanded once), side by side.
func BenchmarkVerifyClearing(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	msg := make([]byte, 120)
	sig := ed25519.Sign(priv, msg)
	b.Run("stdlib", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("expanded-key", func(b *testing.B) {
		for b.Loop() {
			if !verifyClearing(pub, msg, sig) {
				b.Fatal("refused")
			}
		}
	})
}
