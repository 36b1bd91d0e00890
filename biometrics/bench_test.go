package biometrics

import (
	"context"
	"image"
	"testing"

	"github.com/faregate/faregate/biometrics/internal/dlib"
)

// benchFrame returns a 640x480 frame with one face and its dlib copy.
func benchFrame(b *testing.B) (*Recognizer, *dlib.Image, []byte) {
	r := testRecognizer(b)
	frame := frame640(b, "nayoung.jpg")
	rgb, stride := toRGB(frame)
	img, err := dlib.NewImage(rgb, 640, 480, stride)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(img.Close)
	return r, img, encodeJPEG(b, frame)
}

// BenchmarkStage times each stage on one 640x480 frame, one core each.
func BenchmarkStage(b *testing.B) {
	r, img, jpg := benchFrame(b)
	w, err := r.acquire(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer func() { r.pool <- w }()
	rects, err := w.DetectHOG(img)
	if err != nil || len(rects) != 1 {
		b.Fatalf("HOG: %v, %d faces", err, len(rects))
	}
	shape, err := r.models.Landmarks(img, rects[0])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode-jpeg", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.Decode(jpg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hog-detect", func(b *testing.B) {
		for b.Loop() {
			w.DetectHOG(img)
		}
	})
	b.Run("cnn-detect", func(b *testing.B) {
		for b.Loop() {
			if _, err := w.DetectCNN(img); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("landmarks", func(b *testing.B) {
		for b.Loop() {
			r.models.Landmarks(img, rects[0])
		}
	})
	b.Run("descriptor", func(b *testing.B) {
		for b.Loop() {
			if _, err := w.Descriptors(img, rects, [][]image.Point{shape}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFrame is the whole HOG pipeline from JPEG bytes: decode,
// detect, landmarks, descriptor. Parallel uses every worker (all cores).
func BenchmarkFrame(b *testing.B) {
	r, _, jpg := benchFrame(b)
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.Recognize(jpg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(1) // GOMAXPROCS goroutines, as many as workers
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Recognize(jpg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
