package biometrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // register the decoders Recognize accepts
	_ "image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/faregate/faregate/biometrics/internal/dlib"
)

// Model file names, as dlib publishes them.
const (
	DescriptorModelFile = "dlib_face_recognition_resnet_model_v1.dat"
	CNNModelFile        = "mmod_human_face_detector.dat"
	Shape5ModelFile     = "shape_predictor_5_face_landmarks.dat"
	Shape68ModelFile    = "shape_predictor_68_face_landmarks.dat"
)

// SystemShape68Path is where Debian's libdlib-data installs the 68-point
// landmark model. Its training data (iBUG 300-W) excludes commercial use.
const SystemShape68Path = "/usr/share/dlib/" + Shape68ModelFile

// ModelsEnv names the environment variable that points at the model directory.
const ModelsEnv = "FAREGATE_MODELS"

// Default limits. They bound memory per call: a decoded image costs 4 bytes
// a pixel in Go plus 3 in dlib; MMOD detection needs roughly 1 KB of
// activations per pixel (about 300 MB at 640x480).
const (
	DefaultMaxPixels    = 40_000_000
	DefaultMaxCNNPixels = 1_300_000
)

// Descriptor is a 128-dimensional face descriptor. Two descriptors of the
// same person are close in Euclidean distance.
type Descriptor [128]float32

// Face is one detected face.
type Face struct {
	// Rectangle is the detection box in image coordinates (Max exclusive).
	// It may extend past the image edges.
	Rectangle image.Rectangle
	// Descriptor is the face's descriptor.
	Descriptor Descriptor
	// Shapes are the landmark points (5 or 68, depending on the model).
	Shapes []image.Point
	// Confidence is the detector's score (HOG: SVM margin; CNN: MMOD score).
	Confidence float64
}

// Detector selects the face detector.
type Detector int

const (
	// HOG is dlib's frontal face detector (about 29 ms at 640x480 on one core).
	HOG Detector = iota
	// CNN is dlib's MMOD detector: finds more poses, about 1 s at 640x480.
	CNN
)

// String names the detector in logs and reports.
func (d Detector) String() string {
	switch d {
	case HOG:
		return "hog"
	case CNN:
		return "cnn"
	}
	return fmt.Sprintf("Detector(%d)", int(d))
}

// Errors returned for unusable input. Use errors.Is.
var (
	ErrEmptyImage        = errors.New("biometrics: empty image")
	ErrUnsupportedFormat = errors.New("biometrics: not a JPEG or PNG image")
	ErrImageTooLarge     = errors.New("biometrics: image too large")
	ErrImageTooSmall     = errors.New("biometrics: image too small")
	ErrNoCNN             = errors.New("biometrics: CNN detector model not loaded")
	ErrClosed            = errors.New("biometrics: recognizer closed")
)

// MinCNNSide is the smallest width and height, in pixels, of an image for
// CNN detection: dlib's MMOD network corrupts memory on images 2-9 px on a
// side and raises fatal errors below about 5 px; 32 is the least side its
// three unpadded stride-2 convolutions leave a column of (32 -> 14 -> 5 ->
// 1), and smaller than the smallest face it finds (40x40 px). HOG takes any
// size.
const MinCNNSide = dlib.MinCNNSide

// tooSmallError refuses an image for CNN detection; it Is ErrImageTooSmall.
type tooSmallError struct{ w, h int }

func (e tooSmallError) Error() string {
	return fmt.Sprintf("biometrics: image %dx%d too small for CNN detection: each side must be at least %d px", e.w, e.h, MinCNNSide)
}

func (e tooSmallError) Is(target error) bool { return target == ErrImageTooSmall }

// ImageLoadError reports an image that could not be decoded.
type ImageLoadError struct {
	Err error
}

// Error says the image did not decode, and why.
func (e *ImageLoadError) Error() string { return "biometrics: decode image: " + e.Err.Error() }

// Unwrap is the decoder's error.
func (e *ImageLoadError) Unwrap() error { return e.Err }

