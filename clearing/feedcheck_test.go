package clearing_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
		{"another currency", func(r *clearing.Registry) { r.Currency = "CAD" }, `fare_products.txt: currency EUR (fare product "metro-peak-1zone" and 21 more rows), the registry settles in CAD`},
		{"no agency an operator", func(r *clearing.Registry) {
			for i := range r.Operators {
				r.Operators[i].ID = "op" + r.Operators[i].ID
			}
			for i := range r.Terminals {
				r.Terminals[i].Operator = "op" + r.Terminals[i].Operator
				r.Terminals[i].KeyProof = nil // it names the operator's old id
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

// TestCheckFeedsRollingCutOver: a feed with rolling-week caps is taken
// with its fare day beginning in the hour the clocks repeat in autumn:
// fare days follow the instant there, so they stay in time order (such a
// feed was refused until then), as with the usual 04:00 cut-over.
func TestCheckFeedsRollingCutOver(t *testing.T) {
	reg, _ := testRegistry(2)
	// Gates the city prices (a feed that prices none is refused).
	reg.Terminals[0].Stop, reg.Terminals[1].Stop = "metro-s01", "bus-s01"
	reg.Legs = []clearing.TerminalLeg{{Terminal: "t1", Network: "metro"}, {Terminal: "t2", Route: "bus-L1"}}
	for _, tc := range []struct {
		start, want string
	}{
		{"02:30:00", ""},
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

// TestCheckFeedsGatesAndCategories: what an outside fares test found
// clearing took without a word. Refused: a feed that prices no rider in no
// category (every unenrolled rider free), a cap in another currency (it
// would never apply), a gate whose route another agency runs (every fare
// of the gate to that operator), a leg for a terminal the registry does
// not list. Said at start, not refused: a gate at a stop or on a route the
// feed does not know (a new gate: its taps are applied unpriced).
func TestCheckFeedsGatesAndCategories(t *testing.T) {
	feedWith := func(t *testing.T, file, from, to string, more ...[3]string) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "feed")
		if err := os.CopyFS(dir, os.DirFS("journeys/testdata/city")); err != nil {
			t.Fatal(err)
		}
		for _, m := range more {
			b, err := os.ReadFile(filepath.Join(dir, m[0]))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), m[1]) {
				t.Fatalf("%s has no %q", m[0], m[1])
			}
			if err := os.WriteFile(filepath.Join(dir, m[0]), []byte(strings.Replace(string(b), m[1], m[2], 1)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if file != "" {
			b, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), from) {
				t.Fatalf("%s has no %q", file, from)
			}
			if err := os.WriteFile(filepath.Join(dir, file), []byte(strings.Replace(string(b), from, to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	// The city's gates: a metro one at metro-s01, a bus one on bus-L1.
	cityRegistry := func() *clearing.Registry {
		reg, _ := testRegistry(2)
		reg.Operators = append(reg.Operators, clearing.OperatorConfig{ID: "tram", Name: "Tram", FlatFare: 200})
		reg.Terminals[0].Stop, reg.Terminals[1].Stop = "metro-s01", "bus-s01"
		reg.Legs = []clearing.TerminalLeg{{Terminal: "t1", Network: "metro"}, {Terminal: "t2", Route: "bus-L1"}}
		return reg
	}
	for _, tc := range []struct {
		name           string
		file, from, to string
		more           [][3]string // further edits: file, from, to
		edit           func(*clearing.Registry)
		refused, warns string
	}{
		{name: "the city as it is"},
		{name: "no default category", file: "rider_categories.txt", from: "adult,Adult,1", to: "adult,Adult,0",
			refused: "rider_categories.txt marks no category the default"},
		// A transfer product for any category prices no leg.
		{name: "no default category, a transfer product for any", file: "rider_categories.txt", from: "adult,Adult,1", to: "adult,Adult,0",
			more:    [][3]string{{"fare_products.txt", "transfer-discount,Transfer discount,adult,,-0.60,EUR", "transfer-discount,Transfer discount,,,-0.60,EUR"}},
			refused: "rider_categories.txt marks no category the default"},
		{name: "a cap in another currency", file: "fare_caps.txt", from: "daily-adult,adult,,0,8.00,EUR", to: "daily-adult,adult,,0,8.00,USD",
			refused: `fare_caps.txt: currency USD (fare cap "daily-adult"), the registry settles in EUR`},
		{name: "caps beginning their days at different times", file: "fare_caps.txt", from: "weekly-adult,adult,,1,30.00,EUR,04:00:00", to: "weekly-adult,adult,,1,30.00,EUR,04:30:00",
			refused: "fare_caps.txt: caps begin their days at different times, 04:00:00 (daily-adult), 04:30:00 (weekly-adult)"},
		{name: "no off-peak bus rule", file: "fare_leg_rules.txt", from: "bus,bus,,,offpeak,,bus-offpeak,0\n", to: "",
			warns: `t2 (stop bus-s01): no fare for an entry there (a rider in no category paying by card, priced as fare medium card) in 138 of the 168 hours of the week from`},
		// Ten minutes unpriced each weekday evening (peak ends at 19:50,
		// off-peak begins at 20:00), found though no quarter of an hour
		// falls in it: at the timeframe's end.
		{name: "a gap between timeframes", file: "timeframes.txt", from: "peak,17:00:00,20:00:00,weekdays", to: "peak,17:00:00,19:50:00,weekdays",
			warns: `t2 (stop bus-s01): no fare for an entry there (a rider in no category paying by card, priced as fare medium card) in 5 of the 168 hours of the week from`},
		// The calendar run out: the timeframes never match, and the rules
		// without one price every tap (an outside test found evening and
		// weekend fares gone without a word). Here the bus has such a
		// rule and is priced; the metro's fares are gone, said.
		{name: "a calendar that has run out", file: "calendar.txt", from: "weekdays,1,1,1,1,1,0,0,20200101,20991231", to: "weekdays,1,1,1,1,1,0,0,20200101,20251231",
			more: [][3]string{{"calendar.txt", "weekends,0,0,0,0,0,1,1,20200101,20991231", "weekends,0,0,0,0,0,1,1,20200101,20251231"},
				{"fare_leg_rules.txt", "bus,bus,,,offpeak,,bus-offpeak,0", "bus,bus,,,,,bus-offpeak,0"}},
			warns: `timeframes.txt names services that run on no day from`},
		// With every rule timed, no gate is priced at all: refused, the
		// calendar named as why.
		{name: "a calendar that has run out, every rule timed", file: "calendar.txt", from: "weekdays,1,1,1,1,1,0,0,20200101,20991231", to: "weekdays,1,1,1,1,1,0,0,20200101,20251231",
			more:    [][3]string{{"calendar.txt", "weekends,0,0,0,0,0,1,1,20200101,20991231", "weekends,0,0,0,0,0,1,1,20200101,20251231"}},
			refused: "every tap would be applied free; timeframes.txt names services that run on no day from"},
		{name: "a metro gate on a bus route", edit: func(r *clearing.Registry) { r.Legs[0] = clearing.TerminalLeg{Terminal: "t1", Route: "bus-L1"} },
			refused: `terminal t1: a gate's route is another agency's: route "bus-L1" is run by agency "bus", not the gate's operator "metro"`},
		{name: "a leg for no terminal", edit: func(r *clearing.Registry) {
			r.Legs = append(r.Legs, clearing.TerminalLeg{Terminal: "t9", Route: "bus-L1"})
		},
			refused: `registry leg for terminal "t9", which the registry does not list`},
		{name: "a route the feed does not know", edit: func(r *clearing.Registry) { r.Legs[1].Route = "bus-L9" },
			warns: `t2 (stop bus-s01): unknown route`},
		{name: "a stop the feed does not know", edit: func(r *clearing.Registry) { r.Terminals[0].Stop = "metro-s99" },
			warns: `t1 (stop metro-s99): unknown stop`},
		// No gate at all: another city's feed, or a registry naming none
		// of its stops; every tap would be free (an outside review saw
		// clearing start with a warning only).
		{name: "a feed that prices no gate", edit: func(r *clearing.Registry) {
			r.Terminals[0].Stop, r.Terminals[1].Stop = "metro-s99", "bus-s99"
		},
			refused: "the feed prices an entry at none of the registry's 2 gates in any hour of the week"},
		// An operator of the registry that is no agency of the feed: said
		// (an outside test saw nothing said).
		{name: "an operator the feed has no agency for", edit: func(r *clearing.Registry) {
			r.Operators = append(r.Operators, clearing.OperatorConfig{ID: "ferry", Name: "Ferry", FlatFare: 100})
		},
			warns: `operators=ferry`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			feed, err := gtfs.LoadPath(feedWith(t, tc.file, tc.from, tc.to, tc.more...))
			if err != nil {
				t.Fatal(err)
			}
			reg := cityRegistry()
			if tc.edit != nil {
				tc.edit(reg)
			}
			var logs strings.Builder
			err = clearing.CheckFeeds(feed, nil, time.Time{}, reg, slog.New(slog.NewTextHandler(&logs, nil)))
			switch {
			case tc.refused != "":
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("%v, want refused saying %q", err, tc.refused)
				}
			case err != nil:
				t.Fatalf("refused: %v", err)
			case tc.warns != "" && !strings.Contains(logs.String(), tc.warns):
				t.Fatalf("logged %q, want a warning saying %q", logs.String(), tc.warns)
			case tc.warns == "" && strings.Contains(logs.String(), "cannot price"):
				t.Fatalf("warned of a gate it can price: %s", logs.String())
			case tc.warns == "" && strings.Contains(logs.String(), "timeframes do not run"):
				t.Fatalf("warned of timeframes that run: %s", logs.String())
			}
		})
	}
}

// TestFeedTimeframesRunningOut: a feed whose calendar.txt ends soon is
// said at start, and clearing watches it each fare day: a week ahead it
// says the timeframes stop running soon, and once they run on no day from
// then on the gauge counts the idle services and the log says fares are
// priced without them (an outside test saw a calendar end eight days
// after start turn 3.20 evening fares into 4.65, unsaid).
func TestFeedTimeframesRunningOut(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "feed")
	if err := os.CopyFS(src, os.DirFS("journeys/testdata/city")); err != nil {
		t.Fatal(err)
	}
	// Weekday service (peak and weekday off-peak) ends 20 days from now.
	end := time.Now().AddDate(0, 0, 20)
	cal := "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\n" +
		"daily,1,1,1,1,1,1,1,20200101,20991231\n" +
		"weekdays,1,1,1,1,1,0,0,20200101," + end.Format("20060102") + "\n" +
		"weekends,0,0,0,0,0,1,1,20200101,20991231\n"
	if err := os.WriteFile(filepath.Join(src, "calendar.txt"), []byte(cal), 0o644); err != nil {
		t.Fatal(err)
	}
	feed, err := gtfs.LoadPath(src)
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := fareCityRegistry(t)
	led := openLedger(t, filepath.Join(dir, "chain"))
	t.Cleanup(func() { led.Close() })
	var ahead atomic.Int64 // the fare clock's lead on the wall clock
	var logs syncBuffer
	promReg := prometheus.NewRegistry()
	cl := startClearing(t, clearing.Config{DataDir: filepath.Join(dir, "clearing"), Registry: reg, Ledger: led, Period: time.Hour,
		Feed: feed, FeedVersion: "city-ends", Metrics: promReg, MaxDeviceTimeAhead: -1,
		FareClock: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) },
		Logger:    slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	t.Cleanup(func() { cl.stop(t) })
	if got := logs.String(); !strings.Contains(got, "timeframes do not run, or stop running soon") || !strings.Contains(got, "weekdays") {
		t.Errorf("at start, 20 days before the calendar ends, nothing said:\n%s", got)
	}
	idle := func() float64 {
		mfs, err := promReg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "faregate_clearing_feed_idle_timeframe_services" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	if v := idle(); v != 0 {
		t.Errorf("idle timeframe services at start: %v, want 0", v)
	}
	// A week before the calendar ends: said as coming.
	ahead.Store(int64(14 * 24 * time.Hour))
	waitFor(t, "the coming end said", 10*time.Second, func() bool { return strings.Contains(logs.String(), "the feed's timeframes stop running soon") })
	// Past it: the gauge and the log say fares are priced without them.
	ahead.Store(int64(22 * 24 * time.Hour))
	waitFor(t, "the idle timeframes counted", 10*time.Second, func() bool { return idle() == 1 })
	if got := logs.String(); !strings.Contains(got, "the feed's timeframes run on no day from now on") || !strings.Contains(got, "services=weekdays") {
		t.Errorf("the calendar ended, the log says:\n%s", got)
	}
}
