// Package gtfs loads a GTFS feed with Fares v2 files into an immutable
// fares.Feed. It is the I/O edge of the fare engine: it reads a directory, a
// zip file or any fs.FS, parses and type-checks every field it needs, and
// hands the rows to fares.NewFeed, which checks references and builds the
// indexes. Errors name file, line and field, and a feed with any error does
// not load at all.
//
// Files read: agency.txt, routes.txt and stops.txt (required),
// calendar.txt and/or calendar_dates.txt (one of them required when a
// timeframe names a service; otherwise their absence is only a Warning),
// timeframes.txt, rider_categories.txt, fare_media.txt, fare_products.txt,
// areas.txt, stop_areas.txt, networks.txt, route_networks.txt,
// fare_leg_rules.txt, fare_leg_join_rules.txt and fare_transfer_rules.txt
// (optional), plus two extensions: area_set_elements.txt (the area-set
// proposal, google/transit PR #483) and fare_caps.txt (Faregate's capping
// file, described in the fares package doc). trips.txt, stop_times.txt and
// the other GTFS files are not read: pricing takes legs as input.
//
// CSV handling: a UTF-8 byte order mark is skipped, surrounding spaces are
// trimmed from values, unknown columns are ignored. In the files that set
// prices (fareFiles) every row must be as wide as the header and the file
// UTF-8; in the others a short row is padded with empty fields, and bad
// bytes and a stray quote inside a field are only warned of. Lines ended by
// CR alone are read as lines, with a warning. A file named like one read here but not
// exactly so (case, a typo) is refused rather than skipped.
package gtfs

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // agency_timezone must resolve the same on every machine
	"unicode/utf8"

	"github.com/faregate/faregate/clearing/fares"
)

// Warning is something wrong with a feed that does not stop it from
// loading, such as a file GTFS requires but the fare engine does not need.
// Errors stop a load; warnings are only reported, through WithWarnings.
type Warning struct {
	File  string // the file concerned, e.g. "calendar.txt"
	Line  int    // 1-based line, or 0 when the warning is about the whole file
	Field string // the column concerned, or empty
	Msg   string
}

// String formats w like a load error: "file:line: field f: message",
// leaving out the line and field when they are not set.
func (w Warning) String() string {
	var b strings.Builder
	b.WriteString(w.File)
	if w.Line > 0 {
		fmt.Fprintf(&b, ":%d", w.Line)
	}
	b.WriteString(": ")
	if w.Field != "" {
		fmt.Fprintf(&b, "field %s: ", w.Field)
	}
	b.WriteString(w.Msg)
	return b.String()
}

// Option tunes a load (LoadPath, LoadZip, Load, ReadTables). Existing
// calls without options behave as before.
type Option func(*options)

type options struct {
	warn func(Warning)
	max  int // the feed's files together, bytes (0: MaxFeedSize)
}

// WithMaxBytes bounds the feed's files read, each and together, below
// MaxFileSize and MaxFeedSize: a service loading feeds sent to it (whose
// parsed rows take several times their bytes in memory) sets its own.
func WithMaxBytes(n int) Option {
	return func(o *options) { o.max = n }
}

// WithWarnings has the loader call fn once for each warning, in the order
// the files are read, before the load returns (whether or not it then
// fails). Without it, warnings are dropped. A command-line caller would
// typically print them: gtfs.WithWarnings(func(w gtfs.Warning) {
// fmt.Fprintln(os.Stderr, "warning:", w) }).
func WithWarnings(fn func(Warning)) Option {
	return func(o *options) { o.warn = fn }
}

func collect(opts []Option) options {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

// LoadPath loads the feed at path: a directory or a .zip file.
func LoadPath(path string, opts ...Option) (*fares.Feed, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return Load(os.DirFS(path), opts...)
	}
	if !st.Mode().IsRegular() {
		// Opening a FIFO no one writes blocks for ever (an outside test).
		return nil, fmt.Errorf("%s: %s, not a feed directory or zip file", path, fileKind(st.Mode()))
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return LoadZip(file, st.Size(), opts...)
}

// LoadZip loads a zipped feed. GTFS puts the files at the zip's root; a
// zip that holds them in one folder instead (as zipping a feed's
// directory makes) is read from that folder, with a warning.
func LoadZip(r io.ReaderAt, size int64, opts ...Option) (*fares.Feed, error) {
	z, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("feed zip: %w", err)
	}
	if err := checkZipNames(z); err != nil {
		return nil, err
	}
	fsys, err := feedRoot(z, collect(opts))
	if err != nil {
		return nil, err
	}
	return Load(fsys, opts...)
}

