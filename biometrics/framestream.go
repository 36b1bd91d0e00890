package biometrics

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FrameReader splits a camera's stream of frames: JPEG images back to back
// (MJPEG, as `ffmpeg -f mjpeg` or `-f image2pipe` writes them), PNG images
// back to back, or descriptor frames (DescriptorFrame), in any mix. It reads
// each frame's own structure (JPEG segments and entropy-coded data, PNG
// chunks), so a thumbnail inside a JPEG does not end the frame early.
type FrameReader struct {
	r   *bufio.Reader
	max int
	n   int // frames read
	// soiNext: a JPEG ended at another's start of image, whose 0xFF it
	// took; the 0xD8 is next in the stream and begins the next frame.
	soiNext bool
}

// DefaultMaxFrame bounds one frame in a stream: a 4K JPEG is a few MB.
const DefaultMaxFrame = 16 << 20

// ErrFrameTooLarge is returned for a frame larger than the reader's bound.
var ErrFrameTooLarge = errors.New("biometrics: frame too large")

// NewFrameReader reads frames of at most maxFrame bytes (DefaultMaxFrame
// when 0) from r.
func NewFrameReader(r io.Reader, maxFrame int) *FrameReader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10), max: maxFrame}
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// Next returns the next frame, io.EOF at the end of a stream that ends
// between frames, and an error naming the frame and what is wrong
// otherwise (after which Resync finds the next frame).
func (fr *FrameReader) Next() ([]byte, error) {
	if fr.soiNext {
		fr.soiNext = false
		fr.n++
		f, err := fr.take([]byte{0xFF}, 1) // the D8
		if err == nil {
			f, err = fr.jpeg(f)
		}
		return fr.frame(f, err)
	}
	head, err := fr.r.Peek(4)
	if len(head) == 0 && errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	fr.n++
	var f []byte
	switch {
	case len(head) >= 2 && head[0] == 0xFF && head[1] == 0xD8:
		if f, err = fr.take(nil, 2); err == nil {
			f, err = fr.jpeg(f)
		}
	case len(head) >= 4 && bytes.Equal(head, pngSignature[:4]):
		f, err = fr.png()
	case len(head) >= 4 && bytes.Equal(head, descriptorMagic):
		f, err = fr.take(nil, DescriptorFrameSize)
	default:
		return nil, fmt.Errorf("frame %d: starts with %x: not a JPEG, PNG or descriptor frame", fr.n, head)
	}
	return fr.frame(f, err)
}

// frame is Next's answer for a frame read as f with err.
func (fr *FrameReader) frame(f []byte, err error) ([]byte, error) {
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("frame %d: %w", fr.n, err)
	}
	return f, nil
}

func (fr *FrameReader) take(f []byte, n int) ([]byte, error) {
	if len(f)+n > fr.max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrFrameTooLarge, fr.max)
	}
	start := len(f)
	f = append(f, make([]byte, n)...)
	if _, err := io.ReadFull(fr.r, f[start:]); err != nil {
		return nil, err
	}
	return f, nil
}

func (fr *FrameReader) byte(f []byte) ([]byte, byte, error) {
	if len(f)+1 > fr.max {
		return nil, 0, fmt.Errorf("%w: more than %d bytes", ErrFrameTooLarge, fr.max)
	}
	c, err := fr.r.ReadByte()
	if err != nil {
		return nil, 0, err
	}
	return append(f, c), c, nil
}

