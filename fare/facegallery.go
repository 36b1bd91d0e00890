package fare

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"filippo.io/edwards25519"
)

// Face galleries: each terminal's share of clearing's face templates. The
// central template store stays in clearing; every terminal receives only
// the subjects whose scope (stops, lines) covers it, through one JetStream
// key-value bucket (FaceBucket) that clearing alone writes. Under
//
//	<terminal>.<key token>   a FaceEntry: one subject's templates, sealed for that terminal
//	<terminal>.head          the terminal's FaceHead: version, what it holds, when issued
//
// the key token is an opaque keyed hash of (terminal, subject) that only
// clearing can compute: a key names no subject, and the same subject has
// unrelated tokens at two terminals.
//
// A FaceEntry's templates are encrypted with HPKE (RFC 9180, base mode,
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) to the terminal's
// X25519 key, which is its registered ed25519 event key in Montgomery
// form (RFC 7748's birational map, as libsodium's
// crypto_sign_ed25519_pk_to_curve25519 and age's ssh-ed25519 recipients
// do): clearing needs nothing but the on-chain registry to encrypt for a
// terminal, and only that terminal can decrypt. The HPKE info binds the
// ciphertext to the terminal, the key token and the version, so a sealed
// record moved under another key, terminal or version does not open.
// Using one ed25519 secret for signatures and for X25519 key agreement is
// analysed in Thormarker, "On using the same key pair for Ed25519 and an
// X25519 based KEM" (ePrint 2021/509), which proves the combination
// jointly secure.
//
// Entries and heads are signed by clearing's confirmation key under labels
// of their own (faregate/face-entry/v1, faregate/face-head/v1) and carry
// the key's rotation chain (Bundle), like the gate lists. Versions rise
// with every change of the face galleries; a terminal takes no entry older
// than what it holds for a key, nor a head older than its own. The head's
// IssuedAt is how fresh a terminal's copy is: clearing issues every
// terminal's head again every few seconds, and a gate matches faces only
// while its last head is younger than its bound.
//
// Erasure deletes the key: clearing overwrites every stored revision
// (JetStream's secure message delete) and then purges the key, whose
// purge marker (no data) tells watching gates at once. Only clearing can
// write the bucket (terminals follow it through the feeds clearing makes: GateFeedStream), and a
// message the server itself writes there (a JetStream reply aimed at a
// $KV subject, possible in one account with the bucket) carries no KV
// operation header, so a delete or purge
// marker in the bucket is clearing's; a put that does not verify is
// refused.

// Face gallery bucket, sizes and tags.
const (
	// FaceBucket is the JetStream key-value bucket of the face galleries.
	FaceBucket = "FAREGATE_FACES"
	// FaceStream is the bucket's stream.
	FaceStream = "KV_" + FaceBucket
	// FaceHeadKey is the last token of a terminal's head key.
	FaceHeadKey = "head"

	// FaceDim is the length of a face descriptor.
	FaceDim = 128
	// MaxFaceTemplates bounds the templates of one subject.
	MaxFaceTemplates = 16
	// FaceKeyTokenSize is the size of a FaceKeyToken.
	FaceKeyTokenSize = 16

	// FaceFormat is the encoding version of entries, heads and records
	// (their second byte; the first is the tag).
	FaceFormat = 1
	// FaceEntryTag and FaceHeadTag start an encoded FaceEntry and FaceHead
	// (gate-list values start with 'G' and 'H', rotations 'K', bundles 'B').
	FaceEntryTag = 'F'
	FaceHeadTag  = 'f'
	// FaceRecordTag starts a sealed record's plaintext.
	FaceRecordTag = 'R'

	// hpkeOverhead is the encapsulated key and the AEAD tag.
	hpkeOverhead = 32 + 16
	// MaxFaceRecordSize bounds a record's plaintext.
	MaxFaceRecordSize = 2 + 1 + MaxIDLen + 1 + 255 + 1 + DenyKeySize + 1 + MaxFaceTemplates*4*FaceDim
	// MaxFaceEntrySize bounds an encoded FaceEntry.
	MaxFaceEntrySize = faceEntryFixed + MaxIDLen + MaxFaceRecordSize + hpkeOverhead + SignatureSize
	// faceEntryFixed: tag, format, terminal length, key token, version, sealed length.
	faceEntryFixed = 2 + 1 + FaceKeyTokenSize + 8 + 4
	// faceHeadFixed: tag, format, terminal length, version, count, digest, issued at.
	faceHeadFixed = 2 + 1 + 8 + 4 + 32 + 8
	// MaxFaceHeadSize bounds an encoded FaceHead.
	MaxFaceHeadSize = faceHeadFixed + MaxIDLen + SignatureSize
)