// Config configures a Recognizer. Zero fields take defaults.
type Config struct {
	// ModelDir holds DescriptorModelFile and, optionally, CNNModelFile and
	// Shape5ModelFile or Shape68ModelFile.
	ModelDir string
	// LandmarkModel overrides the landmark model path. By default the
	// 5-point model in ModelDir is used if present, else a 68-point model in
	// ModelDir, else SystemShape68Path. Descriptors made with different
	// landmark models must not be compared (they differ by about 0.12).
	LandmarkModel string
	// Workers is how many frames are processed at once; each worker holds a
	// copy of the descriptor network (about 25 MB plus activations). The
	// default is runtime.GOMAXPROCS(0).
	Workers int
	// MaxPixels rejects larger images before decoding them.
	MaxPixels int
	// MaxCNNPixels rejects larger images for CNN detection, whose memory
	// grows with the image area.
	MaxCNNPixels int
	// Logger receives load events; nil means slog.Default().
	Logger *slog.Logger
}

// Recognizer detects faces and computes descriptors. It is safe for
// concurrent use: each call borrows one of Config.Workers workers, so up to
// that many frames are processed in parallel without a global lock.
type Recognizer struct {
	models       *dlib.Models
	hasCNN       bool // read once at load: HasCNN never reaches C
	pool         chan *dlib.Worker
	workers      int
	done         chan struct{}
	closeOnce    sync.Once
	maxPixels    int
	maxCNNPixels int
	modelID      string
	landmarkPath string
}

// NewRecognizer loads the models from modelDir with default settings, like
// go-face's NewRecognizer.
func NewRecognizer(modelDir string) (*Recognizer, error) {
	return New(Config{ModelDir: modelDir})
}

// New loads the models and starts cfg.Workers workers.
func New(cfg Config) (*Recognizer, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxPixels <= 0 {
		cfg.MaxPixels = DefaultMaxPixels
	}
	if cfg.MaxCNNPixels <= 0 {
		cfg.MaxCNNPixels = DefaultMaxCNNPixels
	}
	resnet := filepath.Join(cfg.ModelDir, DescriptorModelFile)
	if _, err := os.Stat(resnet); err != nil {
		return nil, fmt.Errorf("biometrics: descriptor model: %w", err)
	}
	shape := cfg.LandmarkModel
	if shape == "" {
		shape = FindLandmarkModel(cfg.ModelDir)
	}
	if _, err := os.Stat(shape); err != nil {
		return nil, fmt.Errorf("biometrics: landmark model (install libdlib-data or put %s in %s): %w", Shape5ModelFile, cfg.ModelDir, err)
	}
	mmod := filepath.Join(cfg.ModelDir, CNNModelFile)
	if _, err := os.Stat(mmod); err != nil {
		mmod = ""
	}
	start := time.Now()
	models, err := dlib.LoadModels(shape, resnet, mmod)
	if err != nil {
		return nil, fmt.Errorf("biometrics: %w", err)
	}
	r := &Recognizer{
		models:       models,
		hasCNN:       models.HasCNN(),
		pool:         make(chan *dlib.Worker, cfg.Workers),
		workers:      cfg.Workers,
		done:         make(chan struct{}),
		maxPixels:    cfg.MaxPixels,
		maxCNNPixels: cfg.MaxCNNPixels,
		landmarkPath: shape,
		modelID:      ModelIDFor(models.Parts()),
	}
	for i := 0; i < cfg.Workers; i++ {
		w, err := dlib.NewWorker(models)
		if err != nil {
			close(r.pool)
			for w := range r.pool {
				w.Close()
			}
			models.Close()
			return nil, fmt.Errorf("biometrics: %w", err)
		}
		r.pool <- w
	}
	log.Info("face models loaded", "landmarks", shape, "parts", models.Parts(),
		"cnn_model_loaded", mmod != "", "workers", cfg.Workers, "took", time.Since(start).Round(time.Millisecond))
	return r, nil
}

// FindLandmarkModel returns the landmark model New uses by default for dir.
func FindLandmarkModel(dir string) string {
	for _, p := range []string{filepath.Join(dir, Shape5ModelFile), filepath.Join(dir, Shape68ModelFile)} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return SystemShape68Path
}

