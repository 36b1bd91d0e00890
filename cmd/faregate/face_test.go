package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faregate/faregate/biometrics/eval"
)

// shared finds ../shared next to the module root; missing data fails.
func shared(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = filepath.Dir(dir)
	}
	s := filepath.Join(dir, "..", "shared")
	if _, err := os.Stat(filepath.Join(s, "testdata", "faces", "idols.json")); err != nil {
		t.Fatalf("shared test data missing: %v", err)
	}
	return s
}

func runFace(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newFaceCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestFaceEval(t *testing.T) {
	out, err := runFace(t, "eval", "--descriptors", filepath.Join(shared(t), "testdata", "faces", "idols.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DET table", "| 1:1 verify | FMR <= 0.01 | 0.340 |", "| 1:N identify |", "impostor pairs | 820641"} {
		if !strings.Contains(out, want) {
			t.Errorf("eval output lacks %q", want)
		}
	}
}

// Enrol from descriptors, verify, identify, forget: the whole store cycle
// without models.
func TestFaceStoreCycle(t *testing.T) {
	sh := shared(t)
	f, err := os.Open(filepath.Join(sh, "testdata", "faces", "idols.json"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := eval.DecodeIdols(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("FAREGATE_GALLERY_KEY", strings.Repeat("0f", 32))
	t.Setenv("FAREGATE_MODELS", filepath.Join(sh, "models"))
	store := "--store=" + filepath.Join(dir, "store")
	byLabel := map[string][]eval.Sample{}
	for _, s := range ds.Samples {
		byLabel[s.Label] = append(byLabel[s.Label], s)
	}
	for i, l := range ds.Labels[:10] {
		args := []string{"enroll", store, "--subject", "rider-" + string(rune('a'+i)), "--consent-by", "rider", "--purpose", "test"}
		for _, s := range byLabel[l][:3] {
			args = append(args, "--descriptor", eval.EncodeDescriptor(s.Descriptor))
		}
		if out, err := runFace(t, args...); err != nil {
			t.Fatalf("enroll: %v\n%s", err, out)
		}
	}
	if _, err := runFace(t, "enroll", store, "--subject", "x", "--descriptor", eval.EncodeDescriptor(ds.Samples[0].Descriptor)); err == nil {
		t.Fatal("enrolled without consent")
	}
	// The enrolled descriptor itself: distance 0.
	probe := eval.EncodeDescriptor(byLabel[ds.Labels[0]][0].Descriptor)
	out, err := runFace(t, "verify", store, "--subject", "rider-a", "--descriptor", probe)
	if err != nil || !strings.Contains(out, `"accepted": true`) {
		t.Fatalf("verify own: %v\n%s", err, out)
	}
	out, err = runFace(t, "verify", store, "--subject", "rider-b", "--descriptor", probe)
	if !errors.Is(err, errRejected) {
		t.Fatalf("verify other: %v\n%s", err, out)
	}
	out, err = runFace(t, "identify", store, "--descriptor", probe)
	var d struct {
		Accepted bool
		Subject  string
	}
	if err != nil || json.Unmarshal([]byte(out), &d) != nil || !d.Accepted || d.Subject != "rider-a" {
		t.Fatalf("identify: %v\n%s", err, out)
	}
	if out, err := runFace(t, "forget", store, "--subject", "rider-a"); err != nil || !strings.Contains(out, `"erased_templates": 3`) {
		t.Fatalf("forget: %v\n%s", err, out)
	}
	out, _ = runFace(t, "identify", store, "--descriptor", probe)
	if strings.Contains(out, "rider-a") {
		t.Fatalf("forgotten subject still identified:\n%s", out)
	}
	if _, err := runFace(t, "verify", store, "--subject", "rider-a", "--descriptor", probe); err == nil || errors.Is(err, errRejected) {
		t.Fatalf("verify forgotten subject: %v", err)
	}
}

func TestFaceDetect(t *testing.T) {
	sh := shared(t)
	t.Setenv("FAREGATE_MODELS", filepath.Join(sh, "models"))
	out, err := runFace(t, "detect", filepath.Join(sh, "testdata", "faces", "images", "nayoung.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	var res []struct {
		Faces []struct {
			Rectangle  [4]int
			Landmarks  [][2]int
			Descriptor []float32
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0].Faces) != 1 || len(res[0].Faces[0].Descriptor) != 128 || len(res[0].Faces[0].Landmarks) != 68 {
		t.Fatalf("unexpected detect output: %.300s", out)
	}
	if _, err := runFace(t, "detect", filepath.Join(sh, "testdata", "faces", "README.md")); err == nil {
		t.Fatal("detect on a non-image succeeded")
	}
}
