package journeys

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
)

// raisedBusFare writes the city feed with the adult bus fare raised from
// 1.80 to 2.00: a new feed version.
func raisedBusFare(t *testing.T) *fares.Feed {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "city-2")
	if err := os.CopyFS(dir, os.DirFS("testdata/city")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "fare_products.txt")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raised := strings.Replace(string(b), "adult,,1.80,EUR", "adult,,2.00,EUR", 1)
	if raised == string(b) {
		t.Fatal("no adult bus fare of 1.80 in the city feed")
	}
	if err := os.WriteFile(p, []byte(raised), 0o644); err != nil {
		t.Fatal(err)
	}
	feed, err := gtfs.LoadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	return feed
}

// TestBookNextFeedVersion: a new feed version takes over from a stated
// fare day: days before it are priced with the old version (also when
// their taps arrive after the switch), days from it with the new one, and
// each day records the version it was priced with.
func TestBookNextFeedVersion(t *testing.T) {
	b := testBook(t)
	b.Next, b.NextFrom = &Book{Feed: raisedBusFare(t), FeedVersion: "city-2", Currency: "EUR"}, fares.DateOf(2026, 12, 3)
	tests := []struct {
		name    string
		tap     Tap
		charged int64
		version string
	}{
		{"Wednesday, before the switch: the old fare", busAt("bus-s01", at(2, 11, 0)), 180, "city-test"},
		{"Wednesday 03:30 on Thursday's clock: still Wednesday's fare day", busAt("bus-s01", at(3, 3, 30)), 180, "city-test"},
		{"Thursday from 04:00: the new fare", busAt("bus-s01", at(3, 11, 0)), 200, "city-2"},
		{"Friday: the new fare", busAt("bus-s01", at(4, 11, 0)), 200, "city-2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &Day{Date: b.Feed.FareDay(tc.tap.Time), Category: "adult", Medium: "card"}
			if _, _, err := b.Add(d, tc.tap, nil); err != nil {
				t.Fatal(err)
			}
			if d.Charged != tc.charged || d.FeedVersion != tc.version {
				t.Errorf("charged %d with %q, want %d with %q", d.Charged, d.FeedVersion, tc.charged, tc.version)
			}
			ex, err := b.Explain(d, nil)
			if err != nil || !ex.Matches {
				t.Errorf("explanation %+v, %v: want it to match what was booked", ex, err)
			}
		})
	}
}
