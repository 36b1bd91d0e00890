package clearing

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// feedSchedule answers POST /v1/feeds?from=RFC3339 with a GTFS feed zip as
// the body: the version is scheduled to take effect at from (201), or was
// already (200, replayed: true).
func (a *API) feedSchedule(w http.ResponseWriter, r *http.Request) {
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
	from, err := time.Parse(time.RFC3339, q)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("from %q: want an RFC 3339 time with its zone, e.g. 2027-01-01T04:00:00+01:00", q))
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
	entry, replayed, err := a.c.ScheduleFeed(r.Context(), zip, from, principal(r).Name)
	switch {
	case errors.Is(err, ErrBadFeed):
		writeError(w, http.StatusBadRequest, err)
		return
	case errors.Is(err, ErrFeedRefused):
		writeError(w, http.StatusUnprocessableEntity, err)
		return
	case errors.Is(err, ErrFeedConflict):
		writeError(w, http.StatusConflict, err)
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	status := http.StatusCreated
	if replayed {
		status = http.StatusOK
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, status, FeedScheduleView{Scheduled: entry, Replayed: replayed, Versions: a.c.FeedSchedule()})
}

// FeedScheduleView answers POST /v1/feeds: the version scheduled, and the
// chain of versions live pricing now follows.
type FeedScheduleView struct {
	Scheduled ScheduledFeed     `json:"scheduled"`
	Replayed  bool              `json:"replayed"`
	Versions  []FeedVersionView `json:"versions"`
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
