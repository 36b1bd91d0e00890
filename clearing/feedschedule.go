package clearing

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/clearing/fares/gtfs"
	"github.com/faregate/faregate/clearing/journeys"
)

// Feed versions scheduled while clearing runs. The fare desk sends a new
// feed version (a GTFS zip) and the time it takes effect (POST /v1/feeds,
// `faregate fares schedule`); clearing checks it as it checks --next-feed
// at start, keeps the zip and the schedule in its data directory
// (feeds/<sha256>.zip, feeds/schedule.json, both synced), and installs it
// on the applying goroutine between two batches: fare days that begin at
// or after the stated time are priced with it, earlier days with the
// versions before it, whenever their taps arrive. A restart loads the
// schedule again; `ledger audit` reads it too.
//
// The stated time must be later than the fare clock plus
// Config.MaxDeviceTimeAhead (no tap of a fare day from then on can have
// been applied yet: such taps are held) and than every version scheduled
// before, and no rider day from then on may exist: a version never
// reprices a day another version priced.

// FeedScheduleDir is the directory under clearing's data directory that
// holds the scheduled feed versions and their schedule.
const FeedScheduleDir = "feeds"

const feedScheduleFile = "schedule.json"

// MaxFeedZip bounds a scheduled feed version's zip.
const MaxFeedZip = 64 << 20

// ScheduledFeed is one feed version scheduled to take effect at From.
type ScheduledFeed struct {
	Version string    `json:"version"` // FeedVersionOf its files
	From    time.Time `json:"from"`    // as given (RFC 3339 with its zone)
	// FromFareDay is the first fare day priced with it: the first that
	// begins at or after From.
	FromFareDay string `json:"from_fare_day"`
	// File is the zip's name in FeedScheduleDir.
	File string `json:"file"`
	// ScheduledAt is when clearing accepted it (its fare clock), and By
	// the API token that sent it.
	ScheduledAt time.Time `json:"scheduled_at"`
	By          string    `json:"by,omitempty"`
}

