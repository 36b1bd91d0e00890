package clearing

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// feedUploadTimeout bounds reading a feed zip's upload.
const feedUploadTimeout = 10 * time.Minute

// feedSchedule answers POST /v1/feeds?from=RFC3339 with a GTFS feed zip as
// the body: the version is scheduled to take effect at from (201), or was
// already (200, replayed: true).
func (a *API) feedSchedule(w http.ResponseWriter, r *http.Request) {
	// A feed zip (up to MaxFeedZip) over a slow back-office link takes
	// longer than the server's read deadline for other requests.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(feedUploadTimeout))
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/zip" && mt != "application/octet-stream") {
			writeError(w, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type %q: want application/zip (the GTFS feed as a zip)", ct))
			return
		}
	}
	q := r.URL.Query().Get("from")
	if q == "" {
		writeError(w, http.StatusBadRequest, errors.New("missing from: when the version takes effect, an RFC 3339 time with its zone (fare days beginning then or later are priced with it)"))
		return
	}
	// A "+" sent unescaped (a space) is refused here, not read as "+": the
	// time a new fare takes effect is said exactly.
	from, err := ParseTime(q)
	if err != nil || strings.Contains(q, " ") {
		hint := ""
		if strings.Contains(q, " ") {
			hint = " (a + in a query string is sent as %2B)"
		}
		writeError(w, http.StatusBadRequest, fmt.Errorf("from %q: want an RFC 3339 time with its zone, e.g. 2027-01-01T04:00:00+01:00%s", q, hint))
		return
	}
	zip, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxFeedZip))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("feed zip over %d bytes", MaxFeedZip))
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Errorf("read the feed zip: %w", err))
		return
	}
	if len(zip) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("empty body: send the GTFS feed as a zip"))
		return
	}
	entry, replayed, warnings, err := a.c.ScheduleFeed(r.Context(), zip, from, principal(r).Name)
	if writeFeedError(w, err) {
		return
	}
	status := http.StatusCreated
	if replayed {
		status = http.StatusOK
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if warnings == nil {
		warnings = []string{}
	}
	entry.ScheduledAt = a.zoned(entry.ScheduledAt) // as every time the API shows about fares
	writeJSON(w, status, FeedScheduleView{Scheduled: entry, Replayed: replayed, Warnings: warnings, Versions: a.c.FeedSchedule()})
}

// writeFeedError answers a schedule change's error by its kind (false
// when there is none).
func writeFeedError(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrBadFeed):
		writeError(w, http.StatusBadRequest, err)
	case errors.Is(err, ErrFeedNotScheduled):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, ErrFeedRefused):
		writeError(w, http.StatusUnprocessableEntity, err)
	case errors.Is(err, ErrFeedConflict):
		writeError(w, http.StatusConflict, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
	return true
}

// feedVersionPattern is a feed version as FeedVersionOf writes it.
var feedVersionPattern = regexp.MustCompile(`^sha256:0x[0-9a-f]{16}$`)

// feedWithdraw answers DELETE /v1/feeds/{version}: the last scheduled
// version, not yet in effect, is withdrawn.
func (a *API) feedWithdraw(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("version")
	if !feedVersionPattern.MatchString(v) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("feed version %q: want sha256:0x and 16 hex digits, as POST /v1/feeds answered", v))
		return
	}
	entry, err := a.c.WithdrawFeed(r.Context(), v)
	if writeFeedError(w, err) {
		return
	}
	entry.ScheduledAt = a.zoned(entry.ScheduledAt)
	writeJSON(w, http.StatusOK, FeedWithdrawView{Withdrawn: entry, Versions: a.c.FeedSchedule()})
}

// FeedWithdrawView answers DELETE /v1/feeds/{version}.
type FeedWithdrawView struct {
	Withdrawn ScheduledFeed     `json:"withdrawn"`
	Versions  []FeedVersionView `json:"versions"`
}

// FeedScheduleView answers POST /v1/feeds: the version scheduled, and the
// chain of versions live pricing now follows.
type FeedScheduleView struct {
	Scheduled ScheduledFeed `json:"scheduled"`
	Replayed  bool          `json:"replayed"`
	// Warnings are the feed loader's (file:line) and the feed's agencies
	// that are no operators of the registry.
	Warnings []string          `json:"warnings"`
	Versions []FeedVersionView `json:"versions"`
}

// FeedListView answers GET /v1/feeds.
type FeedListView struct {
	Versions []FeedVersionView `json:"versions"` // empty: flat fares
}

func (a *API) feedList(w http.ResponseWriter, r *http.Request) {
	v := a.c.FeedSchedule()
	if v == nil {
		v = []FeedVersionView{}
	}
	writeJSON(w, http.StatusOK, FeedListView{Versions: v})
}