// faceEntryDigestLabel labels an entry's share of a FaceDigest.
const faceEntryDigestLabel = "faregate/face-entry-digest/v1\x00"

var (
	faceEntryContext  = []byte("faregate/face-entry/v1\x00")
	faceHeadContext   = []byte("faregate/face-head/v1\x00")
	faceRecordInfo    = []byte("faregate/face-record/v1\x00")
	errFaceNoTemplate = errors.New("no templates")
)

// ErrUntrustedFace is returned for a face gallery value no trusted key signed.
var ErrUntrustedFace = errors.New("face gallery value not signed by a trusted clearing key")

// ErrFaceSeal is returned when a sealed record does not open: it was not
// sealed for this terminal, key and version, or it was altered.
var ErrFaceSeal = errors.New("face record does not open with this terminal's key")

// FaceKeyToken names one subject at one terminal in the bucket: an opaque
// keyed hash only clearing computes.
type FaceKeyToken [FaceKeyTokenSize]byte

// String is the token in lower-case hex, as it appears in bucket keys.
func (k FaceKeyToken) String() string { return hex.EncodeToString(k[:]) }

// FaceEntryKey is the bucket key of subject token k at terminal.
func FaceEntryKey(terminal string, k FaceKeyToken) string { return terminal + "." + k.String() }

// FaceHeadBucketKey is the bucket key of terminal's head.
func FaceHeadBucketKey(terminal string) string { return terminal + "." + FaceHeadKey }

// ParseFaceKey splits a bucket key into its terminal and either a key
// token or the head, naming what is wrong with a key that is neither.
func ParseFaceKey(key string) (terminal string, k FaceKeyToken, head bool, err error) {
	terminal, rest, ok := strings.Cut(key, ".")
	if !ok {
		return "", k, false, fmt.Errorf("face gallery key %q: want <terminal>.<token> or <terminal>.%s", key, FaceHeadKey)
	}
	if err := ValidateID(terminal); err != nil {
		return "", k, false, fmt.Errorf("face gallery key %q: terminal: %w", key, err)
	}
	if rest == FaceHeadKey {
		return terminal, k, true, nil
	}
	if len(rest) != 2*FaceKeyTokenSize {
		return "", k, false, fmt.Errorf("face gallery key %q: token of %d characters, want %d hex digits", key, len(rest), 2*FaceKeyTokenSize)
	}
	if _, err := hex.Decode(k[:], []byte(rest)); err != nil || strings.ToLower(rest) != rest {
		return "", k, false, fmt.Errorf("face gallery key %q: token is not lower-case hex", key)
	}
	return terminal, k, false, nil
}

// FaceDigest digests a terminal's gallery: the XOR over its entries of
// SHA-256 under a label of its own of the entry's key token, version and
// record (FaceRecord.Sum), so that adding, removing or changing one changes
// it and the order does not matter. The record counts because a clearing
// restored from a backup may number new templates of a subject with the
// version lost ones had, and older ones may come back under an older
// version: a gate whose copy does not make the head takes the bucket's
// values (an outside review: a gate kept a subject's lost templates).
type FaceDigest [32]byte

// ToggleEntry adds the entry of k at version holding a record of sum to the
// digested set, or takes it out if it is there.
func (d *FaceDigest) ToggleEntry(k FaceKeyToken, version uint64, sum [32]byte) {
	// On the stack: clearing digests every key of every terminal for each
	// round of heads.
	var a [len(faceEntryDigestLabel) + FaceKeyTokenSize + 8 + 32]byte
	b := append(a[:0], faceEntryDigestLabel...)
	b = append(b, k[:]...)
	b = binary.BigEndian.AppendUint64(b, version)
	b = append(b, sum[:]...)
	s := sha256.Sum256(b)
	for i := range d {
		d[i] ^= s[i]
	}
}

