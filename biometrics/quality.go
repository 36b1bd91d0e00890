package biometrics

import (
	"errors"
	"fmt"
)

// DefaultMinFaceSize is the smallest face side, in pixels, accepted at
// enrolment. The descriptor network sees a 150x150 chip; a much smaller face
// is upsampled into it and its template is worse for every later match.
const DefaultMinFaceSize = 100

// Errors of the enrolment quality gate.
var (
	ErrNoFace        = errors.New("biometrics: no face found")
	ErrMultipleFaces = errors.New("biometrics: more than one face")
	ErrFaceTooSmall  = errors.New("biometrics: face too small")
)

// Quality is the enrolment quality gate.
type Quality struct {
	// MinFaceSize is the smallest accepted width and height of the face
	// rectangle; zero means DefaultMinFaceSize.
	MinFaceSize int
}

// Single returns the only face, or an error saying why there is not
// exactly one usable face.
func (q Quality) Single(faces []Face) (Face, error) {
	min := q.MinFaceSize
	if min <= 0 {
		min = DefaultMinFaceSize
	}
	switch {
	case len(faces) == 0:
		return Face{}, ErrNoFace
	case len(faces) > 1:
		return Face{}, fmt.Errorf("%w: found %d", ErrMultipleFaces, len(faces))
	}
	f := faces[0]
	if w, h := f.Rectangle.Dx(), f.Rectangle.Dy(); w < min || h < min {
		return Face{}, fmt.Errorf("%w: %dx%d pixels, need at least %dx%d", ErrFaceTooSmall, w, h, min, min)
	}
	return f, nil
}
