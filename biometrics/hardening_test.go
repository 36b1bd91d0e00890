package biometrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/internal/testenv"
	"github.com/faregate/faregate/fare"
)

// TestCNNMinSide: CNN detection on an image narrower than 10 px (8x300,
// 6x480 ...) corrupted memory inside dlib and killed the process, and under
// about 5 px raised dlib fatal errors; every path to the CNN detector now
// refuses a side below MinCNNSide with ErrImageTooSmall, and HOG still takes
// any size.
func TestCNNMinSide(t *testing.T) {
	r := testRecognizer(t)
	gate, err := NewGate(GateConfig{Recognizer: r, Gallery: &fixedGallery{identify: gallery.New()}, Policy: gallery.DefaultPolicy(), Detector: CNN})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		w, h int
		ok   bool
	}{
		{8, 300, false}, {2, 300, false}, {3, 300, false}, {7, 300, false}, {9, 300, false},
		{6, 480, false}, {8, 640, false}, {9, 480, false}, {5, 480, false},
		{300, 8, false}, {1, 1, false}, {4, 4, false}, {1, 500, false}, {500, 1, false},
		{10, 480, false}, {31, 31, false}, {31, 640, false}, {640, 31, false},
		{32, 32, true}, {32, 480, true}, {480, 32, true}, {40, 300, true},
	} {
		t.Run(fmt.Sprintf("%dx%d", tc.w, tc.h), func(t *testing.T) {
			img := image.NewGray(image.Rect(0, 0, tc.w, tc.h))
			for i := range img.Pix {
				img.Pix[i] = uint8(i * 13)
			}
			want := fmt.Sprintf("biometrics: image %dx%d too small for CNN detection: each side must be at least %d px", tc.w, tc.h, MinCNNSide)
			check := func(path string, faces []Face, err error) {
				t.Helper()
				switch {
				case tc.ok && err != nil:
					t.Errorf("%s: %v", path, err)
				case !tc.ok && (!errors.Is(err, ErrImageTooSmall) || !strings.Contains(err.Error(), want)):
					t.Errorf("%s: err %v, want %q", path, err, want)
				}
			}
			data := encodePNG(t, img)
			faces, err := r.RecognizeCNN(data)
			check("RecognizeCNN", faces, err)
			faces, err = r.RecognizeImage(context.Background(), img, CNN)
			check("RecognizeImage CNN", faces, err)
			_, accepted, reason := gate.MatchFace(context.Background(), [][]byte{data}, "")
			if wantReason := fare.FaceNoFace; !tc.ok && (accepted || reason != fare.FaceBadFrame) || tc.ok && reason != wantReason {
				t.Errorf("gate with the CNN detector: accepted %v, reason %q", accepted, reason)
			}
			if _, err := r.Recognize(data); err != nil {
				t.Errorf("HOG: %v", err)
			}
		})
	}
}

// TestHasCNNAfterClose: HasCNN after Close dereferenced the freed models
// (SIGSEGV) and nothing ordered it against a concurrent Close (go test
// -race). It is false after Close, and the other calls say ErrClosed.
func TestHasCNNAfterClose(t *testing.T) {
	r, err := New(Config{ModelDir: testenv.ModelDir(t), Workers: 1, LandmarkModel: testRecognizer(t).LandmarkModel()})
	if err != nil {
		t.Fatal(err)
	}
	if !r.HasCNN() {
		t.Fatal("no CNN model before Close")
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				r.HasCNN()
			}
		}()
	}
	r.Close()
	wg.Wait()
	small := encodePNG(t, image.NewGray(image.Rect(0, 0, 64, 64)))
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"HasCNN", func() error {
			if r.HasCNN() {
				return errors.New("HasCNN true")
			}
			return ErrClosed
		}},
		{"Recognize", func() error { _, err := r.Recognize(small); return err }},
		{"RecognizeCNN", func() error { _, err := r.RecognizeCNN(small); return err }},
		{"RecognizeImage", func() error {
			_, err := r.RecognizeImage(context.Background(), image.NewGray(image.Rect(0, 0, 64, 64)), CNN)
			return err
		}},
	} {
		if err := tc.call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", tc.name, err)
		}
	}
	r.Close() // twice is fine
}

// hugeImage has bounds whose pixel count overflows int; reading a pixel
// means the pixel cap let it through.
type hugeImage struct{ r image.Rectangle }

func (h hugeImage) ColorModel() color.Model { return color.GrayModel }
func (h hugeImage) Bounds() image.Rectangle { return h.r }
func (h hugeImage) At(x, y int) color.Color {
	panic("a pixel of an image over the cap was read")
}

