package dlib

import (
	"errors"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/faregate/faregate/biometrics/internal/testenv"
)

// loadModels loads the shared models as the biometrics package does: the
// 5-point landmark model from the model directory if there is one, else
// Debian's 68-point model.
func loadModels(t testing.TB) *Models {
	t.Helper()
	dir := testenv.ModelDir(t)
	shape := filepath.Join(dir, "shape_predictor_5_face_landmarks.dat")
	if _, err := os.Stat(shape); err != nil {
		shape = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"
	}
	m, err := LoadModels(shape, filepath.Join(dir, "dlib_face_recognition_resnet_model_v1.dat"), filepath.Join(dir, "mmod_human_face_detector.dat"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	sharedOnce   sync.Once
	sharedModels *Models
)

func shared(t testing.TB) *Models {
	t.Helper()
	sharedOnce.Do(func() { sharedModels = loadModels(t) })
	if sharedModels == nil {
		t.Fatal("models failed to load")
	}
	return sharedModels
}

// sharedWorker is a worker of the shared models, closed when the test ends.
func sharedWorker(t testing.TB) *Worker {
	t.Helper()
	w, err := NewWorker(shared(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func grey(t testing.TB, w, h int) *Image {
	t.Helper()
	rgb := make([]byte, 3*w*h)
	for i := range rgb {
		rgb[i] = 128
	}
	im, err := NewImage(rgb, w, h, 3*w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(im.Close)
	return im
}

const fatalChildEnv = "FAREGATE_DLIB_FATAL_CHILD"

// TestFatalErrorsDoNotAbort: dlib aborts the process on its second
// dlib::fatal_error unless DLIB_NO_ABORT_ON_2ND_FATAL_ERROR is in effect, so
// the binding's promise that no call aborts held only once. A child process
// raises fatal errors several times over, from the binding's C++ and from
// inside libdlib.so, and through Descriptors with landmarks that are
// neither 5 nor 68 points (get_face_chip_details asserts); each must come
// back as an error and the child must exit cleanly.
func TestFatalErrorsDoNotAbort(t *testing.T) {
	cases := []struct {
		name string
		call func(t testing.TB) error
	}{
		{"selftest", func(t testing.TB) error {
			n, err := CatchFatalErrors()
			if n != 2 {
				return errors.New("caught " + string(rune('0'+n)) + " fatal errors, want 2")
			}
			return err
		}},
		{"descriptors with 3 landmarks", func(t testing.TB) error {
			m := shared(t)
			w, err := NewWorker(m)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			im := grey(t, 64, 64)
			_, err = w.Descriptors(im, []Rect{{Left: 10, Top: 10, Right: 50, Bottom: 50}},
				[][]image.Point{{{20, 20}, {40, 20}, {30, 40}}})
			return err
		}},
	}
	if os.Getenv(fatalChildEnv) == "1" {
		// The child: every case three times over, in one process.
		for round := range 3 {
			for _, tc := range cases {
				err := tc.call(t)
				if err == nil {
					t.Fatalf("round %d, %s: no error", round, tc.name)
				}
				t.Logf("FATAL-OK round %d %s: %.80q", round, tc.name, err.Error())
			}
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFatalErrorsDoNotAbort$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), fatalChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process failed (%v):\n%s", err, out)
	}
	for round := range 3 {
		for _, tc := range cases {
			if want := "FATAL-OK round " + string(rune('0'+round)) + " " + tc.name; !strings.Contains(string(out), want) {
				t.Errorf("child output lacks %q:\n%s", want, out)
			}
		}
	}
	if strings.Contains(string(out), "Two fatal errors") {
		t.Errorf("dlib complained of a second fatal error:\n%s", out)
	}
}

// TestDetectCNNMinSide: images dlib's MMOD network corrupts memory on (a
// side of 2-9 px) or raises fatal_error on are refused before C; from
// MinCNNSide up they run.
func TestDetectCNNMinSide(t *testing.T) {
	w := sharedWorker(t)
	for _, tc := range []struct {
		w, h int
		ok   bool
	}{
		{8, 300, false}, {2, 300, false}, {9, 300, false}, {6, 480, false},
		{8, 640, false}, {9, 480, false}, {5, 480, false}, {300, 8, false},
		{1, 1, false}, {4, 4, false}, {1, 500, false}, {500, 1, false},
		{MinCNNSide - 1, 480, false}, {480, MinCNNSide - 1, false},
		{MinCNNSide, MinCNNSide, true}, {MinCNNSide, 480, true}, {480, MinCNNSide, true},
	} {
		rs, err := w.DetectCNN(grey(t, tc.w, tc.h))
		switch {
		case tc.ok && err != nil:
			t.Errorf("%dx%d: %v", tc.w, tc.h, err)
		case tc.ok && len(rs) != 0:
			t.Errorf("%dx%d: %d faces in a grey image", tc.w, tc.h, len(rs))
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "too small for CNN detection: each side must be at least 32 px")):
			t.Errorf("%dx%d: err %v, want too small", tc.w, tc.h, err)
		}
		// HOG takes any size.
		if _, err := w.DetectHOG(grey(t, tc.w, tc.h)); err != nil {
			t.Errorf("HOG %dx%d: %v", tc.w, tc.h, err)
		}
	}
}

// TestModelsAfterClose: HasCNN, Parts, Landmarks and a worker's calls after
// Close (HasCNN used to dereference the freed models), and while Close runs
// (go test -race).
func TestModelsAfterClose(t *testing.T) {
	m := loadModels(t)
	if !m.HasCNN() || m.Parts() == 0 {
		t.Fatalf("HasCNN %v, Parts %d before Close", m.HasCNN(), m.Parts())
	}
	w, err := NewWorker(m)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	im := grey(t, 64, 64)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				m.HasCNN()
				m.Parts()
			}
		}()
	}
	m.Close()
	wg.Wait()
	m.Close() // twice is fine
	for _, tc := range []struct {
		name string
		err  func() error
	}{
		{"HasCNN", func() error {
			if m.HasCNN() {
				return errors.New("true")
			}
			return ErrClosed
		}},
		{"Parts", func() error {
			if n := m.Parts(); n != 0 {
				return errors.New("not 0")
			}
			return ErrClosed
		}},
		{"Landmarks", func() error { _, err := m.Landmarks(im, Rect{Right: 30, Bottom: 30}); return err }},
		{"NewWorker", func() error { _, err := NewWorker(m); return err }},
		{"DetectHOG", func() error { _, err := w.DetectHOG(im); return err }},
		{"DetectCNN", func() error { _, err := w.DetectCNN(im); return err }},
		{"Descriptors", func() error {
			_, err := w.Descriptors(im, []Rect{{Right: 30, Bottom: 30}}, [][]image.Point{make([]image.Point, 5)})
			return err
		}},
	} {
		if err := tc.err(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", tc.name, err)
		}
	}
}

// TestClosedImageRefused: every call given a closed image says so; none
// hands C a freed image (landmarks and descriptors did: SIGSEGV, an outside
// review).
func TestClosedImageRefused(t *testing.T) {
	m, w := shared(t), sharedWorker(t)
	im := grey(t, 64, 64)
	im.Close()
	r := Rect{Left: 1, Top: 1, Right: 40, Bottom: 40}
	shape := make([]image.Point, m.Parts())
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"HOG", func() error { _, err := w.DetectHOG(im); return err }},
		{"landmarks", func() error { _, err := m.Landmarks(im, r); return err }},
		{"descriptors", func() error { _, err := w.Descriptors(im, []Rect{r}, [][]image.Point{shape}); return err }},
	} {
		if err := tc.call(); err == nil || !strings.Contains(err.Error(), "image closed") {
			t.Errorf("%s on a closed image: %v, want it named closed", tc.name, err)
		}
	}
}
