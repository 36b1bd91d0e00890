package clearing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/fare"
)

// cityFeedWith writes the city feed to a directory with some of its
// files rewritten (edit gets a file's text, returns the new), and returns
// the directory.
func cityFeedWith(t *testing.T, edit map[string]func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir("journeys/testdata/city")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("journeys/testdata/city", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if fn := edit[e.Name()]; fn != nil {
			s = fn(s)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, fn := range edit {
		if _, err := os.Stat(filepath.Join(dir, name)); os.IsNotExist(err) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(fn("")), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// concessionFlat rewrites the city feed's fares so that concession riders
// are sold one flat fare only, while service concsvc (its calendar.txt
// row) runs.
func concessionFlat(calendar string) map[string]func(string) string {
	return map[string]func(string) string{
		"fare_products.txt": func(s string) string {
			var keep []string
			for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
				if !strings.Contains(l, ",concession,") {
					keep = append(keep, l)
				}
			}
			return strings.Join(keep, "\n") + "\nconc-flat,Concession flat,concession,,1.00,EUR\n"
		},
		"calendar.txt":       func(s string) string { return s + calendar + "\n" },
		"timeframes.txt":     func(s string) string { return s + "concall,00:00:00,24:00:00,concsvc\n" },
		"fare_leg_rules.txt": func(s string) string { return s + "conc,,,,concall,,conc-flat,0\n" },
	}
}

// TestEnrolmentCheckedOnItsMedium: an enrolment is checked against what
// the feed sells on its own medium, at enrolment and at every later check.
// An outside test saw a feed selling concession fares on the card alone
// accept a face enrolment (checked on the card) and the face concession
// rider travel for 0.
func TestEnrolmentCheckedOnItsMedium(t *testing.T) {
	dir := cityFeedWith(t, map[string]func(string) string{
		"fare_products.txt": func(s string) string { return strings.ReplaceAll(s, ",concession,,", ",concession,card,") },
	})
	f := newPricedFixtureOf(t, t.TempDir(), dir)
	defer f.st.Close()
	feed := f.pricing.Book.Feed
	c := &Clearing{store: f.st}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, feed.Location())
	day := feed.FareDay(now)
	e := Enrolment{Category: "concession", ApprovedBy: "desk", ValidFrom: feed.FareDayBegins(day + 1), ValidUntil: feed.FareDayBegins(day + 60), CreatedAt: now}
	if err := c.checkEnrolmentFeeds(context.Background(), e, fare.Card); err != nil {
		t.Errorf("a card enrolment: %v", err)
	}
	err := c.checkEnrolmentFeeds(context.Background(), e, fare.Face)
	if !errors.Is(err, ErrInvalidEnrolment) || !strings.Contains(err.Error(), `no fare product is sold to rider category "concession" paying by face`) {
		t.Errorf("a face enrolment: %v, want it refused", err)
	}
	// Records made before (by an earlier version of clearing): the face
	// rider's refuse the feed, the card rider's do not.
	for _, m := range []fare.MediaKind{fare.Card, fare.Face} {
		r := e
		r.Rider, r.Media, r.Key = RiderAccount(f.riderKey, m, "rider-1"), m.String(), fare.DenyKey(m, "rider-1")
		if _, _, _, err := f.st.appendEnrolment(r, nil); err != nil {
			t.Fatal(err)
		}
		err := f.st.checkEnrolledCategories(context.Background(), f.pricing.Book, now, nil, nil)
		switch {
		case m == fare.Card && err != nil:
			t.Errorf("a card rider enrolled: %v", err)
		case m == fare.Face && (err == nil || !strings.Contains(err.Error(), "paying by face), and 1 riders are enrolled in it by face")):
			t.Errorf("a face rider enrolled too: %v, want the feed refused", err)
		}
	}
}

// TestEnrolmentToTheEndOfItsLastFareDay: an enrolment's last fare day runs
// to the next day's cut-over (04:00 in the city): a feed whose concession
// fares end with the calendar day before refuses it. An outside test saw
// one until 2027-04-01T04:00 accepted with concession fares ending on
// 03-31, and a 01:00 ride on 04-01 priced 0.
func TestEnrolmentToTheEndOfItsLastFareDay(t *testing.T) {
	f := newPricedFixtureOf(t, t.TempDir(), cityFeedWith(t, concessionFlat("concsvc,1,1,1,1,1,1,1,20200101,20270331")))
	defer f.st.Close()
	c := &Clearing{store: f.st}
	loc := f.pricing.Book.Feed.Location()
	at := func(m time.Month, d, h int) time.Time { return time.Date(2027, m, d, h, 0, 0, 0, loc) }
	for _, tc := range []struct {
		until time.Time
		want  string
	}{
		{at(3, 31, 4), ""},
		{at(4, 1, 4), "at 00:00:00 on 2027-04-01 is priced for a rider in no category paying by card"},
	} {
		err := c.checkEnrolmentFeeds(context.Background(), Enrolment{Category: "concession", ValidFrom: at(3, 29, 4), ValidUntil: tc.until}, fare.Card)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("until %s: %v, want %q", tc.until.Format(time.RFC3339), err, tc.want)
		}
	}
}

// TestEnrolmentLongerThanFormerCheck: an enrolment is checked over all of
// its days, however many (at most 20 years: MaxEnrolmentYears), so one
// running into days its feed cannot price is refused when made, and a
// later start never finds, in days the check at enrolment never looked
// at, a reason to refuse the feed it runs with. An outside test saw a
// two-year enrolment accepted (400 days looked at) and clearing, restarted
// with the same feed, refuse to start once the gap came within 400 days.
func TestEnrolmentLongerThanFormerCheck(t *testing.T) {
	if MaxEnrolmentYears*366+2 > fares.MaxCategoryCheckDays {
		t.Fatalf("enrolments of %d years are longer than the check looks", MaxEnrolmentYears)
	}
	f := newPricedFixtureOf(t, t.TempDir(), cityFeedWith(t, concessionFlat("concsvc,1,1,1,1,1,1,1,20200101,20280331")))
	defer f.st.Close()
	c := &Clearing{store: f.st}
	loc := f.pricing.Book.Feed.Location()
	from := time.Date(2026, 12, 8, 4, 0, 0, 0, loc)
	err := c.checkEnrolmentFeeds(context.Background(), Enrolment{Category: "concession", ValidFrom: from, ValidUntil: time.Date(2028, 12, 31, 4, 0, 0, 0, loc)}, fare.Card)
	if !errors.Is(err, ErrInvalidEnrolment) || !strings.Contains(err.Error(), "on 2028-04-01") {
		t.Errorf("an enrolment to 2028-12-31: %v, want it refused", err)
	}
	until := time.Date(2028, 3, 31, 4, 0, 0, 0, loc)
	e := Enrolment{Rider: RiderAccount(f.riderKey, fare.Card, "long-1"), Media: "card", Key: fare.DenyKey(fare.Card, "long-1"), Category: "concession",
		ApprovedBy: "desk", ValidFrom: from, ValidUntil: until, CreatedAt: from.Add(-time.Hour)}
	if err := c.checkEnrolmentFeeds(context.Background(), e, fare.Card); err != nil {
		t.Fatalf("an enrolment to 2028-03-31: %v", err)
	}
	if _, _, _, err := f.st.appendEnrolment(e, nil); err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{from.Add(-time.Hour), time.Date(2027, 3, 1, 10, 0, 0, 0, loc), time.Date(2028, 3, 30, 23, 0, 0, 0, loc)} {
		if err := f.st.checkEnrolledCategories(context.Background(), f.pricing.Book, now, nil, nil); err != nil {
			t.Errorf("a start at %s: %v", now.Format(time.RFC3339), err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.st.checkEnrolledCategories(ctx, f.pricing.Book, from, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled check: %v", err)
	}
}

// TestUncheckableCategoriesWarned: a version whose rules tell apart
// thousands of instants of a day is too large for the enrolled-category
// check; scheduling it warns that enrolments into its categories would be
// refused, at once (an outside test saw such a feed take clearing's memory).
func TestUncheckableCategoriesWarned(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want int
	}{{1, 0}, {2000, 1}} {
		dir := cityFeedWith(t, map[string]func(string) string{
			"timeframes.txt": func(s string) string {
				var b strings.Builder
				b.WriteString(s)
				for i := range tc.n {
					at := 1 + 43*i
					fmt.Fprintf(&b, "x%d,%02d:%02d:%02d,%02d:%02d:%02d,daily\n", i, at/3600, at/60%60, at%60, (at+20)/3600, (at+20)/60%60, (at+20)%60)
				}
				return b.String()
			},
			"fare_leg_rules.txt": func(s string) string {
				var b strings.Builder
				b.WriteString(s)
				for i := range tc.n {
					fmt.Fprintf(&b, "tram,tram,,,peak,x%d,tram-peak,0\n", i)
				}
				return b.String()
			},
		})
		feed, err := gtfs.LoadPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		got := uncheckableCategories(context.Background(), feed, fares.DateOf(2026, 12, 7))
		if len(got) != tc.want || (tc.want > 0 && !strings.Contains(got[0], `enrolments into rider category "concession" cannot be checked against this version (the enrolled-category check is too large`)) {
			t.Errorf("%d timeframes rules name: %q, want %d warnings", tc.n, got, tc.want)
		}
	}
}

// TestConsecutiveEnrolmentsRechecked: the check at start (and when a
// version is scheduled) looks at each enrolment's days as it was
// accepted, not at a rider's consecutive enrolments merged into one
// period. An outside recheck saw three consecutive enrolments of 6.7
// years, each accepted by a feed with 7,400 timeframes, refuse to let
// clearing start as too large to check together.
func TestConsecutiveEnrolmentsRechecked(t *testing.T) {
	const timeframes = 7400
	dir := cityFeedWith(t, map[string]func(string) string{
		"calendar.txt": func(s string) string {
			var b strings.Builder
			for i := range timeframes {
				fmt.Fprintf(&b, "s%d,1,1,1,1,1,1,1,20200101,20991231\n", i)
			}
			return s + b.String()
		},
		"timeframes.txt": func(s string) string {
			var b strings.Builder
			for i := range timeframes {
				fmt.Fprintf(&b, "allday,00:00:00,24:00:00,s%d\n", i)
			}
			return s + b.String()
		},
		"fare_leg_rules.txt": func(s string) string { return s + "tram,tram,,,allday,,tram-peak,0\n" },
	})
	f := newPricedFixtureOf(t, t.TempDir(), dir)
	defer f.st.Close()
	feed := f.pricing.Book.Feed
	c := &Clearing{store: f.st}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, feed.Location())
	from := feed.FareDay(now) + 1
	const days = 2000 // 5.5 years: 3 × 2000 days × 7401 timeframes is past even recheckWork
	for i := range 3 {
		e := Enrolment{Category: "concession", ApprovedBy: "desk", ValidFrom: feed.FareDayBegins(from + fares.Date(i*days)),
			ValidUntil: feed.FareDayBegins(from + fares.Date((i+1)*days)), CreatedAt: now}
		if err := c.checkEnrolmentFeeds(context.Background(), e, fare.Card); err != nil {
			t.Fatalf("enrolment %d: %v", i, err)
		}
		e.Rider, e.Media, e.Key = RiderAccount(f.riderKey, fare.Card, "rider-1"), "card", fare.DenyKey(fare.Card, "rider-1")
		if _, _, _, err := f.st.appendEnrolment(e, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.st.checkEnrolledCategories(context.Background(), f.pricing.Book, now, nil, nil); err != nil {
		t.Errorf("three consecutive enrolments, each accepted: %v", err)
	}
}