// TestRecognizeImageHugeBounds: Dx*Dy wrapped for bounds of 1<<32 a side (to
// 0) and Dx for bounds wider than the int range (to a negative number), and
// recognizeImage went on to convert the image.
func TestRecognizeImageHugeBounds(t *testing.T) {
	r := testRecognizer(t)
	for _, tc := range []struct {
		name string
		r    image.Rectangle
	}{
		{"1<<32 x 1<<32", image.Rect(0, 0, 1<<32, 1<<32)},
		{"1<<31 x 1<<33", image.Rect(0, 0, 1<<31, 1<<33)},
		{"1<<32+1 x 1<<32", image.Rect(0, 0, 1<<32+1, 1<<32)},
		{"1<<33 x 1<<31, off the origin", image.Rect(-1<<32, -1<<30, 1<<32, 1<<30)},
		{"wider than int", image.Rect(-1<<62, 0, 1<<62, 1)},
		{"taller than int", image.Rect(0, -1<<62, 1, 1<<62)},
		{"1 x 1<<40", image.Rect(0, 0, 1, 1<<40)},
	} {
		for _, d := range []Detector{HOG, CNN} {
			t.Run(tc.name+"/"+d.String(), func(t *testing.T) {
				var err error
				func() {
					defer func() {
						if p := recover(); p != nil {
							err = fmt.Errorf("panic: %v", p)
						}
					}()
					_, err = r.RecognizeImage(context.Background(), hugeImage{tc.r}, d)
				}()
				if !errors.Is(err, ErrImageTooLarge) {
					t.Errorf("%v: %v, want ErrImageTooLarge", tc.r, err)
				}
			})
		}
	}
}