// FindModelDir picks the model directory: flag if not empty, else
// $FAREGATE_MODELS, else ./models, else ../shared/models; the first that
// holds the descriptor model wins.
func FindModelDir(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if env := os.Getenv(ModelsEnv); env != "" {
		return env, nil
	}
	for _, d := range []string{"models", filepath.Join("..", "shared", "models")} {
		if _, err := os.Stat(filepath.Join(d, DescriptorModelFile)); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("biometrics: no model directory: set --models or $%s, or run make models", ModelsEnv)
}

// ModelIDFor names the pipeline of the descriptor network with a landmark
// model of parts points (see Recognizer.ModelID).
func ModelIDFor(parts int) string {
	return fmt.Sprintf("dlib_resnet_v1/shape%d/chip150/pad0.25", parts)
}

// ModelID names the descriptor pipeline (network, landmark model, chip
// settings). Templates made under one ModelID must not be matched against
// descriptors of another.
func (r *Recognizer) ModelID() string { return r.modelID }

// LandmarkModel returns the path of the landmark model in use.
func (r *Recognizer) LandmarkModel() string { return r.landmarkPath }

// Workers returns how many frames can be processed at once.
func (r *Recognizer) Workers() int { return r.workers }

// HasCNN reports whether CNN detection is available: false after Close.
// It may race with Close.
func (r *Recognizer) HasCNN() bool {
	select {
	case <-r.done:
		return false
	default:
		return r.hasCNN
	}
}

// Close waits for calls in flight to finish and frees the models. Calls
// after Close return ErrClosed.
func (r *Recognizer) Close() {
	r.closeOnce.Do(func() {
		close(r.done)
		for i := 0; i < r.workers; i++ {
			w := <-r.pool
			w.Close()
		}
		r.models.Close()
	})
}

func (r *Recognizer) acquire(ctx context.Context) (*dlib.Worker, error) {
	select {
	case <-r.done:
		return nil, ErrClosed
	default:
	}
	select {
	case w := <-r.pool:
		return w, nil
	case <-r.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Recognize returns all faces found by HOG in a JPEG or PNG image, sorted
// left to right. No face gives an empty slice and no error.
func (r *Recognizer) Recognize(imgData []byte) ([]Face, error) {
	return r.RecognizeContext(context.Background(), imgData, HOG)
}

// RecognizeCNN is Recognize with the CNN detector.
func (r *Recognizer) RecognizeCNN(imgData []byte) ([]Face, error) {
	return r.RecognizeContext(context.Background(), imgData, CNN)
}

// RecognizeSingle returns the face if the image has exactly one, else nil
// (as go-face does). Use Quality.Single for an error that says why.
func (r *Recognizer) RecognizeSingle(imgData []byte) (*Face, error) {
	return single(r.Recognize(imgData))
}

// RecognizeSingleCNN is RecognizeSingle with the CNN detector.
func (r *Recognizer) RecognizeSingleCNN(imgData []byte) (*Face, error) {
	return single(r.RecognizeCNN(imgData))
}

// RecognizeFile reads and recognises an image file.
func (r *Recognizer) RecognizeFile(path string) ([]Face, error) {
	return r.RecognizeFileContext(context.Background(), path, HOG)
}

// RecognizeFileCNN is RecognizeFile with the CNN detector.
func (r *Recognizer) RecognizeFileCNN(path string) ([]Face, error) {
	return r.RecognizeFileContext(context.Background(), path, CNN)
}

// RecognizeSingleFile is RecognizeSingle on a file.
func (r *Recognizer) RecognizeSingleFile(path string) (*Face, error) {
	return single(r.RecognizeFile(path))
}

// RecognizeSingleFileCNN is RecognizeSingleCNN on a file.
func (r *Recognizer) RecognizeSingleFileCNN(path string) (*Face, error) {
	return single(r.RecognizeFileCNN(path))
}

func single(faces []Face, err error) (*Face, error) {
	if err != nil || len(faces) != 1 {
		return nil, err
	}
	return &faces[0], nil
}

// RecognizeFileContext reads path, a regular file, and calls
// RecognizeContext.
func (r *Recognizer) RecognizeFileContext(ctx context.Context, path string, d Detector) ([]Face, error) {
	// Opened without blocking and read only if it is a regular file, and
	// no further than the bound: a FIFO held the command up for ever, and
	// /dev/zero grew it by gigabytes (an outside review; Stat's size of a
	// device is 0).
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("biometrics: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("biometrics: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("biometrics: %s is not a regular file (%s): a picture is a file", path, fi.Mode().Type())
	}
	// A compressed image is far smaller than its pixels; refusing files
	// bigger than the pixel budget avoids reading absurd files whole.
	limit := int64(r.maxPixels) * 4
	if fi.Size() > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrImageTooLarge, path, fi.Size())
	}
	// Read into a buffer of the file's size and a byte (to see it grew):
	// io.ReadAll's doubling held twice a large file (an outside review).
	data := make([]byte, fi.Size()+1)
	n, err := io.ReadFull(f, data)
	switch {
	case err == nil: // grown since: what follows, within the limit
		rest, err := io.ReadAll(io.LimitReader(f, limit+1-int64(n)))
		if err != nil {
			return nil, fmt.Errorf("biometrics: %w", err)
		}
		data = append(data, rest...)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		data = data[:n]
	default:
		return nil, fmt.Errorf("biometrics: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: %s grew past %d bytes while read", ErrImageTooLarge, path, limit)
	}
	faces, err := r.RecognizeContext(ctx, data, d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return faces, nil
}

// RecognizeContext decodes a JPEG or PNG image and recognises its faces.
// The image is decoded once a worker is free: frames waiting for one hold
// their compressed bytes, not their pixels.
func (r *Recognizer) RecognizeContext(ctx context.Context, imgData []byte, d Detector) ([]Face, error) {
	return r.recognizeData(ctx, imgData, d, false)
}

// RecognizeOneContext is RecognizeContext for a frame that must show one
// face (a gate's): a frame in which the detector finds several is refused
// with ErrMultipleFaces, naming how many, before any landmark or
// descriptor is computed (a frame of a crowd or a poster of 825 faces held
// a gate's camera for 38 s: an outside review); one face is recognised, no
// face is ErrNoFace.
func (r *Recognizer) RecognizeOneContext(ctx context.Context, imgData []byte, d Detector) (Face, error) {
	faces, err := r.recognizeData(ctx, imgData, d, true)
	if err != nil {
		return Face{}, err
	}
	if len(faces) == 0 {
		return Face{}, ErrNoFace
	}
	return faces[0], nil
}

func (r *Recognizer) recognizeData(ctx context.Context, imgData []byte, d Detector, one bool) ([]Face, error) {
	// The header is judged at once: junk does not wait for a worker.
	if err := CheckDecodeBudget(imgData, r.maxPixels); err != nil {
		return nil, err
	}
	w, err := r.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { r.pool <- w }()
	img, err := r.Decode(imgData)
	if err != nil {
		return nil, err
	}
	return r.recognizeImage(w, img, d, one)
}

// Decode decodes a JPEG or PNG image, refusing images of more than
// Config.MaxPixels pixels before allocating them.
func (r *Recognizer) Decode(imgData []byte) (image.Image, error) {
	return decode(imgData, r.maxPixels)
}

func decode(data []byte, maxPixels int) (image.Image, error) {
	if err := CheckDecodeBudget(data, maxPixels); err != nil {
		return nil, err
	}
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, &ImageLoadError{Err: err}
	}
	if format == "jpeg" {
		img = orient(img, exifOrientation(data)) // a phone's portrait, turned upright
	}
	return img, nil
}

// RecognizeImage recognises the faces in a decoded image, sorted left to
// right. It waits for a free worker until ctx is done.
func (r *Recognizer) RecognizeImage(ctx context.Context, img image.Image, d Detector) ([]Face, error) {
	w, err := r.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { r.pool <- w }()
	return r.recognizeImage(w, img, d, false)
}

// recognizeImage is RecognizeImage on the worker w (one: refuse several
// faces before recognising them, as RecognizeOneContext).
func (r *Recognizer) recognizeImage(w *dlib.Worker, img image.Image, d Detector, one bool) ([]Face, error) {
	b := img.Bounds()
	if b.Empty() {
		return nil, &ImageLoadError{Err: errors.New("empty bounds")}
	}
	// Dx and Dy wrap for bounds over the int range, and their product for
	// sides of 1<<32: each side is checked before they are multiplied.
	dx, dy := b.Dx(), b.Dy()
	if tooMany(dx, dy, r.maxPixels) {
		size := fmt.Sprintf("%dx%d", dx, dy)
		if dx <= 0 || dy <= 0 {
			size = b.String()
		}
		return nil, fmt.Errorf("%w: %s exceeds %d pixels", ErrImageTooLarge, size, r.maxPixels)
	}
	if d == CNN {
		if !r.hasCNN {
			return nil, ErrNoCNN
		}
		if tooMany(dx, dy, r.maxCNNPixels) {
			return nil, fmt.Errorf("%w for CNN detection: %dx%d exceeds %d pixels; downscale the frame", ErrImageTooLarge, dx, dy, r.maxCNNPixels)
		}
		if dx < MinCNNSide || dy < MinCNNSide {
			return nil, tooSmallError{dx, dy}
		}
	}
	rgb, stride := toRGB(img)
	dimg, err := dlib.NewImage(rgb, b.Dx(), b.Dy(), stride)
	if err != nil {
		return nil, fmt.Errorf("biometrics: %w", err)
	}
	defer dimg.Close()
	return r.recognize(w, dimg, d, b.Min, one)
}

// tooMany reports whether a w x h image has more than max pixels, or sides
// that wrapped below 1 (bounds wider than the int range).
func tooMany(w, h, max int) bool {
	return w <= 0 || h <= 0 || w > max || h > max/w
}

// recognize runs detection, landmarks and descriptors on an image already
// copied into dlib. origin is the image's Bounds().Min. With one, several
// faces found are ErrMultipleFaces before any is recognised.
func (r *Recognizer) recognize(w *dlib.Worker, dimg *dlib.Image, d Detector, origin image.Point, one bool) ([]Face, error) {
	var rects []dlib.Rect
	var err error
	if d == CNN {
		rects, err = w.DetectCNN(dimg)
	} else {
		rects, err = w.DetectHOG(dimg)
	}
	if err != nil {
		return nil, fmt.Errorf("biometrics: %w", err)
	}
	if one && len(rects) > 1 {
		return nil, fmt.Errorf("%w: found %d", ErrMultipleFaces, len(rects))
	}
	faces := make([]Face, len(rects))
	if len(rects) == 0 {
		return faces, nil
	}
	// go-face sorts left to right; labels of group photos rely on it.
	sort.SliceStable(rects, func(i, j int) bool {
		if rects[i].Left != rects[j].Left {
			return rects[i].Left < rects[j].Left
		}
		return rects[i].Top < rects[j].Top
	})
	shapes := make([][]image.Point, len(rects))
	for i, rc := range rects {
		if shapes[i], err = r.models.Landmarks(dimg, rc); err != nil {
			return nil, fmt.Errorf("biometrics: %w", err)
		}
	}
	descs, err := w.Descriptors(dimg, rects, shapes)
	if err != nil {
		return nil, fmt.Errorf("biometrics: %w", err)
	}
	for i, rc := range rects {
		for j := range shapes[i] {
			shapes[i][j] = shapes[i][j].Add(origin)
		}
		faces[i] = Face{
			Rectangle:  image.Rect(rc.Left, rc.Top, rc.Right+1, rc.Bottom+1).Add(origin),
			Descriptor: descs[i],
			Shapes:     shapes[i],
			Confidence: rc.Confidence,
		}
	}
	return faces, nil
}

// toRGB packs img into 8-bit RGB rows and returns the buffer and stride.
func toRGB(img image.Image) ([]byte, int) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	stride := 3 * w
	out := make([]byte, stride*h)
	switch m := img.(type) {
	case *image.YCbCr:
		for y := 0; y < h; y++ {
			row := out[y*stride:]
			for x := 0; x < w; x++ {
				yi := m.YOffset(b.Min.X+x, b.Min.Y+y)
				ci := m.COffset(b.Min.X+x, b.Min.Y+y)
				row[3*x], row[3*x+1], row[3*x+2] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
			}
		}
	case *image.RGBA:
		for y := 0; y < h; y++ {
			src := m.Pix[y*m.Stride:]
			row := out[y*stride:]
			for x := 0; x < w; x++ {
				row[3*x], row[3*x+1], row[3*x+2] = src[4*x], src[4*x+1], src[4*x+2]
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			src := m.Pix[y*m.Stride:]
			row := out[y*stride:]
			for x := 0; x < w; x++ {
				v := src[x]
				row[3*x], row[3*x+1], row[3*x+2] = v, v, v
			}
		}
	default:
		for y := 0; y < h; y++ {
			row := out[y*stride:]
			for x := 0; x < w; x++ {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
				row[3*x], row[3*x+1], row[3*x+2] = c.R, c.G, c.B
			}
		}
	}
	return out, stride
}
