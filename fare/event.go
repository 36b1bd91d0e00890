package fare

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Direction says which way a passenger passed the gate.
type Direction uint8

// Directions. Validate is a single tap on a flat-fare or tap-on-only gate.
const (
	Entry    Direction = 1
	Exit     Direction = 2
	Validate Direction = 3
)

// String is the direction as tap lines and the API write it.
func (d Direction) String() string {
	switch d {
	case Entry:
		return "entry"
	case Exit:
		return "exit"
	case Validate:
		return "validate"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// MediaKind says what the passenger presented.
type MediaKind uint8

// Media kinds: a tokenised bank or transit card, or a face matched to an
// enrolled subject.
const (
	Card MediaKind = 1
	Face MediaKind = 2
)

// String is the media kind as tap lines and the API write it.
func (m MediaKind) String() string {
	switch m {
	case Card:
		return "card"
	case Face:
		return "face"
	}
	return fmt.Sprintf("media(%d)", uint8(m))
}

// Decision is the terminal's local decision at the gate.
type Decision uint8

// Decisions.
const (
	Accepted Decision = 1
	Denied   Decision = 2
)

// String is the decision as the API and logs write it.
func (d Decision) String() string {
	switch d {
	case Accepted:
		return "accepted"
	case Denied:
		return "denied"
	}
	return fmt.Sprintf("decision(%d)", uint8(d))
}

// FaceMode says how a face decided a tap.
type FaceMode uint8

// Face modes.
const (
	// FaceIdentify is 1:N identification within the gate's gallery: the
	// face is the medium (Media Face, MediaToken the subject).
	FaceIdentify FaceMode = 1
	// FaceVerify is 1:1 verification of a presented card's enrolled
	// holder (Media Card).
	FaceVerify FaceMode = 2
)

// String is the face mode as the API and logs write it.
func (m FaceMode) String() string {
	switch m {
	case FaceIdentify:
		return "1:N"
	case FaceVerify:
		return "1:1"
	}
	return fmt.Sprintf("face-mode(%d)", uint8(m))
}

// UnmatchedFace is the media token of a face tap that matched no subject:
// the event records the refusal, and no subject is named for a face the
// gate did not accept.
const UnmatchedFace = "unmatched"

// Why a gate refused a face: the Reason of a denied tap with face
// evidence. Each falls back to a card: the gate shows "tap a card".
const (
	FaceNoFace        = "face-none"              // no face in a frame
	FaceSeveral       = "face-several"           // more than one face in a frame: whose?
	FacePoorQuality   = "face-poor-quality"      // too small, cut off
	FaceBadFrame      = "face-bad-frame"         // not a JPEG or PNG, corrupt, too large
	FaceNoMatch       = "face-no-match"          // nobody in the gallery close enough
	FaceAmbiguous     = "face-ambiguous"         // two subjects too close to tell apart
	FaceTooFewFrames  = "face-too-few-frames"    // fewer (agreeing) frames than the policy asks
	FaceGalleryStale  = "face-gallery-stale"     // the gate's gallery copy is older than allowed
	FaceGalleryLarge  = "face-gallery-too-large" // more subjects than the operating point holds for
	FaceNoGallery     = "face-no-gallery"        // no gallery (or no such holder) at this gate
	FacePresentation  = "face-presentation"      // the presentation-attack check refused it
	FaceMismatch      = "face-mismatch"          // 1:1: not the card's enrolled holder (a lent card)
	FaceRequired      = "face-required"          // 1:1: a concession card whose holder must show their face, and no frames
	FaceMatcherFailed = "face-matcher-failed"    // the recognizer failed; see the gate's log
)

// MaxFaceVersionLen bounds FaceEvidence's model and policy versions.
const MaxFaceVersionLen = 64

// FaceEvidence is what a face decision at the gate rests on. It never holds
// an image or a descriptor.
type FaceEvidence struct {
	Mode FaceMode
	// Subject is the pseudonymous subject id: the one identified (1:N,
	// empty when none was accepted) or the presented card's enrolled
	// holder (1:1).
	Subject string
	// Distance is from the probe to Subject's nearest template (1:N: to the
	// nearest subject's, even when refused); +Inf when the gallery held no
	// one to compare with.
	Distance float32
	// Margin is how much farther the second-nearest subject was (1:N;
	// +Inf with no second subject); 0 in 1:1.
	Margin float32
	// Frames is how many consecutive frames the decision rests on: those
	// that agreed when accepted, those examined when refused (0: the gate
	// asked for a face and was shown none).
	Frames uint8
	// Model and Policy are the versions of the descriptor model and of the
	// operating point (thresholds, margin, frames) that decided.
	Model  string
	Policy string
}

func (f *FaceEvidence) validate(e *Event) error {
	if f.Mode != FaceIdentify && f.Mode != FaceVerify {
		return fmt.Errorf("%w: %s", ErrInvalidEventFields, f.Mode)
	}
	if f.Subject != "" {
		if err := ValidateID(f.Subject); err != nil {
			return fmt.Errorf("%w: face subject %q: %v", ErrInvalidEventFields, f.Subject, err)
		}
	}
	switch {
	case f.Mode == FaceIdentify && e.Media != Face:
		return fmt.Errorf("%w: 1:N face evidence on a %s tap", ErrInvalidEventFields, e.Media)
	case f.Mode == FaceVerify && e.Media != Card:
		return fmt.Errorf("%w: 1:1 face evidence on a %s tap (it verifies a card's holder)", ErrInvalidEventFields, e.Media)
	case f.Mode == FaceVerify && f.Subject == "":
		return fmt.Errorf("%w: 1:1 face evidence names no card holder", ErrInvalidEventFields)
	case f.Mode == FaceIdentify && e.Decision == Accepted && f.Subject != e.MediaToken:
		return fmt.Errorf("%w: accepted face tap of token %q identifies subject %q", ErrInvalidEventFields, e.MediaToken, f.Subject)
	case f.Mode == FaceIdentify && e.Decision == Denied && f.Subject == "" && e.MediaToken != UnmatchedFace:
		return fmt.Errorf("%w: refused face tap that matched no subject must carry token %q, not %q", ErrInvalidEventFields, UnmatchedFace, e.MediaToken)
	}
	// Negative zero is refused too: one encoding per event.
	for _, v := range []struct {
		name string
		x    float32
	}{{"distance", f.Distance}, {"margin", f.Margin}} {
		if v.x != v.x || math.Signbit(float64(v.x)) {
			return fmt.Errorf("%w: face %s %v (want a number >= 0 or +Inf)", ErrInvalidEventFields, v.name, v.x)
		}
	}
	if f.Frames == 0 && e.Decision == Accepted {
		return fmt.Errorf("%w: face accepted from 0 frames", ErrInvalidEventFields)
	}
	for _, v := range []struct{ name, s string }{{"model", f.Model}, {"policy", f.Policy}} {
		if v.s == "" || len(v.s) > MaxFaceVersionLen || !utf8.ValidString(v.s) {
			return fmt.Errorf("%w: face %s version must be 1 to %d bytes of UTF-8", ErrInvalidEventFields, v.name, MaxFaceVersionLen)
		}
	}
	return nil
}

// Event is one tap at a gate, as the terminal saw and decided it.
type Event struct {
	ID            EventID
	Terminal      string // terminal id, a key in the terminal registry
	Operator      string // operator (GTFS agency_id) that runs the gate
	Stop          string // GTFS stop_id
	Gate          string
	Direction     Direction
	Media         MediaKind
	MediaToken    string // card token or enrolled face subject id; never a PAN
	RiderCategory string // GTFS rider_category_id; empty for the default category
	DeviceTime    time.Time
	Decision      Decision
	Reason        string // why denied, or how accepted (e.g. "offline"); may be empty
	Sequence      uint64 // per-terminal, starting at 1, no gaps
	// Face is set when a face decided the tap: every face tap (1:N), and a
	// card tap whose holder the gate verified (1:1).
	Face *FaceEvidence
}

// Wire format limits. An encoded signed event is at most MaxEncodedSize.
const (
	// Version is the encoding version of an event without face evidence,
	// the first byte of every event; FaceVersion that of one with it. The
	// decoder reads both, so adding faces changed no card event's bytes.
	Version     = 1
	FaceVersion = 2

	MaxTokenLen  = 128
	MaxReasonLen = 128
	// MaxEncodedSize bounds a signed event on the wire.
	MaxEncodedSize = 1024

	// SignatureSize is the size of the trailing ed25519 signature.
	SignatureSize = ed25519.SignatureSize
)

// CheckDeskToken checks a medium's token typed or sent by a desk (an
// enrolment): 1 to MaxTokenLen bytes of UTF-8 with no space, control or
// invisible character. A tap line can carry no such token, so an
// enrolment of one could never match a tap. (Events are not held to it:
// a gate's token is taken as signed.)
func CheckDeskToken(tok string) error {
	if tok == "" || len(tok) > MaxTokenLen {
		return fmt.Errorf("a token is 1 to %d bytes of UTF-8, got %d bytes", MaxTokenLen, len(tok))
	}
	if !utf8.ValidString(tok) {
		return errors.New("the token is not UTF-8")
	}
	if r, _ := utf8.DecodeRuneInString(tok); unicode.Is(unicode.M, r) {
		return fmt.Errorf("the token begins with a combining mark %q", r)
	}
	if i := strings.IndexFunc(tok, invisibleInToken); i >= 0 {
		return fmt.Errorf("the token has a space, control or invisible character %q at byte %d", []rune(tok[i:])[0], i)
	}
	return nil
}

// invisibleInToken says whether r is a character no card token holds and no
// one can see: spaces, controls, format characters, the default-ignorable
// fillers (U+3164 and its kin), variation selectors, the blank Braille
// pattern, and U+FFFD (what a JSON decoder makes of bytes that were not
// UTF-8: the desk never sent it).
func invisibleInToken(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) ||
		unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) || unicode.Is(unicode.Variation_Selector, r) ||
		r == '\u2800' || r == utf8.RuneError
}