// checkZipNames refuses a zip whose entries other tools would read as
// another feed: a name that is no plain relative path (Go reads
// "../fare_products.txt" as fare_products.txt, an unzip tool writes it
// elsewhere or skips it) or a name given twice (Go reads the first, most
// tools keep the last), so what a fare desk reviewed is what clearing
// prices.
//
// Names as archivers write them are read as Go reads them: a backslash is
// a separator (Windows' Compress-Archive writes them) and a leading "./"
// is dropped (bsdtar archiving "."). Duplicates are found case-folded: an
// unzip on a case-insensitive disk keeps one copy of FARE_PRODUCTS.txt
// and fare_products.txt.
func checkZipNames(z *zip.Reader) error {
	seen := make(map[string]string, len(z.File))
	for _, f := range z.File {
		name := strings.ReplaceAll(f.Name, `\`, "/")
		for strings.HasPrefix(name, "./") {
			name = name[2:]
		}
		name = strings.TrimSuffix(name, "/") // a folder's entry
		if name == "" || name == "." {
			continue // the archive's root itself
		}
		if !fs.ValidPath(name) {
			return fmt.Errorf("feed zip: entry %q is not a plain relative path (no leading /, no . or .. segments): tools disagree on where it goes", f.Name)
		}
		key := strings.ToLower(name)
		if first, ok := seen[key]; ok {
			return fmt.Errorf("feed zip: entry %q is in the zip twice (also as %q): tools disagree on which copy is the feed", f.Name, first)
		}
		seen[key] = f.Name
	}
	return nil
}

// feedRoot is where a zip's feed files are: its root, or the one folder
// that holds agency.txt when the root does not.
func feedRoot(z *zip.Reader, o options) (fs.FS, error) {
	if _, err := fs.Stat(z, "agency.txt"); err == nil {
		return z, filesOutside(z, "")
	}
	var dirs, deeper []string
	for _, f := range z.File {
		if path.Base(f.Name) != "agency.txt" {
			continue
		}
		if dir, base, ok := strings.Cut(f.Name, "/"); ok && base == "agency.txt" {
			dirs = append(dirs, dir)
		} else {
			deeper = append(deeper, f.Name)
		}
	}
	slices.Sort(dirs)
	switch {
	case len(dirs) > 1:
		return nil, fmt.Errorf("feed zip: agency.txt is in %d folders (%s/), not at the zip's root: a zip holds one feed, its files at the root as GTFS requires", len(dirs), strings.Join(dirs, "/, "))
	case len(dirs) == 0 && len(deeper) > 0:
		return nil, fmt.Errorf("feed zip: agency.txt is at %s, not at the zip's root as GTFS requires (a feed's files in one folder of the zip are read from there, deeper ones are not)", strings.Join(deeper, ", "))
	case len(dirs) == 0:
		return z, nil // the load names what is missing
	}
	if err := filesOutside(z, dirs[0]); err != nil {
		return nil, err
	}
	if o.warn != nil {
		o.warn(Warning{File: dirs[0] + "/", Msg: "feed files are in a folder of the zip, not at its root as GTFS requires: read from the folder"})
	}
	sub, err := fs.Sub(z, dirs[0])
	if err != nil {
		return nil, fmt.Errorf("feed zip folder %s: %w", dirs[0], err)
	}
	return sub, nil
}

// filesOutside refuses a zip holding a file the loader reads (a fare
// file above all) outside root, the folder its feed is read from: it would
// be skipped without a word, its transfers or caps left out of every price
// (an outside review's zip had them in a folder beside the feed's files).
// A Mac's __MACOSX/ folder of resource forks is no feed.
func filesOutside(z *zip.Reader, root string) error {
	var out []string
	for _, f := range z.File {
		dir, base := path.Split(path.Clean(strings.ReplaceAll(f.Name, `\`, "/")))
		dir = strings.TrimSuffix(dir, "/")
		if dir == root || strings.HasPrefix(f.Name, "__MACOSX/") || !slices.Contains(readFiles, base) {
			continue
		}
		out = append(out, f.Name)
	}
	if len(out) == 0 {
		return nil
	}
	where := "the zip's root"
	if root != "" {
		where = "its folder " + root + "/"
	}
	return fmt.Errorf("feed zip: %s outside the feed's files (read from %s): it would be skipped and the fares priced without it; a zip holds one feed, its files together", strings.Join(out, ", "), where)
}

// Load loads the feed whose files are at the root of fsys.
func Load(fsys fs.FS, opts ...Option) (*fares.Feed, error) {
	t, err := ReadTables(fsys, opts...)
	if err != nil {
		return nil, err
	}
	return fares.NewFeed(t)
}

// csvFile is one parsed GTFS file.
type csvFile struct {
	name    string
	cols    map[string]int
	records [][]string
	lines   []int
}

type loader struct {
	fsys      fs.FS
	errs      []error
	warn      func(Warning)
	bytesRead int // bytes of the files read so far
	maxFile   int // MaxFileSize, or less (WithMaxBytes)
	maxFeed   int // MaxFeedSize, or less
}

// full says the error list is full: the rest of the feed is not read (a
// feed that broken is refused anyway, and a huge one would take its time
// and memory to say more of the same).
func (l *loader) full() bool { return len(l.errs) >= maxErrors }

func (l *loader) warnf(w Warning) {
	if l.warn != nil {
		l.warn(w)
	}
}

const maxErrors = 50

func (l *loader) add(file string, line int, field, format string, args ...any) {
	if len(l.errs) >= maxErrors {
		return
	}
	// Values cut: a refusal need not echo a megabyte-long field back.
	msg := fares.ShortMessage(fmt.Sprintf(format, fares.ShortArgs(args)...))
	if field != "" {
		l.errs = append(l.errs, fmt.Errorf("%s:%d: field %s: %s", file, line, field, msg))
	} else {
		l.errs = append(l.errs, fmt.Errorf("%s:%d: %s", file, line, msg))
	}
}

// read parses name; a missing optional file returns nil.
func (l *loader) read(name string, required bool, columns ...string) *csvFile {
	if l.full() {
		return nil
	}
	data, err := readLimited(l.fsys, name, l.maxFile)
	if err == nil {
		if l.bytesRead += len(data); l.bytesRead > l.maxFeed {
			l.errs = append(l.errs, fmt.Errorf("%s: the feed's files add up to more than %d bytes", name, l.maxFeed))
			return nil
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		if required {
			l.errs = append(l.errs, fmt.Errorf("%s: required file is missing", name))
		}
		return nil
	}
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("%s: %w", name, err))
		return nil
	}
	if bytes.HasPrefix(data, []byte("\xff\xfe")) || bytes.HasPrefix(data, []byte("\xfe\xff")) {
		// A spreadsheet's "Unicode text": every column read as missing,
		// which named no cause (an outside review).
		l.errs = append(l.errs, fmt.Errorf("%s: UTF-16 (its byte order mark says so), not UTF-8 as GTFS requires: save it as UTF-8 CSV", name))
		return nil
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	badUTF8 := !utf8.Valid(data)
	if badUTF8 && !fareFiles[name] {
		// GTFS files are UTF-8; a Latin-1 name still prices, but says so.
		l.warnf(Warning{File: name, Line: lineOfFirstInvalidUTF8(data), Msg: "not UTF-8 as GTFS requires: names with the bad bytes show garbled, and an id with them matches no id written in UTF-8 (the registry's, a tap's): taps there go unpriced"})
	}
	if bytes.IndexByte(data, '\r') >= 0 && bytes.IndexByte(data, '\n') < 0 {
		// Lines ended by CR alone (classic Mac OS) read as one line: as
		// lines, unambiguously, said.
		data = bytes.ReplaceAll(data, []byte{'\r'}, []byte{'\n'})
		l.warnf(Warning{File: name, Msg: "lines end with CR alone, not LF or CRLF as GTFS requires: read as lines"})
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.ReuseRecord = false
	if line := firstBareQuote(data); line > 0 && !fareFiles[name] {
		// A stray quote in a name (Joe "Diner") is read as a character in
		// the files that set no price, said; in those that do it stays an
		// error.
		r.LazyQuotes = true
		l.warnf(Warning{File: name, Line: line, Msg: `a " inside a field not quoted as a whole (RFC 4180 wants the field quoted and the quote doubled): read as a character`})
	}
	c := &csvFile{name: name, cols: map[string]int{}}
	header, err := r.Read()
	if err == io.EOF {
		l.add(name, 1, "", "empty file: the first line must name the columns")
		return nil
	}
	if err != nil {
		l.errs = append(l.errs, fmt.Errorf("%s: %w", name, err))
		return nil
	}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if _, dup := c.cols[h]; dup && h != "" {
			l.add(name, 1, h, "duplicate column")
		}
		c.cols[h] = i
	}
	bad := false
	for _, col := range columns {
		if _, ok := c.cols[col]; !ok {
			hint := ""
			for h := range c.cols {
				if strings.EqualFold(h, col) {
					hint = fmt.Sprintf(" (column %q is there: GTFS column names are case-sensitive)", h)
				}
			}
			l.add(name, 1, col, "missing required column%s", hint)
			bad = true
		}
	}
	if bad {
		return nil
	}
	var uneven, firstUneven, firstWidth int
	var short bool // a row narrower than the header, or wider with something in the extra fields
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			l.errs = append(l.errs, fmt.Errorf("%s: %w", name, err))
			return nil
		}
		line, _ := r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		if len(rec) != len(header) {
			// GTFS wants every row as wide as the header: a missing
			// trailing field reads as empty, an extra one is ignored.
			if len(rec) < len(header) || strings.TrimSpace(strings.Join(rec[len(header):], "")) != "" {
				if !short {
					firstUneven, firstWidth = line, len(rec)
				}
				short = true
			} else if uneven == 0 && !short {
				firstUneven, firstWidth = line, len(rec)
			}
			uneven++
		}
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
			if badUTF8 && fareFiles[name] && !utf8.ValidString(rec[i]) && i < len(header) {
				// An id, amount or currency with bad bytes matches nothing
				// a tap or another file says; a name only shows garbled.
				col := strings.TrimSpace(header[i])
				if strings.HasSuffix(col, "_id") || col == "amount" || col == "currency" || col == "start_time" || col == "end_time" {
					l.add(name, line, col, "not UTF-8 as GTFS requires (save the file as UTF-8: this value would match nothing the other files or the taps say)")
				} else {
					l.warnf(Warning{File: name, Line: line, Field: col, Msg: "not UTF-8 as GTFS requires: the value shows garbled"})
				}
			}
		}
		c.records = append(c.records, rec)
		c.lines = append(c.lines, line)
	}
	if uneven > 0 {
		if fareFiles[name] && short {
			// In a fare file a missing field is a price's condition or
			// priority (an empty area or rule_priority matches otherwise),
			// and extra ones a shifted row: guessing would misprice.
			l.add(name, firstUneven, "", "%d field(s) where the header names %d (%d row(s) of the file so): every row of a fare file must have the header's fields (a missing rule_priority or area would match otherwise)", firstWidth, len(header), uneven)
			return nil
		}
		l.warnf(Warning{File: name, Line: firstUneven, Msg: fmt.Sprintf("%d field(s) where the header names %d (%d row(s) of the file so): missing fields read as empty, extra ones are ignored", firstWidth, len(header), uneven)})
	}
	return c
}