// String is the digest in 0x hex.
func (d FaceDigest) String() string { return "0x" + hex.EncodeToString(d[:]) }

// FaceRecord is what a terminal learns of one subject: the pseudonymous
// subject id (the face token its taps carry), the pipeline the templates
// come from, whether the subject travels face-only (1:N identification
// within the terminal's gallery) and the card whose presentation the face
// must match (1:1; its DenyKey hash, never the token).
type FaceRecord struct {
	Subject   string
	ModelID   string
	FaceOnly  bool
	HasCard   bool
	Card      DenyHash
	Templates [][FaceDim]float32
}

// Validate checks what an encoder would refuse, naming it.
func (r *FaceRecord) Validate() error {
	if err := ValidateID(r.Subject); err != nil {
		return fmt.Errorf("subject id %q: %w", r.Subject, err)
	}
	if r.ModelID == "" || len(r.ModelID) > 255 {
		return fmt.Errorf("model id %q: want 1 to 255 bytes", r.ModelID)
	}
	if !r.FaceOnly && !r.HasCard {
		return errors.New("neither face-only travel nor a card: the record would match nothing")
	}
	switch n := len(r.Templates); {
	case n == 0:
		return errFaceNoTemplate
	case n > MaxFaceTemplates:
		return fmt.Errorf("%d templates, at most %d", n, MaxFaceTemplates)
	}
	for i, t := range r.Templates {
		if err := ValidateDescriptor(t[:]); err != nil {
			return fmt.Errorf("template %d: %w", i+1, err)
		}
	}
	return nil
}

// ValidateDescriptor checks a face descriptor: FaceDim finite values.
func ValidateDescriptor(d []float32) error {
	if len(d) != FaceDim {
		return fmt.Errorf("descriptor of %d values, want %d", len(d), FaceDim)
	}
	for i, v := range d {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("descriptor value %d is %v, want a finite number", i, v)
		}
	}
	return nil
}