// signingContext separates fare-event signatures from anything else the same
// key might ever sign.
var signingContext = []byte("faregate/fare-event/v1\x00")

// Errors the decoder wraps; callers can test with errors.Is to classify.
var (
	ErrMalformed          = errors.New("malformed event")
	ErrUnknownVersion     = errors.New("unknown event version")
	ErrTooLarge           = errors.New("event too large")
	ErrBadSignature       = errors.New("bad signature")
	ErrInvalidEventFields = errors.New("invalid event")
)

// Validate checks the fields an encoder would refuse, so a terminal learns of
// a bad event before it signs it.
func (e *Event) Validate() error {
	if e.ID.IsZero() {
		return fmt.Errorf("%w: zero event id", ErrInvalidEventFields)
	}
	for _, f := range []struct {
		name, v  string
		optional bool
	}{
		{"terminal", e.Terminal, false},
		{"operator", e.Operator, false},
		{"stop", e.Stop, false},
		{"gate", e.Gate, false},
		{"rider category", e.RiderCategory, true},
	} {
		if f.optional && f.v == "" {
			continue
		}
		if err := ValidateID(f.v); err != nil {
			return fmt.Errorf("%w: %s id %q: %v", ErrInvalidEventFields, f.name, f.v, err)
		}
	}
	if e.Direction < Entry || e.Direction > Validate {
		return fmt.Errorf("%w: %s", ErrInvalidEventFields, e.Direction)
	}
	if e.Media < Card || e.Media > Face {
		return fmt.Errorf("%w: %s", ErrInvalidEventFields, e.Media)
	}
	if e.Decision < Accepted || e.Decision > Denied {
		return fmt.Errorf("%w: %s", ErrInvalidEventFields, e.Decision)
	}
	if e.MediaToken == "" || len(e.MediaToken) > MaxTokenLen || !utf8.ValidString(e.MediaToken) {
		return fmt.Errorf("%w: media token must be 1 to %d bytes of UTF-8", ErrInvalidEventFields, MaxTokenLen)
	}
	if len(e.Reason) > MaxReasonLen || !utf8.ValidString(e.Reason) {
		return fmt.Errorf("%w: reason must be at most %d bytes of UTF-8", ErrInvalidEventFields, MaxReasonLen)
	}
	if e.Sequence == 0 {
		return fmt.Errorf("%w: sequence 0 (sequences start at 1)", ErrInvalidEventFields)
	}
	if e.DeviceTime.IsZero() {
		return fmt.Errorf("%w: zero device time", ErrInvalidEventFields)
	}
	if !time.Unix(0, e.DeviceTime.UnixNano()).Equal(e.DeviceTime) {
		// Outside 1678-2262 the nanoseconds wrap: the signed time would
		// not be the time read back.
		return fmt.Errorf("%w: device time %s outside the years 1678 to 2262", ErrInvalidEventFields, e.DeviceTime.UTC().Format(time.RFC3339))
	}
	if e.Face != nil {
		return e.Face.validate(e)
	}
	if e.Media == Face {
		return fmt.Errorf("%w: face tap without face evidence (mode, distance, model and policy versions)", ErrInvalidEventFields)
	}
	return nil
}

