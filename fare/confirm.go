package fare

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// Confirmation is clearing's signed word to one terminal: every sequence in
// (From, Watermark] is durably recorded in clearing's store, applied or
// rejected for good, so the terminal may take those events out of its outbox
// (rejected ones into its dead-letter store, with the reason). A terminal
// acts only on a confirmation that verifies against a clearing key it was
// provisioned with, that names it, and whose Digest matches its own event at
// Watermark; a forged or replayed one cannot make it delete anything
// clearing has not recorded.
type Confirmation struct {
	Terminal string
	// From is the watermark this confirmation starts from (exclusive); it
	// lists every rejection in (From, Watermark].
	From      uint64
	Watermark uint64
	// Digest is sha256 of the signed event clearing recorded at Watermark
	// (zero when Watermark is 0).
	Digest [32]byte
	// Highest is the highest sequence clearing holds for the terminal; above
	// Watermark it means a gap: the terminal should resend from Watermark+1.
	Highest  uint64
	IssuedAt time.Time
	// Nonce echoes the nonce of the request this confirmation answers
	// (WatermarkRequest), binding the answer to that request: a terminal
	// that needs a fresh answer (a new outbox learning where clearing's
	// record ends) takes no other. Empty on announcements and on answers
	// to requests without one; a confirmation with a nonce is encoded as
	// version 2, one without as version 1, which every build reads.
	Nonce []byte
	// HasRange says RangeDigest is set (version 3): the digest of every
	// event clearing recorded in (From, Watermark] (RangeHash), so the
	// terminal can check the whole range against its outbox, not only the
	// event at Watermark: a second unit signing under this terminal's key,
	// a restored outbox or a forged event applied under one of its
	// sequences then shows, instead of its events being dropped unseen.
	// Clearing sends it to terminals that ask for it (WantRangeHeader).
	HasRange    bool
	RangeDigest [32]byte
	Rejected    []Rejection
}

// WantRangeHeader is the NATS header a terminal puts on its watermark
// requests to say it checks range digests (an older clearing ignores it):
// clearing then answers, and announces to it, with version 3.
const WantRangeHeader = "Faregate-Confirm-Range"

// ConfirmUptoHeader, on a watermark request, asks clearing to confirm no
// further than the sequence it gives (decimal): a terminal whose range
// digest did not match narrows the range down to the sequence where
// clearing holds another event, confirming what matches before it.
const ConfirmUptoHeader = "Faregate-Confirm-Upto"

// DenyHeadHeader, on a watermark request, carries the deny-list head the
// gate's copy follows, as clearing's bucket held it (base64 of the signed
// value): a clearing restored from an older backup learns from it that it
// issued a newer list, and numbers its changes after it (its versions
// would otherwise repeat numbers the gates have seen, and the gates refuse
// its older head until its own version passes theirs).
const DenyHeadHeader = "Faregate-Deny-Head"

// EnrolHeadHeader, on a watermark request, carries the enrolments' head the
// gate's copy follows, as DenyHeadHeader does the deny list's: a restored
// clearing numbers its enrolments after it.
const EnrolHeadHeader = "Faregate-Enrol-Head"

// FaceHeadHeader, on a watermark request, carries the face gallery head the
// gate's copy follows (base64 of the signed fare.FaceHead): a restored
// clearing numbers its galleries after it.
const FaceHeadHeader = "Faregate-Face-Head"

var rangeContext = []byte("faregate/confirm-range/v1\x00")

// RangeHash computes a confirmation's RangeDigest: sha256 over a label,
// From, then each sequence of (From, Watermark] in order with the digest of
// the event recorded under it (applied or rejected).
type RangeHash struct {
	h    hash.Hash
	next uint64
	buf  [40]byte
}

// NewRangeHash starts the digest of the range after from.
func NewRangeHash(from uint64) *RangeHash {
	r := &RangeHash{h: sha256.New(), next: from + 1}
	r.h.Write(rangeContext)
	r.h.Write(binary.BigEndian.AppendUint64(nil, from))
	return r
}

// Add adds the next sequence's digest; sequences must come in order, one
// by one (an error otherwise: the digests would not match).
func (r *RangeHash) Add(seq uint64, digest [32]byte) error {
	if seq != r.next {
		return fmt.Errorf("range digest: sequence %d, want %d", seq, r.next)
	}
	binary.BigEndian.PutUint64(r.buf[:8], seq)
	copy(r.buf[8:], digest[:])
	r.h.Write(r.buf[:])
	r.next++
	return nil
}

// Last is the last sequence added (from when none).
func (r *RangeHash) Last() uint64 { return r.next - 1 }

// Sum is the digest of what was added.
func (r *RangeHash) Sum() [32]byte {
	var out [32]byte
	r.h.Sum(out[:0])
	return out
}