// lineOfFirstInvalidUTF8 is the 1-based line of data's first byte that is
// not UTF-8; lines end in LF, CR LF or a lone CR.
func lineOfFirstInvalidUTF8(data []byte) int {
	line := 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size == 1 {
			return line
		}
		if r == '\n' || r == '\r' && (len(data) == 1 || data[1] != '\n') {
			line++
		}
		data = data[size:]
	}
	return line
}

// row is one record of a csvFile.
type row struct {
	l *loader
	f *csvFile
	i int
}

func (c *csvFile) each(l *loader, fn func(r row)) {
	if c == nil {
		return
	}
	for i := range c.records {
		if l.full() {
			return
		}
		fn(row{l, c, i})
	}
}

func (c *csvFile) has(col string) bool {
	if c == nil {
		return false
	}
	_, ok := c.cols[col]
	return ok
}

func (r row) line() int { return r.f.lines[r.i] }

func (r row) str(col string) string {
	i, ok := r.f.cols[col]
	if !ok || i >= len(r.f.records[r.i]) {
		return ""
	}
	return r.f.records[r.i][i]
}

func (r row) errorf(col, format string, args ...any) {
	r.l.add(r.f.name, r.line(), col, format, args...)
}

// req returns a required value, reporting it when empty.
func (r row) req(col string) string {
	v := r.str(col)
	if v == "" {
		r.errorf(col, "required value is empty")
	}
	return v
}

