package biometrics

import (
	"bytes"
	"errors"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/faregate/faregate/biometrics/internal/testenv"
)

// streamFrames is every labelled image of ../shared as a camera would
// stream them (their EXIF thumbnails are JPEGs inside the JPEG), a PNG and
// a descriptor frame.
func streamFrames(t testing.TB) [][]byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(testenv.FacesDir(t), "images", "*.jpg"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no images: %v", err)
	}
	var frames [][]byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	var p bytes.Buffer
	if err := png.Encode(&p, image.NewGray(image.Rect(0, 0, 64, 48))); err != nil {
		t.Fatal(err)
	}
	var d Descriptor
	d[0], d[127] = 0.25, -0.125
	return append(frames, p.Bytes(), DescriptorFrame(d))
}

func TestFrameReader(t *testing.T) {
	frames := streamFrames(t)
	stream := bytes.Join(frames, nil)
	fr := NewFrameReader(bytes.NewReader(stream), 0)
	for i, want := range frames {
		got, err := fr.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, want %d", i, len(got), len(want))
		}
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}

	for _, tc := range []struct {
		name   string
		stream []byte
		max    int
		want   error
		detail string
	}{
		{"cut in the middle of a JPEG", stream[:len(frames[0])/2], 0, io.ErrUnexpectedEOF, "frame 1"},
		{"cut in a PNG", frames[len(frames)-2][:20], 0, io.ErrUnexpectedEOF, "frame 1"},
		{"cut descriptor frame", frames[len(frames)-1][:100], 0, io.ErrUnexpectedEOF, "frame 1"},
		{"not a frame", []byte("GIF89a...."), 0, nil, "not a JPEG, PNG or descriptor frame"},
		{"frame over the bound", frames[0], 1000, ErrFrameTooLarge, "frame 1"},
		{"garbage after SOI", []byte("\xff\xd8junk"), 0, nil, "where a marker should start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFrameReader(bytes.NewReader(tc.stream), tc.max).Next()
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !bytes.Contains([]byte(err.Error()), []byte(tc.detail)) {
				t.Fatalf("got %v, want %v naming %q", err, tc.want, tc.detail)
			}
		})
	}
}

func FuzzFrameReader(f *testing.F) {
	frames := streamFrames(f)
	f.Add(bytes.Join(frames[len(frames)-3:], nil))
	f.Add(frames[len(frames)-2])
	f.Add([]byte("\xff\xd8\xff\xda\x00\x02\xff\x00\xff\xd0\xff\xd9"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFrameReader(bytes.NewReader(b), 1<<16)
		var got []byte
		for {
			frame, err := fr.Next()
			if err != nil {
				break
			}
			got = append(got, frame...)
		}
		// Frames are the stream's bytes, in order, none invented.
		if !bytes.HasPrefix(b, got) {
			t.Fatalf("frames are not a prefix of the stream")
		}
	})
}
