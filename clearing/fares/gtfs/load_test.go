package gtfs_test

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
)

// testdataDir returns ../shared/testdata/gtfs relative to the repository
// root. A missing directory fails the test.
func testdataDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
	data := filepath.Join(dir, "..", "shared", "testdata", "gtfs")
	if st, err := os.Stat(data); err != nil || !st.IsDir() {
		tb.Fatalf("test data %s is missing: %v", data, err)
	}
	return data
}

var feedNames = []string{"nigiri-fares", "gtfsorg-translink-guide", "nigiri-hsl-area-sets"}

// readFeed returns the .txt files of a shared feed.
func readFeed(tb testing.TB, name string) map[string][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(testdataDir(tb), name, "*.txt"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("feed %s: no files (%v)", name, err)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		files[filepath.Base(p)] = data
	}
	return files
}

func zipFeed(tb testing.TB, files map[string][]byte) []byte {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for name, data := range files {
		fw, err := w.Create(name)
		if err != nil {
			tb.Fatal(err)
		}
		fw.Write(data)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func TestLoadSharedFeeds(t *testing.T) {
	for _, name := range feedNames {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(testdataDir(t), name)
			f, err := gtfs.LoadPath(dir)
			if err != nil {
				t.Fatalf("directory: %v", err)
			}
			z := zipFeed(t, readFeed(t, name))
			fz, err := gtfs.LoadZip(bytes.NewReader(z), int64(len(z)))
			if err != nil {
				t.Fatalf("zip: %v", err)
			}
			zpath := filepath.Join(t.TempDir(), "feed.zip")
			if err := os.WriteFile(zpath, z, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := gtfs.LoadPath(zpath); err != nil {
				t.Fatalf("zip path: %v", err)
			}
			if f.Location().String() != fz.Location().String() || f.DefaultRiderCategory() != fz.DefaultRiderCategory() {
				t.Errorf("directory and zip loads differ")
			}
		})
	}
}

func TestLoadNeverHalfSucceeds(t *testing.T) {
	files := readFeed(t, "nigiri-fares")
	fsys := fstest.MapFS{}
	for name, data := range files {
		fsys[name] = &fstest.MapFile{Data: data}
	}
	// A bad last row of the last file read must fail the whole load.
	fsys["fare_transfer_rules.txt"] = &fstest.MapFile{Data: append(bytes.Clone(files["fare_transfer_rules.txt"]), []byte("core,air,,,,9,\n")...)}
	f, err := gtfs.Load(fsys)
	if err == nil || f != nil {
		t.Fatalf("Load = %v, %v; want nil feed and an error", f, err)
	}
	if !strings.Contains(err.Error(), "fare_transfer_rules.txt:3: field fare_transfer_type") {
		t.Errorf("error %q does not name file, line and field", err)
	}
}

// FuzzLoadFeed replaces one file of a real feed with arbitrary bytes. The
// loader must never panic, must return either a feed or an error (never
// both), and a feed that loads must price a journey without panicking.
func FuzzLoadFeed(f *testing.F) {
	base := readFeed(f, "nigiri-fares")
	var names []string
	for _, feed := range feedNames {
		for name, data := range readFeed(f, feed) {
			f.Add(name, data)
		}
	}
	for name := range base {
		names = append(names, name)
	}
	f.Add("fare_caps.txt", []byte("fare_cap_id,cap_period,amount,currency,day_start_time\nday,0,5.00,EUR,04:30:00\n"))
	f.Add("fare_products.txt", []byte("fare_product_id,amount,currency\nx,1,45,EUR\n"))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		if !strings.HasSuffix(name, ".txt") || strings.ContainsAny(name, "/\\") || name == ".txt" {
			return
		}
		fsys := fstest.MapFS{}
		for n, d := range base {
			fsys[n] = &fstest.MapFile{Data: d}
		}
		fsys[name] = &fstest.MapFile{Data: data}
		feed, err := gtfs.Load(fsys)
		if (feed == nil) == (err == nil) {
			t.Fatalf("Load returned feed %v and error %v", feed != nil, err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), ".txt") {
				t.Fatalf("error does not name a file: %v", err)
			}
			return
		}
		start := time.Date(2022, 3, 30, 8, 0, 0, 0, time.UTC)
		j := fares.Journey{RiderCategory: "adult", FareMedia: "paper-card", Legs: []fares.Leg{
			{RouteID: "line1", FromStop: "A", ToStop: "B", Start: start, End: start.Add(30 * time.Minute)},
			{RouteID: "air", FromStop: "D", ToStop: "E", Start: start.Add(time.Hour), End: start.Add(2 * time.Hour)},
		}}
		feed.Price(j)
		c := feed.NewCapper()
		c.Apply(start, "", "", fares.Money{Amount: 100, Currency: "EUR"})
	})
}

// FuzzLoadZip feeds arbitrary bytes to the zip loader.
func FuzzLoadZip(f *testing.F) {
	for _, feed := range feedNames {
		f.Add(zipFeed(f, readFeed(f, feed)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		feed, err := gtfs.LoadZip(bytes.NewReader(data), int64(len(data)))
		if (feed == nil) == (err == nil) {
			t.Fatalf("LoadZip returned feed %v and error %v", feed != nil, err)
		}
	})
}

// BenchmarkLoadShared loads each shared feed from its directory.
func BenchmarkLoadShared(b *testing.B) {
	for _, name := range feedNames {
		dir := filepath.Join(testdataDir(b), name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := gtfs.LoadPath(dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
