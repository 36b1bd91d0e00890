package fare

import (
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"fmt"

	"filippo.io/edwards25519"
	"github.com/nats-io/nkeys"
)

// A terminal's NATS identity is an ed25519 NKey derived from its
// event-signing key, so that the on-chain terminal registry (which holds only
// the event key) also says which NATS user each terminal is, and a newly
// registered terminal can connect without anything else being provisioned.
//
// The derivation is additive and public, as in BIP32-Ed25519's non-hardened
// children: with the event key's secret scalar a and public point A = a·B,
//
//	t  = SHA-512("faregate/nats-user-key/v1\x00" || A || terminal id) mod L
//	a' = a + t,  A' = A + t·B
//
// Anyone can compute A' from the registry, only the terminal can compute a'.
// The signatures are separate: NATS has the terminal sign server-chosen
// nonces with a', and Ed25519 hashes the public key into every signature
// (k = H(R || A' || m)), so a signature under A' never verifies under A and
// a hostile server cannot turn the nonce it sends into a fare event signed
// with the terminal's key. Nonces for a' are derived from the seed under a
// separate label, never shared with the event key's. The secrets are not
// independent: t is public, so a' reveals a and a reveals a'. Both exist
// only inside the terminal process, derived from the one seed file; a' is
// never written anywhere.

var (
	natsTweakLabel = []byte("faregate/nats-user-key/v1\x00")
	natsNonceLabel = []byte("faregate/nats-user-nonce/v1\x00")
)

func natsTweak(pub ed25519.PublicKey, terminal string) *edwards25519.Scalar {
	h := sha512.New()
	h.Write(natsTweakLabel)
	h.Write(pub)
	h.Write([]byte(terminal))
	t, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		panic(err) // 64 bytes are always accepted
	}
	return t
}

// NATSUserKey returns the public NATS user NKey ("U…") of the terminal with
// event-signing public key pub: the user clearing's NATS server admits for it.
func NATSUserKey(pub ed25519.PublicKey, terminal string) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("terminal %s: public key of %d bytes", terminal, len(pub))
	}
	a, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return "", fmt.Errorf("terminal %s: public key is not a curve point: %w", terminal, err)
	}
	d := new(edwards25519.Point).Add(a, new(edwards25519.Point).ScalarBaseMult(natsTweak(pub, terminal)))
	u, err := nkeys.Encode(nkeys.PrefixByteUser, d.Bytes())
	if err != nil {
		return "", err
	}
	return string(u), nil
}

// NATSIdentity is the private half of a terminal's NATS user key.
type NATSIdentity struct {
	public string
	pub    []byte
	a      *edwards25519.Scalar
	prefix [32]byte
}

// NewNATSIdentity derives terminal's NATS identity from its event-signing key.
func NewNATSIdentity(key ed25519.PrivateKey, terminal string) (*NATSIdentity, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("NATS identity: no terminal key")
	}
	h := sha512.Sum512(key.Seed())
	a, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		return nil, err
	}
	pub := key.Public().(ed25519.PublicKey)
	id := &NATSIdentity{a: a.Add(a, natsTweak(pub, terminal))}
	id.pub = new(edwards25519.Point).ScalarBaseMult(id.a).Bytes()
	n := sha512.New()
	n.Write(natsNonceLabel)
	n.Write(h[32:])
	copy(id.prefix[:], n.Sum(nil))
	u, err := nkeys.Encode(nkeys.PrefixByteUser, id.pub)
	if err != nil {
		return nil, err
	}
	id.public = string(u)
	return id, nil
}

// PublicKey is the NATS user NKey ("U…"), equal to NATSUserKey of the
// terminal's public key.
func (id *NATSIdentity) PublicKey() string { return id.public }

// Sign signs a server nonce: a standard Ed25519 signature (RFC 8032) under
// the derived scalar, verifiable with the NKey.
func (id *NATSIdentity) Sign(msg []byte) ([]byte, error) {
	h := sha512.New()
	h.Write(id.prefix[:])
	h.Write(msg)
	r, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		return nil, err
	}
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	h.Reset()
	h.Write(R)
	h.Write(id.pub)
	h.Write(msg)
	k, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	if err != nil {
		return nil, err
	}
	s := edwards25519.NewScalar().MultiplyAdd(k, id.a, r)
	return append(R, s.Bytes()...), nil
}
