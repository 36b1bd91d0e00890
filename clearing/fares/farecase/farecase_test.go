package farecase_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/faregate/faregate/clearing/fares/farecase"
	"github.com/faregate/faregate/clearing/fares/gtfs"
)

// testdataDir returns ../shared/testdata/gtfs relative to the repository
// root (the directory holding go.mod). A missing directory fails the test.
func testdataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
	data := filepath.Join(dir, "..", "shared", "testdata", "gtfs")
	if st, err := os.Stat(data); err != nil || !st.IsDir() {
		t.Fatalf("test data %s is missing: %v", data, err)
	}
	return data
}

func TestSharedCases(t *testing.T) {
	root := testdataDir(t)
	feeds, err := filepath.Glob(filepath.Join(root, "*", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(feeds) < 3 {
		t.Fatalf("found %d cases.json files under %s, want at least 3", len(feeds), root)
	}
	total := 0
	for _, casesPath := range feeds {
		dir := filepath.Dir(casesPath)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			feed, err := gtfs.LoadPath(dir)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			file, err := farecase.ReadFile(casesPath)
			if err != nil {
				t.Fatal(err)
			}
			if len(file.Cases) == 0 {
				t.Fatal("no cases")
			}
			for i := range file.Cases {
				total++
				if r := file.Cases[i].Run(feed); !r.Pass {
					t.Error(r)
				}
			}
		})
	}
	if total < 29 {
		t.Errorf("ran %d cases, want at least 29", total)
	}
}

// FuzzReadJourney: any input is a journey with legs or an error, never a
// panic; the shared cases (each a valid request as written) seed it.
func FuzzReadJourney(f *testing.F) {
	f.Add([]byte(`{"legs":[{"route_id":"r","start_time":"2022-03-30T02:00:00+02:00","end_time":"2022-03-30T02:30:00+02:00"}],"rider_category":"adult"}`))
	f.Add([]byte(`{"legs":[]}`))
	f.Add([]byte(`{"legs":[{"route":"r"}]}`))
	f.Add([]byte(`{"legs":[{"route_id":"r","start_time":"2022-03-30T02:00:00+02:00","end_time":"2022-03-30T02:30:00+02:00"}]} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := farecase.ReadJourney(bytes.NewReader(data))
		if err == nil && len(j.Legs) == 0 {
			t.Fatalf("%q: a journey without legs", data)
		}
	})
}