// Sum is SHA-256 over r's encoding with its templates in a fixed order (by
// their values' bits), not in the order given: clearing seals a subject's
// templates as the request gave them at enrolment and as its template
// store gives them later.
func (r *FaceRecord) Sum() [32]byte {
	c := *r
	c.Templates = slices.Clone(r.Templates)
	slices.SortFunc(c.Templates, func(a, b [FaceDim]float32) int {
		for i := range a {
			if x, y := math.Float32bits(a[i]), math.Float32bits(b[i]); x != y {
				if x < y {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	defer clear(c.Templates)
	e := c.encode()
	defer clear(e)
	return sha256.Sum256(e)
}

func (r *FaceRecord) encode() []byte {
	b := make([]byte, 0, 2+2+len(r.Subject)+len(r.ModelID)+2+DenyKeySize+len(r.Templates)*4*FaceDim)
	b = append(b, FaceRecordTag, FaceFormat)
	b = appendStr8(b, r.Subject)
	b = appendStr8(b, r.ModelID)
	var flags byte
	if r.FaceOnly {
		flags |= 1
	}
	if r.HasCard {
		flags |= 2
	}
	b = append(b, flags)
	if r.HasCard {
		b = append(b, r.Card[:]...)
	}
	b = append(b, byte(len(r.Templates)))
	for _, t := range r.Templates {
		for _, v := range t {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return b
}

// DecodeFaceRecord parses a record's plaintext, naming what is wrong.
func DecodeFaceRecord(b []byte) (*FaceRecord, error) {
	switch {
	case len(b) == 0:
		return nil, fmt.Errorf("decode face record: empty: %w", ErrMalformed)
	case b[0] != FaceRecordTag:
		return nil, fmt.Errorf("decode face record: tag %q, want %q: %w", b[0], FaceRecordTag, ErrMalformed)
	case len(b) < 2:
		return nil, fmt.Errorf("decode face record: truncated at format version: %w", ErrMalformed)
	case b[1] != FaceFormat:
		return nil, fmt.Errorf("decode face record: format version %d, this build reads %d: %w", b[1], FaceFormat, ErrUnknownVersion)
	case len(b) > MaxFaceRecordSize:
		return nil, fmt.Errorf("decode face record: %d bytes, limit %d: %w", len(b), MaxFaceRecordSize, ErrTooLarge)
	}
	d := decoder{b: b, off: 2}
	r := &FaceRecord{Subject: d.str8("subject"), ModelID: d.str8("model id")}
	flags := d.u8("flags")
	if flags&^3 != 0 {
		return nil, fmt.Errorf("decode face record: flags %#x: %w", flags, ErrMalformed)
	}
	r.FaceOnly, r.HasCard = flags&1 != 0, flags&2 != 0
	if r.HasCard {
		copy(r.Card[:], d.bytes(DenyKeySize, "card"))
	}
	n := int(d.u8("template count"))
	if n > MaxFaceTemplates {
		return nil, fmt.Errorf("decode face record: %d templates, limit %d: %w", n, MaxFaceTemplates, ErrMalformed)
	}
	for range n {
		raw := d.bytes(4*FaceDim, "template")
		if raw == nil {
			break
		}
		var t [FaceDim]float32
		for j := range t {
			t[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
		}
		r.Templates = append(r.Templates, t)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode face record: %w", d.err)
	}
	if d.off != len(b) {
		return nil, fmt.Errorf("decode face record: %d trailing bytes: %w", len(b)-d.off, ErrMalformed)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("decode face record: %v: %w", err, ErrInvalidEventFields)
	}
	return r, nil
}

// faceSuite is the HPKE ciphersuite of sealed records.
func faceSuite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.AES256GCM() }

func faceInfo(terminal string, k FaceKeyToken, version uint64) []byte {
	info := make([]byte, 0, len(faceRecordInfo)+len(terminal)+1+FaceKeyTokenSize+8)
	info = append(info, faceRecordInfo...)
	info = appendStr8(info, terminal)
	info = append(info, k[:]...)
	return binary.BigEndian.AppendUint64(info, version)
}

// FaceRecipientKey is the HPKE public key clearing seals a terminal's
// records to: its registered ed25519 key in Montgomery form.
func FaceRecipientKey(pub ed25519.PublicKey) (hpke.PublicKey, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("face recipient key: public key of %d bytes", len(pub))
	}
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, fmt.Errorf("face recipient key: not a curve point: %w", err)
	}
	x, err := ecdh.X25519().NewPublicKey(p.BytesMontgomery())
	if err != nil {
		return nil, fmt.Errorf("face recipient key: %w", err)
	}
	return hpke.NewDHKEMPublicKey(x)
}

// FaceDecryptionKey is a terminal's HPKE private key for its records: the
// X25519 scalar of its ed25519 key (the clamped first half of
// SHA-512(seed), as RFC 8032 derives the signing scalar).
func FaceDecryptionKey(key ed25519.PrivateKey) (hpke.PrivateKey, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("face decryption key: no terminal key")
	}
	h := sha512.Sum512(key.Seed())
	defer clear(h[:])
	x, err := ecdh.X25519().NewPrivateKey(h[:32])
	if err != nil {
		return nil, fmt.Errorf("face decryption key: %w", err)
	}
	return hpke.NewDHKEMPrivateKey(x)
}

// FaceEntry is clearing's signed word on one subject at one terminal, at
// version Version: the FaceRecord sealed for that terminal.
type FaceEntry struct {
	Terminal string
	Key      FaceKeyToken
	Version  uint64
	Sealed   []byte
}

// SealFaceEntry seals r for the terminal whose registered key is pub and
// returns the unsigned entry.
func SealFaceEntry(r *FaceRecord, terminal string, pub ed25519.PublicKey, k FaceKeyToken, version uint64) (*FaceEntry, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("seal face record: %w", err)
	}
	if err := ValidateID(terminal); err != nil {
		return nil, fmt.Errorf("seal face record: terminal %q: %w", terminal, err)
	}
	if version == 0 {
		return nil, errors.New("seal face record: version 0 (the first change is version 1)")
	}
	pk, err := FaceRecipientKey(pub)
	if err != nil {
		return nil, fmt.Errorf("seal face record for %s: %w", terminal, err)
	}
	kdf, aead := faceSuite()
	pt := r.encode()
	defer clear(pt)
	ct, err := hpke.Seal(pk, kdf, aead, faceInfo(terminal, k, version), pt)
	if err != nil {
		return nil, fmt.Errorf("seal face record for %s: %w", terminal, err)
	}
	return &FaceEntry{Terminal: terminal, Key: k, Version: version, Sealed: ct}, nil
}

// Open decrypts the entry's record with the terminal's key.
func (e *FaceEntry) Open(key hpke.PrivateKey) (*FaceRecord, error) {
	kdf, aead := faceSuite()
	pt, err := hpke.Open(key, kdf, aead, faceInfo(e.Terminal, e.Key, e.Version), e.Sealed)
	if err != nil {
		return nil, fmt.Errorf("face entry %s at version %d: %w", FaceEntryKey(e.Terminal, e.Key), e.Version, ErrFaceSeal)
	}
	defer clear(pt)
	return DecodeFaceRecord(pt)
}

func (e *FaceEntry) validate() error {
	if err := ValidateID(e.Terminal); err != nil {
		return fmt.Errorf("terminal %q: %w", e.Terminal, err)
	}
	if e.Version == 0 {
		return errors.New("version 0 (the first change is version 1)")
	}
	if n := len(e.Sealed); n <= hpkeOverhead || n > MaxFaceRecordSize+hpkeOverhead {
		return fmt.Errorf("sealed record of %d bytes, want %d to %d", n, hpkeOverhead+1, MaxFaceRecordSize+hpkeOverhead)
	}
	return nil
}

// Sign encodes e and appends clearing's signature.
func (e *FaceEntry) Sign(key ed25519.PrivateKey) ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("sign face entry: %w", err)
	}
	msg := make([]byte, 0, len(faceEntryContext)+faceEntryFixed+len(e.Terminal)+len(e.Sealed)+SignatureSize)
	msg = append(msg, faceEntryContext...)
	msg = append(msg, FaceEntryTag, FaceFormat)
	msg = appendStr8(msg, e.Terminal)
	msg = append(msg, e.Key[:]...)
	msg = binary.BigEndian.AppendUint64(msg, e.Version)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(e.Sealed)))
	msg = append(msg, e.Sealed...)
	sig := ed25519.Sign(key, msg)
	return append(msg[len(faceEntryContext):], sig...), nil
}

