package clearing

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/clearing/journeys"
)

// TestFeedWithoutAnEnrolledCategory: a feed version that lacks a rider
// category riders are enrolled in, for a time it prices, is refused naming
// the category, the riders and the version (their taps would match no
// product and travel free: an outside test saw an enrolled concession card
// ride at 0.00 after such a feed was accepted); one that takes over after
// every such enrolment has ended is not. An enrolment into a time a
// scheduled version without its category prices is refused too
// (versionsLacking).
func TestFeedWithoutAnEnrolledCategory(t *testing.T) {
	f := newPricedFixture(t, t.TempDir())
	defer f.st.Close()
	// The city feed less its concession products and caps, and less the
	// category too (keep: false) or keeping it (sold nothing: the outside
	// recheck's case).
	without := func(keepCategory, metroOnly bool) *fares.Feed {
		dir := t.TempDir()
		ents, _ := os.ReadDir("journeys/testdata/city")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("journeys/testdata/city", e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			var keep []string
			for _, l := range strings.Split(string(b), "\n") {
				drop := strings.Contains(l, "concession") && !(keepCategory && e.Name() == "rider_categories.txt")
				if metroOnly { // its metro products alone
					drop = e.Name() == "fare_products.txt" && strings.Contains(l, ",concession,") && strings.HasPrefix(l, "metro-")
				}
				if !drop {
					keep = append(keep, l)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte(strings.Join(keep, "\n")), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		f, err := gtfs.LoadPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	noConcession, unsold, busOnly := without(false, false), without(true, false), without(true, true)
	if !slices.Contains(unsold.RiderCategories(), "concession") {
		t.Fatal("the unsold feed lost its category")
	}
	feed := f.pricing.Book.Feed
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, feed.Location())
	day := feed.FareDay(now)
	until := feed.FareDayBegins(day + 30)
	if _, _, _, err := f.st.appendEnrolment(Enrolment{Rider: f.rider("card-c"), Media: "card", Key: "0x" + strings.Repeat("01", 16), Category: "concession", ApprovedBy: "desk",
		ValidFrom: feed.FareDayBegins(day + 1), ValidUntil: until, CreatedAt: now}, nil); err != nil {
		t.Fatal(err)
	}
	book := func(nextFrom int) *journeys.Book {
		b := *f.pricing.Book
		b.Next, b.NextFrom = &journeys.Book{Feed: noConcession, FeedVersion: "no-concession", Currency: "EUR"}, day+fares.Date(nextFrom)
		return &b
	}
	if err := f.st.checkEnrolledCategories(context.Background(), &journeys.Book{Feed: f.pricing.Book.Feed, FeedVersion: "city", Currency: "EUR",
		Next: &journeys.Book{Feed: unsold, FeedVersion: "unsold", Currency: "EUR"}, NextFrom: day + 10}, now, nil, nil); err == nil || !strings.Contains(err.Error(), `feed version unsold cannot price rider category "concession" (no fare product is sold to rider category "concession")`) {
		t.Errorf("a version naming the category but selling it nothing: %v, want it refused", err)
	}
	// Nor one that sells it on the bus and tram and not on the metro (the
	// outside recheck's next case: concession metro rides charged 0).
	if err := f.st.checkEnrolledCategories(context.Background(), &journeys.Book{Feed: f.pricing.Book.Feed, FeedVersion: "city", Currency: "EUR",
		Next: &journeys.Book{Feed: busOnly, FeedVersion: "bus-only", Currency: "EUR"}, NextFrom: day + 10}, now, nil, nil); err == nil || !strings.Contains(err.Error(), `feed version bus-only cannot price rider category "concession" (a leg on network "metro" from area metro-z1 to area metro-z1 at 04:00:00 on 2026-12-12 is priced for a rider in no category paying by card (fare_leg_rules.txt line 11)`) {
		t.Errorf("a version selling the category nothing on the metro: %v, want it refused naming a metro rule", err)
	}
	for _, tc := range []struct {
		name     string
		nextFrom int
		err      string
	}{
		{"taking over while the enrolment runs", 10, `feed version no-concession cannot price rider category "concession" (rider category "concession" is not in rider_categories.txt), and 1 riders are enrolled in it`},
		{"taking over on its last day", 29, `cannot price rider category "concession"`},
		{"taking over once it has ended", 30, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.st.checkEnrolledCategories(context.Background(), book(tc.nextFrom), now, nil, nil)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("%v, want an error saying %q", err, tc.err)
			}
			lack, err := newCategoryChecker(context.Background(), freshCheck).lacking(book(tc.nextFrom), "concession", "card", feed.FareDayBegins(day+1), until)
			if err != nil || (len(lack) > 0) != (tc.err != "") {
				t.Errorf("an enrolment over those days: versions lacking its category %d, %v", len(lack), err)
			}
		})
	}
	// The refusal names the rider, for the operator to revoke; a
	// revocation queued while clearing is stopped (it applies none before
	// it starts) holds the check to it: from now, or from the day the
	// version takes over, nothing is in the way; from a day after, the
	// days between still are.
	rider := f.rider("card-c")
	if err := f.st.checkEnrolledCategories(context.Background(), book(10), now, nil, nil); err == nil || !strings.Contains(err.Error(), rider) || !strings.Contains(err.Error(), "faregate clearing enrol revoke") {
		t.Errorf("the refusal: %v, want it to name %s and say how to revoke", err, rider)
	}
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, RiderKeyFile), nil, 0o600); err != nil { // clearing's data dir
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		from time.Time // zero: at once
		ok   bool
	}{
		{"revoked now (from the next fare day)", time.Time{}, true},
		{"revoked from the day the version takes over", feed.FareDayBegins(day + 10), true},
		{"revoked from a day later", feed.FareDayBegins(day + 11), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paths, _ := PendingEnrolments(dataDir)
			for _, p := range paths {
				os.Remove(p)
			}
			if _, err := QueueEnrolment(dataDir, QueuedEnrolment{Rider: rider, Revoke: true, ApprovedBy: "desk", ValidFrom: tc.from}, now); err != nil {
				t.Fatal(err)
			}
			revoked, err := queuedRevocations(dataDir, now, feedDays{f.pricing}.dayStartAtOrAfter)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.st.checkEnrolledCategories(context.Background(), book(10), now, nil, revoked); (err == nil) != tc.ok {
				t.Errorf("with the revocation queued: %v, want refused %v", err, !tc.ok)
			}
		})
	}
	// Once it has ended (the fare clock past it), nothing is in the way.
	if err := f.st.checkEnrolledCategories(context.Background(), book(10), until.Add(time.Hour), nil, nil); err != nil {
		t.Errorf("after the enrolment ended: %v", err)
	}
}
