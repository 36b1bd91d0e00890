package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faregate/faregate/biometrics/gallery"
)

// TestLoadPolicyFile: a written policy reads back; a missing file and a
// bad one are refused naming what is wrong.
func TestLoadPolicyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := gallery.WritePolicy(f, gallery.DefaultPolicy(), nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if p, _, err := loadPolicyFile(path); err != nil || p != gallery.DefaultPolicy() {
		t.Fatalf("load: %+v %v", p, err)
	}
	if _, _, err := loadPolicyFile(filepath.Join(dir, "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"format":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadPolicyFile(bad); !errors.Is(err, gallery.ErrBadPolicy) || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad file: %v", err)
	}
}
