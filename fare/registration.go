package fare

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// A terminal's key proof is its signature over the registration that names
// it: "operator O's terminal T at stop S signs with this key". The contract
// cannot check ed25519, so it keeps the proof in its TerminalRegistered log,
// and clearing follows a registration only when the proof verifies. Without
// it an operator could register another operator's published key first and,
// under "one key, one terminal", lock the rightful terminal out (key
// squatting): the squatter cannot sign a registration naming itself, and a
// proof made for the rightful registration names the rightful operator and
// terminal, so it proves nothing for any other.

// KeyProofSize is the size of a key proof (an ed25519 signature).
const KeyProofSize = ed25519.SignatureSize

// registrationContext separates key proofs from fare events and anything
// else a terminal's key signs.
var registrationContext = []byte("faregate/terminal-registration/v1\x00")

// ErrBadKeyProof is wrapped by VerifyKeyProof for a proof that does not
// verify.
var ErrBadKeyProof = errors.New("key proof does not verify")

// RegistrationMessage returns the bytes a key proof signs: the context, then
// the operator, terminal and stop ids (each a one-byte length and its
// bytes), then the 32-byte public key.
func RegistrationMessage(operator, terminal, stop string, pub []byte) ([]byte, error) {
	for _, f := range []struct{ name, v string }{{"operator", operator}, {"terminal", terminal}, {"stop", stop}} {
		if err := ValidateID(f.v); err != nil {
			return nil, fmt.Errorf("registration: %s id %q: %w", f.name, f.v, err)
		}
	}
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("registration: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	msg := make([]byte, 0, len(registrationContext)+3+len(operator)+len(terminal)+len(stop)+len(pub))
	msg = append(msg, registrationContext...)
	msg = appendStr8(msg, operator)
	msg = appendStr8(msg, terminal)
	msg = appendStr8(msg, stop)
	return append(msg, pub...), nil
}

// ProveKey signs the registration of terminal (of operator, at stop) with
// the terminal's own key: what `faregate terminal keygen` prints beside the
// public key, and what the operator sends with the registration.
func ProveKey(key ed25519.PrivateKey, operator, terminal, stop string) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("key proof: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	msg, err := RegistrationMessage(operator, terminal, stop, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("key proof: %w", err)
	}
	return ed25519.Sign(key, msg), nil
}

// VerifyKeyProof checks that proof is pub's signature over the registration
// of terminal (of operator, at stop). The error says which part failed.
func VerifyKeyProof(pub []byte, operator, terminal, stop string, proof []byte) error {
	if len(proof) == 0 {
		return fmt.Errorf("%w: no key proof (the terminal's signature of its registration; `faregate terminal keygen` prints it)", ErrBadKeyProof)
	}
	if len(proof) != KeyProofSize {
		return fmt.Errorf("%w: key proof is %d bytes, want %d", ErrBadKeyProof, len(proof), KeyProofSize)
	}
	msg, err := RegistrationMessage(operator, terminal, stop, pub)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadKeyProof, err)
	}
	if !ed25519.Verify(ed25519.PublicKey(pub), msg, proof) {
		return fmt.Errorf("%w: not the key's signature of operator %s's terminal %s at stop %s", ErrBadKeyProof, operator, terminal, stop)
	}
	return nil
}

// ParseKeyProof reads a key proof as registry files and flags give it: 0x
// and 64 bytes in hex. The length is checked too, so that a proof cut short
// is named here rather than as a signature that does not verify.
func ParseKeyProof(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, "0x")
	b, err := hex.DecodeString(rest)
	if !ok || err != nil || len(b) != KeyProofSize {
		return nil, fmt.Errorf("key proof %s: want 0x and %d bytes in hex", quoteShort(s), KeyProofSize)
	}
	return b, nil
}