// jpeg reads the rest of one JPEG whose SOI is f: segments (marker and
// length) until SOS, entropy-coded data until the next marker that is not
// a stuffed 0xFF00 or a restart, and so on until EOI. Another SOI where a
// marker should be ends the frame in error and is left to begin the next.
func (fr *FrameReader) jpeg(f []byte) ([]byte, error) {
	var c byte
	var err error
	haveFF := false // the entropy-coded data ended at a marker's 0xFF
	for {
		// At a marker: 0xFF (fill bytes allowed), then its code.
		c = 0xFF
		if !haveFF {
			if f, c, err = fr.byte(f); err != nil {
				return nil, err
			}
		}
		haveFF = false
		if c != 0xFF {
			return nil, fmt.Errorf("JPEG: byte %#x where a marker should start (offset %d)", c, len(f)-1)
		}
		for c == 0xFF { // fill bytes, then the marker's code
			next, err := fr.r.Peek(1)
			if err != nil {
				return nil, err
			}
			if next[0] == 0xD8 {
				// Another image starts here: this one was cut short.
				// Leave its start to the next frame rather than lose it.
				fr.soiNext = true
				return nil, fmt.Errorf("JPEG: a second start of image inside the frame (offset %d): the frame was cut short", len(f)-1)
			}
			if f, c, err = fr.byte(f); err != nil {
				return nil, err
			}
		}
		switch {
		case c == 0xD9: // EOI
			return f, nil
		case c == 0x01 || (c >= 0xD0 && c <= 0xD7):
			continue // no length
		case c == 0x00:
			return nil, fmt.Errorf("JPEG: stuffed byte outside entropy-coded data (offset %d)", len(f)-2)
		}
		if f, err = fr.take(f, 2); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint16(f[len(f)-2:]))
		if n < 2 {
			return nil, fmt.Errorf("JPEG: segment %#x of length %d", c, n)
		}
		if f, err = fr.take(f, n-2); err != nil {
			return nil, err
		}
		if c != 0xDA { // not SOS: the next marker follows
			continue
		}
		// Entropy-coded data: until 0xFF followed by a marker code other
		// than 0x00 (stuffing) and RSTn.
		for {
			if f, c, err = fr.byte(f); err != nil {
				return nil, err
			}
			if c != 0xFF {
				continue
			}
			next, err := fr.r.Peek(1)
			if err != nil {
				return nil, err
			}
			switch n := next[0]; {
			case n == 0xFF: // a fill byte: the marker follows
				continue
			case n == 0x00 || (n >= 0xD0 && n <= 0xD7): // stuffing, restart
				if f, _, err = fr.byte(f); err != nil {
					return nil, err
				}
				continue
			}
			haveFF = true // a marker: its code comes next
			break
		}
	}
}

// png reads one PNG: the signature and chunks until IEND.
func (fr *FrameReader) png() ([]byte, error) {
	f, err := fr.take(nil, len(pngSignature))
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(f, pngSignature) {
		return nil, fmt.Errorf("PNG: bad signature %x", f)
	}
	for {
		if f, err = fr.take(f, 8); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(f[len(f)-8:])
		typ := string(f[len(f)-4:])
		if n > uint32(fr.max) {
			return nil, fmt.Errorf("%w: PNG chunk %q of %d bytes", ErrFrameTooLarge, typ, n)
		}
		if f, err = fr.take(f, int(n)+4); err != nil { // data and CRC
			return nil, err
		}
		if typ == "IEND" {
			return f, nil
		}
	}
}

// Resync skips to the start of the next frame (a JPEG start of image
// followed by a marker, a PNG signature or a descriptor frame's magic)
// after Next failed, and says how many bytes it skipped; io.EOF when the
// stream ends first. A camera that sent one corrupt frame goes on with the
// next.
func (fr *FrameReader) Resync() (skipped int, err error) {
	if fr.soiNext {
		return 0, nil // the next frame's start is already found
	}
	for {
		head, err := fr.r.Peek(4)
		if len(head) < 4 {
			if len(head) > 0 {
				skipped += len(head)
				_, _ = fr.r.Discard(len(head))
			}
			if err == nil {
				err = io.EOF
			}
			return skipped, err
		}
		if (head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) || bytes.Equal(head, pngSignature[:4]) || bytes.Equal(head, descriptorMagic) {
			return skipped, nil
		}
		if _, err := fr.r.Discard(1); err != nil {
			return skipped, err
		}
		skipped++
	}
}
