package fare

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// The deny list at the gates. Clearing keeps the city's list of refused
// media (cards and faces) in its own store and is the only party that
// changes it. Every change gets the next list version (1, 2, 3 ...) and is
// announced on DenySubject as a DenyUpdate signed with clearing's
// confirmation key; a terminal that is not exactly one version behind asks
// for the whole list on DenySyncSubject(terminal) and gets it page by page
// (DenyPage) in its own inbox. No raw token travels: entries are DenyHash
// values, which a gate computes from the token it reads.
//
// Signatures are domain-separated (a label of their own ahead of the
// signed bytes), so no confirmation, rotation or event signature verifies
// as a deny-list message, nor the reverse. Like confirmations, clearing
// sends its key's rotation chain ahead of each message (Bundle), so a
// terminal provisioned with an earlier key verifies them too.

// Deny-list subjects and limits.
const (
	// DenySubject is where clearing announces every change of the list
	// (core NATS: a terminal that misses one notices the version gap at the
	// next and syncs).
	DenySubject = "faregate.deny"

	// DenyKeySize is the size of a deny-list key (DenyHash).
	DenyKeySize = 16
	// DenyPageKeys is the number of keys in every page of a full list but
	// its last: 2,000 keys keep a page (with the longest rotation chain
	// ahead of it) well under clearing's 64 KiB NATS message limit.
	DenyPageKeys = 2000

	// DenyFormatVersion is the encoding version of every deny-list
	// message, its second byte (the first is its tag).
	DenyFormatVersion = 1
	// DenyUpdateTag, DenyPageTag and DenySyncTag are the first byte of an
	// encoded DenyUpdate, DenyPage and DenySyncRequest. Confirmations start
	// with 1, rotations with 'K' and bundles with 'B': none reads as another.
	DenyUpdateTag = 'U'
	DenyPageTag   = 'P'
	DenySyncTag   = 'S'

	// DenyUpdateSize is the size of an encoded DenyUpdate.
	DenyUpdateSize = 2 + 8 + 32 + 1 + DenyKeySize + SignatureSize
	// MaxDenyPageSize bounds an encoded DenyPage.
	MaxDenyPageSize = denyPageHeader + DenyPageKeys*DenyKeySize + SignatureSize
	// DenySyncRequestSize is the size of an encoded DenySyncRequest.
	DenySyncRequestSize = 2 + 8 + 4

	denyPageHeader = 2 + 8 + 32 + 4 + 4 + 4 + 2
)

// DenySyncSubject is where terminal asks clearing for a page of the whole
// deny list (NATS lets only that terminal publish there); clearing answers
// only into the terminal's own inbox.
func DenySyncSubject(terminal string) string { return "faregate.denysync." + terminal }

var (
	denyKeyLabel      = []byte("faregate/deny-key/v1\x00")
	denyDigestLabel   = []byte("faregate/deny-digest/v1\x00")
	denyUpdateContext = []byte("faregate/deny-update/v1\x00")
	denyPageContext   = []byte("faregate/deny-page/v1\x00")
)

// ErrUntrustedDenyList is returned for a deny-list message no trusted key
// signed.
var ErrUntrustedDenyList = errors.New("deny-list message not signed by a trusted clearing key")

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

// DenyKey is HashDeny in lower-case hex (32 digits), the form the
// settlement API and logs show.
func DenyKey(m MediaKind, token string) string { return HashDeny(m, token).String() }

// String is the key in lower-case hex.
func (k DenyHash) String() string { return hex.EncodeToString(k[:]) }

// ParseDenyKey parses the 32-hex-digit form of a deny-list key.
func ParseDenyKey(s string) (DenyHash, error) {
	var k DenyHash
	if len(s) != 2*DenyKeySize {
		return k, fmt.Errorf("deny-list key %q: %d characters, want %d hex digits", s, len(s), 2*DenyKeySize)
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, fmt.Errorf("deny-list key %q: %w", s, err)
	}
	return k, nil
}

