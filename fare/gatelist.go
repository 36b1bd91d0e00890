package fare

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Gate lists: what every gate must know to decide offline. Clearing keeps
// two in its store and publishes them in JetStream key-value buckets that
// terminals watch (read only) and copy into their own store:
//
//   - the deny list (DenyBucket): per medium, listed or not;
//   - the concession enrolments (EnrolBucket): per medium, the periods in
//     which its holder travels in a rider category (EnrolmentPeriod).
//
// A bucket's key is the medium's DenyHash in hex (no raw token travels) and
// its value a GateEntry, and the key GateHeadKey holds the list's GateHead:
// its version and what it holds. Every value is signed with clearing's
// confirmation key under a label of its own per list and kind (so no
// confirmation, rotation, event or other list's value verifies as one),
// with the key's rotation chain ahead of it (Bundle), so a gate provisioned
// with an earlier key verifies it too. A bucket is only a carrier: anyone
// who can make the NATS server publish into it (a JetStream reply aimed at
// it) can replace a value there, but not forge one, and clearing puts its
// own value back.
//
// Every change of a list raises its version by one; the entry a change
// writes carries that version, and a gate never takes an entry older than
// the one it holds for that medium, nor a head older than its own: a
// replayed value cannot undo a newer one.

// Gate-list buckets and keys.
const (
	// DenyBucket is the JetStream key-value bucket of the deny list.
	DenyBucket = "FAREGATE_DENY"
	// EnrolBucket is the bucket of the concession enrolments.
	EnrolBucket = "FAREGATE_ENROL"
	// GateHeadKey is the key of a bucket's GateHead.
	GateHeadKey = "head"

	// GateListFormat is the encoding version of entries and heads (their
	// second byte; the first is the tag).
	GateListFormat = 1
	// GateEntryTag and GateHeadTag are the first byte of an encoded
	// GateEntry and GateHead: confirmations start with 1, rotations with
	// 'K', bundles with 'B'.
	GateEntryTag = 'G'
	GateHeadTag  = 'H'

	// MaxGateEntrySize bounds an encoded GateEntry.
	MaxGateEntrySize = gateEntryHeader + 1 + MaxEnrolmentPeriods*(8+8+1+255) + SignatureSize
	// GateHeadSize is the size of an encoded GateHead.
	GateHeadSize = 2 + 1 + 8 + 8 + 32 + SignatureSize

	gateEntryHeader = 2 + 1 + 8 + DenyKeySize
)

// GateList names one of the gate lists.
type GateList byte

// The gate lists.
const (
	DenyGateList  GateList = 'D'
	EnrolGateList GateList = 'E'
)

// Bucket is the list's key-value bucket.
func (l GateList) Bucket() string {
	if l == EnrolGateList {
		return EnrolBucket
	}
	return DenyBucket
}

// String names the list in logs and errors.
func (l GateList) String() string {
	switch l {
	case DenyGateList:
		return "deny list"
	case EnrolGateList:
		return "enrolments"
	}
	return fmt.Sprintf("gate list %q", byte(l))
}

func (l GateList) valid() bool { return l == DenyGateList || l == EnrolGateList }

var (
	denyEntryContext  = []byte("faregate/deny-entry/v1\x00")
	enrolEntryContext = []byte("faregate/enrolment-entry/v1\x00")
	denyHeadContext   = []byte("faregate/deny-head/v1\x00")
	enrolHeadContext  = []byte("faregate/enrolment-head/v1\x00")
)

func (l GateList) entryContext() []byte {
	if l == EnrolGateList {
		return enrolEntryContext
	}
	return denyEntryContext
}

func (l GateList) headContext() []byte {
	if l == EnrolGateList {
		return enrolHeadContext
	}
	return denyHeadContext
}

// ErrUntrustedGateList is returned for a gate-list value no trusted key
// signed.
var ErrUntrustedGateList = errors.New("gate-list value not signed by a trusted clearing key")

// GateEntry is clearing's signed word on one medium in a gate list, at the
// list's version Version: on the deny list, whether it is Listed; in the
// enrolments, the Periods of its holder's rider categories (none: not
// enrolled, or revoked).
type GateEntry struct {
	List    GateList
	Version uint64
	Key     DenyHash
	Listed  bool
	Periods []EnrolmentPeriod
}

