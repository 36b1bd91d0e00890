package biometrics

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"testing"

	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/internal/testenv"
)

// The stored images a camera writes for an upright picture u under each
// Exif orientation: the inverse of the turn the tag says to apply. Each is
// written out plainly (a 2x1 row [A B] turned a quarter clockwise is the
// column [A; B]).
func flipH(u *image.RGBA) *image.RGBA {
	b := u.Bounds()
	out := image.NewRGBA(b)
	for y := range b.Dy() {
		for x := range b.Dx() {
			out.Set(b.Dx()-1-x, y, u.At(x, y))
		}
	}
	return out
}

func flipV(u *image.RGBA) *image.RGBA {
	b := u.Bounds()
	out := image.NewRGBA(b)
	for y := range b.Dy() {
		for x := range b.Dx() {
			out.Set(x, b.Dy()-1-y, u.At(x, y))
		}
	}
	return out
}

func transpose(u *image.RGBA) *image.RGBA {
	b := u.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dy(), b.Dx()))
	for y := range b.Dy() {
		for x := range b.Dx() {
			out.Set(y, x, u.At(x, y))
		}
	}
	return out
}

// quarterCW turns u a quarter clockwise: its left column becomes the top row.
func quarterCW(u *image.RGBA) *image.RGBA {
	b := u.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dy(), b.Dx()))
	for y := range b.Dy() {
		for x := range b.Dx() {
			out.Set(b.Dy()-1-y, x, u.At(x, y))
		}
	}
	return out
}

// TestOrientedImage: every Exif orientation turns the stored picture back
// upright.
func TestOrientedImage(t *testing.T) {
	u := image.NewRGBA(image.Rect(0, 0, 3, 2))
	for y := range 2 {
		for x := range 3 {
			u.Set(x, y, color.RGBA{uint8(10 * (x + 1)), uint8(10 * (y + 1)), 7, 255})
		}
	}
	stored := map[int]*image.RGBA{
		1: u,
		2: flipH(u),
		3: flipV(flipH(u)),
		4: flipV(u),
		5: transpose(u),
		6: quarterCW(quarterCW(quarterCW(u))), // shown after a quarter clockwise
		7: flipV(flipH(transpose(u))),
		8: quarterCW(u), // shown after a quarter anticlockwise
	}
	for o := 1; o <= 8; o++ {
		got := orient(stored[o], o)
		if got.Bounds() != u.Bounds() {
			t.Errorf("orientation %d: bounds %v, want %v", o, got.Bounds(), u.Bounds())
			continue
		}
		for y := range 2 {
			for x := range 3 {
				if g, w := color.RGBAModel.Convert(got.At(x, y)), u.At(x, y); g != w {
					t.Errorf("orientation %d: (%d,%d) is %v, want %v", o, x, y, g, w)
				}
			}
		}
	}
}

// exifSegment is an APP1 Exif segment whose first IFD holds the entries
// given (tag, type, count, value), in the byte order named.
func exifSegment(order string, entries ...[4]uint32) []byte {
	var bo binary.AppendByteOrder = binary.LittleEndian
	if order == "MM" {
		bo = binary.BigEndian
	}
	tiff := []byte(order)
	tiff = bo.AppendUint16(tiff, 42)
	tiff = bo.AppendUint32(tiff, 8)
	tiff = bo.AppendUint16(tiff, uint16(len(entries)))
	for _, e := range entries {
		tiff = bo.AppendUint16(tiff, uint16(e[0]))
		tiff = bo.AppendUint16(tiff, uint16(e[1]))
		tiff = bo.AppendUint32(tiff, e[2])
		v := bo.AppendUint16(nil, uint16(e[3]))
		tiff = append(tiff, v[0], v[1], 0, 0)
	}
	tiff = bo.AppendUint32(tiff, 0)
	payload := append([]byte("Exif\x00\x00"), tiff...)
	seg := []byte{0xff, 0xe1}
	seg = binary.BigEndian.AppendUint16(seg, uint16(2+len(payload)))
	return append(seg, payload...)
}

// withSegment puts seg right after a JPEG's start-of-image marker.
func withSegment(jpg, seg []byte) []byte {
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

func TestExifOrientation(t *testing.T) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		t.Fatal(err)
	}
	plain := buf.Bytes()
	app0 := []byte{0xff, 0xe0, 0x00, 0x04, 'x', 'y'}
	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		{"no Exif", plain, 1},
		{"little-endian, 6", withSegment(plain, exifSegment("II", [4]uint32{0x0112, 3, 1, 6})), 6},
		{"big-endian, 8", withSegment(plain, exifSegment("MM", [4]uint32{0x0112, 3, 1, 8})), 8},
		{"after another tag and an APP0", withSegment(plain, append(app0, exifSegment("II", [4]uint32{0x010f, 2, 1, 0}, [4]uint32{0x0112, 3, 1, 3})...)), 3},
		{"out of range", withSegment(plain, exifSegment("II", [4]uint32{0x0112, 3, 1, 9})), 1},
		{"not a SHORT", withSegment(plain, exifSegment("II", [4]uint32{0x0112, 4, 1, 6})), 1},
		{"no orientation tag", withSegment(plain, exifSegment("II", [4]uint32{0x010f, 2, 1, 0})), 1},
		{"cut short", withSegment(plain, exifSegment("II", [4]uint32{0x0112, 3, 1, 6}))[:20], 1},
		{"not a JPEG", []byte("\x89PNG\r\n\x1a\n"), 1},
		{"empty", nil, 1},
	} {
		if got := exifOrientation(tc.data); got != tc.want {
			t.Errorf("%s: orientation %d, want %d", tc.name, got, tc.want)
		}
	}
}

// FuzzExifOrientation: any input gives an orientation from 1 to 8, never
// a panic.
func FuzzExifOrientation(f *testing.F) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(withSegment(buf.Bytes(), exifSegment("II", [4]uint32{0x0112, 3, 1, 6})))
	f.Add(withSegment(buf.Bytes(), exifSegment("MM", [4]uint32{0x0112, 3, 1, 8})))
	f.Fuzz(func(t *testing.T, data []byte) {
		if o := exifOrientation(data); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
	})
}

// TestPortraitTurnedUpright: a face photographed as a phone stores a
// portrait (the sensor's picture, a quarter anticlockwise, with Exif
// Orientation 6) is found, with the descriptor of the upright picture (an
// outside test saw such a photo give no face at enrolment).
func TestPortraitTurnedUpright(t *testing.T) {
	r := testRecognizer(t)
	data, err := os.ReadFile(testenv.Image(t, "elkie.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	upright, err := r.Recognize(data)
	if err != nil || len(upright) != 1 {
		t.Fatalf("the upright picture: %d faces, %v", len(upright), err)
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	u := image.NewRGBA(img.Bounds())
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			u.Set(x-img.Bounds().Min.X, y-img.Bounds().Min.Y, img.At(x, y))
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, quarterCW(quarterCW(quarterCW(u))), &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	faces, err := r.Recognize(withSegment(buf.Bytes(), exifSegment("II", [4]uint32{0x0112, 3, 1, 6})))
	if err != nil || len(faces) != 1 {
		t.Fatalf("the stored portrait with its Exif orientation: %d faces, %v", len(faces), err)
	}
	if d := gallery.Distance((*gallery.Vector)(&faces[0].Descriptor), (*gallery.Vector)(&upright[0].Descriptor)); d > 0.2 {
		t.Errorf("descriptor %.3f from the upright picture's", d)
	}
}
