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

// TestFrameReaderResync: after a corrupt frame (text, a JPEG cut short by
// the next one's start, a frame over the bound) the reader skips to the
// next frame's start and reads on; the frames after are intact.
func TestFrameReaderResync(t *testing.T) {
	frames := streamFrames(t)
	good, png, desc := frames[0], frames[len(frames)-2], frames[len(frames)-1]
	j2, j3 := frames[1], frames[2]
	for _, tc := range []struct {
		name        string
		bad         []byte
		rest, after [][]byte // the frames sent after the bad one, and those read
	}{
		{"text between frames", []byte("this is not a frame"), [][]byte{png, desc}, [][]byte{png, desc}},
		// The cut JPEG runs into the next one's start of image: the cut
		// frame is refused there and the next one read whole (it used to
		// be lost with it, and resync then found its thumbnail).
		{"a JPEG cut short", good[:len(good)/3], [][]byte{j2, j3, desc}, [][]byte{j2, j3, desc}},
		{"garbage after a start of image", []byte("\xff\xd8junk"), [][]byte{png, desc}, [][]byte{png, desc}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := bytes.Join(append([][]byte{good, tc.bad}, tc.rest...), nil)
			fr := NewFrameReader(bytes.NewReader(stream), 0)
			if f, err := fr.Next(); err != nil || !bytes.Equal(f, good) {
				t.Fatalf("first frame: %v", err)
			}
			if _, err := fr.Next(); err == nil {
				t.Fatal("the bad frame read as a frame")
			}
			if _, err := fr.Resync(); err != nil {
				t.Fatalf("resync: %v", err)
			}
			var got [][]byte
			for {
				f, err := fr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					if _, rerr := fr.Resync(); rerr != nil {
						break
					}
					continue
				}
				got = append(got, f)
			}
			if len(got) != len(tc.after) {
				t.Fatalf("%d frames after the bad one, want %d", len(got), len(tc.after))
			}
			for i := range got {
				if !bytes.Equal(got[i], tc.after[i]) {
					t.Errorf("frame %d after the bad one differs", i)
				}
			}
		})
	}
	if n, err := NewFrameReader(bytes.NewReader([]byte("junk to the end")), 0).Resync(); !errors.Is(err, io.EOF) || n != 15 {
		t.Fatalf("resync in junk to the end: %d, %v; want 15, EOF", n, err)
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
