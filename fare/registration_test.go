package fare

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// TestRegistrationMessageLayout pins the bytes a key proof signs, so that
// code written elsewhere (an operator's provisioning tool, an auditor) can
// build them from the README's description.
func TestRegistrationMessageLayout(t *testing.T) {
	pub := bytes.Repeat([]byte{0xab}, 32)
	got, err := RegistrationMessage("metro", "m-g1", "S1", pub)
	if err != nil {
		t.Fatal(err)
	}
	want := "faregate/terminal-registration/v1\x00" + "\x05metro" + "\x04m-g1" + "\x02S1" + string(pub)
	if string(got) != want {
		t.Fatalf("message %x, want %x", got, want)
	}
}

func TestKeyProof(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32))
	pub := []byte(key.Public().(ed25519.PublicKey))
	proof, err := ProveKey(key, "metro", "metro-g1", "S1")
	if err != nil {
		t.Fatal(err)
	}
	// The proof of another terminal's registration by the same key, and of
	// the same registration by another key.
	proofOtherTerminal, _ := ProveKey(key, "metro", "metro-g2", "S1")
	proofOtherKey, _ := ProveKey(other, "metro", "metro-g1", "S1")
	flipped := bytes.Clone(proof)
	flipped[10] ^= 1
	for _, c := range []struct {
		name                     string
		pub                      []byte
		operator, terminal, stop string
		proof                    []byte
		want                     string // "" verifies
	}{
		{"the registration it signs", pub, "metro", "metro-g1", "S1", proof, ""},
		{"another operator (a squatter)", pub, "bus", "metro-g1", "S1", proof, "not the key's signature of operator bus's terminal metro-g1"},
		{"another terminal id", pub, "metro", "metro-g9", "S1", proof, "not the key's signature"},
		{"another stop", pub, "metro", "metro-g1", "S2", proof, "not the key's signature"},
		{"the key's proof for another terminal", pub, "metro", "metro-g1", "S1", proofOtherTerminal, "not the key's signature"},
		{"another key's proof", pub, "metro", "metro-g1", "S1", proofOtherKey, "not the key's signature"},
		{"one bit flipped", pub, "metro", "metro-g1", "S1", flipped, "not the key's signature"},
		{"no proof", pub, "metro", "metro-g1", "S1", nil, "no key proof"},
		{"a truncated proof", pub, "metro", "metro-g1", "S1", proof[:63], "63 bytes, want 64"},
		{"a short public key", pub[:31], "metro", "metro-g1", "S1", proof, "public key is 31 bytes"},
		{"an id no subject token", pub, "metro", "metro.g1", "S1", proof, `terminal id "metro.g1"`},
	} {
		err := VerifyKeyProof(c.pub, c.operator, c.terminal, c.stop, c.proof)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want verified", c.name, err)
		case c.want != "" && (err == nil || !errors.Is(err, ErrBadKeyProof) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want ErrBadKeyProof saying %q", c.name, err, c.want)
		}
	}
	if _, err := ProveKey(key[:10], "metro", "metro-g1", "S1"); err == nil {
		t.Error("a short private key signed a proof")
	}
	if _, err := ProveKey(key, "", "metro-g1", "S1"); err == nil {
		t.Error("a proof signed for an empty operator")
	}
	// Deterministic (ed25519), so a registry file's proof can be re-made
	// and compared.
	again, _ := ProveKey(key, "metro", "metro-g1", "S1")
	if hex.EncodeToString(again) != hex.EncodeToString(proof) {
		t.Error("two proofs of one registration differ")
	}
}