// FeedVersionOf is the version clearing gives the feed whose files are in
// fsys (a directory, or a zip): the first 8 bytes of the sha256 of its
// files' names and bytes, in lexical path order, 0x hex. It depends on the
// files alone: a directory and a zip of it, whatever they are called, have
// one version (a rollback is seen as one), and a directory keeps the
// version earlier builds gave it. A zip's metadata (__MACOSX/, dot files)
// does not count.
func FeedVersionOf(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		base := path.Base(p)
		if d.IsDir() {
			if p != "." && (base == "__MACOSX" || strings.HasPrefix(base, ".")) {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(base, ".") {
			return nil
		}
		if !d.Type().IsRegular() {
			// A link to a file is read as the loader reads it: its prices
			// count (a code review saw a feed of links versioned as the
			// hash of nothing, whatever its prices). What is no file
			// after links (a FIFO, a device) the loader refuses.
			st, err := fs.Stat(fsys, p)
			if err != nil || !st.Mode().IsRegular() {
				return nil
			}
		}
		f, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h.Write([]byte(base))
		_, err = io.Copy(h, io.LimitReader(f, gtfs.MaxFileSize+1))
		return err
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("sha256:0x%x", h.Sum(nil)[:8]), nil
}

// FeedVersionOfZip is FeedVersionOf the feed in a zip.
func FeedVersionOfZip(b []byte) (string, error) {
	z, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return "", fmt.Errorf("feed zip: %w", err)
	}
	return FeedVersionOf(z)
}

// FeedVersionOfPath is FeedVersionOf the feed at path: a directory or a
// zip file.
func FeedVersionOfPath(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		return FeedVersionOf(os.DirFS(p))
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return FeedVersionOfZip(b)
}

// Errors of ScheduleFeed, by what the API answers.
var (
	// ErrBadFeed: the zip is not a GTFS Fares v2 feed clearing can load.
	ErrBadFeed = errors.New("feed version")
	// ErrFeedRefused: the feed loads but does not fit (registry, time
	// zone, cut-over, stated time).
	ErrFeedRefused = errors.New("feed version refused")
	// ErrFeedConflict: clearing prices flat fares, or a later version is
	// scheduled already.
	ErrFeedConflict = errors.New("feed version conflicts")
)

// LoadFeedSchedule reads the feed versions scheduled in clearing's data
// directory dir (none when it has no schedule) and loads each one's feed.
func LoadFeedSchedule(dir string) ([]ScheduledFeed, []*fares.Feed, error) {
	sched, err := readSchedule(dir)
	if err != nil {
		return nil, nil, err
	}
	feeds := make([]*fares.Feed, len(sched))
	for i, s := range sched {
		if s.File != filepath.Base(s.File) || !strings.HasSuffix(s.File, ".zip") {
			return nil, nil, fmt.Errorf("feed schedule: version %s: file %q is not a zip in %s", s.Version, s.File, FeedScheduleDir)
		}
		raw, err := os.ReadFile(filepath.Join(dir, FeedScheduleDir, s.File))
		if err != nil {
			return nil, nil, fmt.Errorf("feed schedule: version %s: %w", s.Version, err)
		}
		if v, err := FeedVersionOfZip(raw); err != nil || v != s.Version {
			return nil, nil, fmt.Errorf("feed schedule: %s is version %s (%v), the schedule says %s", s.File, v, err, s.Version)
		}
		if feeds[i], err = gtfs.LoadZip(bytes.NewReader(raw), int64(len(raw))); err != nil {
			return nil, nil, fmt.Errorf("feed schedule: version %s: %w", s.Version, err)
		}
	}
	return sched, feeds, nil
}

// withVersion returns a copy of book's chain of versions with feed
// appended, taking over from the first fare day that begins at or after
// from (the chain's Books are never edited: readers may hold them).
func withVersion(book *journeys.Book, feed *fares.Feed, version string, from time.Time) *journeys.Book {
	cp := *book
	if cp.Next != nil {
		cp.Next = withVersion(cp.Next, feed, version, from)
		return &cp
	}
	cp.Next, cp.NextFrom = &journeys.Book{Feed: feed, FeedVersion: version, Currency: book.Currency, Policy: book.Policy}, firstDayFrom(book.Feed, from)
	return &cp
}

// lastVersion is the chain's last book and the fare day it takes over
// from (0 for the chain's first).
func lastVersion(book *journeys.Book) (*journeys.Book, fares.Date) {
	var from fares.Date
	for book.Next != nil {
		book, from = book.Next, book.NextFrom
	}
	return book, from
}

// scheduleRequest is a change of the schedule for the applying goroutine:
// a version to install (feed set), or one to withdraw.
type scheduleRequest struct {
	feed     *fares.Feed
	entry    ScheduledFeed
	withdraw string // the version to withdraw
	reply    chan scheduleReply
}

type scheduleReply struct {
	entry    ScheduledFeed
	replayed bool
	warnings []string
	err      error
}

// Limits of the schedule.
const (
	// MaxFeedVersions bounds the versions scheduled (each is loaded at
	// every start).
	MaxFeedVersions = 16
	// MaxFeedScheduleAhead bounds how far ahead of the fare clock a
	// version may be scheduled: a mistyped year would otherwise block
	// every later version until withdrawn.
	MaxFeedScheduleAhead = 2 * 366 * 24 * time.Hour
	// MaxScheduledFeedBytes bounds a scheduled version's files once
	// inflated (their parsed rows take several times their bytes).
	MaxScheduledFeedBytes = 128 << 20
)

// acquireSchedule takes the schedule's lock: one change at a time, from
// reading the zip to the answer (their files and memory never overlap).
func (c *Clearing) acquireSchedule(ctx context.Context) (func(), error) {
	select {
	case c.feedSem <- struct{}{}:
		return func() { <-c.feedSem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ScheduleFeed schedules the feed version in zip to take effect at from
// (see the top of this file). Scheduling the same version for the same
// time again changes nothing and reports replayed. Warnings are the feed
// loader's and the agencies that are no operators of the registry.
func (c *Clearing) ScheduleFeed(ctx context.Context, zipped []byte, from time.Time, by string) (ScheduledFeed, bool, []string, error) {
	release, err := c.acquireSchedule(ctx)
	if err != nil {
		return ScheduledFeed{}, false, nil, err
	}
	defer release()
	p := c.store.pricing.Load()
	if p == nil {
		return ScheduledFeed{}, false, nil, fmt.Errorf("%w: clearing prices flat fares (started without --feed): there is no feed to follow", ErrFeedConflict)
	}
	if len(zipped) > MaxFeedZip {
		return ScheduledFeed{}, false, nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadFeed, len(zipped), MaxFeedZip)
	}
	// What the time alone decides, before the zip is inflated.
	clock := c.cfg.FareClock()
	if from.After(clock.Add(MaxFeedScheduleAhead)) {
		return ScheduledFeed{}, false, nil, fmt.Errorf("%w: from %s is more than %d days ahead of clearing's fare clock (%s)",
			ErrFeedRefused, from.Format(time.RFC3339), MaxFeedScheduleAhead/(24*time.Hour), clock.Format(time.RFC3339))
	}
	last, _ := lastVersion(p.Book)
	if err := c.tooSoon(last.Feed, from, clock); err != nil {
		return ScheduledFeed{}, false, nil, err
	}
	var warnings []string
	feed, err := gtfs.LoadZip(bytes.NewReader(zipped), int64(len(zipped)), gtfs.WithMaxBytes(MaxScheduledFeedBytes),
		gtfs.WithWarnings(func(w gtfs.Warning) { warnings = append(warnings, w.String()) }))
	if err != nil {
		return ScheduledFeed{}, false, nil, fmt.Errorf("%w: %w", ErrBadFeed, err)
	}
	if feed.LegRules() == 0 {
		return ScheduledFeed{}, false, nil, fmt.Errorf("%w: fare_leg_rules.txt is missing or empty: the feed prices no leg", ErrBadFeed)
	}
	version, err := FeedVersionOfZip(zipped)
	if err != nil {
		return ScheduledFeed{}, false, nil, fmt.Errorf("%w: %w", ErrBadFeed, err)
	}
	entry := ScheduledFeed{Version: version, From: from, File: strings.TrimPrefix(version, "sha256:0x") + ".zip", By: by}
	// The zip is kept before the schedule names it; one the schedule does
	// not name once the request is answered is removed.
	dir := filepath.Join(c.cfg.DataDir, FeedScheduleDir)
	defer func() {
		if sched, err := readSchedule(c.cfg.DataDir); err == nil && !slices.ContainsFunc(sched, func(s ScheduledFeed) bool { return s.File == entry.File }) {
			_ = os.Remove(filepath.Join(dir, entry.File))
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.log.Error("feed schedule", "err", err)
		return ScheduledFeed{}, false, nil, errors.New("feed schedule: the data directory could not be written (see clearing's log)")
	}
	if err := writeFileAtomic(filepath.Join(dir, entry.File), zipped, 0o600); err != nil {
		c.log.Error("feed schedule: keep the zip", "err", err)
		return ScheduledFeed{}, false, nil, errors.New("feed schedule: the zip could not be kept (see clearing's log)")
	}
	if !inChain(p.Book, version) {
		if err := c.warmCategoryCheck(ctx, withVersion(p.Book, feed, version, from), feed); err != nil {
			return ScheduledFeed{}, false, nil, err
		}
	}
	// A version too large for the check refuses every enrolment into its
	// days: said now, while no rider may be at stake.
	warnings = append(warnings, uncheckableCategories(ctx, feed, firstDayFrom(feed, from))...)
	req := &scheduleRequest{feed: feed, entry: entry, reply: make(chan scheduleReply, 1)}
	select {
	case c.feedReq <- req:
	case <-ctx.Done():
		return ScheduledFeed{}, false, nil, ctx.Err()
	}
	// Taken, it is answered whatever ctx does (as a payment is).
	r := <-req.reply
	msg := "scheduled GTFS feed"
	if r.err != nil {
		msg = "GTFS feed refused, not scheduled"
	}
	for _, w := range warnings {
		c.log.Warn(msg, "version", version, "warning", w)
	}
	return r.entry, r.replayed, append(warnings, r.warnings...), r.err
}

// uncheckableCategories warns of the rider categories (but the default)
// whose enrolments feed cannot be checked for (fares.ErrCategoryCheckTooLarge)
// over its first week from day, on the card: enrolments into them for its
// days would be refused.
func uncheckableCategories(ctx context.Context, feed *fares.Feed, day fares.Date) []string {
	var out []string
	for _, cat := range feed.RiderCategories() {
		if cat == feed.DefaultRiderCategory() {
			continue
		}
		if _, err := feed.UnpricedFor(ctx, cat, "card", day, day+6, 0); errors.Is(err, fares.ErrCategoryCheckTooLarge) {
			out = append(out, fmt.Sprintf("enrolments into rider category %q cannot be checked against this version (%v): they would be refused for the days it prices", cat, err))
		}
	}
	return out
}

// inChain reports whether version is one of book's chain.
func inChain(book *journeys.Book, version string) bool {
	for b := book; b != nil; b = b.Next {
		if b.FeedVersion == version {
			return true
		}
	}
	return false
}

// warmCategoryCheck runs the enrolled-category check of a change to the
// chain of versions (book, with fresh added) before the applying goroutine
// takes it: the work, bounded (fares.CategoryCheckWork) but seconds on a
// large feed, is done here, where ctx ends it, and the applying
// goroutine, which applies no tap meanwhile, finds the feeds' answers
// kept. What it finds is answered there (an outside test saw a feed of
// 5,000 timeframes checked there, clearing's memory exhausted). Only a
// cancelled ctx is an error.
func (c *Clearing) warmCategoryCheck(ctx context.Context, book *journeys.Book, fresh *fares.Feed) error {
	err := c.store.checkEnrolledCategories(ctx, book, c.cfg.FareClock(), fresh, nil)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		c.log.Debug("feed schedule: the enrolled-category check, before the applying goroutine", "err", err)
	}
	return nil
}

// tooSoon refuses a version taking effect from a fare day that begins
// within MaxDeviceTimeAhead of the fare clock: taps of it may be priced
// already (a tap up to that far ahead is applied).
func (c *Clearing) tooSoon(feed *fares.Feed, from, clock time.Time) error {
	day := firstDayFrom(feed, from)
	begins := feed.FareDayBegins(day)
	ahead := c.aheadLimit()
	if !begins.After(clock.Add(ahead)) {
		loc := feed.Location()
		if !from.After(clock) {
			return fmt.Errorf("%w: %s is in the past (clearing's fare clock reads %s): a version takes effect from a fare day to come; state a time after %s",
				ErrFeedRefused, from.In(loc).Format(time.RFC3339), clock.In(loc).Format(time.RFC3339), clock.Add(ahead).In(loc).Format(time.RFC3339))
		}
		return fmt.Errorf("%w: fare day %s begins %s, within %s of clearing's fare clock (%s): taps of that day may be priced already; state a time after %s",
			ErrFeedRefused, day, begins.Format(time.RFC3339), ahead, clock.In(loc).Format(time.RFC3339), clock.Add(ahead).In(loc).Format(time.RFC3339))
	}
	return nil
}

// aheadLimit is how far ahead of the fare clock a tap is applied.
func (c *Clearing) aheadLimit() time.Duration {
	if c.cfg.MaxDeviceTimeAhead <= 0 {
		return DefaultMaxDeviceTimeAhead
	}
	return c.cfg.MaxDeviceTimeAhead
}

// installFeed runs on the applying goroutine, with every batch committed:
// it checks req against the schedule and the store, writes the schedule
// and installs the new chain of versions for the next batch. ctx is the
// applying goroutine's: the enrolled-category check, bounded and mostly
// done before (warmCategoryCheck), ends with it.
func (c *Clearing) installFeed(ctx context.Context, req *scheduleRequest) scheduleReply {
	if req.withdraw != "" {
		return c.withdrawFeed(ctx, req.withdraw)
	}
	p := c.store.pricing.Load()
	e := req.entry
	last, lastFrom := lastVersion(p.Book)
	book := withVersion(p.Book, req.feed, e.Version, e.From)
	_, day := lastVersion(book)
	e.FromFareDay = day.String()
	sched, err := readSchedule(c.cfg.DataDir)
	if err != nil {
		return scheduleReply{err: err}
	}
	for _, s := range sched {
		if s.Version == e.Version && s.From.Equal(e.From) {
			return scheduleReply{entry: s, replayed: true}
		}
		if s.Version == e.Version {
			return scheduleReply{err: fmt.Errorf("%w: version %s is scheduled already, from fare day %s: withdraw it first to move it", ErrFeedConflict, s.Version, s.FromFareDay)}
		}
	}
	for b := p.Book; b != nil; b = b.Next {
		if b.FeedVersion == e.Version {
			// A rollback to a version in effect is the same files again: a
			// new version with them would make two of one.
			return scheduleReply{err: fmt.Errorf("%w: version %s is a version live pricing follows already (GET /v1/feeds): to go back to it, withdraw the versions after it", ErrFeedConflict, e.Version)}
		}
	}
	switch {
	case len(sched) >= MaxFeedVersions:
		return scheduleReply{err: fmt.Errorf("%w: %d versions are scheduled, at most %d", ErrFeedConflict, len(sched), MaxFeedVersions)}
	case last.Feed.Location().String() != req.feed.Location().String() || last.Feed.FareDayStart() != req.feed.FareDayStart():
		return scheduleReply{err: fmt.Errorf("%w: its fare days (%s, from %ds after midnight) differ from version %s's (%s, from %ds): a rider's day would change its bounds",
			ErrFeedRefused, req.feed.Location(), req.feed.FareDayStart(), last.FeedVersion, last.Feed.Location(), last.Feed.FareDayStart())}
	case day <= lastFrom:
		return scheduleReply{err: fmt.Errorf("%w: version %s takes effect from fare day %s; a new version must take effect after it (from fare day %s: %s)",
			ErrFeedConflict, last.FeedVersion, lastFrom, day, req.feed.FareDayBegins(day).Format(time.RFC3339))}
	}
	if err := c.tooSoon(req.feed, e.From, c.cfg.FareClock()); err != nil {
		return scheduleReply{err: err}
	}
	fit, err := feedFitsRegistry(req.feed, c.cfg.Registry, e.From)
	if err != nil {
		return scheduleReply{err: fmt.Errorf("%w: it does not fit the registry: %w", ErrFeedRefused, err)}
	}
	var warnings []string
	if len(fit.strangers) > 0 {
		warnings = append(warnings, fmt.Sprintf("agency.txt: agencies %s are no operators of the registry: a fare share for one could not be anchored on the ledger", strings.Join(fit.strangers, ", ")))
		c.log.Warn("the scheduled feed's agencies include some that are not operators of the registry", "version", e.Version, "agencies", strings.Join(fit.strangers, ", "))
	}
	if len(fit.unpricedGates) > 0 {
		warnings = append(warnings, fmt.Sprintf("the feed cannot price the taps of gates %s: they would be applied unpriced", strings.Join(fit.unpricedGates, "; ")))
	}
	if len(fit.gaps) > 0 {
		warnings = append(warnings, fmt.Sprintf("the feed's fare leg rules miss hours at gates %s: a journey with a tap there would have no fare and charge nothing", strings.Join(fit.gaps, "; ")))
	}
	if fit.idle != "" {
		warnings = append(warnings, fit.idle)
	}
	if err := c.store.checkEnrolledCategories(ctx, book, c.cfg.FareClock(), req.feed, nil); err != nil {
		return scheduleReply{err: fmt.Errorf("%w: %w", ErrFeedRefused, err)}
	}
	if first, ok, err := c.store.firstOpenDayFrom(day); err != nil {
		return scheduleReply{err: err}
	} else if ok {
		return scheduleReply{err: fmt.Errorf("%w: fare day %s is priced already (a rider day of it exists): state a later time", ErrFeedRefused, first)}
	}
	e.ScheduledAt = c.cfg.FareClock().UTC()
	if err := c.writeSchedule(append(sched, e)); err != nil {
		return scheduleReply{err: err}
	}
	np := *p
	np.Book = book
	c.store.SetPricing(&np)
	c.recordFeedChain(book)
	c.log.Info("feed version scheduled", "version", e.Version, "from_fare_day", e.FromFareDay, "begins", req.feed.FareDayBegins(day).Format(time.RFC3339), "by", e.By)
	return scheduleReply{entry: e, warnings: warnings}
}

// recordFeedChain records the chain of versions installed (checkFeedHistory
// reads it at the next start). Were it not recorded, that start would look
// through the rider days for nothing: the schedule is what counts.
func (c *Clearing) recordFeedChain(book *journeys.Book) {
	if err := c.store.recordFeedChain(book); err != nil {
		c.log.Warn("feed schedule: the chain of versions was not recorded; the next start checks the stored rider days against it", "err", err)
	}
}

// writeSchedule replaces the schedule file (synced).
func (c *Clearing) writeSchedule(sched []ScheduledFeed) error {
	if sched == nil {
		sched = []ScheduledFeed{}
	}
	raw, err := json.MarshalIndent(sched, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(c.cfg.DataDir, FeedScheduleDir, feedScheduleFile), append(raw, '\n'), 0o600); err != nil {
		c.log.Error("feed schedule: write", "err", err)
		return errors.New("feed schedule: the schedule could not be written (see clearing's log)")
	}
	return nil
}

// WithdrawFeed withdraws version, the last one scheduled, before it takes
// effect: as for scheduling, its first fare day must begin later than
// MaxDeviceTimeAhead after the fare clock and have no rider day yet.
func (c *Clearing) WithdrawFeed(ctx context.Context, version string) (ScheduledFeed, error) {
	release, err := c.acquireSchedule(ctx)
	if err != nil {
		return ScheduledFeed{}, err
	}
	defer release()
	p := c.store.pricing.Load()
	if p == nil {
		return ScheduledFeed{}, fmt.Errorf("%w: clearing prices flat fares (started without --feed)", ErrFeedConflict)
	}
	if last, _ := lastVersion(p.Book); last.FeedVersion == version {
		if err := c.warmCategoryCheck(ctx, withoutLast(p.Book), nil); err != nil {
			return ScheduledFeed{}, err
		}
	}
	req := &scheduleRequest{withdraw: version, reply: make(chan scheduleReply, 1)}
	select {
	case c.feedReq <- req:
	case <-ctx.Done():
		return ScheduledFeed{}, ctx.Err()
	}
	r := <-req.reply
	if r.err == nil {
		_ = os.Remove(filepath.Join(c.cfg.DataDir, FeedScheduleDir, r.entry.File))
	}
	return r.entry, r.err
}

// ErrFeedNotScheduled: WithdrawFeed's version is not in the schedule.
var ErrFeedNotScheduled = errors.New("feed version not scheduled")

// withdrawFeed runs on the applying goroutine (installFeed).
func (c *Clearing) withdrawFeed(ctx context.Context, version string) scheduleReply {
	sched, err := readSchedule(c.cfg.DataDir)
	if err != nil {
		return scheduleReply{err: err}
	}
	i := slices.IndexFunc(sched, func(s ScheduledFeed) bool { return s.Version == version })
	if i < 0 {
		return scheduleReply{err: fmt.Errorf("%w: %s is not in the schedule (GET /v1/feeds lists the versions)", ErrFeedNotScheduled, version)}
	}
	e := sched[i]
	if i != len(sched)-1 {
		return scheduleReply{err: fmt.Errorf("%w: %s is followed by version %s: withdraw the later versions first", ErrFeedConflict, version, sched[len(sched)-1].Version)}
	}
	p := c.store.pricing.Load()
	last, day := lastVersion(p.Book)
	if last.FeedVersion != version {
		return scheduleReply{err: fmt.Errorf("%w: %s is not the version live pricing follows last (%s; given at start?)", ErrFeedConflict, version, last.FeedVersion)}
	}
	if err := c.tooSoon(last.Feed, last.Feed.FareDayBegins(day), c.cfg.FareClock()); err != nil {
		return scheduleReply{err: fmt.Errorf("%w: version %s takes effect from fare day %s, which begins within %s of clearing's fare clock or before it: taps of it may be priced with it already, so it cannot be withdrawn",
			ErrFeedRefused, version, day, c.aheadLimit())}
	}
	if err := c.store.checkEnrolledCategories(ctx, withoutLast(p.Book), c.cfg.FareClock(), nil, nil); err != nil {
		return scheduleReply{err: fmt.Errorf("%w: without it: %w", ErrFeedRefused, err)}
	}
	if first, ok, err := c.store.firstOpenDayFrom(day); err != nil {
		return scheduleReply{err: err}
	} else if ok {
		return scheduleReply{err: fmt.Errorf("%w: fare day %s is priced with it already: it cannot be withdrawn", ErrFeedRefused, first)}
	}
	if err := c.writeSchedule(sched[:i]); err != nil {
		return scheduleReply{err: err}
	}
	np := *p
	np.Book = withoutLast(p.Book)
	c.store.SetPricing(&np)
	c.recordFeedChain(np.Book)
	c.log.Info("feed version withdrawn", "version", version, "from_fare_day", e.FromFareDay)
	return scheduleReply{entry: e}
}

// withoutLast returns a copy of book's chain without its last version.
func withoutLast(book *journeys.Book) *journeys.Book {
	cp := *book
	if cp.Next == nil {
		return &cp
	}
	if cp.Next.Next == nil {
		cp.Next, cp.NextFrom = nil, 0
		return &cp
	}
	cp.Next = withoutLast(cp.Next)
	return &cp
}

// FeedSchedule returns the feed versions in effect and scheduled: the
// chain of versions live pricing uses (nil without a feed).
func (c *Clearing) FeedSchedule() []FeedVersionView {
	p := c.store.pricing.Load()
	if p == nil {
		return nil
	}
	var out []FeedVersionView
	var from fares.Date
	first := true
	for b := p.Book; b != nil; b = b.Next {
		v := FeedVersionView{Version: b.FeedVersion, TimeZone: b.Feed.Location().String()}
		if !first {
			v.FromFareDay = from.String()
			v.Begins = b.Feed.FareDayBegins(from).Format(time.RFC3339)
		}
		out = append(out, v)
		first, from = false, b.NextFrom
	}
	return out
}

// FeedVersionView is one version of the fare feed as GET /v1/feeds shows
// it: the first has no start (it prices every fare day before the next).
type FeedVersionView struct {
	Version     string `json:"version"`
	FromFareDay string `json:"from_fare_day,omitempty"`
	Begins      string `json:"begins,omitempty"` // RFC 3339, the agency's zone
	TimeZone    string `json:"time_zone"`
}

// readSchedule reads the schedule file alone (no feeds).
func readSchedule(dataDir string) ([]ScheduledFeed, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, FeedScheduleDir, feedScheduleFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("feed schedule: %w", err)
	}
	var sched []ScheduledFeed
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sched); err != nil {
		return nil, fmt.Errorf("feed schedule %s: %w", filepath.Join(dataDir, FeedScheduleDir, feedScheduleFile), err)
	}
	return sched, nil
}

// firstDayFrom is the first fare day of feed that begins at or after t:
// the day a version stated to take effect at t prices first.
func firstDayFrom(feed *fares.Feed, t time.Time) fares.Date {
	day := feed.FareDay(t)
	if feed.FareDayBegins(day).Before(t) {
		day++
	}
	return day
}

// firstOpenDayFrom returns the earliest fare day from date on that has a
// rider day not billed yet (pOpenDay): a day from then on that exists.
// (A billed day has ended on the fare clock, which a stated time is after.)
func (s *Store) firstOpenDayFrom(date fares.Date) (fares.Date, bool, error) {
	var out fares.Date
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pOpenDay}})
		defer it.Close()
		seek := binary.BigEndian.AppendUint32([]byte{pOpenDay}, uint32(date))
		it.Seek(seek)
		if it.Valid() {
			k := it.Item().Key()
			if len(k) >= 5 {
				out, found = fares.Date(int32(binary.BigEndian.Uint32(k[1:5]))), true
			}
		}
		return nil
	})
	return out, found, err
}

