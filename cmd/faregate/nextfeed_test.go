package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faregate/faregate/clearing"
	"github.com/faregate/faregate/fare"
)

// TestLiveFeedVersionTakesEffect: clearing started with a new feed version
// scheduled for Thursday 04:00 (the adult bus fare raised from 1.80 to
// 2.00) prices Wednesday's taps with the old version, also one arriving
// after Thursday's, and Thursday's with the new one; the independent
// repricing agrees day by day.
func TestLiveFeedVersionTakesEffect(t *testing.T) {
	next := filepath.Join(t.TempDir(), "city-2")
	if err := os.CopyFS(next, os.DirFS(cityFeedDir)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(next, "fare_products.txt")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), "adult,,1.80,EUR", "adult,,2.00,EUR", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	nextFeed, nextVersion, err := loadFeed(next, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	c := startLiveCity(t, []gateSpec{{"bus-s01-g1", "bus", "bus-s01", "bus", "bus-L1"}}, func(cfg *clearing.Config) {
		// Stated as 02:30 UTC: the first fare day beginning at or after it
		// is Thursday's (04:00 Berlin, 03:00 UTC).
		cfg.NextFeed, cfg.NextFeedVersion, cfg.NextFeedFrom = nextFeed, nextVersion, decAt(3, 3, 30)
	})
	c.tap("bus-s01-g1", fare.Validate, "card-v", decAt(2, 11, 0))
	c.tap("bus-s01-g1", fare.Validate, "card-v", decAt(3, 11, 0))
	c.tap("bus-s01-g1", fare.Validate, "card-v", decAt(2, 12, 0)) // late, after Thursday's
	c.waitFor("3 taps priced", func() bool { return c.cl.Stats().Priced >= 3 })
	bal, err := c.cl.Store().Balance(c.cl.RiderAccount(fare.Card, "card-v"))
	if err != nil {
		t.Fatal(err)
	}
	if bal.Net() != -(180 + 180 + 200) {
		t.Fatalf("rider charged %d, want 5.60 (two old bus fares on Wednesday, one new on Thursday)", -bal.Net())
	}
	fa, err := c.cl.AuditFares()
	if err != nil || fa.Count != 0 || fa.RiderDays != 2 {
		t.Fatalf("fare audit %+v, %v", fa, err)
	}
}

// TestLoadFeedRefusesAFeedWithoutLegRules: a feed that loads but has no
// fare leg rules would apply every tap free of charge; clearing refuses
// it by name.
func TestLoadFeedRefusesAFeedWithoutLegRules(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"agency.txt", "stops.txt", "routes.txt"} {
		b, err := os.ReadFile(filepath.Join(cityFeedDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := loadFeed(dir, quietLog); err == nil || !strings.Contains(err.Error(), "fare_leg_rules.txt is missing or empty") {
		t.Fatalf("a feed without fares: %v, want it refused naming fare_leg_rules.txt", err)
	}
	if _, _, err := loadFeed(cityFeedDir, quietLog); err != nil {
		t.Fatalf("the city feed: %v", err)
	}
}