// enum parses an integer enum in [lo, hi]; empty gives def.
func (r row) enum(col string, lo, hi, def int, required bool) int {
	v := r.str(col)
	if v == "" {
		if required {
			r.errorf(col, "required value is empty")
		}
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.errorf(col, "invalid value %q: want an integer from %d to %d", v, lo, hi)
		return def
	}
	return n
}

func (r row) integer(col string) (int64, bool) {
	v := r.str(col)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		r.errorf(col, "invalid integer %q", v)
		return 0, false
	}
	return n, true
}

func (r row) date(col string) fares.Date {
	v := r.req(col)
	if v == "" {
		return 0
	}
	t, err := time.Parse("20060102", v)
	if err != nil || len(v) != 8 {
		r.errorf(col, "invalid date %q: want YYYYMMDD", v)
		return 0
	}
	return fares.DateOf(t.Date())
}

// localTime parses H:MM:SS or HH:MM:SS, at most 24:00:00.
func parseLocalTime(v string) (int32, error) {
	parts := strings.Split(v, ":")
	if len(parts) != 3 || len(parts[0]) < 1 || len(parts[0]) > 2 || len(parts[1]) != 2 || len(parts[2]) != 2 {
		return 0, fmt.Errorf("invalid time %q: want HH:MM:SS", v)
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 {
			return 0, fmt.Errorf("invalid time %q: want HH:MM:SS", v)
		}
		n[i] = x
	}
	if n[1] > 59 || n[2] > 59 {
		return 0, fmt.Errorf("invalid time %q: minutes and seconds must be below 60", v)
	}
	s := n[0]*3600 + n[1]*60 + n[2]
	if s > 86400 {
		return 0, fmt.Errorf("invalid time %q: values above 24:00:00 are forbidden", v)
	}
	return int32(s), nil
}

func (r row) money(amountCol, currencyCol string) fares.Money {
	cur := r.req(currencyCol)
	amt := r.req(amountCol)
	if cur == "" || amt == "" {
		return fares.Money{Currency: cur}
	}
	if _, ok := fares.CurrencyDigits(cur); !ok {
		r.errorf(currencyCol, "unknown ISO 4217 currency %q", cur)
		return fares.Money{Currency: cur}
	}
	v, err := fares.ParseAmount(amt, cur)
	if err != nil {
		r.errorf(amountCol, "%v", err)
	}
	return fares.Money{Amount: v, Currency: cur}
}

func (r row) location(col string) *time.Location {
	v := r.str(col)
	if v == "" {
		return nil
	}
	loc, err := time.LoadLocation(v)
	if err != nil || v == "Local" {
		r.errorf(col, "unknown timezone %q", v)
		return nil
	}
	return loc
}

