// Package testenv finds the shared models and test data for tests. Missing
// data fails the test: a skipped biometric test is a test that never runs.
package testenv

import (
	"bytes"
	"image"
	_ "image/jpeg" // test images are JPEG
	"os"
	"path/filepath"
	"testing"
)

// Shared returns the ../shared directory next to the module root.
func Shared(t testing.TB) string {
	t.Helper()
	shared := filepath.Join(Root(t), "..", "shared")
	if _, err := os.Stat(shared); err != nil {
		t.Fatalf("testenv: shared data missing (need ../shared/models and ../shared/testdata/faces next to the repository): %v", err)
	}
	return shared
}

// Root returns the module root: the nearest directory above the test's
// working directory that holds go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("testenv: no go.mod above the test directory")
		}
		dir = parent
	}
	return dir
}

// ModelDir returns ../shared/models, failing if the descriptor model is absent.
func ModelDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join(Shared(t), "models")
	mustExist(t, filepath.Join(d, "dlib_face_recognition_resnet_model_v1.dat"))
	return d
}

// FacesDir returns ../shared/testdata/faces, failing if idols.json is absent.
func FacesDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join(Shared(t), "testdata", "faces")
	mustExist(t, filepath.Join(d, "idols.json"))
	return d
}

// Idols returns the path of idols.json.
func Idols(t testing.TB) string { return filepath.Join(FacesDir(t), "idols.json") }

// Image returns the path of a test image, failing if it is absent.
func Image(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(FacesDir(t), "images", name)
	mustExist(t, p)
	return p
}

func mustExist(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: required test data missing: %v", err)
	}
}

// Frame640 letterboxes a test image into a 640x480 RGBA frame, as a camera
// would deliver it, averaging source pixels (a box filter) when shrinking.
func Frame640(t testing.TB, name string) *image.RGBA {
	t.Helper()
	data, err := os.ReadFile(Image(t, name))
	if err != nil {
		t.Fatal(err)
	}
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("testenv: %s: %v", name, err)
	}
	return Fit(src, 640, 480)
}

// Fit scales src to fit w x h, centred on black, with a box filter.
func Fit(src image.Image, w, h int) *image.RGBA {
	b := src.Bounds()
	scale := min(float64(w)/float64(b.Dx()), float64(h)/float64(b.Dy()))
	dw, dh := int(float64(b.Dx())*scale), int(float64(b.Dy())*scale)
	ox, oy := (w-dw)/2, (h-dh)/2
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 3; i < len(dst.Pix); i += 4 {
		dst.Pix[i] = 255
	}
	for y := 0; y < dh; y++ {
		sy0 := b.Min.Y + int(float64(y)/scale)
		sy1 := max(sy0+1, b.Min.Y+int(float64(y+1)/scale))
		for x := 0; x < dw; x++ {
			sx0 := b.Min.X + int(float64(x)/scale)
			sx1 := max(sx0+1, b.Min.X+int(float64(x+1)/scale))
			var r, g, bl, n uint64
			for sy := sy0; sy < sy1; sy++ {
				for sx := sx0; sx < sx1; sx++ {
					cr, cg, cb, _ := src.At(sx, sy).RGBA()
					r, g, bl, n = r+uint64(cr), g+uint64(cg), bl+uint64(cb), n+1
				}
			}
			i := dst.PixOffset(ox+x, oy+y)
			dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2] = uint8(r/n>>8), uint8(g/n>>8), uint8(bl/n>>8)
		}
	}
	return dst
}