// Rejection is one sequence clearing refused for good.
type Rejection struct {
	Sequence uint64
	// Digest is sha256 of the message clearing refused under this sequence.
	Digest [32]byte
	// Reason is clearing's quarantine reason (e.g. "stop-mismatch").
	Reason string
}

// Confirmation limits.
const (
	// ConfirmationVersion is the newest encoding: version 2 adds Nonce
	// after IssuedAt; version 3 makes the nonce optional (its length may
	// be 0) and adds RangeDigest after it. A confirmation without a range
	// digest is encoded as version 2 with a nonce, else as version 1.
	ConfirmationVersion = 3
	// MaxNonceSize bounds a request's nonce.
	MaxNonceSize = 32
	// MaxRejections bounds the rejections one confirmation carries; clearing
	// confirms a shorter range when more are due.
	MaxRejections = 128
	// MaxConfirmationSize bounds an encoded confirmation.
	MaxConfirmationSize = 1 + 1 + 255 + 8*3 + 32 + 8 + 1 + MaxNonceSize + 32 + 2 + MaxRejections*(8+32+1+255) + SignatureSize
)

var confirmContext = []byte("faregate/confirmation/v1\x00")

// ErrUntrustedConfirmation is returned for a confirmation no trusted key signed.
var ErrUntrustedConfirmation = errors.New("confirmation not signed by a trusted clearing key")

func (c *Confirmation) validate() error {
	if err := ValidateID(c.Terminal); err != nil {
		return fmt.Errorf("terminal %q: %w", c.Terminal, err)
	}
	if c.From > c.Watermark {
		return fmt.Errorf("from %d above watermark %d", c.From, c.Watermark)
	}
	if len(c.Rejected) > MaxRejections {
		return fmt.Errorf("%d rejections, limit %d", len(c.Rejected), MaxRejections)
	}
	if len(c.Nonce) > MaxNonceSize {
		return fmt.Errorf("nonce of %d bytes, limit %d", len(c.Nonce), MaxNonceSize)
	}
	prev := c.From
	for _, r := range c.Rejected {
		if r.Sequence <= prev || r.Sequence > c.Watermark {
			return fmt.Errorf("rejected sequence %d outside (%d, %d] or out of order", r.Sequence, prev, c.Watermark)
		}
		if r.Reason == "" || len(r.Reason) > 255 {
			return fmt.Errorf("rejected sequence %d: reason of %d bytes", r.Sequence, len(r.Reason))
		}
		prev = r.Sequence
	}
	return nil
}

// Sign encodes c and appends clearing's signature over the domain-separated
// encoding.
func (c *Confirmation) Sign(key ed25519.PrivateKey) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("sign confirmation: %w", err)
	}
	msg := append([]byte(nil), confirmContext...)
	version := byte(1)
	switch {
	case c.HasRange:
		version = 3
	case len(c.Nonce) > 0:
		version = 2
	}
	msg = append(msg, version)
	msg = appendStr8(msg, c.Terminal)
	msg = binary.BigEndian.AppendUint64(msg, c.From)
	msg = binary.BigEndian.AppendUint64(msg, c.Watermark)
	msg = append(msg, c.Digest[:]...)
	msg = binary.BigEndian.AppendUint64(msg, c.Highest)
	msg = binary.BigEndian.AppendUint64(msg, uint64(c.IssuedAt.UnixNano()))
	if version >= 2 {
		msg = append(msg, byte(len(c.Nonce)))
		msg = append(msg, c.Nonce...)
	}
	if version == 3 {
		msg = append(msg, c.RangeDigest[:]...)
	}
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(c.Rejected)))
	for _, r := range c.Rejected {
		msg = binary.BigEndian.AppendUint64(msg, r.Sequence)
		msg = append(msg, r.Digest[:]...)
		msg = appendStr8(msg, r.Reason)
	}
	sig := ed25519.Sign(key, msg)
	return append(msg[len(confirmContext):], sig...), nil
}

// VerifyConfirmation decodes a signed confirmation and checks its signature
// against the trusted clearing keys. It names what is wrong: size, version,
// truncation, trailing bytes, invalid fields, or an untrusted signature.
func VerifyConfirmation(b []byte, trusted []ed25519.PublicKey) (*Confirmation, error) {
	c, err := DecodeConfirmation(b)
	if err != nil {
		return nil, err
	}
	msg := append(append([]byte(nil), confirmContext...), b[:len(b)-SignatureSize]...)
	sig := b[len(b)-SignatureSize:]
	for i := len(trusted) - 1; i >= 0; i-- { // the newest key signs most
		if k := trusted[i]; verifyClearing(k, msg, sig) {
			return c, nil
		}
	}
	return nil, fmt.Errorf("confirmation for %s up to %d: %w", c.Terminal, c.Watermark, ErrUntrustedConfirmation)
}

