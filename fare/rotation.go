package fare

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// KeyRotation is clearing's statement, signed with a confirmation key
// terminals already trust, that NewKey signs confirmations from now on. A
// terminal that verifies it trusts NewKey too and keeps it, so clearing's key
// can be replaced without reprovisioning every gate: terminals learn the new
// key, one certificate per rotation, over the same NATS subject as their
// confirmations (a chain K0→K1→K2 is checked link by link).
type KeyRotation struct {
	NewKey   ed25519.PublicKey
	IssuedAt time.Time
}

// KeyRotationTag is the first byte of an encoded KeyRotation; confirmations
// start with their version (1), so the two never read as each other.
const KeyRotationTag = 'K'

// KeyRotationSize is the size of an encoded KeyRotation.
const KeyRotationSize = 1 + 1 + ed25519.PublicKeySize + 8 + SignatureSize

var rotationContext = []byte("faregate/clearing-key-rotation/v1\x00")

// Sign encodes r and signs it with the key being replaced.
func (r *KeyRotation) Sign(old ed25519.PrivateKey) ([]byte, error) {
	if len(r.NewKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key rotation: new key of %d bytes", len(r.NewKey))
	}
	msg := append([]byte(nil), rotationContext...)
	msg = append(msg, KeyRotationTag, 1)
	msg = append(msg, r.NewKey...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(r.IssuedAt.UnixNano()))
	sig := ed25519.Sign(old, msg)
	return append(msg[len(rotationContext):], sig...), nil
}

// VerifyKeyRotation decodes a rotation certificate and checks that one of the
// trusted keys signed it.
func VerifyKeyRotation(b []byte, trusted []ed25519.PublicKey) (*KeyRotation, error) {
	if len(b) != KeyRotationSize {
		return nil, fmt.Errorf("key rotation: %d bytes, want %d: %w", len(b), KeyRotationSize, ErrMalformed)
	}
	if b[0] != KeyRotationTag || b[1] != 1 {
		return nil, fmt.Errorf("key rotation: tag %q version %d: %w", b[0], b[1], ErrUnknownVersion)
	}
	r := &KeyRotation{
		NewKey:   ed25519.PublicKey(append([]byte(nil), b[2:2+ed25519.PublicKeySize]...)),
		IssuedAt: time.Unix(0, int64(binary.BigEndian.Uint64(b[2+ed25519.PublicKeySize:]))).UTC(),
	}
	msg := append(append([]byte(nil), rotationContext...), b[:len(b)-SignatureSize]...)
	for _, k := range trusted {
		if verifyClearing(k, msg, b[len(b)-SignatureSize:]) {
			return r, nil
		}
	}
	return nil, fmt.Errorf("key rotation to 0x%x: %w", []byte(r.NewKey), ErrUntrustedConfirmation)
}

// MaxRotations bounds the rotation chain a bundle carries.
const MaxRotations = 255

// BundleTag starts a message that carries rotation certificates ahead of a
// confirmation: BundleTag | count u8 | count certificates | confirmation.
const BundleTag = 'B'

// Bundle puts clearing's rotation chain (oldest first) ahead of a signed
// confirmation, so a terminal provisioned with an older key learns the
// current one from the message it must verify anyway. Without rotations it
// returns conf unchanged.
func Bundle(rotations [][]byte, conf []byte) []byte {
	if len(rotations) == 0 {
		return conf
	}
	if len(rotations) > MaxRotations {
		rotations = rotations[len(rotations)-MaxRotations:] // a terminal that old must be reprovisioned
	}
	b := make([]byte, 0, 2+len(rotations)*KeyRotationSize+len(conf))
	b = append(b, BundleTag, byte(len(rotations)))
	for _, r := range rotations {
		b = append(b, r...)
	}
	return append(b, conf...)
}

// Unbundle splits a message into its rotation certificates (none for a bare
// confirmation) and the confirmation.
func Unbundle(b []byte) (rotations [][]byte, conf []byte, err error) {
	if len(b) == 0 || b[0] != BundleTag {
		return nil, b, nil
	}
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("confirmation bundle: truncated: %w", ErrMalformed)
	}
	n := int(b[1])
	if n == 0 || len(b) < 2+n*KeyRotationSize {
		return nil, nil, fmt.Errorf("confirmation bundle: %d certificates in %d bytes: %w", n, len(b), ErrMalformed)
	}
	for i := range n {
		rotations = append(rotations, b[2+i*KeyRotationSize:2+(i+1)*KeyRotationSize])
	}
	return rotations, b[2+n*KeyRotationSize:], nil
}

// FollowRotations returns the keys a holder of trusted trusts after
// following a rotation chain as a terminal does: a link one of the keys
// signed adds its new key (unless that key is in retired, or is the signer)
// and retires the signer; a link none of them signed is passed over. It
// changes nothing it was given. A terminal checks messages that come with
// the chain (gate-list entries and heads) against the result, even before
// it has learnt the rotation from a confirmation.
func FollowRotations(trusted, retired []ed25519.PublicKey, chain [][]byte) []ed25519.PublicKey {
	keys := slices.Clone(trusted)
	// A signer retired along the chain stays retired: a later link back
	// to it (K0→K1, K1→K0) does not bring it back (an outside review; the
	// terminal's own learning retires it likewise).
	retired = slices.Clone(retired)
	for _, link := range chain {
		for i, k := range keys {
			r, err := VerifyKeyRotation(link, []ed25519.PublicKey{k})
			if err != nil {
				continue
			}
			if r.NewKey.Equal(k) || slices.ContainsFunc(retired, isKey(r.NewKey)) {
				break
			}
			keys = slices.Delete(keys, i, i+1)
			retired = append(retired, k)
			if !slices.ContainsFunc(keys, isKey(r.NewKey)) {
				keys = append(keys, r.NewKey)
			}
			break
		}
	}
	return keys
}

func isKey(k ed25519.PublicKey) func(ed25519.PublicKey) bool {
	return func(x ed25519.PublicKey) bool { return x.Equal(k) }
}