// appendBody appends the canonical encoding of e without signature:
//
//	version u8 | id [16] | terminal str8 | operator str8 | stop str8 | gate str8 |
//	direction u8 | media u8 | token str8 | rider str8 | device time i64 ns (BE) |
//	decision u8 | reason str8 | sequence u64 (BE)
//
// and, in version 2 (FaceVersion) only, the face evidence after it:
//
//	mode u8 | subject str8 | distance f32 (IEEE 754 bits, BE) | margin f32 |
//	frames u8 | model str8 | policy str8
//
// str8 is a one-byte length and the bytes; every field has exactly one
// encoding, so equal events encode to equal bytes.
func (e *Event) appendBody(b []byte) []byte {
	if e.Face != nil {
		b = append(b, FaceVersion)
	} else {
		b = append(b, Version)
	}
	b = append(b, e.ID[:]...)
	b = appendStr8(b, e.Terminal)
	b = appendStr8(b, e.Operator)
	b = appendStr8(b, e.Stop)
	b = appendStr8(b, e.Gate)
	b = append(b, byte(e.Direction), byte(e.Media))
	b = appendStr8(b, e.MediaToken)
	b = appendStr8(b, e.RiderCategory)
	b = binary.BigEndian.AppendUint64(b, uint64(e.DeviceTime.UnixNano()))
	b = append(b, byte(e.Decision))
	b = appendStr8(b, e.Reason)
	b = binary.BigEndian.AppendUint64(b, e.Sequence)
	if f := e.Face; f != nil {
		b = append(b, byte(f.Mode))
		b = appendStr8(b, f.Subject)
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(f.Distance))
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(f.Margin))
		b = append(b, f.Frames)
		b = appendStr8(b, f.Model)
		b = appendStr8(b, f.Policy)
	}
	return b
}