// craftJPEG writes a decodable JPEG of w x h with every coefficient zero
// (so a few bytes cover many pixels): a frame of len(hv) components with
// those sampling factors (H<<4|V), baseline or progressive (one DC scan),
// with an Adobe APP14 segment of the given transform unless adobe < 0.
func craftJPEG(w, h int, hv []byte, progressive bool, adobe int) []byte {
	var b bytes.Buffer
	b.Write([]byte{0xff, 0xd8})
	if adobe >= 0 {
		b.Write([]byte{0xff, 0xee, 0, 14})
		b.WriteString("Adobe\x00\x64\x00\x00\x00\x00")
		b.WriteByte(byte(adobe))
	}
	b.Write([]byte{0xff, 0xdb, 0, 67, 0})
	b.Write(bytes.Repeat([]byte{1}, 64))
	sof := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(len(hv))}
	for c, f := range hv {
		sof = append(sof, byte(c+1), f, 0)
	}
	m := byte(0xc0)
	if progressive {
		m = 0xc2
	}
	b.Write([]byte{0xff, m, 0, byte(len(sof) + 2)})
	b.Write(sof)
	// Huffman tables: DC 0 and AC 0 each one 1-bit code, for symbol 0
	// (DC: no difference; AC: end of block).
	dht := []byte{0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	dht = append(dht, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	b.Write([]byte{0xff, 0xc4, 0, byte(len(dht) + 2)})
	b.Write(dht)
	sos := []byte{byte(len(hv))}
	for c := range hv {
		sos = append(sos, byte(c+1), 0x00)
	}
	bits := 2 // baseline: a DC and an AC code a block
	if progressive {
		sos, bits = append(sos, 0, 0, 0), 1 // DC first scan
	} else {
		sos = append(sos, 0, 63, 0)
	}
	b.Write([]byte{0xff, 0xda, 0, byte(len(sos) + 2)})
	b.Write(sos)
	h0, v0 := int(hv[0]>>4), int(hv[0]&15)
	if len(hv) == 1 {
		h0, v0 = 1, 1
	}
	mcus := ((w + 8*h0 - 1) / (8 * h0)) * ((h + 8*v0 - 1) / (8 * v0))
	blocks := 0
	for _, f := range hv {
		blocks += int(f>>4) * int(f&15)
	}
	if len(hv) == 1 {
		blocks = 1
	}
	b.Write(make([]byte, (mcus*blocks*bits+7)/8+2))
	b.Write([]byte{0xff, 0xd9})
	return b.Bytes()
}

// decodeAllocs decodes a JPEG and returns what the decoding allocated.
func decodeAllocs(data []byte) (image.Image, int64, error) {
	rd := bytes.NewReader(data)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	img, err := jpeg.Decode(rd)
	runtime.ReadMemStats(&m1)
	return img, int64(m1.TotalAlloc - m0.TotalAlloc), err
}

var decoderOverheadOnce = sync.OnceValue(func() int64 {
	// The decoder's own state, whatever the image: an 8x8 grey JPEG's
	// allocations less its 64-byte plane.
	_, n, err := decodeAllocs(craftJPEG(8, 8, []byte{0x11}, false, -1))
	if err != nil {
		panic(err)
	}
	return n - 64
})

// allocSlack is what the allocator may add to est bytes over a few
// allocations: size classes round up by at most 1/8, large objects to 8 KB
// pages.
func allocSlack(est int64) int64 { return est/8 + 6*8192 }

// TestJPEGCostMatchesDecoder: the JPEG cost is what image/jpeg allocates,
// measured with runtime.MemStats, for each kind of frame it decodes: never
// less, and not much more.
func TestJPEGCostMatchesDecoder(t *testing.T) {
	const w, h = 400, 300
	overhead := decoderOverheadOnce()
	t.Logf("decoder state: %d bytes", overhead)
	for _, tc := range []struct {
		name        string
		data        []byte
		bytesApixel float64 // about
	}{
		{"grey", craftJPEG(w, h, []byte{0x11}, false, -1), 1},
		{"grey progressive", craftJPEG(w, h, []byte{0x11}, true, -1), 5},
		{"YCbCr 4:2:0", craftJPEG(w, h, []byte{0x22, 0x11, 0x11}, false, -1), 1.5},
		{"YCbCr 4:2:0 progressive", craftJPEG(w, h, []byte{0x22, 0x11, 0x11}, true, -1), 7.5},
		{"YCbCr 4:4:4", craftJPEG(w, h, []byte{0x11, 0x11, 0x11}, false, -1), 3},
		{"YCbCr 4:4:4 progressive", craftJPEG(w, h, []byte{0x11, 0x11, 0x11}, true, -1), 15},
		{"RGB (Adobe transform 0)", craftJPEG(w, h, []byte{0x11, 0x11, 0x11}, false, 0), 7},
		{"RGB (Adobe transform 0) progressive", craftJPEG(w, h, []byte{0x11, 0x11, 0x11}, true, 0), 19},
		{"CMYK (Adobe transform 0)", craftJPEG(w, h, []byte{0x11, 0x11, 0x11, 0x11}, false, 0), 8},
		{"YCCK (Adobe transform 2)", craftJPEG(w, h, []byte{0x11, 0x11, 0x11, 0x11}, false, 2), 8},
		{"YCCK 2x2 (Adobe transform 2)", craftJPEG(w, h, []byte{0x22, 0x11, 0x11, 0x22}, false, 2), 6.5},
		{"CMYK progressive", craftJPEG(w, h, []byte{0x11, 0x11, 0x11, 0x11}, true, 0), 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, alloc, err := decodeAllocs(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			est, _ := jpegCost(tc.data, w, h)
			alloc -= overhead
			t.Logf("allocated %d bytes (%.2f a pixel), estimated %d (%.2f a pixel)", alloc, float64(alloc)/(w*h), est, float64(est)/(w*h))
			if est < alloc-allocSlack(est) {
				t.Errorf("estimated %d bytes, decoding allocated %d", est, alloc)
			}
			if est > alloc+alloc/10 {
				t.Errorf("estimated %d bytes, decoding allocated only %d", est, alloc)
			}
			if bpp := float64(est) / (w * h); bpp < tc.bytesApixel || bpp > tc.bytesApixel*1.1 {
				t.Errorf("%.2f bytes a pixel, want about %.1f", bpp, tc.bytesApixel)
			}
		})
	}
}

// insertAt returns b with junk inserted at i.
func insertAt(b []byte, i int, junk string) []byte {
	return append(append(append([]byte(nil), b[:i]...), junk...), b[i:]...)
}

// TestDecodeBudgetBypass: a JPEG's decoding cost could be understated.
// The frame header was read by a strict walk of the segments that gave up,
// costing the image by its colour model alone, at any byte Go's decoder
// skips (junk after SOI or after a segment's declared length, "\xff\x00",
// a stray RSTn): a progressive JPEG costs 7.5 bytes a pixel at 4:2:0, not
// 3. And 4-component (CMYK, YCCK) JPEGs were costed at 4 bytes a pixel and
// RGB ones at 4, where the decoder allocates 8 and 7.
func TestDecodeBudgetBypass(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 31)
	}
	baseline := encodeJPEG(t, src) // 4:2:0: 1.5 bytes a pixel, MCUs whole
	sof := bytes.Index(baseline, []byte{0xff, 0xc0})
	progressive := bytes.Clone(baseline)
	progressive[sof+1] = 0xc2 // 7.5 bytes a pixel
	const maxPixels = 64 * 64 // a budget of 16384 bytes
	for _, tc := range []struct {
		name string
		data []byte
		ok   bool
	}{
		{"baseline", baseline, true},
		{"baseline, junk after SOI", insertAt(baseline, 2, "\x00"), true},
		{"progressive", progressive, false},
		{"progressive, a zero byte after SOI", insertAt(progressive, 2, "\x00"), false},
		{"progressive, junk after the segment before SOF", insertAt(progressive, sof, "\x00\x00\x00\x01\x01"), false},
		{"progressive, a run of junk before SOF", insertAt(progressive, sof, strings.Repeat("junk", 250)), false},
		{"progressive, \\xff\\x00 before SOF", insertAt(progressive, sof, "\xff\x00"), false},
		{"progressive, an RST marker before SOF", insertAt(progressive, sof, "\xff\xd3"), false},
		{"progressive, fill bytes before SOF", insertAt(progressive, sof, "\xff\xff\xff"), false},
		{"progressive, junk ending in fill bytes", insertAt(progressive, sof, "ab\xff\xff"), false},
		{"grey 4:4:4 baseline", craftJPEG(64, 64, []byte{0x11}, false, -1), true},
		{"YCbCr 4:4:4 baseline", craftJPEG(64, 64, []byte{0x11, 0x11, 0x11}, false, 1), true},
		{"RGB (Adobe transform 0)", craftJPEG(64, 64, []byte{0x11, 0x11, 0x11}, false, 0), false},
		{"CMYK (Adobe transform 0)", craftJPEG(64, 64, []byte{0x11, 0x11, 0x11, 0x11}, false, 0), false},
		{"YCCK (Adobe transform 2)", craftJPEG(64, 64, []byte{0x11, 0x11, 0x11, 0x11}, false, 2), false},
		{"CMYK, junk after SOI", insertAt(craftJPEG(64, 64, []byte{0x11, 0x11, 0x11, 0x11}, false, 0), 2, "\x00"), false},
		{"YCbCr 4:4:4 progressive, junk after DQT", insertAt(craftJPEG(64, 64, []byte{0x11, 0x11, 0x11}, true, -1), 2+4+65, "\x00\x00\x00\x01\x01"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := jpeg.DecodeConfig(bytes.NewReader(tc.data)); err != nil {
				t.Fatalf("Go's decoder refuses the input: %v", err)
			}
			err := CheckDecodeBudget(tc.data, maxPixels)
			if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrImageTooLarge) {
				t.Errorf("CheckDecodeBudget: %v, want ok %v", err, tc.ok)
			}
			// What the frame header says, the decoder allocates.
			if _, alloc, err := decodeAllocs(tc.data); err == nil {
				est, _ := jpegCost(tc.data, 64, 64)
				if alloc -= decoderOverheadOnce(); est < alloc-allocSlack(est) {
					t.Errorf("estimated %d bytes, decoding allocated %d", est, alloc)
				}
			}
		})
	}
}