// DenyDigest is the digest of a whole deny list: the XOR over its keys of
// SHA-256("faregate/deny-digest/v1\x00" || key). It does not depend on the
// order of the keys and follows each change in one step (Toggle), so a
// terminal checks after every update and every full sync that its copy is
// exactly clearing's list at that version. It detects divergence (a copy
// left larger by a crash, a list from another history); it is no signature:
// the signed message carrying it is what a terminal trusts.
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

// DenyPages is the number of pages a list of n keys is sent in (one, empty,
// for an empty list).
func DenyPages(n int) int { return max(1, (n+DenyPageKeys-1)/DenyPageKeys) }

// DenyUpdate is clearing's signed word that the deny list's version Version
// differs from version Version-1 by one key: Key was put on the list
// (Listed) or taken off. Digest is the whole list's after the change. A
// terminal applies it only on top of exactly version Version-1 and only if
// its copy then has Digest; otherwise it syncs the whole list.
type DenyUpdate struct {
	Version uint64
	Digest  DenyDigest
	Listed  bool
	Key     DenyHash
}

// Sign encodes u and appends clearing's signature over the
// domain-separated encoding.
func (u *DenyUpdate) Sign(key ed25519.PrivateKey) ([]byte, error) {
	if u.Version == 0 {
		return nil, errors.New("sign deny update: version 0 (the first change is version 1)")
	}
	msg := append(make([]byte, 0, len(denyUpdateContext)+DenyUpdateSize), denyUpdateContext...)
	msg = append(msg, DenyUpdateTag, DenyFormatVersion)
	msg = binary.BigEndian.AppendUint64(msg, u.Version)
	msg = append(msg, u.Digest[:]...)
	listed := byte(0)
	if u.Listed {
		listed = 1
	}
	msg = append(msg, listed)
	msg = append(msg, u.Key[:]...)
	sig := ed25519.Sign(key, msg)
	return append(msg[len(denyUpdateContext):], sig...), nil
}

// DecodeDenyUpdate parses a deny update without checking its signature. It
// names what is wrong: size, tag or version, invalid fields.
func DecodeDenyUpdate(b []byte) (*DenyUpdate, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("decode deny update: empty payload: %w", ErrMalformed)
	}
	if b[0] != DenyUpdateTag {
		return nil, fmt.Errorf("decode deny update: tag %q, want %q: %w", b[0], DenyUpdateTag, ErrMalformed)
	}
	if len(b) < 2 {
		return nil, fmt.Errorf("decode deny update: truncated at format version: %w", ErrMalformed)
	}
	if b[1] != DenyFormatVersion {
		return nil, fmt.Errorf("decode deny update: format version %d, this build reads %d: %w", b[1], DenyFormatVersion, ErrUnknownVersion)
	}
	if len(b) > DenyUpdateSize {
		return nil, fmt.Errorf("decode deny update: %d bytes, want %d: %w", len(b), DenyUpdateSize, ErrTooLarge)
	}
	d := decoder{b: b, off: 2}
	u := &DenyUpdate{Version: d.u64("version")}
	copy(u.Digest[:], d.bytes(32, "digest"))
	listed := d.u8("listed")
	copy(u.Key[:], d.bytes(DenyKeySize, "key"))
	d.bytes(SignatureSize, "signature")
	if d.err != nil {
		return nil, fmt.Errorf("decode deny update: %w", d.err)
	}
	switch {
	case u.Version == 0:
		return nil, fmt.Errorf("decode deny update: version 0: %w", ErrInvalidEventFields)
	case listed > 1:
		return nil, fmt.Errorf("decode deny update %d: listed byte %d, want 0 or 1: %w", u.Version, listed, ErrInvalidEventFields)
	}
	u.Listed = listed == 1
	return u, nil
}

// VerifyDenyUpdate decodes a signed deny update and checks its signature
// against the trusted clearing keys.
func VerifyDenyUpdate(b []byte, trusted []ed25519.PublicKey) (*DenyUpdate, error) {
	u, err := DecodeDenyUpdate(b)
	if err != nil {
		return nil, err
	}
	if !verifyWith(denyUpdateContext, b, trusted) {
		return nil, fmt.Errorf("deny update %d: %w", u.Version, ErrUntrustedDenyList)
	}
	return u, nil
}