// ReadTables parses the feed's files into fares.Tables without checking
// references between them (fares.NewFeed does that).
//
// calendar.txt and calendar_dates.txt: GTFS requires one of them, but the
// fare engine reads services only through timeframes.service_id. A feed
// with neither file therefore loads, with a Warning, when no timeframe
// names a service (timeframes.txt absent or without rows); when some
// timeframe does, it is an error naming timeframes.txt, the line, the
// service_id field and the service.
func ReadTables(fsys fs.FS, opts ...Option) (*fares.Tables, error) {
	o := collect(opts)
	l := &loader{fsys: fsys, warn: o.warn, maxFile: MaxFileSize, maxFeed: MaxFeedSize}
	if o.max > 0 {
		l.maxFile, l.maxFeed = min(o.max, MaxFileSize), min(o.max, MaxFeedSize)
	}
	t := &fares.Tables{}
	l.checkFileNames()

	l.read("agency.txt", true, "agency_name", "agency_url", "agency_timezone").each(l, func(r row) {
		r.req("agency_name")
		r.req("agency_url")
		a := fares.Agency{ID: r.str("agency_id"), Name: r.str("agency_name"), Line: r.line()}
		if r.req("agency_timezone") != "" {
			a.Location = r.location("agency_timezone")
		}
		t.Agencies = append(t.Agencies, a)
	})

	routes := l.read("routes.txt", true, "route_id", "route_type")
	t.RouteNetworkColumn = routes.has("network_id")
	routes.each(l, func(r row) {
		r.req("route_type")
		t.Routes = append(t.Routes, fares.Route{ID: r.req("route_id"), AgencyID: r.str("agency_id"), NetworkID: r.str("network_id"), Line: r.line()})
	})

	l.read("stops.txt", true, "stop_id").each(l, func(r row) {
		t.Stops = append(t.Stops, fares.Stop{ID: r.req("stop_id"), ParentStation: r.str("parent_station"), Location: r.location("stop_timezone"), Line: r.line()})
	})

	days := [7]string{"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}
	cal := l.read("calendar.txt", false, append([]string{"service_id", "start_date", "end_date"}, days[:]...)...)
	cal.each(l, func(r row) {
		c := fares.Calendar{ServiceID: r.req("service_id"), Line: r.line()}
		for i, d := range days {
			c.Days[i] = r.enum(d, 0, 1, 0, true) == 1
		}
		c.Start, c.End = r.date("start_date"), r.date("end_date")
		t.Calendars = append(t.Calendars, c)
	})
	calDates := l.read("calendar_dates.txt", false, "service_id", "date", "exception_type")
	calDates.each(l, func(r row) {
		t.CalendarDates = append(t.CalendarDates, fares.CalendarDate{
			ServiceID: r.req("service_id"), Date: r.date("date"),
			Added: r.enum("exception_type", 1, 2, 1, true) == 1, Line: r.line(),
		})
	})
	noCalendar := cal == nil && calDates == nil && !hasFile(fsys, "calendar.txt") && !hasFile(fsys, "calendar_dates.txt")

	timeframes := l.read("timeframes.txt", false, "timeframe_group_id", "service_id")
	timeframes.each(l, func(r row) {
		tf := fares.Timeframe{GroupID: r.req("timeframe_group_id"), ServiceID: r.req("service_id"), Start: 0, End: 86400, Line: r.line()}
		start, end := r.str("start_time"), r.str("end_time")
		switch {
		case start == "" && end == "":
		case start == "":
			r.errorf("start_time", "required when end_time is given")
		case end == "":
			r.errorf("end_time", "required when start_time is given")
		default:
			var err error
			if tf.Start, err = parseLocalTime(start); err != nil {
				r.errorf("start_time", "%v", err)
			}
			if tf.End, err = parseLocalTime(end); err != nil {
				r.errorf("end_time", "%v", err)
			}
			if tf.Start == 86400 {
				r.errorf("start_time", "must be before 24:00:00")
			}
		}
		t.Timeframes = append(t.Timeframes, tf)
	})
	if noCalendar {
		l.checkNoCalendar(timeframes)
	}

	l.read("rider_categories.txt", false, "rider_category_id", "rider_category_name", "is_default_fare_category").each(l, func(r row) {
		t.RiderCategories = append(t.RiderCategories, fares.RiderCategory{
			ID: r.req("rider_category_id"), Name: r.req("rider_category_name"),
			Default: r.enum("is_default_fare_category", 0, 1, 0, false) == 1, Line: r.line(),
		})
	})

	l.read("fare_media.txt", false, "fare_media_id", "fare_media_type").each(l, func(r row) {
		t.FareMedia = append(t.FareMedia, fares.FareMedium{
			ID: r.req("fare_media_id"), Name: r.str("fare_media_name"),
			Type: fares.FareMediaType(r.enum("fare_media_type", 0, 4, 0, true)), Line: r.line(),
		})
	})

	l.read("fare_products.txt", false, "fare_product_id", "amount", "currency").each(l, func(r row) {
		t.FareProducts = append(t.FareProducts, fares.FareProduct{
			ID: r.req("fare_product_id"), Name: r.str("fare_product_name"),
			RiderCategoryID: r.str("rider_category_id"), FareMediaID: r.str("fare_media_id"),
			Price: r.money("amount", "currency"), Line: r.line(),
		})
	})

	l.read("areas.txt", false, "area_id").each(l, func(r row) {
		t.Areas = append(t.Areas, fares.Area{ID: r.req("area_id"), Name: r.str("area_name"), Line: r.line()})
	})
	stopAreaRows := map[string]int{}
	l.read("stop_areas.txt", false, "area_id", "stop_id").each(l, func(r row) {
		sa := fares.StopArea{AreaID: r.req("area_id"), StopID: r.req("stop_id"), Line: r.line()}
		if l.repeatedRow("stop_areas.txt", stopAreaRows, sa.Line, sa.AreaID, sa.StopID) {
			return
		}
		t.StopAreas = append(t.StopAreas, sa)
	})
	networks := l.read("networks.txt", false, "network_id")
	t.NetworksFile = networks != nil || hasFile(fsys, "networks.txt")
	networks.each(l, func(r row) {
		t.Networks = append(t.Networks, fares.Network{ID: r.req("network_id"), Name: r.str("network_name"), Line: r.line()})
	})
	routeNetworks := l.read("route_networks.txt", false, "network_id", "route_id")
	t.RouteNetworksFile = routeNetworks != nil || hasFile(fsys, "route_networks.txt")
	routeNetworks.each(l, func(r row) {
		t.RouteNetworks = append(t.RouteNetworks, fares.RouteNetwork{NetworkID: r.req("network_id"), RouteID: r.req("route_id"), Line: r.line()})
	})

	legRules := l.read("fare_leg_rules.txt", false, "fare_product_id")
	t.RulePriorityColumn = legRules.has("rule_priority")
	legRules.each(l, func(r row) {
		prio, _ := r.integer("rule_priority")
		if prio < 0 || prio > 1<<30 {
			r.errorf("rule_priority", "must be a non-negative integer")
			prio = 0
		}
		t.FareLegRules = append(t.FareLegRules, fares.FareLegRule{
			LegGroupID: r.str("leg_group_id"), NetworkID: r.str("network_id"),
			FromAreaID: r.str("from_area_id"), ToAreaID: r.str("to_area_id"),
			FromTimeframeGroupID: r.str("from_timeframe_group_id"), ToTimeframeGroupID: r.str("to_timeframe_group_id"),
			FareProductID: r.req("fare_product_id"), RulePriority: int(prio),
			ContainsExactlyAreaSetID: r.str("contains_exactly_area_set_id"), Line: r.line(),
		})
	})

	// GTFS allows a negative amount for transfer discounts only; a leg
	// priced at one would pay the rider for riding.
	negative := map[string]fares.FareProduct{}
	for _, p := range t.FareProducts {
		if p.Price.Amount < 0 {
			negative[p.ID] = p
		}
	}
	for _, lr := range t.FareLegRules {
		if p, ok := negative[lr.FareProductID]; ok {
			l.add("fare_leg_rules.txt", lr.Line, "fare_product_id", "fare product %q costs %s %s (%d minor units, fare_products.txt:%d): GTFS allows a negative amount for transfer discounts only, and a leg priced at it would pay the rider",
				lr.FareProductID, fares.FormatAmount(p.Price.Amount, p.Price.Currency), p.Price.Currency, p.Price.Amount, p.Line)
		}
	}
	l.checkLegRuleGroups(t.FareLegRules)

	joinRows := map[string]int{}
	l.read("fare_leg_join_rules.txt", false, "from_network_id", "to_network_id").each(l, func(r row) {
		j := fares.FareLegJoinRule{
			FromNetworkID: r.req("from_network_id"), ToNetworkID: r.req("to_network_id"),
			FromStopID: r.str("from_stop_id"), ToStopID: r.str("to_stop_id"), Line: r.line(),
		}
		if l.repeatedRow("fare_leg_join_rules.txt", joinRows, j.Line, j.FromNetworkID, j.ToNetworkID, j.FromStopID, j.ToStopID) {
			return
		}
		t.FareLegJoinRules = append(t.FareLegJoinRules, j)
	})

	l.read("fare_transfer_rules.txt", false, "fare_transfer_type").each(l, func(r row) {
		tr := fares.FareTransferRule{
			FromLegGroupID: r.str("from_leg_group_id"), ToLegGroupID: r.str("to_leg_group_id"),
			FareTransferType: fares.TransferType(r.enum("fare_transfer_type", 0, 2, 0, true)),
			FareProductID:    r.str("fare_product_id"), Line: r.line(),
		}
		if n, ok := r.integer("transfer_count"); ok {
			if n == 0 || n < -1 || n > 1<<30 {
				r.errorf("transfer_count", "invalid value %d: want -1 or a positive count", n)
			} else {
				tr.TransferCount = int(n)
			}
			if tr.FromLegGroupID != tr.ToLegGroupID {
				// Forbidden by the reference; feeds carry it, so it is
				// ignored, said rather than silently (an outside test).
				l.warnf(Warning{File: "fare_transfer_rules.txt", Line: r.line(), Field: "transfer_count",
					Msg: fmt.Sprintf("ignored: GTFS forbids it where from_leg_group_id (%q) and to_leg_group_id (%q) differ", tr.FromLegGroupID, tr.ToLegGroupID)})
			}
		}
		if n, ok := r.integer("duration_limit"); ok {
			if n <= 0 || n > 1<<40 {
				r.errorf("duration_limit", "invalid value %d: want a positive number of seconds", n)
			} else {
				tr.DurationLimit = n
			}
			tr.DurationLimitType = fares.DurationLimitType(r.enum("duration_limit_type", 0, 3, 0, true))
		} else if r.str("duration_limit") == "" && r.str("duration_limit_type") != "" {
			// Only when it is empty: one that is not a number is that
			// error alone (an outside test saw both, the second saying
			// it was empty).
			r.errorf("duration_limit_type", "forbidden when duration_limit is empty")
		}
		t.FareTransferRules = append(t.FareTransferRules, tr)
	})

	l.read("area_set_elements.txt", false, "area_set_id", "area_id").each(l, func(r row) {
		t.AreaSetElements = append(t.AreaSetElements, fares.AreaSetElement{AreaSetID: r.req("area_set_id"), AreaID: r.req("area_id"), Line: r.line()})
	})

	l.read("fare_caps.txt", false, "fare_cap_id", "cap_period", "amount", "currency").each(l, func(r row) {
		c := fares.FareCap{
			ID: r.req("fare_cap_id"), RiderCategoryID: r.str("rider_category_id"), FareMediaID: r.str("fare_media_id"),
			Period: fares.CapPeriod(r.enum("cap_period", 0, 2, 0, true)), Price: r.money("amount", "currency"), Line: r.line(),
		}
		if v := r.str("day_start_time"); v != "" {
			s, err := parseLocalTime(v)
			switch {
			case err != nil:
				r.errorf("day_start_time", "%v", err)
			case s >= 86400:
				r.errorf("day_start_time", "must be before 24:00:00")
			default:
				c.DayStart = s
			}
		}
		if c.Price.Amount < 0 {
			r.errorf("amount", "a cap of %d minor units: a cap is what a rider pays at most, never below zero", c.Price.Amount)
		}
		t.FareCaps = append(t.FareCaps, c)
	})

	if len(l.errs) > 0 {
		if l.full() {
			l.errs = append(l.errs, fmt.Errorf("stopped after the first %d errors: the rest of the feed was not checked", maxErrors))
		}
		return nil, &fares.FeedError{Errs: l.errs}
	}
	return t, nil
}

// checkNoCalendar handles a feed with neither calendar.txt nor
// calendar_dates.txt: an error for each service a timeframe names (at the
// first line naming it), else a warning.
func (l *loader) checkNoCalendar(timeframes *csvFile) {
	const missing = "calendar.txt: required file is missing (calendar.txt or calendar_dates.txt must exist)"
	seen := map[string]bool{}
	timeframes.each(l, func(r row) {
		svc := r.str("service_id")
		if svc == "" || seen[svc] {
			return
		}
		seen[svc] = true
		if len(l.errs) < maxErrors {
			l.errs = append(l.errs, fmt.Errorf("%s: %s:%d: field service_id: service %q is named but no calendar file defines it", missing, timeframes.name, r.line(), svc))
		}
	})
	if len(seen) == 0 {
		l.warnf(Warning{File: "calendar.txt", Msg: "missing, and so is calendar_dates.txt: GTFS requires one of them, but no timeframe names a service_id, so fares do not need them"})
	}
}

// MaxFileSize bounds each file read, and MaxFeedSize all of them together,
// so that a zip of a few MB that inflates to gigabytes cannot exhaust
// memory (parsed rows take several times their bytes). The files read
// here are the small ones of a feed: stops.txt of a national feed is tens
// of MB; stop_times.txt is not read.
const (
	MaxFileSize = 256 << 20
	MaxFeedSize = 512 << 20
)

// readLimited reads name, refusing files over limit bytes without trusting
// the size the file (or zip entry) claims.
func readLimited(fsys fs.FS, name string, limit int) ([]byte, error) {
	// Only a regular file (a zip entry is one): a FIFO in a feed's
	// directory held the loader up for ever, and a link to /dev/zero was
	// read to the limit (an outside test).
	if st, err := fs.Stat(fsys, name); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s, not a regular file", fileKind(st.Mode()))
	}
	file, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	// A zip entry states its size: refuse before inflating it (the limit
	// below holds whatever the header says).
	if st, err := file.Stat(); err == nil && st.Size() > int64(limit) {
		return nil, fmt.Errorf("file of %d bytes, larger than %d", st.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(file, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("file larger than %d bytes", limit)
	}
	return data, nil
}

// fileKind names what a file that is not a regular file is.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	}
	return "of type " + m.Type().String()
}

func hasFile(fsys fs.FS, name string) bool {
	_, err := fs.Stat(fsys, name)
	return err == nil
}

// fareFiles are the files whose rows set prices: read strictly (every row
// as wide as the header, UTF-8), where a guess would misprice.
var fareFiles = map[string]bool{
	"timeframes.txt": true, "rider_categories.txt": true, "fare_media.txt": true, "fare_products.txt": true,
	"areas.txt": true, "stop_areas.txt": true, "networks.txt": true, "route_networks.txt": true,
	"fare_leg_rules.txt": true, "fare_leg_join_rules.txt": true, "fare_transfer_rules.txt": true,
	"area_set_elements.txt": true, "fare_caps.txt": true,
}

// readFiles are the files the loader reads; gtfsFiles the other files of
// the GTFS reference, which it leaves alone.
var (
	readFiles = []string{"agency.txt", "routes.txt", "stops.txt", "calendar.txt", "calendar_dates.txt",
		"timeframes.txt", "rider_categories.txt", "fare_media.txt", "fare_products.txt", "areas.txt",
		"stop_areas.txt", "networks.txt", "route_networks.txt", "fare_leg_rules.txt",
		"fare_leg_join_rules.txt", "fare_transfer_rules.txt", "area_set_elements.txt", "fare_caps.txt"}
	gtfsFiles = []string{"trips.txt", "stop_times.txt", "fare_attributes.txt", "fare_rules.txt", "shapes.txt",
		"frequencies.txt", "transfers.txt", "pathways.txt", "levels.txt", "location_groups.txt",
		"location_group_stops.txt", "locations.geojson", "booking_rules.txt", "translations.txt",
		"feed_info.txt", "attributions.txt"}
)

// checkFileNames refuses a file named like one the loader reads but not
// exactly so (Fare_Transfer_Rules.txt, fare_transfers_rules.txt,
// fare_cap.txt): GTFS names are case-sensitive, and the file would be
// skipped without a word, its transfers or caps left out of every price.
func (l *loader) checkFileNames() {
	entries, err := fs.ReadDir(l.fsys, ".")
	if err != nil {
		return // the reads below say what is wrong
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || slices.Contains(readFiles, name) || slices.Contains(gtfsFiles, name) {
			continue
		}
		for _, want := range readFiles {
			// A typo is looked for only in the fare files' names, whose
			// loss changes prices without a word (a vendor's notes.txt is
			// no misspelt routes.txt).
			if strings.EqualFold(name, want) || fareFiles[want] && (nearName(name, want) || copiedName(name, want)) {
				if !l.full() {
					l.errs = append(l.errs, fmt.Errorf("%s: not a GTFS file name: did you mean %s? (names are case-sensitive; the file would be skipped and the fares priced without it)", name, want))
				}
				break
			}
		}
	}
}

// copiedName says whether name is want's name with another extension or
// none, or a copy's suffix: fare_transfer_rules.txt.txt (an extension a
// desktop hid), fare_transfer_rules.csv, fare_transfer_rules,
// fare_transfer_rules (1).txt. Each was skipped without a word, its
// transfers left out of every price (an outside review).
func copiedName(name, want string) bool {
	rest, ok := strings.CutPrefix(strings.ToLower(name), strings.TrimSuffix(want, ".txt"))
	return ok && (rest == "" || strings.HasPrefix(rest, ".") || strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "("))
}