func checkFaceHeader(b []byte, tag byte, what string) error {
	switch {
	case len(b) == 0:
		return fmt.Errorf("decode face %s: empty value: %w", what, ErrMalformed)
	case b[0] != tag:
		return fmt.Errorf("decode face %s: tag %q, want %q: %w", what, b[0], tag, ErrMalformed)
	case len(b) < 2:
		return fmt.Errorf("decode face %s: truncated at format version: %w", what, ErrMalformed)
	case b[1] != FaceFormat:
		return fmt.Errorf("decode face %s: format version %d, this build reads %d: %w", what, b[1], FaceFormat, ErrUnknownVersion)
	}
	return nil
}

// DecodeFaceEntry parses a signed entry without checking its signature,
// naming what is wrong: size, tag or version, truncation, trailing bytes,
// invalid fields. The sealed record is not opened.
func DecodeFaceEntry(b []byte) (*FaceEntry, error) {
	if err := checkFaceHeader(b, FaceEntryTag, "entry"); err != nil {
		return nil, err
	}
	if len(b) > MaxFaceEntrySize {
		return nil, fmt.Errorf("decode face entry: %d bytes, limit %d: %w", len(b), MaxFaceEntrySize, ErrTooLarge)
	}
	if len(b) < faceEntryFixed+SignatureSize {
		return nil, fmt.Errorf("decode face entry: %d bytes is shorter than any entry: %w", len(b), ErrMalformed)
	}
	d := decoder{b: b[:len(b)-SignatureSize], off: 2}
	e := &FaceEntry{Terminal: d.str8("terminal")}
	copy(e.Key[:], d.bytes(FaceKeyTokenSize, "key token"))
	e.Version = d.u64("version")
	n := d.bytes(4, "sealed length")
	if n != nil {
		e.Sealed = d.bytes(int(binary.BigEndian.Uint32(n)), "sealed record")
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode face entry: %w", d.err)
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("decode face entry: %d trailing bytes: %w", len(d.b)-d.off, ErrMalformed)
	}
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("decode face entry: %v: %w", err, ErrInvalidEventFields)
	}
	e.Sealed = append([]byte(nil), e.Sealed...)
	return e, nil
}

