package fare

import (
	"crypto/ed25519"
	"fmt"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestNATSIdentityDerivation(t *testing.T) {
	for i := range 20 {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[31] = byte(i), byte(3*i+1)
		key := ed25519.NewKeyFromSeed(seed)
		pub := key.Public().(ed25519.PublicKey)
		id := fmt.Sprintf("t%d", i)
		ident, err := NewNATSIdentity(key, id)
		if err != nil {
			t.Fatal(err)
		}
		public, err := NATSUserKey(pub, id)
		if err != nil {
			t.Fatal(err)
		}
		if public != ident.PublicKey() {
			t.Fatalf("%s: public derivation %s, private derivation %s", id, public, ident.PublicKey())
		}
		if !nkeys.IsValidPublicUserKey(public) {
			t.Fatalf("%s: %s is not a NATS user key", id, public)
		}
		kp, err := nkeys.FromPublicKey(public)
		if err != nil {
			t.Fatal(err)
		}
		nonce := []byte(fmt.Sprintf("nonce-%d", i))
		sig, err := ident.Sign(nonce)
		if err != nil {
			t.Fatal(err)
		}
		if err := kp.Verify(nonce, sig); err != nil {
			t.Fatalf("%s: nkeys rejects the derived signature: %v", id, err)
		}
		// Separation: the derived signature is no signature of the event key,
		// the key differs per terminal id, and a tampered nonce fails.
		if ed25519.Verify(pub, nonce, sig) {
			t.Fatalf("%s: NATS signature verifies under the event key", id)
		}
		other, _ := NATSUserKey(pub, id+"x")
		if other == public {
			t.Fatalf("%s: same NATS key for another terminal id", id)
		}
		nonce[0] ^= 1
		if kp.Verify(nonce, sig) == nil {
			t.Fatalf("%s: tampered nonce verifies", id)
		}
	}
	if _, err := NATSUserKey(make([]byte, 31), "t"); err == nil {
		t.Fatal("short public key accepted")
	}
	// About half of all y coordinates are on no point of the curve.
	refused := 0
	for y := range 16 {
		bad := make([]byte, 32)
		bad[0] = byte(y)
		if _, err := NATSUserKey(bad, "t"); err != nil {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("every encoding accepted as a curve point")
	}
}
