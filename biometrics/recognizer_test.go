package biometrics

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faregate/faregate/biometrics/gallery"
	"github.com/faregate/faregate/biometrics/internal/testenv"
)

var (
	recOnce sync.Once
	rec     *Recognizer
	recErr  error
)

// testRecognizer loads the models once per test binary (the 68-point model
// alone takes most of a second).
func testRecognizer(t testing.TB) *Recognizer {
	t.Helper()
	dir := testenv.ModelDir(t)
	recOnce.Do(func() { rec, recErr = New(Config{ModelDir: dir, Workers: 2}) })
	if recErr != nil {
		t.Fatalf("load models: %v", recErr)
	}
	return rec
}

func idolsGallery(t testing.TB) *gallery.Gallery {
	t.Helper()
	ds := idolsDataset(t)
	g := gallery.New()
	for _, s := range ds.Samples {
		if err := g.Add(s.Label, s.Descriptor); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// go-face's TestIdols: each image gives exactly one HOG face, classified by
// the 10-nearest vote against idols.json.
func TestIdols(t *testing.T) {
	r := testRecognizer(t)
	g := idolsGallery(t)
	cases := []struct{ image, want string }{
		{"elkie.jpg", "Elkie, CLC"},
		{"chaeyoung.jpg", "Chaeyoung, Twice"},
		{"chaeyoung2.jpg", "Chaeyoung, Twice"},
		{"sejeong.jpg", "Sejeong, Gugudan"},
		{"jimin.jpg", "Jimin, AOA"},
		{"jimin2.jpg", "Jimin, AOA"},
		{"jimin4.jpg", "Jimin, AOA"},
		{"meiqi.jpg", "Mei Qi, WJSN"},
		{"chaeyeon.jpg", "Chaeyeon, DIA"},
		{"chaeyeon3.jpg", "Chaeyeon, DIA"},
		{"tzuyu2.jpg", "Tzuyu, Twice"},
		{"nayoung.jpg", "Nayoung, PRISTIN"},
		{"luda2.jpg", "Luda, WJSN"},
		{"joy.jpg", "Joy, Red Velvet"},
	}
	for _, tc := range cases {
		t.Run(tc.image, func(t *testing.T) {
			faces, err := r.RecognizeFile(testenv.Image(t, tc.image))
			if err != nil {
				t.Fatal(err)
			}
			if len(faces) != 1 {
				t.Fatalf("%d faces, want 1", len(faces))
			}
			f := faces[0]
			if len(f.Shapes) != 68 && len(f.Shapes) != 5 {
				t.Errorf("%d landmarks", len(f.Shapes))
			}
			got, _ := g.Vote(f.Descriptor, 10)
			if got != tc.want {
				t.Errorf("classified as %q, want %q", got, tc.want)
			}
		})
	}
}

// go-face's example: pristin.jpg has 10 faces, left to right these people.
func TestPristin(t *testing.T) {
	r := testRecognizer(t)
	g := idolsGallery(t)
	faces, err := r.RecognizeFile(testenv.Image(t, "pristin.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(faces) != 10 {
		t.Fatalf("%d faces, want 10", len(faces))
	}
	want := []string{"Sungyeon", "Yehana", "Roa", "Eunwoo", "Xiyeon", "Kyulkyung", "Nayoung", "Rena", "Kyla", "Yuha"}
	for i, f := range faces {
		if i > 0 && f.Rectangle.Min.X < faces[i-1].Rectangle.Min.X {
			t.Errorf("faces not sorted left to right at %d", i)
		}
		got, _ := g.Vote(f.Descriptor, 10)
		if got != want[i]+", PRISTIN" {
			t.Errorf("face %d: %q, want %s", i, got, want[i])
		}
	}
}

func encodePNG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withPNGChunk inserts a chunk of type typ after a PNG's header chunk.
func withPNGChunk(data []byte, typ string, body []byte) []byte {
	const at = 8 + 4 + 4 + 13 + 4 // signature, IHDR's length, type, data, CRC
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	chunk = append(append(chunk, typ...), body...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	return append(append(slices.Clone(data[:at]), chunk...), data[at:]...)
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func frame640(t testing.TB, name string) *image.RGBA { return testenv.Frame640(t, name) }

// A header that claims a huge PNG: rejected before any pixel is allocated.
func hugePNG() []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := []byte{'I', 'H', 'D', 'R', 0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 2, 0, 0, 0} // 100000x100000 RGB
	b.Write([]byte{0, 0, 0, 13})
	b.Write(chunk)
	b.Write(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(chunk)))
	return b.Bytes()
}

func TestBadAndOddInputs(t *testing.T) {
	r := testRecognizer(t)
	jpg, err := os.ReadFile(testenv.Image(t, "elkie.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	blank := image.NewGray(image.Rect(0, 0, 640, 480))
	for i := range blank.Pix {
		blank.Pix[i] = 128
	}
	face := frame640(t, "nayoung.jpg")
	cases := []struct {
		name    string
		data    []byte
		wantErr error // nil: no error
		isLoad  bool  // want *ImageLoadError
		faces   int
	}{
		{name: "empty", data: nil, wantErr: ErrEmptyImage},
		{name: "not an image", data: []byte("hello, this is not an image at all"), wantErr: ErrUnsupportedFormat},
		{name: "gif", data: []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), wantErr: ErrUnsupportedFormat},
		{name: "truncated jpeg", data: jpg[:len(jpg)/3], isLoad: true},
		{name: "jpeg header only", data: jpg[:200], isLoad: true},
		{name: "huge png", data: hugePNG(), wantErr: ErrImageTooLarge},
		{name: "no face png", data: encodePNG(t, blank), faces: 0},
		{name: "tiny png", data: encodePNG(t, image.NewGray(image.Rect(0, 0, 1, 1))), faces: 0},
		{name: "face png", data: encodePNG(t, face), faces: 1},
		{name: "face jpeg 640x480", data: encodeJPEG(t, face), faces: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			faces, err := r.Recognize(tc.data)
			var le *ImageLoadError
			switch {
			case tc.isLoad:
				if !errors.As(err, &le) {
					t.Fatalf("err = %v, want ImageLoadError", err)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if len(faces) != tc.faces {
					t.Fatalf("%d faces, want %d", len(faces), tc.faces)
				}
			}
		})
	}
}

// TestRecognizeFileRefusesWhatIsNoFile: a picture file is read only if it
// is a regular file, and no further than the pixel budget: a FIFO no one
// writes held `faces enrol` up for ever and /dev/zero grew it by gigabytes
// (an outside review). A real picture is read as before.
func TestRecognizeFileRefusesWhatIsNoFile(t *testing.T) {
	r := testRecognizer(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.jpg")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "zero.jpg")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, link, "/dev/zero", "/dev/urandom", dir} {
		done := make(chan error, 1)
		go func() { _, err := r.RecognizeFileContext(context.Background(), path, HOG); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: %v, want refused as not a regular file", path, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still reading after 10 s", path)
		}
	}
	faces, err := r.RecognizeFileContext(context.Background(), testenv.Image(t, "elkie.jpg"), HOG)
	if err != nil || len(faces) != 1 {
		t.Errorf("a picture file: %d faces, %v; want one", len(faces), err)
	}
}

func TestQualityGate(t *testing.T) {
	r := testRecognizer(t)
	one, err := r.RecognizeFile(testenv.Image(t, "nayoung.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	group, err := r.RecognizeFile(testenv.Image(t, "pristin.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	var q Quality
	if _, err := q.Single(one); err != nil {
		t.Errorf("one large face: %v", err)
	}
	if _, err := q.Single(nil); !errors.Is(err, ErrNoFace) {
		t.Errorf("no face: %v", err)
	}
	if _, err := q.Single(group); !errors.Is(err, ErrMultipleFaces) {
		t.Errorf("group (%d faces): %v", len(group), err)
	}
	small := []Face{{Rectangle: image.Rect(0, 0, 60, 60)}}
	if _, err := q.Single(small); !errors.Is(err, ErrFaceTooSmall) {
		t.Errorf("small face: %v", err)
	}
}

func TestCNN(t *testing.T) {
	r := testRecognizer(t)
	if !r.HasCNN() {
		t.Fatal("CNN model missing from the model directory")
	}
	faces, err := r.RecognizeCNN(encodeJPEG(t, frame640(t, "nayoung.jpg")))
	if err != nil {
		t.Fatal(err)
	}
	if len(faces) != 1 {
		t.Fatalf("CNN found %d faces, want 1", len(faces))
	}
	hog, err := r.Recognize(encodeJPEG(t, frame640(t, "nayoung.jpg")))
	if err != nil || len(hog) != 1 {
		t.Fatalf("HOG: %v, %d faces", err, len(hog))
	}
	// Both detectors feed the same alignment: the descriptors agree closely.
	if d := gallery.Distance((*gallery.Vector)(&faces[0].Descriptor), (*gallery.Vector)(&hog[0].Descriptor)); d > 0.15 {
		t.Errorf("CNN and HOG descriptors differ by %.3f", d)
	}
	big := image.NewGray(image.Rect(0, 0, 2000, 1000))
	if _, err := r.RecognizeCNN(encodePNG(t, big)); !errors.Is(err, ErrImageTooLarge) {
		t.Errorf("CNN on 2 MP: %v, want ErrImageTooLarge", err)
	}
}

// Many goroutines at once give the same answers as one.
func TestConcurrentRecognize(t *testing.T) {
	r := testRecognizer(t)
	data := encodeJPEG(t, frame640(t, "nayoung.jpg"))
	want, err := r.Recognize(data)
	if err != nil || len(want) != 1 {
		t.Fatalf("%v %d", err, len(want))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				got, err := r.RecognizeContext(context.Background(), data, HOG)
				if err != nil {
					errs <- err
					return
				}
				if len(got) != 1 || got[0].Descriptor != want[0].Descriptor || got[0].Rectangle != want[0].Rectangle {
					errs <- errors.New("concurrent result differs")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestContextCancelled(t *testing.T) {
	r, err := New(Config{ModelDir: testenv.ModelDir(t), Workers: 1, LandmarkModel: testRecognizer(t).LandmarkModel()})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := r.acquire(context.Background()) // hold the only worker
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.RecognizeContext(ctx, encodePNG(t, image.NewGray(image.Rect(0, 0, 8, 8))), HOG); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	r.pool <- w
	r.Close()
	if _, err := r.Recognize(encodePNG(t, image.NewGray(image.Rect(0, 0, 8, 8)))); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func rssKB(t testing.TB) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestNoLeak runs a few thousand cheap calls through every path that
// reaches C (image copy, HOG, error returns) and through the decoders, and
// checks that resident memory stops growing.
func TestNoLeak(t *testing.T) {
	r := testRecognizer(t)
	jpg, err := os.ReadFile(testenv.Image(t, "elkie.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	small := image.NewRGBA(image.Rect(0, 0, 96, 96))
	for i := range small.Pix {
		small.Pix[i] = uint8(i * 7)
	}
	inputs := [][]byte{
		nil, []byte("junk"), jpg[:300], hugePNG(),
		encodePNG(t, small), encodeJPEG(t, small),
	}
	run := func(n int) {
		for i := range n {
			r.Recognize(inputs[i%len(inputs)])
		}
	}
	run(600) // warm up: pools, allocator arenas
	runtime.GC()
	before := rssKB(t)
	run(3000)
	runtime.GC()
	after := rssKB(t)
	t.Logf("RSS %d KB -> %d KB after 3000 calls", before, after)
	// A leak of even one 96x96 image copy per call would be 80 MB.
	if after-before > 16<<10 {
		t.Errorf("RSS grew by %d KB over 3000 calls", after-before)
	}
}

func TestFindModelDir(t *testing.T) {
	if d, _ := FindModelDir("/x"); d != "/x" {
		t.Errorf("flag ignored: %s", d)
	}
	t.Setenv(ModelsEnv, "/from/env")
	if d, _ := FindModelDir(""); d != "/from/env" {
		t.Errorf("env ignored: %s", d)
	}
	t.Setenv(ModelsEnv, "")
	t.Chdir(testenv.Root(t))
	if d, err := FindModelDir(""); err != nil || !strings.HasSuffix(d, "models") {
		t.Errorf("default: %q %v", d, err)
	}
	if _, err := New(Config{ModelDir: t.TempDir()}); err == nil {
		t.Error("New with an empty model dir succeeded")
	}
}

// TestDecodeBudget: an image is refused by its decoded size, not only its
// pixel count: a 16-bit PNG decodes to 8 bytes a pixel, so under the same
// budget it may have half the pixels of an 8-bit one (a 168 KB PNG of one
// colour at 40 megapixels cost a gate over a gigabyte).
func TestDecodeBudget(t *testing.T) {
	const maxPixels = 1000 // a budget of 4000 decoded bytes
	rect := image.Rect(0, 0, 30, 30)
	for _, tc := range []struct {
		name string
		img  image.Image
		ok   bool
	}{
		{"8-bit RGBA, 900 pixels", image.NewNRGBA(rect), true},
		{"16-bit RGBA, 900 pixels", image.NewNRGBA64(rect), false},
		{"16-bit RGBA, 400 pixels", image.NewNRGBA64(image.Rect(0, 0, 20, 20)), true},
		{"8-bit grey, 900 pixels", image.NewGray(rect), true},
		{"16-bit grey, 900 pixels", image.NewGray16(rect), true},
		{"8-bit RGBA, 1024 pixels", image.NewNRGBA(image.Rect(0, 0, 32, 32)), false},
	} {
		_, err := decode(encodePNG(t, tc.img), maxPixels)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrImageTooLarge) {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	// Grey with a transparent shade (a tRNS chunk after the header)
	// decodes to NRGBA or NRGBA64, 4 or 8 bytes a pixel, though
	// DecodeConfig, which reads the header alone, says grey (an outside
	// review's 23 KB frame decoded to four times its budget).
	for _, tc := range []struct {
		name  string
		img   image.Image
		shade []byte
		want  image.Image
		ok    bool
	}{
		{"8-bit grey with transparency, 900 pixels", image.NewGray(rect), []byte{0, 7}, &image.NRGBA{}, true},
		{"16-bit grey with transparency, 900 pixels", image.NewGray16(rect), []byte{1, 7}, &image.NRGBA64{}, false},
		{"16-bit grey with transparency, 400 pixels", image.NewGray16(image.Rect(0, 0, 20, 20)), []byte{1, 7}, &image.NRGBA64{}, true},
	} {
		data := withPNGChunk(encodePNG(t, tc.img), "tRNS", tc.shade)
		if img, err := png.Decode(bytes.NewReader(data)); err != nil || reflect.TypeOf(img) != reflect.TypeOf(tc.want) {
			t.Fatalf("%s: Go decodes %T, %v; want %T", tc.name, img, err, tc.want)
		}
		_, err := decode(data, maxPixels)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrImageTooLarge) {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	// A baseline JPEG (Go writes YCbCr 4:2:0: 1.5 samples a pixel) of
	// 900 pixels decodes under the budget; the same as a progressive JPEG
	// (its frame header SOF2 instead of SOF0) holds 4 bytes of coefficients
	// a sample besides: 7.5 bytes a pixel, over it.
	baseline := encodeJPEG(t, image.NewYCbCr(rect, image.YCbCrSubsampleRatio420))
	if _, err := decode(baseline, maxPixels); err != nil {
		t.Errorf("a baseline JPEG: %v", err)
	}
	sof := bytes.Index(baseline, []byte{0xff, 0xc0})
	if f, ok := jpegFrame(baseline); sof < 0 || f.progressive || f.nComp != 3 || f.h != [4]int{2, 1, 1} || f.v != [4]int{2, 1, 1} || !ok {
		t.Fatalf("the baseline JPEG's frame header at %d: %+v, %v", sof, f, ok)
	}
	progressive := bytes.Clone(baseline)
	progressive[sof+1] = 0xc2
	if f, _ := jpegFrame(progressive); !f.progressive {
		t.Fatal("a SOF2 frame header not read as progressive")
	}
	if err := CheckDecodeBudget(progressive, maxPixels); !errors.Is(err, ErrImageTooLarge) || !strings.Contains(err.Error(), "progressive") {
		t.Errorf("a progressive JPEG over the budget: %v", err)
	}
	if err := CheckDecodeBudget(progressive, 2*maxPixels); err != nil {
		t.Errorf("a progressive JPEG within a budget twice as large: %v", err)
	}
	// An interlaced (Adam7) PNG decodes pass by pass, then into the whole:
	// twice the bytes (an outside review measured 16 bytes a pixel for
	// 16-bit RGBA). Go writes no interlaced PNG: its header is changed.
	flat := encodePNG(t, image.NewNRGBA(image.Rect(0, 0, 25, 25))) // 2,500 bytes decoded
	interlaced := bytes.Clone(flat)
	interlaced[28] = 1
	binary.BigEndian.PutUint32(interlaced[29:], crc32.ChecksumIEEE(interlaced[12:29]))
	if err := CheckDecodeBudget(flat, maxPixels); err != nil {
		t.Errorf("a PNG of 2,500 bytes decoded: %v", err)
	}
	if err := CheckDecodeBudget(interlaced, maxPixels); !errors.Is(err, ErrImageTooLarge) || !strings.Contains(err.Error(), "interlaced") {
		t.Errorf("the same PNG interlaced, 5,000 bytes decoded: %v", err)
	}
}

// TestRecognizeOneRefusesSeveralFirst: a frame that must show one face (a
// gate's) is refused as showing several with the count the detector found,
// and without recognising any of them (BenchmarkGroupFrame: a crowd or a
// poster of faces held a gate's camera for tens of seconds); one face is
// the face RecognizeContext finds, with its descriptor; none is ErrNoFace.
func TestRecognizeOneRefusesSeveralFirst(t *testing.T) {
	r := testRecognizer(t)
	ctx := context.Background()
	read := func(name string) []byte {
		b, err := os.ReadFile(testenv.Image(t, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	group := read("pristin.jpg")
	all, err := r.RecognizeContext(ctx, group, HOG)
	if err != nil || len(all) < 2 {
		t.Fatalf("the group: %d faces, %v", len(all), err)
	}
	if _, err := r.RecognizeOneContext(ctx, group, HOG); !errors.Is(err, ErrMultipleFaces) || !strings.Contains(err.Error(), fmt.Sprintf("found %d", len(all))) {
		t.Errorf("one face of the group: %v, want ErrMultipleFaces found %d", err, len(all))
	}
	single := read("jimin.jpg")
	want, err := r.RecognizeContext(ctx, single, HOG)
	if err != nil || len(want) != 1 {
		t.Fatalf("jimin: %d faces, %v", len(want), err)
	}
	got, err := r.RecognizeOneContext(ctx, single, HOG)
	if err != nil || got.Descriptor != want[0].Descriptor || got.Rectangle != want[0].Rectangle {
		t.Errorf("one face: %v %v, want the face RecognizeContext finds", got.Rectangle, err)
	}
	var blank bytes.Buffer
	if err := png.Encode(&blank, image.NewGray(image.Rect(0, 0, 64, 64))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RecognizeOneContext(ctx, blank.Bytes(), HOG); !errors.Is(err, ErrNoFace) {
		t.Errorf("nobody there: %v, want ErrNoFace", err)
	}
}

// BenchmarkGroupFrame: what refusing a frame of a group costs a gate,
// recognising every face (RecognizeContext, then Quality.Single) against
// refusing on the detector's count (RecognizeOneContext).
func BenchmarkGroupFrame(b *testing.B) {
	r := testRecognizer(b)
	group, err := os.ReadFile(testenv.Image(b, "pristin.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("recognise-all", func(b *testing.B) {
		for b.Loop() {
			faces, err := r.RecognizeContext(context.Background(), group, HOG)
			if _, err2 := (Quality{}).Single(faces); err != nil || !errors.Is(err2, ErrMultipleFaces) {
				b.Fatal(err, err2)
			}
		}
	})
	b.Run("refuse-on-count", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.RecognizeOneContext(context.Background(), group, HOG); !errors.Is(err, ErrMultipleFaces) {
				b.Fatal(err)
			}
		}
	})
}
