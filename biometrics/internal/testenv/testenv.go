// Package testenv finds the shared models and test data for tests. Missing
// data fails the test: a skipped biometric test is a test that never runs.
package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// Shared returns the ../shared directory next to the module root.
func Shared(t testing.TB) string {
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
	shared := filepath.Join(dir, "..", "shared")
	if _, err := os.Stat(shared); err != nil {
		t.Fatalf("testenv: shared data missing (need ../shared/models and ../shared/testdata/faces next to the repository): %v", err)
	}
	return shared
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