// VerifyFaceEntry decodes a signed entry and checks its signature against
// the trusted clearing keys.
func VerifyFaceEntry(b []byte, trusted []ed25519.PublicKey) (*FaceEntry, error) {
	e, err := DecodeFaceEntry(b)
	if err != nil {
		return nil, err
	}
	if !verifyWith(faceEntryContext, b, trusted) {
		return nil, fmt.Errorf("face entry %s at version %d: %w", FaceEntryKey(e.Terminal, e.Key), e.Version, ErrUntrustedFace)
	}
	return e, nil
}

// FaceHead is clearing's signed word on one terminal's gallery at the face
// galleries' Version: how many subjects it holds (Count), the FaceDigest of
// its entries, and when clearing issued it. A terminal matches faces
// only while its last head is younger than its bound.
type FaceHead struct {
	Terminal string
	Version  uint64
	Count    uint32
	Digest   FaceDigest
	IssuedAt time.Time
}

func (h *FaceHead) validate() error {
	if err := ValidateID(h.Terminal); err != nil {
		return fmt.Errorf("terminal %q: %w", h.Terminal, err)
	}
	if uint64(h.Count) > h.Version {
		return fmt.Errorf("%d subjects at version %d (every subject took a version)", h.Count, h.Version)
	}
	if h.IssuedAt.Before(time.Unix(1, 0)) || h.IssuedAt.Year() > 2261 {
		return errors.New("issue time out of range")
	}
	return nil
}

// Sign encodes h and appends clearing's signature.
func (h *FaceHead) Sign(key ed25519.PrivateKey) ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("sign face head: %w", err)
	}
	msg := make([]byte, 0, len(faceHeadContext)+faceHeadFixed+len(h.Terminal)+SignatureSize)
	msg = append(msg, faceHeadContext...)
	msg = append(msg, FaceHeadTag, FaceFormat)
	msg = appendStr8(msg, h.Terminal)
	msg = binary.BigEndian.AppendUint64(msg, h.Version)
	msg = binary.BigEndian.AppendUint32(msg, h.Count)
	msg = append(msg, h.Digest[:]...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(h.IssuedAt.UnixNano()))
	sig := ed25519.Sign(key, msg)
	return append(msg[len(faceHeadContext):], sig...), nil
}

// DecodeFaceHead parses a signed head without checking its signature.
func DecodeFaceHead(b []byte) (*FaceHead, error) {
	if err := checkFaceHeader(b, FaceHeadTag, "head"); err != nil {
		return nil, err
	}
	if len(b) > MaxFaceHeadSize {
		return nil, fmt.Errorf("decode face head: %d bytes, limit %d: %w", len(b), MaxFaceHeadSize, ErrTooLarge)
	}
	if len(b) < faceHeadFixed+SignatureSize {
		return nil, fmt.Errorf("decode face head: %d bytes is shorter than any head: %w", len(b), ErrMalformed)
	}
	d := decoder{b: b[:len(b)-SignatureSize], off: 2}
	h := &FaceHead{Terminal: d.str8("terminal"), Version: d.u64("version")}
	if c := d.bytes(4, "count"); c != nil {
		h.Count = binary.BigEndian.Uint32(c)
	}
	copy(h.Digest[:], d.bytes(32, "digest"))
	at := d.u64("issued at")
	if d.err != nil {
		return nil, fmt.Errorf("decode face head: %w", d.err)
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("decode face head: %d trailing bytes: %w", len(d.b)-d.off, ErrMalformed)
	}
	h.IssuedAt = time.Unix(0, int64(at)).UTC()
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("decode face head: %v: %w", err, ErrInvalidEventFields)
	}
	return h, nil
}

// VerifyFaceHead decodes a signed head and checks its signature.
func VerifyFaceHead(b []byte, trusted []ed25519.PublicKey) (*FaceHead, error) {
	h, err := DecodeFaceHead(b)
	if err != nil {
		return nil, err
	}
	if !verifyWith(faceHeadContext, b, trusted) {
		return nil, fmt.Errorf("face head of %s at version %d: %w", h.Terminal, h.Version, ErrUntrustedFace)
	}
	return h, nil
}

// FaceWatchFilter is the subject filter of terminal's watch of the face
// bucket: its own keys and nothing else.
func FaceWatchFilter(terminal string) string { return "$KV." + FaceBucket + "." + terminal + ".*" }