func appendStr8(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// Sign validates e, encodes it and appends the terminal's signature. The
// result is what travels to clearing and what clearing stores.
func Sign(e *Event, key ed25519.PrivateKey) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("sign event %s: %w", e.ID, err)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign event %s: private key is %d bytes, want %d", e.ID, len(key), ed25519.PrivateKeySize)
	}
	msg := make([]byte, 0, len(signingContext)+256)
	msg = append(msg, signingContext...)
	msg = e.appendBody(msg)
	sig := ed25519.Sign(key, msg)
	out := append(msg[len(signingContext):len(msg):len(msg)], sig...)
	return out, nil
}

// Signed is a decoded event with the bytes it came from. Its signature has
// not been checked: verify with Verify or a batch verifier against the
// terminal registry before trusting it.
type Signed struct {
	Event
	// Raw is the whole encoding, body then signature.
	Raw []byte
}

// Body returns the signed part of Raw.
func (s *Signed) Body() []byte { return s.Raw[:len(s.Raw)-SignatureSize] }

// Signature returns the trailing signature.
func (s *Signed) Signature() []byte { return s.Raw[len(s.Raw)-SignatureSize:] }

// Message returns the exact bytes the signature covers (context + body).
// It allocates; hot paths reuse a buffer with AppendMessage.
func (s *Signed) Message() []byte { return s.AppendMessage(nil) }

// AppendMessage appends the signed message to dst.
func (s *Signed) AppendMessage(dst []byte) []byte {
	dst = append(dst, signingContext...)
	return append(dst, s.Body()...)
}

// Digest is the event's identity in settlement: sha256 over the whole signed
// encoding. Merkle leaves are built from it.
func (s *Signed) Digest() [32]byte { return sha256.Sum256(s.Raw) }