// DenyPage is one page of the whole deny list at Version, as clearing
// answers a terminal's DenySyncRequest. The list's Total keys are sorted and
// cut into Pages pages of DenyPageKeys (the last holds the rest); every page
// of one version carries the same Version, Digest, Total and Pages, so a
// terminal that sees another version mid-sync starts again.
type DenyPage struct {
	Version uint64
	Digest  DenyDigest
	Total   uint32
	Page    uint32
	Pages   uint32
	Keys    []DenyHash // ascending
}

func (p *DenyPage) validate() error {
	if uint64(p.Total) > p.Version {
		return fmt.Errorf("%d keys at version %d (every key took a version)", p.Total, p.Version)
	}
	if want := uint32(DenyPages(int(p.Total))); p.Pages != want {
		return fmt.Errorf("%d pages for %d keys, want %d", p.Pages, p.Total, want)
	}
	if p.Page >= p.Pages {
		return fmt.Errorf("page %d of %d", p.Page, p.Pages)
	}
	want := min(uint64(DenyPageKeys), uint64(p.Total)-min(uint64(p.Total), uint64(p.Page)*DenyPageKeys))
	if uint64(len(p.Keys)) != want {
		return fmt.Errorf("page %d of %d keys holds %d keys, want %d", p.Page, p.Total, len(p.Keys), want)
	}
	for i := 1; i < len(p.Keys); i++ {
		if string(p.Keys[i][:]) <= string(p.Keys[i-1][:]) {
			return fmt.Errorf("key %d of page %d out of order", i, p.Page)
		}
	}
	return nil
}

// Sign encodes p and appends clearing's signature over the
// domain-separated encoding.
func (p *DenyPage) Sign(key ed25519.PrivateKey) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("sign deny page: %w", err)
	}
	msg := make([]byte, 0, len(denyPageContext)+denyPageHeader+len(p.Keys)*DenyKeySize+SignatureSize)
	msg = append(msg, denyPageContext...)
	msg = append(msg, DenyPageTag, DenyFormatVersion)
	msg = binary.BigEndian.AppendUint64(msg, p.Version)
	msg = append(msg, p.Digest[:]...)
	msg = binary.BigEndian.AppendUint32(msg, p.Total)
	msg = binary.BigEndian.AppendUint32(msg, p.Page)
	msg = binary.BigEndian.AppendUint32(msg, p.Pages)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(p.Keys)))
	for _, k := range p.Keys {
		msg = append(msg, k[:]...)
	}
	sig := ed25519.Sign(key, msg)
	return append(msg[len(denyPageContext):], sig...), nil
}

// DecodeDenyPage parses a deny page without checking its signature. It
// names what is wrong: size, tag or version, truncation, trailing bytes,
// invalid fields.
func DecodeDenyPage(b []byte) (*DenyPage, error) {
	if len(b) > MaxDenyPageSize {
		return nil, fmt.Errorf("decode deny page: %d bytes, limit %d: %w", len(b), MaxDenyPageSize, ErrTooLarge)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("decode deny page: empty payload: %w", ErrMalformed)
	}
	if b[0] != DenyPageTag {
		return nil, fmt.Errorf("decode deny page: tag %q, want %q: %w", b[0], DenyPageTag, ErrMalformed)
	}
	if len(b) < 2 {
		return nil, fmt.Errorf("decode deny page: truncated at format version: %w", ErrMalformed)
	}
	if b[1] != DenyFormatVersion {
		return nil, fmt.Errorf("decode deny page: format version %d, this build reads %d: %w", b[1], DenyFormatVersion, ErrUnknownVersion)
	}
	if len(b) < denyPageHeader+SignatureSize {
		return nil, fmt.Errorf("decode deny page: %d bytes is shorter than any page: %w", len(b), ErrMalformed)
	}
	d := decoder{b: b[:len(b)-SignatureSize], off: 2}
	p := &DenyPage{Version: d.u64("version")}
	copy(p.Digest[:], d.bytes(32, "digest"))
	p.Total = d.u32("total")
	p.Page = d.u32("page")
	p.Pages = d.u32("pages")
	n := int(d.u16("key count"))
	if n > DenyPageKeys {
		return nil, fmt.Errorf("decode deny page: %d keys, limit %d: %w", n, DenyPageKeys, ErrMalformed)
	}
	if d.err == nil && len(d.b)-d.off != n*DenyKeySize {
		return nil, fmt.Errorf("decode deny page %d: %d key bytes for %d keys: %w", p.Page, len(d.b)-d.off, n, ErrMalformed)
	}
	p.Keys = make([]DenyHash, 0, n)
	for range n {
		var k DenyHash
		copy(k[:], d.bytes(DenyKeySize, "key"))
		p.Keys = append(p.Keys, k)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode deny page: %w", d.err)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("decode deny page: version %d: %v: %w", p.Version, err, ErrInvalidEventFields)
	}
	return p, nil
}