// FuzzDecodeBudget: for any JPEG Go's decoder decodes, the cost the budget
// check estimates is at least what decoding allocates (less the decoder's
// fixed state and the allocator's rounding). Inputs are kept small.
func FuzzDecodeBudget(f *testing.F) {
	for _, seed := range [][]byte{
		craftJPEG(40, 30, []byte{0x22, 0x11, 0x11}, false, -1),
		craftJPEG(40, 30, []byte{0x11, 0x11, 0x11}, true, -1),
		insertAt(craftJPEG(48, 48, []byte{0x11, 0x11, 0x11}, true, -1), 2+4+65, "\x00\x00\x00\x01\x01"),
		insertAt(craftJPEG(40, 30, []byte{0x22, 0x11, 0x11}, true, -1), 2, "\x00"),
		craftJPEG(40, 30, []byte{0x11, 0x11, 0x11, 0x11}, false, 0),
		craftJPEG(40, 30, []byte{0x22, 0x11, 0x11, 0x22}, true, 2),
		craftJPEG(40, 30, []byte{0x11, 0x11, 0x11}, false, 0),
		craftJPEG(40, 30, []byte{0x11}, true, -1),
	} {
		f.Add(seed)
	}
	overhead := decoderOverheadOnce()
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckDecodeBudget(data, 1<<16) // never panics
		cfg, err2 := jpeg.DecodeConfig(bytes.NewReader(data))
		if err2 != nil || cfg.Width*cfg.Height > 1<<16 || cfg.Width == 0 || cfg.Height == 0 {
			return // not a JPEG, too big to be cheap, or empty (refused)
		}
		if err != nil && !errors.Is(err, ErrImageTooLarge) {
			t.Fatalf("DecodeConfig accepts it, CheckDecodeBudget says %v", err)
		}
		_, alloc, err := decodeAllocs(data)
		if err != nil {
			return
		}
		est, _ := jpegCost(data, cfg.Width, cfg.Height)
		if alloc -= overhead; est < alloc-allocSlack(est) {
			t.Fatalf("%dx%d %v: estimated %d bytes, decoding allocated %d", cfg.Width, cfg.Height, cfg.ColorModel, est, alloc)
		}
	})
}
