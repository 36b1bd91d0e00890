package fare

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
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

func (d Decision) String() string {
	switch d {
	case Accepted:
		return "accepted"
	case Denied:
		return "denied"
	}
	return fmt.Sprintf("decision(%d)", uint8(d))
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
}

// Wire format limits. An encoded signed event is at most MaxEncodedSize.
const (
	// Version is the current encoding version, the first byte of every event.
	Version = 1

	MaxTokenLen  = 128
	MaxReasonLen = 128
	// MaxEncodedSize bounds a signed event on the wire.
	MaxEncodedSize = 1024

	// SignatureSize is the size of the trailing ed25519 signature.
	SignatureSize = ed25519.SignatureSize
)

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
	return nil
}

// appendBody appends the canonical encoding of e without signature:
//
//	version u8 | id [16] | terminal str8 | operator str8 | stop str8 | gate str8 |
//	direction u8 | media u8 | token str8 | rider str8 | device time i64 ns (BE) |
//	decision u8 | reason str8 | sequence u64 (BE)
//
// str8 is a one-byte length and the bytes; every field has exactly one
// encoding, so equal events encode to equal bytes.
func (e *Event) appendBody(b []byte) []byte {
	b = append(b, Version)
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
	if b[0] != Version {
		return fmt.Errorf("decode event: version %d, this build reads %d: %w", b[0], Version, ErrUnknownVersion)
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
	if d.err != nil {
		return fmt.Errorf("decode event: %w", d.err)
	}
	if d.off != len(d.b) {
		return fmt.Errorf("decode event %s: %d unexpected bytes after sequence: %w", e.ID, len(d.b)-d.off, ErrMalformed)
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
	if len(d.b)-d.off < n {
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