// DecodeConfirmation parses a confirmation without checking its signature.
func DecodeConfirmation(b []byte) (*Confirmation, error) {
	if len(b) > MaxConfirmationSize {
		return nil, fmt.Errorf("decode confirmation: %d bytes, limit %d: %w", len(b), MaxConfirmationSize, ErrTooLarge)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("decode confirmation: empty payload: %w", ErrMalformed)
	}
	if b[0] < 1 || b[0] > 3 {
		return nil, fmt.Errorf("decode confirmation: version %d, this build reads 1 to 3: %w", b[0], ErrUnknownVersion)
	}
	if len(b) < 1+SignatureSize {
		return nil, fmt.Errorf("decode confirmation: %d bytes is shorter than any confirmation: %w", len(b), ErrMalformed)
	}
	d := decoder{b: b[:len(b)-SignatureSize], off: 1}
	c := &Confirmation{}
	c.Terminal = d.str8("terminal")
	c.From = d.u64("from")
	c.Watermark = d.u64("watermark")
	copy(c.Digest[:], d.bytes(32, "digest"))
	c.Highest = d.u64("highest")
	c.IssuedAt = time.Unix(0, int64(d.u64("issued at"))).UTC()
	if b[0] >= 2 {
		var n byte
		if v := d.bytes(1, "nonce length"); v != nil {
			n = v[0]
		}
		// Version 2 exists for its nonce; in version 3 it is optional.
		if (n == 0 && b[0] == 2) || n > MaxNonceSize {
			if d.err == nil {
				return nil, fmt.Errorf("decode confirmation: version %d with a nonce of %d bytes, want %d to %d: %w", b[0], n, 3-b[0], MaxNonceSize, ErrMalformed)
			}
		} else if n > 0 {
			c.Nonce = append([]byte(nil), d.bytes(int(n), "nonce")...)
		}
	}
	if b[0] == 3 {
		c.HasRange = true
		copy(c.RangeDigest[:], d.bytes(32, "range digest"))
	}
	var n uint16
	if v := d.bytes(2, "rejection count"); v != nil {
		n = binary.BigEndian.Uint16(v)
	}
	if int(n) > MaxRejections {
		return nil, fmt.Errorf("decode confirmation: %d rejections, limit %d: %w", n, MaxRejections, ErrMalformed)
	}
	for i := 0; i < int(n) && d.err == nil; i++ {
		var r Rejection
		r.Sequence = d.u64("rejected sequence")
		copy(r.Digest[:], d.bytes(32, "rejected digest"))
		r.Reason = d.str8("rejection reason")
		c.Rejected = append(c.Rejected, r)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode confirmation: %w", d.err)
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("decode confirmation: %d unexpected bytes: %w", len(d.b)-d.off, ErrMalformed)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("decode confirmation: %v: %w", err, ErrInvalidEventFields)
	}
	return c, nil
}

// WatermarkRequest is a terminal's request on its WatermarkSubject: its own
// watermark in decimal, then, when it wants an answer bound to this very
// request, a space and a nonce in 0x hex (MaxNonceSize bytes at most),
// which the answer echoes (Confirmation.Nonce).
func WatermarkRequest(watermark uint64, nonce []byte) []byte {
	b := strconv.AppendUint(nil, watermark, 10)
	if len(nonce) > 0 {
		b = append(b, " 0x"...)
		b = hex.AppendEncode(b, nonce)
	}
	return b
}

// ParseWatermarkRequest reads a WatermarkRequest, naming what is wrong.
func ParseWatermarkRequest(b []byte) (watermark uint64, nonce []byte, err error) {
	num, rest, hasNonce := strings.Cut(string(b), " ")
	if watermark, err = strconv.ParseUint(num, 10, 64); err != nil {
		return 0, nil, fmt.Errorf("watermark request %.40q: the watermark is not a decimal sequence: %w", b, ErrMalformed)
	}
	if !hasNonce {
		return watermark, nil, nil
	}
	h, ok := strings.CutPrefix(rest, "0x")
	if !ok {
		return 0, nil, fmt.Errorf("watermark request %.40q: the nonce is not 0x hex: %w", b, ErrMalformed)
	}
	if nonce, err = hex.DecodeString(h); err != nil || len(nonce) == 0 || len(nonce) > MaxNonceSize {
		return 0, nil, fmt.Errorf("watermark request %.40q: want a nonce of 1 to %d bytes in 0x hex: %w", b, MaxNonceSize, ErrMalformed)
	}
	return watermark, nonce, nil
}

// EventDigest is the digest clearing records and confirms for a signed event
// (the same as Signed.Digest).
func EventDigest(raw []byte) [32]byte { return sha256.Sum256(raw) }