func (e *GateEntry) validate() error {
	switch {
	case !e.List.valid():
		return fmt.Errorf("list byte %q", byte(e.List))
	case e.Version == 0:
		return errors.New("version 0 (the first change is version 1)")
	case e.List == DenyGateList && len(e.Periods) > 0:
		return errors.New("a deny-list entry with enrolment periods")
	case e.List == EnrolGateList && e.Listed:
		return errors.New("an enrolment entry marked listed")
	}
	if err := ValidatePeriods(e.Periods); err != nil {
		return err
	}
	for i, p := range e.Periods {
		if p.From.Unix() <= 0 || p.Until.Year() > 9999 {
			return fmt.Errorf("enrolment period %d: times out of range", i+1)
		}
	}
	return nil
}

// Sign encodes e and appends clearing's signature over the list's
// domain-separated encoding.
func (e *GateEntry) Sign(key ed25519.PrivateKey) ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("sign %s entry: %w", e.List, err)
	}
	ctx := e.List.entryContext()
	msg := make([]byte, 0, len(ctx)+gateEntryHeader+1+len(e.Periods)*32+SignatureSize)
	msg = append(msg, ctx...)
	msg = append(msg, GateEntryTag, GateListFormat, byte(e.List))
	msg = binary.BigEndian.AppendUint64(msg, e.Version)
	msg = append(msg, e.Key[:]...)
	if e.List == DenyGateList {
		listed := byte(0)
		if e.Listed {
			listed = 1
		}
		msg = append(msg, listed)
	} else {
		msg = append(msg, byte(len(e.Periods)))
		for _, p := range e.Periods {
			msg = binary.BigEndian.AppendUint64(msg, uint64(p.From.Unix()))
			msg = binary.BigEndian.AppendUint64(msg, uint64(p.Until.Unix()))
			msg = appendStr8(msg, p.Category)
		}
	}
	sig := ed25519.Sign(key, msg)
	return append(msg[len(ctx):], sig...), nil
}

// DecodeGateEntry parses a gate-list entry without checking its signature,
// naming what is wrong: size, tag or version, truncation, trailing bytes,
// invalid fields.
func DecodeGateEntry(b []byte) (*GateEntry, error) {
	if err := checkGateHeader(b, GateEntryTag, "entry"); err != nil {
		return nil, err
	}
	if len(b) > MaxGateEntrySize {
		return nil, fmt.Errorf("decode gate-list entry: %d bytes, limit %d: %w", len(b), MaxGateEntrySize, ErrTooLarge)
	}
	if len(b) < gateEntryHeader+1+SignatureSize {
		return nil, fmt.Errorf("decode gate-list entry: %d bytes is shorter than any entry: %w", len(b), ErrMalformed)
	}
	d := decoder{b: b[:len(b)-SignatureSize], off: 2}
	e := &GateEntry{List: GateList(d.u8("list")), Version: d.u64("version")}
	copy(e.Key[:], d.bytes(DenyKeySize, "key"))
	switch e.List {
	case DenyGateList:
		switch listed := d.u8("listed"); listed {
		case 0, 1:
			e.Listed = listed == 1
		default:
			return nil, fmt.Errorf("decode deny-list entry: listed byte %d, want 0 or 1: %w", listed, ErrInvalidEventFields)
		}
	case EnrolGateList:
		n := int(d.u8("period count"))
		if n > MaxEnrolmentPeriods {
			return nil, fmt.Errorf("decode enrolment entry: %d periods, limit %d: %w", n, MaxEnrolmentPeriods, ErrMalformed)
		}
		for range n {
			from, until := d.u64("period from"), d.u64("period until")
			cat := d.str8("period category")
			if d.err != nil {
				break
			}
			if int64(from) < 0 || int64(until) < 0 || !utf8.ValidString(cat) {
				return nil, fmt.Errorf("decode enrolment entry: period out of range: %w", ErrInvalidEventFields)
			}
			e.Periods = append(e.Periods, EnrolmentPeriod{From: time.Unix(int64(from), 0).UTC(), Until: time.Unix(int64(until), 0).UTC(), Category: cat})
		}
	default:
		return nil, fmt.Errorf("decode gate-list entry: list byte %q, want %q or %q: %w", byte(e.List), byte(DenyGateList), byte(EnrolGateList), ErrMalformed)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode %s entry: %w", e.List, d.err)
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("decode %s entry: %d trailing bytes: %w", e.List, len(d.b)-d.off, ErrMalformed)
	}
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("decode %s entry: %v: %w", e.List, err, ErrInvalidEventFields)
	}
	return e, nil
}

