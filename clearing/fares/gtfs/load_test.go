package gtfs_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	return zipFeedWith(tb, files, nil)
}

// zipFeedWith is zipFeed with more entries written by extra (nil: none)
// after the files.
func zipFeedWith(tb testing.TB, files map[string][]byte, extra func(*zip.Writer)) []byte {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for name, data := range files {
		fw, err := w.Create(name)
		if err != nil {
			tb.Fatal(err)
		}
		fw.Write(data)
	}
	if extra != nil {
		extra(w)
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
			// Zipped in a folder (as zipping the feed's directory makes it):
			// read from the folder, with a warning saying so. Two folders
			// each with a feed, or one two folders deep: not guessed,
			// refused, saying where agency.txt was found.
			inDir, twoDirs, deep := map[string][]byte{}, map[string][]byte{}, map[string][]byte{}
			for n, b := range readFeed(t, name) {
				inDir["feed/"+n] = b
				twoDirs["a/"+n], twoDirs["b/"+n] = b, b
				deep["a/b/"+n] = b
			}
			var warned []gtfs.Warning
			z = zipFeed(t, inDir)
			fd, err := gtfs.LoadZip(bytes.NewReader(z), int64(len(z)), gtfs.WithWarnings(func(w gtfs.Warning) { warned = append(warned, w) }))
			if err != nil || fd.LegRules() != f.LegRules() {
				t.Fatalf("zip with the feed in a folder: %v", err)
			}
			if len(warned) == 0 || !strings.Contains(warned[0].String(), "feed/: feed files are in a folder") {
				t.Errorf("zip with the feed in a folder: warnings %v", warned)
			}
			z = zipFeed(t, twoDirs)
			if _, err := gtfs.LoadZip(bytes.NewReader(z), int64(len(z))); err == nil || !strings.Contains(err.Error(), "agency.txt is in 2 folders (a/, b/)") {
				t.Errorf("zip with two feed folders: %v", err)
			}
			z = zipFeed(t, deep)
			if _, err := gtfs.LoadZip(bytes.NewReader(z), int64(len(z))); err == nil || !strings.Contains(err.Error(), "agency.txt is at a/b/agency.txt") {
				t.Errorf("zip with the feed two folders deep: %v", err)
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
	for _, feed := range feedNames {
		for name, data := range readFeed(f, feed) {
			f.Add(name, data)
		}
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

// minimalFeed is a flat-fare feed with no timeframes and no calendar files.
func minimalFeed() map[string]string {
	return map[string]string{
		"agency.txt":         "agency_id,agency_name,agency_url,agency_timezone\nA,Agency,https://a.example,Europe/Berlin\n",
		"routes.txt":         "route_id,agency_id,route_type\nR1,A,3\n",
		"stops.txt":          "stop_id,stop_name\nS1,One\n",
		"fare_products.txt":  "fare_product_id,amount,currency\nflat,2.00,EUR\n",
		"fare_leg_rules.txt": "leg_group_id,fare_product_id\ng,flat\n",
	}
}

// minimalFeedWith is minimalFeed with calendar.txt and files (replacing
// its own) as an fs.FS.
func minimalFeedWith(calendar string, files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{"calendar.txt": &fstest.MapFile{Data: []byte(calendar)}}
	for name, body := range minimalFeed() {
		fsys[name] = &fstest.MapFile{Data: []byte(body)}
	}
	for name, body := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return fsys
}

func TestLoadCalendarOptional(t *testing.T) {
	const (
		calendar      = "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nweekday,1,1,1,1,1,0,0,20250101,20251231\n"
		calendarDates = "service_id,date,exception_type\nweekday,20250312,1\n"
		tfWeekday     = "timeframe_group_id,start_time,end_time,service_id\npeak,07:00:00,09:00:00,weekday\n"
	)
	tests := []struct {
		name         string
		files        map[string]string // added to minimalFeed; "" deletes
		wantWarnings []string          // substrings, one per warning expected
		wantErrs     []string          // substrings of the error; none: must load
	}{
		{name: "no timeframes, no calendar: warning",
			wantWarnings: []string{"calendar.txt: missing, and so is calendar_dates.txt"}},
		{name: "empty timeframes.txt, no calendar: warning",
			files:        map[string]string{"timeframes.txt": "timeframe_group_id,start_time,end_time,service_id\n"},
			wantWarnings: []string{"calendar.txt: missing"}},
		{name: "timeframe names a service, no calendar: error",
			files:    map[string]string{"timeframes.txt": tfWeekday},
			wantErrs: []string{`timeframes.txt:2: field service_id: service "weekday"`, "calendar.txt: required file is missing"}},
		{name: "each service named once",
			files:    map[string]string{"timeframes.txt": tfWeekday + "peak,17:00:00,19:00:00,weekday\nall,,,weekend\n"},
			wantErrs: []string{`timeframes.txt:2: field service_id: service "weekday"`, `timeframes.txt:4: field service_id: service "weekend"`}},
		{name: "timeframes with calendar.txt",
			files: map[string]string{"timeframes.txt": tfWeekday, "calendar.txt": calendar}},
		{name: "timeframes with calendar_dates.txt only",
			files: map[string]string{"timeframes.txt": tfWeekday, "calendar_dates.txt": calendarDates}},
		{name: "calendar.txt without timeframes",
			files: map[string]string{"calendar.txt": calendar}},
		{name: "transfer_count where the groups differ: ignored, said",
			files: map[string]string{"calendar.txt": calendar, "routes.txt": "route_id,agency_id,route_type,network_id\nR1,A,3,n1\n",
				"fare_leg_rules.txt":      "leg_group_id,network_id,fare_product_id\ng,,flat\nh,n1,flat\n",
				"fare_transfer_rules.txt": "from_leg_group_id,to_leg_group_id,transfer_count,fare_transfer_type\ng,h,2,0\n"},
			wantWarnings: []string{`fare_transfer_rules.txt:2: field transfer_count: ignored: GTFS forbids it where from_leg_group_id ("g") and to_leg_group_id ("h") differ`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := minimalFeed()
			for name, body := range tc.files {
				if body == "" {
					delete(files, name)
				} else {
					files[name] = body
				}
			}
			fsys := fstest.MapFS{}
			zfiles := map[string][]byte{}
			for name, body := range files {
				fsys[name] = &fstest.MapFile{Data: []byte(body)}
				zfiles[name] = []byte(body)
			}
			z := zipFeed(t, zfiles)
			loads := []struct {
				how  string
				load func(opts ...gtfs.Option) (*fares.Feed, error)
			}{
				{"fs", func(opts ...gtfs.Option) (*fares.Feed, error) { return gtfs.Load(fsys, opts...) }},
				{"zip", func(opts ...gtfs.Option) (*fares.Feed, error) {
					return gtfs.LoadZip(bytes.NewReader(z), int64(len(z)), opts...)
				}},
				{"dir", func(opts ...gtfs.Option) (*fares.Feed, error) {
					dir := t.TempDir()
					for name, body := range files {
						if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
							t.Fatal(err)
						}
					}
					return gtfs.LoadPath(dir, opts...)
				}},
			}
			for _, ld := range loads {
				var warnings []gtfs.Warning
				feed, err := ld.load(nil, gtfs.WithWarnings(func(w gtfs.Warning) { warnings = append(warnings, w) }))
				if len(tc.wantErrs) > 0 {
					if err == nil || feed != nil {
						t.Fatalf("%s: load = %v, %v; want an error", ld.how, feed != nil, err)
					}
					for _, want := range tc.wantErrs {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("%s: error\n%v\nwant it to contain %q", ld.how, err, want)
						}
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: load: %v", ld.how, err)
				}
				if len(warnings) != len(tc.wantWarnings) {
					t.Fatalf("%s: warnings %q, want %d", ld.how, warnings, len(tc.wantWarnings))
				}
				for i, want := range tc.wantWarnings {
					if got := warnings[i].String(); !strings.Contains(got, want) {
						t.Errorf("%s: warning %q, want it to contain %q", ld.how, got, want)
					}
				}
				// The feed prices: the calendar was not needed.
				at := time.Date(2025, 3, 12, 8, 0, 0, 0, time.UTC)
				fare, err := feed.Price(fares.Journey{Legs: []fares.Leg{{RouteID: "R1", FromStop: "S1", Start: at, End: at}}})
				if err != nil || !fare.Known || fare.Total.Amount != 200 {
					t.Errorf("%s: price = %+v, %v; want 2.00 EUR", ld.how, fare, err)
				}
				// Without the option the load still succeeds, silently.
				if _, err := ld.load(); err != nil {
					t.Errorf("%s: load without options: %v", ld.how, err)
				}
			}
		})
	}
}

// TestLoadWarnsOfOddInput: what GTFS does not allow but a feed can still
// be priced with loads, with a warning naming the file and line.
func TestLoadWarnsOfOddInput(t *testing.T) {
	const calendar = "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nweekday,1,1,1,1,1,0,0,20250101,20251231\n"
	tests := []struct {
		name  string
		files map[string]string // replacing minimalFeed's
		want  []string          // one warning each, in order
	}{
		{name: "clean", files: map[string]string{}},
		{name: "a row wider than its header",
			files: map[string]string{"stops.txt": "stop_id,stop_name\nS1,One,extra\n"},
			want:  []string{"stops.txt:2: 3 field(s) where the header names 2 (1 row(s) of the file so)"}},
		{name: "rows narrower than their header",
			files: map[string]string{"stops.txt": "stop_id,stop_name,stop_lat\nS1,One\nS2,Two,52.5\nS3\n"},
			want:  []string{"stops.txt:2: 2 field(s) where the header names 3 (2 row(s) of the file so)"}},
		{name: "Latin-1 text",
			files: map[string]string{"stops.txt": "stop_id,stop_name\nS1,One\nS2,M\xfcnchen\n"},
			want:  []string{"stops.txt:3: not UTF-8 as GTFS requires"}},
		{name: "Latin-1 text, lines ending in CR",
			files: map[string]string{"stops.txt": "stop_id,stop_name\rS1,One\rS2,M\xfcnchen\r"},
			want:  []string{"stops.txt:3: not UTF-8 as GTFS requires", "stops.txt: lines end with CR alone"}},
		{name: "a fare file with lines ending in CR (an outside test saw it refused for a missing column)",
			files: map[string]string{"fare_products.txt": "fare_product_id,amount,currency\rflat,2.00,EUR\r"},
			want:  []string{"fare_products.txt: lines end with CR alone"}},
		{name: "a stray quote in a stop's name (an outside test saw the feed refused)",
			files: map[string]string{"stops.txt": "stop_id,stop_name\nS1,Joe \"Diner\"\nS2,Two\n"},
			want:  []string{`stops.txt:2: a " inside a field not quoted as a whole`}},
		{name: "a fare row ending in an empty field (a spreadsheet's export)",
			files: map[string]string{"fare_products.txt": "fare_product_id,amount,currency\nflat,2.00,EUR,\n"},
			want:  []string{"fare_products.txt:2: 4 field(s) where the header names 3 (1 row(s) of the file so)"}},
		{name: "a product's name in Latin-1",
			files: map[string]string{"fare_products.txt": "fare_product_id,fare_product_name,amount,currency\nflat,Einzelfahrt M\xfcnchen,2.00,EUR\n"},
			want:  []string{"fare_products.txt:2: field fare_product_name: not UTF-8 as GTFS requires"}},
		{name: "the same leg rule twice",
			files: map[string]string{"fare_leg_rules.txt": "leg_group_id,fare_product_id\ng,flat\ng,flat\n"},
			want:  []string{"fare_leg_rules.txt:3: the same row as line 2: read once"}},
		{name: "the same stop in an area twice",
			files: map[string]string{"areas.txt": "area_id\nZ1\n", "stop_areas.txt": "area_id,stop_id\nZ1,S1\nZ1,S1\n"},
			want:  []string{"stop_areas.txt:3: the same row as line 2: read once"}},
		{name: "the same join rule twice",
			files: map[string]string{"networks.txt": "network_id\nN1\n", "fare_leg_join_rules.txt": "from_network_id,to_network_id\nN1,N1\nN1,N1\n"},
			want:  []string{"fare_leg_join_rules.txt:3: the same row as line 2: read once"}},
		{name: "a vendor's own file beside the reference's",
			files: map[string]string{"agency_jp.txt": "agency_id\nA\n", "stops_ext.txt": "stop_id\nS1\n", "feed_info.txt": "feed_publisher_name\nX\n",
				"notes.txt": "note\nx\n", "routes2.txt": "route_id\nR2\n", "calendars.txt": "x\ny\n"}},
		{name: "a negative transfer product is no leg's",
			files: map[string]string{"fare_products.txt": "fare_product_id,amount,currency\nflat,2.00,EUR\ndiscount,-0.50,EUR\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := minimalFeedWith(calendar, tc.files)
			var got []string
			if _, err := gtfs.Load(fsys, gtfs.WithWarnings(func(w gtfs.Warning) { got = append(got, w.String()) })); err != nil {
				t.Fatalf("load: %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, want := range tc.want {
				if !strings.Contains(got[i], want) {
					t.Errorf("warning %q, want it to contain %q", got[i], want)
				}
			}
		})
	}
}

func TestWarningString(t *testing.T) {
	tests := []struct {
		w    gtfs.Warning
		want string
	}{
		{gtfs.Warning{File: "calendar.txt", Msg: "missing"}, "calendar.txt: missing"},
		{gtfs.Warning{File: "stops.txt", Line: 3, Msg: "odd"}, "stops.txt:3: odd"},
		{gtfs.Warning{File: "stops.txt", Line: 3, Field: "stop_lat", Msg: "odd"}, "stops.txt:3: field stop_lat: odd"},
	}
	for _, tc := range tests {
		if got := tc.w.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

// TestLoadRefusesAZipBomb: a zip of a few hundred KB whose stops.txt
// inflates past MaxFileSize is refused by its stated size before it is
// inflated (one took over 20 GB of memory before).
func TestLoadRefusesAZipBomb(t *testing.T) {
	files := readFeed(t, "nigiri-fares")
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for name, data := range files {
		fw, err := w.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
		if name == "stops.txt" {
			row := bytes.Repeat([]byte("x"), 1<<20)
			for range gtfs.MaxFileSize>>20 + 1 {
				fw.Write(row)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 4<<20 {
		t.Fatalf("the bomb is %d bytes", buf.Len())
	}
	_, err := gtfs.LoadZip(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err == nil || !strings.Contains(err.Error(), "stops.txt: file of") || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a zip bomb: %v, want stops.txt refused by its size", err)
	}
}

// TestLoadStopsAfterFiftyErrors: a feed broken on every line is refused
// with its first 50 errors and a line saying how many more there were.
func TestLoadStopsAfterFiftyErrors(t *testing.T) {
	files := readFeed(t, "nigiri-fares")
	stops := []byte("stop_id,stop_name\n")
	for i := range 1000 {
		stops = append(stops, fmt.Sprintf("dup,Stop %d\n", i)...) // every line after the first a duplicate id
	}
	files["stops.txt"] = stops
	z := zipFeed(t, files)
	_, err := gtfs.LoadZip(bytes.NewReader(z), int64(len(z)))
	var fe *fares.FeedError
	if !errors.As(err, &fe) {
		t.Fatalf("a feed broken on every line: %v", err)
	}
	if len(fe.Errs) != 51 || !strings.Contains(fe.Errs[50].Error(), "stopped after the first 50 errors: ") || !strings.Contains(fe.Errs[0].Error(), "stops.txt:3:") {
		t.Fatalf("%d errors, first %v, last %v", len(fe.Errs), fe.Errs[0], fe.Errs[len(fe.Errs)-1])
	}
}

// TestLoadZipRefusesAmbiguousNames: a zip another tool would read as
// another feed (an entry outside the zip's root, a name given twice) is
// refused naming the entry, not read as Go's zip reader happens to.
func TestLoadZipRefusesAmbiguousNames(t *testing.T) {
	files := readFeed(t, "nigiri-fares")
	build := func(extra func(w *zip.Writer)) []byte { return zipFeedWith(t, files, extra) }
	add := func(name string, data []byte) func(*zip.Writer) {
		return func(w *zip.Writer) {
			fw, err := w.CreateHeader(&zip.FileHeader{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			fw.Write(data)
		}
	}
	for _, tc := range []struct {
		name  string
		extra func(*zip.Writer)
		says  string
	}{
		{"a second fare_products.txt", add("fare_products.txt", []byte("fare_product_id,amount,currency\nx,1,EUR\n")), `entry "fare_products.txt" is in the zip twice`},
		{"an entry above the root", add("../fare_media.txt", files["fare_products.txt"]), `entry "../fare_media.txt" is not a plain relative path`},
		{"an absolute entry", add("/etc/agency.txt", files["agency.txt"]), `entry "/etc/agency.txt" is not a plain relative path`},
		{"above the root through a backslash", add(`sub\..\..\fare_media.txt`, files["agency.txt"]), `is not a plain relative path`},
		{"a second copy in other case", add("FARE_PRODUCTS.txt", files["fare_products.txt"]), `entry "FARE_PRODUCTS.txt" is in the zip twice (also as "fare_products.txt")`},
		{"a second copy behind ./", add("./fare_products.txt", files["fare_products.txt"]), `is in the zip twice`},
		{"a fare file in a folder beside the feed's files", add("extra/fare_caps.txt", []byte("fare_cap_id,cap_period,amount,currency\nday,0,5.00,EUR\n")),
			`feed zip: extra/fare_caps.txt outside the feed's files (read from the zip's root): it would be skipped`},
		{"a fare file in a Windows folder beside the feed's files", add(`extra\fare_transfer_rules.txt`, []byte("fare_transfer_type\n0\n")),
			`feed zip: extra\fare_transfer_rules.txt outside the feed's files`},
	} {
		z := build(tc.extra)
		_, err := gtfs.LoadZip(bytes.NewReader(z), int64(len(z)))
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want refused saying %q", tc.name, err, tc.says)
		}
	}
	// The same files, each once at the root: loaded; so are names as
	// archivers write them (a folder entry, "./" in front, Windows'
	// backslashes in a folder of their own).
	for name, extra := range map[string]func(*zip.Writer){
		"plain":                  nil,
		"a folder entry":         add("docs/", nil),
		"./ in front":            add("./README.txt", []byte("feed notes")),
		"backslashes":            add(`docs\notes.txt`, []byte("feed notes")),
		"a Mac's resource forks": add("__MACOSX/._fare_caps.txt", []byte{0, 5, 22, 7}),
		"a Mac's fork of a file": add("__MACOSX/fare_caps.txt", []byte{0, 5, 22, 7}),
	} {
		z := build(extra)
		if _, err := gtfs.LoadZip(bytes.NewReader(z), int64(len(z))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Every file behind "./", as bsdtar writes an archive of ".".
	dotted := make(map[string][]byte, len(files))
	for name, data := range files {
		dotted["./"+name] = data
	}
	z := zipFeed(t, dotted)
	if _, err := gtfs.LoadZip(bytes.NewReader(z), int64(len(z))); err != nil {
		t.Errorf("every file behind ./: %v", err)
	}
}

// TestLoadRefusesWhatWouldMisprice: what an outside review of real-world
// feeds found loading with a warning, or silently, and then pricing wrong:
// each is refused, naming the file, line and field.
func TestLoadRefusesWhatWouldMisprice(t *testing.T) {
	const calendar = "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nweekday,1,1,1,1,1,0,0,20250101,20251231\n"
	tests := []struct {
		name  string
		files map[string]string // replacing minimalFeed's
		want  string
		not   string // nor a second error saying this
	}{
		{"a leg priced at a negative amount (it would pay the rider)",
			map[string]string{"fare_products.txt": "fare_product_id,amount,currency\nflat,-2.00,EUR\n"},
			`fare_leg_rules.txt:2: field fare_product_id: fare product "flat" costs -2.00 EUR (-200 minor units, fare_products.txt:2): GTFS allows a negative amount for transfer discounts only`, ""},
		{"a negative cap",
			map[string]string{"fare_caps.txt": "fare_cap_id,cap_period,amount,currency\nday,0,-5.00,EUR\n"},
			"fare_caps.txt:2: field amount: a cap of -500 minor units", ""},
		{"a fare rule row short of a field (its rule_priority read as 0)",
			map[string]string{"fare_leg_rules.txt": "leg_group_id,fare_product_id,rule_priority\ng,flat,1\ng2,flat\n"},
			"fare_leg_rules.txt:3: 2 field(s) where the header names 3 (1 row(s) of the file so): every row of a fare file must have the header's fields", ""},
		{"a fare row with a field too many",
			map[string]string{"fare_products.txt": "fare_product_id,amount,currency\nflat,2.00,EUR,extra\n"},
			"fare_products.txt:2: 4 field(s) where the header names 3", ""},
		{"a fare file in Latin-1",
			map[string]string{"fare_products.txt": "fare_product_id,amount,currency\nflat,2.00,EUR\nsp\xe9cial,1.00,EUR\n"},
			"fare_products.txt:3: field fare_product_id: not UTF-8 as GTFS requires", ""},
		{"a fare file in UTF-16",
			map[string]string{"fare_products.txt": "\xff\xfef\x00a\x00r\x00e\x00"},
			"fare_products.txt: UTF-16 (its byte order mark says so), not UTF-8 as GTFS requires", "missing required column"},
		{"a fare file's name in other case",
			map[string]string{"Fare_Transfer_Rules.txt": "fare_transfer_type\n0\n"},
			"Fare_Transfer_Rules.txt: not a GTFS file name: did you mean fare_transfer_rules.txt?", ""},
		{"a fare file's name misspelt",
			map[string]string{"fare_transfers_rules.txt": "fare_transfer_type\n0\n"},
			"fare_transfers_rules.txt: not a GTFS file name: did you mean fare_transfer_rules.txt?", ""},
		{"a fare file's name with a second extension (one a desktop hid)",
			map[string]string{"fare_transfer_rules.txt.txt": "fare_transfer_type\n0\n"},
			"fare_transfer_rules.txt.txt: not a GTFS file name: did you mean fare_transfer_rules.txt?", ""},
		{"a fare file saved as CSV",
			map[string]string{"fare_transfer_rules.csv": "fare_transfer_type\n0\n"},
			"fare_transfer_rules.csv: not a GTFS file name: did you mean fare_transfer_rules.txt?", ""},
		{"a fare file with no extension",
			map[string]string{"fare_caps": "fare_cap_id,cap_period,amount,currency\nday,0,5.00,EUR\n"},
			"fare_caps: not a GTFS file name: did you mean fare_caps.txt?", ""},
		{"a downloaded copy of a fare file",
			map[string]string{"fare_transfer_rules (1).txt": "fare_transfer_type\n0\n"},
			"fare_transfer_rules (1).txt: not a GTFS file name: did you mean fare_transfer_rules.txt?", ""},
		{"the caps file in the singular",
			map[string]string{"fare_cap.txt": "fare_cap_id,cap_period,amount,currency\nday,0,5.00,EUR\n"},
			"fare_cap.txt: not a GTFS file name: did you mean fare_caps.txt?", ""},
		{"a column name in other case",
			map[string]string{"fare_products.txt": "Fare_Product_ID,amount,currency\nflat,2.00,EUR\n"},
			`fare_products.txt:1: field fare_product_id: missing required column (column "Fare_Product_ID" is there: GTFS column names are case-sensitive)`, ""},
		{"one rule in two leg groups",
			map[string]string{"fare_leg_rules.txt": "leg_group_id,fare_product_id\ng,flat\nother,flat\n"},
			`fare_leg_rules.txt:3: field leg_group_id: the same rule as line 2 is in leg group "g" there and "other" here`, ""},
		{"a duration limit that is no number (one error, not a second saying it is empty)",
			map[string]string{"fare_transfer_rules.txt": "fare_transfer_type,duration_limit,duration_limit_type\n0,90m,0\n"},
			`fare_transfer_rules.txt:2: field duration_limit: invalid integer "90m"`, "forbidden when duration_limit is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := minimalFeedWith(calendar, tc.files)
			_, err := gtfs.Load(fsys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("load: %v\nwant an error containing %q", err, tc.want)
			}
			if tc.not != "" && strings.Contains(err.Error(), tc.not) {
				t.Errorf("load: %v\nwant no error saying %q", err, tc.not)
			}
		})
	}
}

// TestLoadRefusesWhatIsNoFile: a feed's file that is not a regular file is
// refused, naming it, without being read: a FIFO held the loader (and
// clearing's start) up for ever, and a link to /dev/zero was read to the
// 256 MiB limit (an outside test). So is a feed path that is a FIFO.
func TestLoadRefusesWhatIsNoFile(t *testing.T) {
	base := filepath.Join(testdataDir(t), "nigiri-fares")
	fifo := func(dir, name string) {
		if err := syscall.Mkfifo(filepath.Join(dir, name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := func(dir, name string) {
		if err := os.Symlink("/dev/zero", filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		make func(dir, name string)
		want string
	}{
		{"a FIFO", fifo, "fare_products.txt: a named pipe (FIFO), not a regular file"},
		{"a link to /dev/zero", link, "fare_products.txt: a character device, not a regular file"},
	} {
		dir := filepath.Join(t.TempDir(), "feed")
		if err := os.CopyFS(dir, os.DirFS(base)); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, "fare_products.txt")); err != nil {
			t.Fatal(err)
		}
		tc.make(dir, "fare_products.txt")
		done := make(chan error, 1)
		go func() { _, err := gtfs.LoadPath(dir); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want it named: %q", tc.name, err, tc.want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: still loading after 20 s", tc.name)
		}
	}
	dir := t.TempDir()
	fifo(dir, "feed.zip")
	if _, err := gtfs.LoadPath(filepath.Join(dir, "feed.zip")); err == nil || !strings.Contains(err.Error(), "a named pipe (FIFO), not a feed directory or zip file") {
		t.Errorf("a FIFO as the feed: %v", err)
	}
}