// Verify checks the signature with crypto/ed25519 against pub.
func (s *Signed) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("verify event %s: public key is %d bytes: %w", s.ID, len(pub), ErrBadSignature)
	}
	if !ed25519.Verify(pub, s.Message(), s.Signature()) {
		return fmt.Errorf("verify event %s from terminal %s: %w", s.ID, s.Terminal, ErrBadSignature)
	}
	return nil
}

// Decode parses a signed event. It rejects anything oversized, of an unknown
// version, truncated, with trailing bytes or with invalid fields, naming what
// is wrong. The returned Signed keeps a reference to b.
func Decode(b []byte) (*Signed, error) {
	s := &Signed{}
	if err := DecodeInto(s, b); err != nil {
		return nil, err
	}
	return s, nil
}

// DecodeInto is Decode into caller-owned memory.
func DecodeInto(s *Signed, b []byte) error {
	if len(b) > MaxEncodedSize {
		return fmt.Errorf("decode event: %d bytes, limit %d: %w", len(b), MaxEncodedSize, ErrTooLarge)
	}
	if len(b) == 0 {
		return fmt.Errorf("decode event: empty payload: %w", ErrMalformed)
	}
	if b[0] != Version && b[0] != FaceVersion {
		return fmt.Errorf("decode event: version %d, this build reads %d and %d: %w", b[0], Version, FaceVersion, ErrUnknownVersion)
	}
	if len(b) < 1+16+SignatureSize {
		return fmt.Errorf("decode event: %d bytes is shorter than any event: %w", len(b), ErrMalformed)
	}
	d := decoder{b: b[:len(b)-SignatureSize], off: 1}
	e := &s.Event
	copy(e.ID[:], d.bytes(16, "id"))
	e.Terminal = d.str8("terminal")
	e.Operator = d.str8("operator")
	e.Stop = d.str8("stop")
	e.Gate = d.str8("gate")
	e.Direction = Direction(d.u8("direction"))
	e.Media = MediaKind(d.u8("media"))
	e.MediaToken = d.str8("media token")
	e.RiderCategory = d.str8("rider category")
	e.DeviceTime = time.Unix(0, int64(d.u64("device time"))).UTC()
	e.Decision = Decision(d.u8("decision"))
	e.Reason = d.str8("reason")
	e.Sequence = d.u64("sequence")
	e.Face = nil
	last := "sequence"
	if b[0] == FaceVersion {
		f := &FaceEvidence{}
		f.Mode = FaceMode(d.u8("face mode"))
		f.Subject = d.str8("face subject")
		f.Distance = math.Float32frombits(d.u32("face distance"))
		f.Margin = math.Float32frombits(d.u32("face margin"))
		f.Frames = d.u8("face frames")
		f.Model = d.str8("face model")
		f.Policy = d.str8("face policy")
		e.Face, last = f, "face policy"
	}
	if d.err != nil {
		return fmt.Errorf("decode event: %w", d.err)
	}
	if d.off != len(d.b) {
		return fmt.Errorf("decode event %s: %d unexpected bytes after %s: %w", e.ID, len(d.b)-d.off, last, ErrMalformed)
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("decode event %s: %w", e.ID, err)
	}
	s.Raw = b
	return nil
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) bytes(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		// n < 0: a 32-bit length past int's range, read where int is 32
		// bits (an outside review's 386 build panicked slicing).
		d.err = fmt.Errorf("truncated at %s (offset %d): %w", field, d.off, ErrMalformed)
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *decoder) u8(field string) uint8 {
	v := d.bytes(1, field)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) u32(field string) uint32 {
	v := d.bytes(4, field)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (d *decoder) u64(field string) uint64 {
	v := d.bytes(8, field)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (d *decoder) str8(field string) string {
	n := d.u8(field)
	return string(d.bytes(int(n), field))
}

// DeviceTimeAhead and DeviceTimeBehind are how far ahead of clearing's fare
// clock (held beyond it) and behind it (rejected beyond it) a tap's device
// time may be by default (clearing.DefaultMaxDeviceTimeAhead and
// DefaultMaxDeviceTimeBehind). A gate whose clock is off clearing's by
// more stamps clearing's: its own would lose every tap.
const (
	DeviceTimeAhead  = 24 * time.Hour
	DeviceTimeBehind = 30 * 24 * time.Hour
)
