package fare

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// EventID identifies one fare event. Terminals choose it (idempotency by
// client-chosen id): the first 6 bytes are the device time in milliseconds so
// ids sort roughly by time, the rest is random.
type EventID [16]byte

// NewEventID returns a fresh time-ordered random id.
func NewEventID(t time.Time) EventID {
	var id EventID
	ms := uint64(t.UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms)
	copy(id[:6], ts[2:])
	if _, err := rand.Read(id[6:]); err != nil {
		panic(fmt.Sprintf("fare: crypto/rand failed: %v", err)) // crypto/rand never fails on Linux
	}
	return id
}

// String returns the id as 32 lower-case hex digits, the form used in
// NATS message ids, logs and the settlement API.
func (id EventID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero id, which no valid event carries.
func (id EventID) IsZero() bool { return id == EventID{} }

// ParseEventID parses the 32-hex-digit form produced by String, in either
// case, with or without a 0x in front (as hashes and keys are written).
func ParseEventID(s string) (EventID, error) {
	var id EventID
	h := trimHexPrefix(s)
	if len(h) != 32 {
		// Name a character that is no hex digit first: a space or a
		// stray quote counted as a digit misleads (an outside review).
		for i, r := range h {
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return id, fmt.Errorf("event id %s: want 32 hex digits (0x optional), got %d characters, and %q at position %d is not a hex digit", quoteShort(s), len(h), r, i+1)
			}
		}
		return id, fmt.Errorf("event id %s: want 32 hex digits (0x optional), got %d", quoteShort(s), len(h))
	}
	if err := decodeHexDigits(id[:], h); err != nil {
		return id, fmt.Errorf("event id %s: %w", quoteShort(s), err)
	}
	return id, nil
}

// decodeHexDigits decodes h into dst, saying which character is not a hex
// digit in words rather than encoding/hex's ("invalid byte: U+0067 'g'").
func decodeHexDigits(dst []byte, h string) error {
	if _, err := hex.Decode(dst, []byte(h)); err != nil {
		for i, r := range h {
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return fmt.Errorf("%q at position %d is not a hex digit", r, i+1)
			}
		}
		return err
	}
	return nil
}

// quoteShort quotes s for an error message, cut to its first 40 bytes: a
// refusal names what was wrong without echoing a whole oversized input.
func quoteShort(s string) string {
	if len(s) <= 40 {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:40]) + "..."
}

// MaxIDLen bounds terminal, operator, stop, gate and rider category ids.
const MaxIDLen = 64

var errEmptyID = errors.New("empty")

// ValidateID checks an id that is used as a NATS subject token or an account
// name: 1 to MaxIDLen characters from [A-Za-z0-9_-] and '.' is not allowed
// because it separates subject tokens.
func ValidateID(s string) error {
	if s == "" {
		return errEmptyID
	}
	if len(s) > MaxIDLen {
		return fmt.Errorf("%d bytes, longer than %d", len(s), MaxIDLen)
	}
	for i, c := range s { // runes, so the error shows the character typed
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return fmt.Errorf("character %q at byte %d not in [A-Za-z0-9_-]", c, i)
		}
	}
	return nil
}

// trimHexPrefix removes one 0x or 0X in front of s: never both ("0x0X..."
// is no hex).
func trimHexPrefix(s string) string {
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		return s[2:]
	}
	return s
}