// VerifyDenyPage decodes a signed deny page and checks its signature against
// the trusted clearing keys.
func VerifyDenyPage(b []byte, trusted []ed25519.PublicKey) (*DenyPage, error) {
	p, err := DecodeDenyPage(b)
	if err != nil {
		return nil, err
	}
	if !verifyWith(denyPageContext, b, trusted) {
		return nil, fmt.Errorf("deny page %d of version %d: %w", p.Page, p.Version, ErrUntrustedDenyList)
	}
	return p, nil
}

// DenySyncRequest is a terminal's request for one page of the whole deny
// list. It is not signed: NATS lets only the terminal publish on its own
// sync subject. Have is the version the terminal holds (clearing logs a
// terminal ahead of it: a clearing restored from an old backup); Page is the
// page it wants of clearing's current list.
type DenySyncRequest struct {
	Have uint64
	Page uint32
}

// Encode is the request's wire form.
func (r DenySyncRequest) Encode() []byte {
	b := make([]byte, 0, DenySyncRequestSize)
	b = append(b, DenySyncTag, DenyFormatVersion)
	b = binary.BigEndian.AppendUint64(b, r.Have)
	return binary.BigEndian.AppendUint32(b, r.Page)
}

// DecodeDenySyncRequest parses a sync request, naming what is wrong.
func DecodeDenySyncRequest(b []byte) (DenySyncRequest, error) {
	switch {
	case len(b) == 0:
		return DenySyncRequest{}, fmt.Errorf("decode deny sync request: empty payload: %w", ErrMalformed)
	case b[0] != DenySyncTag:
		return DenySyncRequest{}, fmt.Errorf("decode deny sync request: tag %q, want %q: %w", b[0], DenySyncTag, ErrMalformed)
	case len(b) >= 2 && b[1] != DenyFormatVersion:
		return DenySyncRequest{}, fmt.Errorf("decode deny sync request: format version %d, this build reads %d: %w", b[1], DenyFormatVersion, ErrUnknownVersion)
	case len(b) != DenySyncRequestSize:
		return DenySyncRequest{}, fmt.Errorf("decode deny sync request: %d bytes, want %d: %w", len(b), DenySyncRequestSize, ErrMalformed)
	}
	return DenySyncRequest{Have: binary.BigEndian.Uint64(b[2:]), Page: binary.BigEndian.Uint32(b[10:])}, nil
}

// verifyWith checks b's trailing signature over context || the rest of b
// against each trusted key, newest first.
func verifyWith(context, b []byte, trusted []ed25519.PublicKey) bool {
	msg := append(append(make([]byte, 0, len(context)+len(b)), context...), b[:len(b)-SignatureSize]...)
	sig := b[len(b)-SignatureSize:]
	for i := len(trusted) - 1; i >= 0; i-- {
		if k := trusted[i]; len(k) == ed25519.PublicKeySize && ed25519.Verify(k, msg, sig) {
			return true
		}
	}
	return false
}

func (d *decoder) u16(field string) uint16 {
	v := d.bytes(2, field)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

func (d *decoder) u32(field string) uint32 {
	v := d.bytes(4, field)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}