// VerifyGateEntry decodes a signed gate-list entry and checks its signature
// against the trusted clearing keys.
func VerifyGateEntry(b []byte, trusted []ed25519.PublicKey) (*GateEntry, error) {
	e, err := DecodeGateEntry(b)
	if err != nil {
		return nil, err
	}
	if !verifyWith(e.List.entryContext(), b, trusted) {
		return nil, fmt.Errorf("%s entry %s at version %d: %w", e.List, e.Key, e.Version, ErrUntrustedGateList)
	}
	return e, nil
}

// GateHead is clearing's signed word on a whole gate list at Version: how
// many media it holds (Count) and their DenyDigest. The deny list counts
// its listed media and digests their keys (DenyDigest.Toggle); the
// enrolments count every medium ever enrolled (an entry whose periods are
// over still counts) and digest each with its entry's version and periods
// (DenyDigest.ToggleEnrolment). A gate that has
// read a bucket whole checks its copy against the head, and drops media the
// bucket no longer holds only on a head at least as new as its own.
type GateHead struct {
	List    GateList
	Version uint64
	Count   uint64
	Digest  DenyDigest
}

// Sign encodes h and appends clearing's signature.
func (h *GateHead) Sign(key ed25519.PrivateKey) ([]byte, error) {
	if !h.List.valid() {
		return nil, fmt.Errorf("sign gate-list head: list byte %q", byte(h.List))
	}
	if h.Count > h.Version {
		return nil, fmt.Errorf("sign %s head: %d media at version %d (every medium took a version)", h.List, h.Count, h.Version)
	}
	ctx := h.List.headContext()
	msg := make([]byte, 0, len(ctx)+GateHeadSize)
	msg = append(msg, ctx...)
	msg = append(msg, GateHeadTag, GateListFormat, byte(h.List))
	msg = binary.BigEndian.AppendUint64(msg, h.Version)
	msg = binary.BigEndian.AppendUint64(msg, h.Count)
	msg = append(msg, h.Digest[:]...)
	sig := ed25519.Sign(key, msg)
	return append(msg[len(ctx):], sig...), nil
}

// DecodeGateHead parses a gate-list head without checking its signature.
func DecodeGateHead(b []byte) (*GateHead, error) {
	if err := checkGateHeader(b, GateHeadTag, "head"); err != nil {
		return nil, err
	}
	if len(b) != GateHeadSize {
		return nil, fmt.Errorf("decode gate-list head: %d bytes, want %d: %w", len(b), GateHeadSize, ErrMalformed)
	}
	d := decoder{b: b, off: 2}
	h := &GateHead{List: GateList(d.u8("list")), Version: d.u64("version"), Count: d.u64("count")}
	copy(h.Digest[:], d.bytes(32, "digest"))
	switch {
	case !h.List.valid():
		return nil, fmt.Errorf("decode gate-list head: list byte %q: %w", byte(h.List), ErrMalformed)
	case h.Count > h.Version:
		return nil, fmt.Errorf("decode %s head: %d media at version %d: %w", h.List, h.Count, h.Version, ErrInvalidEventFields)
	}
	return h, nil
}

// VerifyGateHead decodes a signed head and checks its signature.
func VerifyGateHead(b []byte, trusted []ed25519.PublicKey) (*GateHead, error) {
	h, err := DecodeGateHead(b)
	if err != nil {
		return nil, err
	}
	if !verifyWith(h.List.headContext(), b, trusted) {
		return nil, fmt.Errorf("%s head at version %d: %w", h.List, h.Version, ErrUntrustedGateList)
	}
	return h, nil
}

func checkGateHeader(b []byte, tag byte, what string) error {
	switch {
	case len(b) == 0:
		return fmt.Errorf("decode gate-list %s: empty value: %w", what, ErrMalformed)
	case b[0] != tag:
		return fmt.Errorf("decode gate-list %s: tag %q, want %q: %w", what, b[0], tag, ErrMalformed)
	case len(b) < 2:
		return fmt.Errorf("decode gate-list %s: truncated at format version: %w", what, ErrMalformed)
	case b[1] != GateListFormat:
		return fmt.Errorf("decode gate-list %s: format version %d, this build reads %d: %w", what, b[1], GateListFormat, ErrUnknownVersion)
	}
	return nil
}