// writeFileAtomic writes b to path with mode perm through a synced
// temporary file renamed over it, then syncs the directory: a crash leaves
// the old file or the whole new one.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, nothing there
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if err := writeSynced(tmp, b, os.O_TRUNC, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// scheduledBook appends the versions scheduled in dataDir to book (at
// start): a version the book has already (given again as --next-feed)
// is not added twice.
func scheduledBook(book *journeys.Book, dataDir string, reg *Registry, log *slog.Logger) (*journeys.Book, error) {
	sched, feeds, err := LoadFeedSchedule(dataDir)
	if err != nil {
		return nil, err
	}
	for i, s := range sched {
		if book.FeedVersion == s.Version {
			// Started with the scheduled version as --feed: every earlier
			// fare day's late taps would be priced with it.
			return nil, fmt.Errorf("feed schedule: --feed is version %s, which the schedule in %s makes take effect from fare day %s: start clearing with the version in effect before it (the fare days before were priced with that one, and their late taps must be too); the schedule switches to %s by itself",
				s.Version, filepath.Join(dataDir, FeedScheduleDir), s.FromFareDay, s.Version)
		}
		last, lastFrom := lastVersion(book)
		if last.FeedVersion == s.Version && lastFrom.String() == s.FromFareDay {
			continue // given again as --next-feed, for the same day
		}
		if err := CheckFeeds(last.Feed, feeds[i], s.From, reg, log); err != nil {
			return nil, fmt.Errorf("feed schedule: version %s: %w", s.Version, err)
		}
		var ok bool
		if book, ok = AppendFeedVersion(book, feeds[i], s.Version, s.From); !ok {
			_, day := lastVersion(book)
			return nil, fmt.Errorf("feed schedule: version %s, scheduled from fare day %s, does not take effect after version %s (from fare day %s; --next-feed?): drop --next-feed, or withdraw the scheduled version first",
				s.Version, s.FromFareDay, last.FeedVersion, day)
		}
		log.Info("scheduled feed version loaded", "version", s.Version, "from_fare_day", s.FromFareDay)
	}
	return book, nil
}

// AppendFeedVersion returns book's chain of versions with feed appended
// from the first fare day that begins at or after from, as a version
// scheduled while clearing ran is (an audit repricing the store builds the
// same chain); book itself is not changed. A version whose first fare day
// is not after the chain's last one is not appended (ok false).
func AppendFeedVersion(book *journeys.Book, feed *fares.Feed, version string, from time.Time) (*journeys.Book, bool) {
	nb := withVersion(book, feed, version, from)
	_, prev := lastVersion(book)
	if _, day := lastVersion(nb); book.Next != nil && day <= prev {
		return book, false
	}
	return nb, true
}

// watchTimeframes looks, each new fare day until ctx ends, at the feed
// version pricing it: services its timeframes name that run on no day
// from now on (its calendar ran out: fares are priced without those
// timeframes) are logged and counted in the gauge, and such an end within
// timeframeWatchDays, before another version takes over, is logged as
// coming. Checked at start and when a version is
// scheduled too (feedFitsRegistry), over timeframeWarnDays.
func (c *Clearing) watchTimeframes(ctx context.Context) {
	t := time.NewTicker(time.Second) // cheap: work only when the fare day changes
	defer t.Stop()
	last := fares.Date(math.MinInt32)
	for {
		p := c.store.pricing.Load()
		if p != nil && p.Book != nil {
			now := c.cfg.FareClock()
			if day := p.Book.Feed.FareDay(now); day != last {
				last = day
				c.checkTimeframes(p.Book.ForDay(day), now)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkTimeframes is watchTimeframes' look at book, the version pricing
// now's fare day.
func (c *Clearing) checkTimeframes(book *journeys.Book, now time.Time) {
	feed := book.Feed
	idle := feed.IdleTimeframeServices(now)
	if c.metrics != nil {
		c.metrics.idleTimeframes.Set(float64(len(idle)))
	}
	if len(idle) > 0 {
		c.log.Warn("the feed's timeframes run on no day from now on: fare leg rules with them match nothing, so the rules without a timeframe price instead (peak, off-peak or weekend fares change; calendar.txt has run out: extend it, or schedule a new feed version)",
			"version", book.FeedVersion, "fare_day", feed.FareDayBegins(feed.FareDay(now)).Format(time.DateOnly), "services", strings.Join(idle, ", "))
		return
	}
	day, svc, ok := feed.TimeframesRunOut(now, timeframeWatchDays)
	if !ok || (book.Next != nil && book.NextFrom <= day) {
		return // none, or another version prices those days
	}
	c.log.Warn("the feed's timeframes stop running soon: from then fare leg rules with them match nothing, and peak, off-peak or weekend fares change; extend calendar.txt (or calendar_dates.txt), or schedule a new feed version before then",
		"version", book.FeedVersion, "from", feed.FareDayBegins(day).Format(time.DateOnly), "in_days", int(day-feed.FareDay(now)), "services", strings.Join(svc, ", "))
}