// nearName says whether name is want with one or two letters changed,
// added or taken away (a typo), for names long enough that two files of
// the reference are not that close.
func nearName(name, want string) bool {
	a, b := strings.ToLower(strings.TrimSuffix(name, ".txt")), strings.TrimSuffix(want, ".txt")
	if len(b) < 6 || !strings.HasSuffix(strings.ToLower(name), ".txt") || a == "" || a[0] != b[0] {
		return false
	}
	return editDistance(a, b, 2) <= 2
}

// editDistance is the Levenshtein distance of a and b, or max+1 once it
// is known to exceed max.
func editDistance(a, b string, max int) int {
	if d := len(a) - len(b); d > max || -d > max {
		return max + 1
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkLegRuleGroups refuses a fare leg rule given twice under different
// leg groups (GTFS: "the same entry in fare_leg_rules.txt (not including
// leg_group_id) must not belong to multiple leg_group_id"; the first would
// win and the other group's transfers be lost), and warns of a row given
// twice.
func (l *loader) checkLegRuleGroups(rules []fares.FareLegRule) {
	seen := make(map[fares.FareLegRule]fares.FareLegRule, len(rules))
	for _, r := range rules {
		k := r
		k.LegGroupID, k.Line = "", 0
		first, ok := seen[k]
		switch {
		case !ok:
			seen[k] = r
		case first.LegGroupID != r.LegGroupID:
			l.add("fare_leg_rules.txt", r.Line, "leg_group_id", "the same rule as line %d is in leg group %q there and %q here: GTFS puts a rule in one leg group only", first.Line, first.LegGroupID, r.LegGroupID)
		default:
			l.warnf(Warning{File: "fare_leg_rules.txt", Line: r.Line, Msg: fmt.Sprintf("the same row as line %d: read once", first.Line)})
		}
	}
}

// repeatedRow warns of a row of file whose key fields (its primary key)
// repeat an earlier row's, and says so: it is read once, as a repeated
// fare_leg_rules.txt row is (an outside review saw these files' repeats
// pass without a word).
func (l *loader) repeatedRow(file string, seen map[string]int, line int, key ...string) bool {
	k := strings.Join(key, "\x00")
	if first, ok := seen[k]; ok {
		l.warnf(Warning{File: file, Line: line, Msg: fmt.Sprintf("the same row as line %d: read once", first)})
		return true
	}
	seen[k] = line
	return false
}

// firstBareQuote returns the line of the first quote inside a field not
// quoted as a whole (csv.ErrBareQuote), 0 if there is none.
func firstBareQuote(data []byte) int {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	for {
		_, err := r.Read()
		if err == nil {
			continue
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrBareQuote) {
			return pe.Line
		}
		return 0
	}
}
