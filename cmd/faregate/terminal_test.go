package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/faregate/faregate/fare"
)

func TestParseTapLine(t *testing.T) {
	tap, err := parseTapLine("entry card tok123 adult")
	if err != nil || tap.Direction != fare.Entry || tap.Media != fare.Card || tap.Token != "tok123" || tap.RiderCategory != "adult" {
		t.Fatalf("got %+v, %v", tap, err)
	}
	frame := filepath.Join(t.TempDir(), "f.jpg")
	if err := os.WriteFile(frame, []byte("\xff\xd8 a frame"), 0o600); err != nil {
		t.Fatal(err)
	}
	tap, err = parseTapLine("entry card tok9 frames=" + frame + "," + frame)
	if err != nil || tap.Token != "tok9" || len(tap.Frames) != 2 || string(tap.Frames[1]) != "\xff\xd8 a frame" {
		t.Fatalf("with frames: %+v, %v", tap, err)
	}
	// A face is the camera's: a subject id on a line is refused.
	for _, bad := range []string{"", "entry card", "sideways card tok", "entry coin tok", "entry card a b c", "entry face subject-42",
		"entry card tok frames=/no/such/frame.jpg"} {
		if _, err := parseTapLine(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
