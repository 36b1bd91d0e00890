package clearing_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/clearing/fares/gtfs"
)

// TestOpenRefusesAFeedThatDoesNotFitTheRegistry: a feed whose agencies are
// none of the registry's operators, whose fares are in another currency,
// or that has no leg rules (every tap free), is refused at start by name (it used to price every tap for an
// operator the contract does not know, and no batch could be anchored).
func TestOpenRefusesAFeedThatDoesNotFitTheRegistry(t *testing.T) {
	feed, err := gtfs.LoadPath("journeys/testdata/city")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*clearing.Registry)
		want string
	}{
		{"another currency", func(r *clearing.Registry) { r.Currency = "CAD" }, "fare_products.txt: currency EUR, the registry settles in CAD"},
		{"no agency an operator", func(r *clearing.Registry) {
			for i := range r.Operators {
				r.Operators[i].ID = "op" + r.Operators[i].ID
			}
			for i := range r.Terminals {
				r.Terminals[i].Operator = "op" + r.Terminals[i].Operator
			}
		}, "agency.txt: no agency_id (metro, bus, tram) is an operator of the registry"},
		{"no leg rules", nil, "fare_leg_rules.txt is missing or empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			feed := feed
			if tc.edit == nil { // the feed without its leg rules: every tap would be free
				noLegs := filepath.Join(dir, "feed")
				if err := os.CopyFS(noLegs, os.DirFS("journeys/testdata/city")); err != nil {
					t.Fatal(err)
				}
				for _, f := range []string{"fare_leg_rules.txt", "fare_transfer_rules.txt"} { // transfers name leg groups
					if err := os.Remove(filepath.Join(noLegs, f)); err != nil {
						t.Fatal(err)
					}
				}
				var err error
				if feed, err = gtfs.LoadPath(noLegs); err != nil {
					t.Fatal(err)
				}
				tc.edit = func(*clearing.Registry) {}
			}
			reg, _ := testRegistry(2)
			tc.edit(reg)
			led := openLedger(t, filepath.Join(dir, "chain"))
			defer led.Close()
			cl, err := clearing.Open(context.Background(), clearing.Config{DataDir: filepath.Join(dir, "clearing"), NATSPort: -1, Registry: reg, Ledger: led,
				Period: time.Hour, Logger: quietLogger(), Feed: feed, FeedVersion: "city"})
			if err == nil {
				cl.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestCheckFeedsRollingCutOver: a feed with rolling-week caps whose fare
// day begins in the hour the clocks repeat in autumn is refused, naming the
// hour and the day (fare days are not in time order there); the same caps
// with the usual 04:00 cut-over are taken.
func TestCheckFeedsRollingCutOver(t *testing.T) {
	reg, _ := testRegistry(2)
	for _, tc := range []struct {
		start, want string
	}{
		{"02:30:00", "begins at 02:30:00, in the hour the clocks of Europe/Berlin repeat on"},
		{"04:00:00", ""},
	} {
		dir := filepath.Join(t.TempDir(), "feed")
		if err := os.CopyFS(dir, os.DirFS("journeys/testdata/city")); err != nil {
			t.Fatal(err)
		}
		caps := "fare_cap_id,rider_category_id,fare_media_id,cap_period,amount,currency,day_start_time\nrolling-adult,adult,,2,30.00,EUR," + tc.start + "\n"
		if err := os.WriteFile(filepath.Join(dir, "fare_caps.txt"), []byte(caps), 0o644); err != nil {
			t.Fatal(err)
		}
		feed, err := gtfs.LoadPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		err = clearing.CheckFeeds(feed, nil, time.Time{}, reg, quietLogger())
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("cut-over %s: %v, want %q", tc.start, err, tc.want)
		}
	}
}
