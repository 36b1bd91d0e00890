package fare

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// The deny list at the gates: the media (cards and faces) a gate must
// refuse. Clearing keeps the city's list in its own store and is the only
// party that changes it; gates follow it through the deny list's
// key-value bucket (see gatelist.go). No raw token travels: a medium's key
// is its DenyHash, which a gate computes from the token it reads (the
// enrolments bucket uses the same keys).

// DenyKeySize is the size of a deny-list key (DenyHash).
const DenyKeySize = 16

var (
	denyKeyLabel     = []byte("faregate/deny-key/v1\x00")
	denyDigestLabel  = []byte("faregate/deny-digest/v1\x00")
	enrolDigestLabel = []byte("faregate/enrol-digest/v2\x00")
)

// DenyHash is a medium's key on the deny list: the first 16 bytes of
// SHA-256 over the label "faregate/deny-key/v1\x00", the media kind byte and
// the token. It is not keyed (every gate must compute it), so it hides a
// high-entropy card token but not a guessable id.
type DenyHash [DenyKeySize]byte

// HashDeny is the deny-list key of a medium.
func HashDeny(m MediaKind, token string) DenyHash {
	h := sha256.New()
	h.Write(denyKeyLabel)
	h.Write([]byte{byte(m)})
	h.Write([]byte(token))
	var k DenyHash
	copy(k[:], h.Sum(nil))
	return k
}

// DenyKey is HashDeny as 0x and 32 lower-case hex digits, the form the
// settlement API, the CLI and logs show.
func DenyKey(m MediaKind, token string) string { return HashDeny(m, token).Hex() }

// String is the key in 32 lower-case hex digits without a prefix: the form
// of the gate-list buckets' keys (what gates read), kept as it was.
func (k DenyHash) String() string { return hex.EncodeToString(k[:]) }

// Hex is the key as 0x and 32 lower-case hex digits, as every output shows
// hashes and keys.
func (k DenyHash) Hex() string { return "0x" + hex.EncodeToString(k[:]) }

// ParseDenyKey parses a deny-list key: 32 hex digits in either case, with
// or without 0x (as ParseEventID).
func ParseDenyKey(s string) (DenyHash, error) {
	var k DenyHash
	h := trimHexPrefix(s)
	if len(h) != 2*DenyKeySize {
		return k, fmt.Errorf("deny-list key %s: %d characters, want %d hex digits", quoteShort(s), len(h), 2*DenyKeySize)
	}
	if err := decodeHexDigits(k[:], h); err != nil {
		return k, fmt.Errorf("deny-list key %s: %w", quoteShort(s), err)
	}
	return k, nil
}

// DenyDigest is the digest of a whole gate list: the XOR over its keys of
// SHA-256("faregate/deny-digest/v1\x00" || key). It does not depend on the
// order of the keys and follows each change in one step (Toggle), so a
// terminal checks, once it has read a bucket whole, that its copy holds
// what clearing's GateHead says. It detects divergence (a copy left larger
// by a restored clearing, a value replaced in the bucket); it is no
// signature: the signed head carrying it is what a terminal trusts.
type DenyDigest [32]byte

// Toggle adds k to the digested list, or takes it out if it is there.
func (d *DenyDigest) Toggle(k DenyHash) {
	h := sha256.New()
	h.Write(denyDigestLabel)
	h.Write(k[:])
	var s [32]byte
	h.Sum(s[:0])
	for i := range d {
		d[i] ^= s[i]
	}
}

// EnrolEntrySum is what an enrolment entry (k's periods at version) adds
// to the enrolments' digest: SHA-256("faregate/enrol-digest/v2\x00" || key
// || version as 8 bytes big-endian || the periods as a signed entry
// encodes them: their number (1 byte), then each one's from and until
// (Unix seconds, 8 bytes big-endian each) and category (1-byte length,
// bytes)). The enrolments' head digests each medium with its entry's
// version and periods: a copy holding other periods of a medium does not
// make it, also under the same version (an outside review: a clearing
// restored from a backup numbered a changed enrolment with the version
// its lost one had, and a gate kept the lost periods for good; before
// that, a copy holding another version passed a check of keys alone).
func EnrolEntrySum(k DenyHash, version uint64, periods []EnrolmentPeriod) [32]byte {
	b := make([]byte, 0, len(enrolDigestLabel)+DenyKeySize+9+len(periods)*24)
	b = append(b, enrolDigestLabel...)
	b = append(b, k[:]...)
	b = binary.BigEndian.AppendUint64(b, version)
	b = append(b, byte(len(periods)))
	for _, p := range periods {
		b = binary.BigEndian.AppendUint64(b, uint64(p.From.Unix()))
		b = binary.BigEndian.AppendUint64(b, uint64(p.Until.Unix()))
		b = appendStr8(b, p.Category)
	}
	return sha256.Sum256(b)
}

// ToggleSum adds an entry's sum (EnrolEntrySum) to the digested list, or
// takes it out if it is there.
func (d *DenyDigest) ToggleSum(s [32]byte) {
	for i := range d {
		d[i] ^= s[i]
	}
}

// ToggleEnrolment adds the enrolment entry of k at version with periods to
// the digested list, or takes it out if it is there (EnrolEntrySum).
func (d *DenyDigest) ToggleEnrolment(k DenyHash, version uint64, periods []EnrolmentPeriod) {
	d.ToggleSum(EnrolEntrySum(k, version, periods))
}

// String is the digest in 0x hex.
func (d DenyDigest) String() string { return "0x" + hex.EncodeToString(d[:]) }

// DigestDenyList is the DenyDigest of a list of distinct keys.
func DigestDenyList(keys []DenyHash) DenyDigest {
	var d DenyDigest
	for _, k := range keys {
		d.Toggle(k)
	}
	return d
}

// verifyWith checks b's trailing signature over context || the rest of b
// against each trusted key, newest first.
func verifyWith(context, b []byte, trusted []ed25519.PublicKey) bool {
	msg := append(append(make([]byte, 0, len(context)+len(b)), context...), b[:len(b)-SignatureSize]...)
	sig := b[len(b)-SignatureSize:]
	for i := len(trusted) - 1; i >= 0; i-- {
		if k := trusted[i]; verifyClearing(k, msg, sig) {
			return true
		}
	}
	return false
}
