package templates

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Dim is the descriptor length.
const Dim = 128

// recordVersion is the first byte of every stored value, so the format can
// change without misreading old records.
const recordVersion = 1

// Consent records who agreed to face enrolment, when, and for what.
type Consent struct {
	// GivenBy is who consented: the subject, or a guardian's name.
	GivenBy string
	// At is when consent was given.
	At time.Time
	// Purpose is what the templates may be used for, e.g.
	// "concession card verification".
	Purpose string
}

func (c Consent) validate() error {
	switch {
	case c.GivenBy == "":
		return errors.New("consent: who gave it is missing")
	case c.At.IsZero():
		return errors.New("consent: time is missing")
	case c.Purpose == "":
		return errors.New("consent: purpose is missing")
	case len(c.GivenBy) > maxField || len(c.Purpose) > maxField:
		return errors.New("consent: field too long")
	}
	return nil
}

// Template is one stored descriptor. No image is ever stored.
type Template struct {
	Subject    string
	Seq        uint64 // unique within the store
	Descriptor [Dim]float32
	// ModelID names the pipeline that made the descriptor; descriptors of
	// different pipelines must not be compared.
	ModelID string
	Created time.Time
}

const maxField = 1024

var errRecord = errors.New("templates: corrupt record")

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func readString(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, errRecord
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, errRecord
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

// encodeTemplate: version, created (unix ns), model id, 128 float32 LE.
// The subject and sequence live in the key.
func encodeTemplate(t Template) []byte {
	b := make([]byte, 0, 1+8+2+len(t.ModelID)+4*Dim)
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Created.UnixNano()))
	b = appendString(b, t.ModelID)
	for _, v := range t.Descriptor {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func decodeTemplate(b []byte) (Template, error) {
	var t Template
	if len(b) < 1+8 || b[0] != recordVersion {
		return t, fmt.Errorf("%w: bad header", errRecord)
	}
	t.Created = time.Unix(0, int64(binary.BigEndian.Uint64(b[1:9]))).UTC()
	var err error
	if t.ModelID, b, err = readString(b[9:]); err != nil {
		return t, err
	}
	if len(b) != 4*Dim {
		return t, fmt.Errorf("%w: descriptor is %d bytes", errRecord, len(b))
	}
	for i := range t.Descriptor {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return t, fmt.Errorf("%w: descriptor value not finite", errRecord)
		}
		t.Descriptor[i] = v
	}
	return t, nil
}

// encodeConsent: version, time (unix ns), given by, purpose.
func encodeConsent(c Consent) []byte {
	b := []byte{recordVersion}
	b = binary.BigEndian.AppendUint64(b, uint64(c.At.UnixNano()))
	b = appendString(b, c.GivenBy)
	return appendString(b, c.Purpose)
}

func decodeConsent(b []byte) (Consent, error) {
	var c Consent
	if len(b) < 1+8 || b[0] != recordVersion {
		return c, fmt.Errorf("%w: bad header", errRecord)
	}
	c.At = time.Unix(0, int64(binary.BigEndian.Uint64(b[1:9]))).UTC()
	var err error
	if c.GivenBy, b, err = readString(b[9:]); err != nil {
		return c, err
	}
	if c.Purpose, b, err = readString(b); err != nil {
		return c, err
	}
	if len(b) != 0 {
		return c, fmt.Errorf("%w: trailing bytes", errRecord)
	}
	return c, nil
}
