package clearing

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// Concession enrolments in the settlement API (see enrol.go):
//
//	POST   /v1/enrolments            enrol a card or face into a rider category (concessions)
//	DELETE /v1/enrolments/{rider}    revoke a rider's enrolment (concessions)
//	GET    /v1/enrolments/{rider}    a rider's enrolment history and periods (concessions, auditors)
//
// The approver recorded is the name of the token that made the request.
// Operators see no rider's enrolments; a concessions token sees nothing but
// enrolments.

// maxEnrolBody bounds an enrolment request's body.
const maxEnrolBody = 4 << 10

// EnrolBody is the request of POST /v1/enrolments. Times are RFC 3339; an
// empty valid_from means now. Both move forward to the next start of a
// fare day.
type EnrolBody struct {
	Media      string `json:"media"`
	Token      string `json:"token"`
	Category   string `json:"category"`
	ValidFrom  string `json:"valid_from,omitempty"`
	ValidUntil string `json:"valid_until"`
}

// EnrolmentView is a rider's enrolments in the API: the history (oldest
// first), the periods it gives and the category the rider travels in now.
type EnrolmentView struct {
	Rider       string                 `json:"rider"`
	CategoryNow string                 `json:"category_now"`
	Periods     []fare.EnrolmentPeriod `json:"periods"`
	History     []Enrolment            `json:"history"`
}

func (a *API) enrolmentView(rider string) (EnrolmentView, error) {
	hist, periods, err := a.c.RiderEnrolments(rider)
	if err != nil {
		return EnrolmentView{}, err
	}
	for i := range periods {
		periods[i].From, periods[i].Until = a.zoned(periods[i].From), a.zoned(periods[i].Until)
	}
	for i := range hist {
		hist[i] = a.zonedEnrolment(hist[i])
	}
	v := EnrolmentView{Rider: rider, Periods: periods, History: hist}
	if v.Periods == nil {
		v.Periods = []fare.EnrolmentPeriod{}
	}
	if v.History == nil {
		v.History = []Enrolment{}
	}
	err = a.c.store.db.View(func(txn *badger.Txn) error {
		var err error
		v.CategoryNow, err = a.c.store.EnrolledCategory(txn, rider, a.c.cfg.FareClock())
		return err
	})
	return v, err
}

func parseRFC3339(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := parseQueryTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s %q: want an RFC 3339 time such as 2026-12-31T04:00:00Z", ErrInvalidEnrolment, field, s)
	}
	return t, nil
}

func (a *API) enrolCreate(w http.ResponseWriter, r *http.Request) {
	var body EnrolBody
	if status, err := readJSONBody(w, r, maxEnrolBody, &body); err != nil {
		writeError(w, status, fmt.Errorf("enrolment request: want JSON {media, token, category, valid_from (optional), valid_until}: %w", err))
		return
	}
	var errs []string
	m, err := ParseMedia(body.Media)
	if err != nil {
		errs = append(errs, err.Error())
	}
	if body.Token == "" {
		errs = append(errs, "missing token: the card token or face subject id to enrol")
	}
	from, err := parseRFC3339("valid_from", body.ValidFrom)
	if err != nil {
		errs = append(errs, strings.TrimPrefix(err.Error(), ErrInvalidEnrolment.Error()+": "))
	}
	until, err := parseRFC3339("valid_until", body.ValidUntil)
	if err != nil {
		errs = append(errs, strings.TrimPrefix(err.Error(), ErrInvalidEnrolment.Error()+": "))
	}
	if len(errs) > 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%w: %s", ErrInvalidEnrolment, strings.Join(errs, "; ")))
		return
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	e, err := a.c.Enrol(r.Context(), m, body.Token, EnrolRequest{Category: body.Category, ApprovedBy: principal(r).Name, ValidFrom: from, ValidUntil: until, IdempotencyKey: idem})
	if err != nil {
		writeEnrolError(w, err)
		return
	}
	a.writeEnrolment(w, http.StatusCreated, e, e.Rider)
}

// writeEnrolment answers an enrolment or revocation with the record and the
// rider's enrolments; a repeated request (Enrolment.Replayed) gets 200 and
// Idempotent-Replayed: true instead of status.
func (a *API) writeEnrolment(w http.ResponseWriter, status int, e Enrolment, rider string) {
	v, err := a.enrolmentView(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if e.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	writeJSON(w, status, map[string]any{"enrolment": a.zonedEnrolment(e), "rider": v})
}

// zonedEnrolment is e with its times in the agency's zone: they are fare
// day boundaries, which read as such there (04:00, not 03:00Z).
func (a *API) zonedEnrolment(e Enrolment) Enrolment {
	e.ValidFrom, e.ValidUntil, e.CreatedAt = a.zoned(e.ValidFrom), a.zoned(e.ValidUntil), a.zoned(e.CreatedAt)
	return e
}

// idempotencyKey reads the request's Idempotency-Key header (the IETF
// draft's; its structured-field quotes optional): "" when there is none.
// The key returned is scoped to the token that sent it (its hash): a token
// issued later under a revoked one's name starts with no keys.
func idempotencyKey(r *http.Request) (string, error) {
	k, err := rawIdempotencyKey(r)
	if k == "" || err != nil {
		return k, err
	}
	_, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return hashToken(strings.TrimSpace(token))[2:18] + "/" + k, nil
}

func rawIdempotencyKey(r *http.Request) (string, error) {
	vs := r.Header.Values("Idempotency-Key")
	if len(vs) == 0 {
		return "", nil
	}
	if len(vs) > 1 {
		return "", fmt.Errorf("Idempotency-Key given %d times: give it once", len(vs))
	}
	k := vs[0]
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	if err := ValidIdempotencyKey(k); err != nil {
		return "", fmt.Errorf("Idempotency-Key header: %w", err)
	}
	return k, nil
}

func (a *API) enrolRevoke(w http.ResponseWriter, r *http.Request) {
	rider := canonicalRider(r.PathValue("rider"))
	if rider == "" {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (see /v1/openapi.json)", r.Method, fares.ShortValue(r.URL.Path)))
		return
	}
	from, err := parseRFC3339("valid_from", r.URL.Query().Get("valid_from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	e, err := a.c.RevokeEnrolment(r.Context(), rider, principal(r).Name, from, idem)
	if err != nil {
		writeEnrolError(w, err)
		return
	}
	a.writeEnrolment(w, http.StatusOK, e, rider)
}

func (a *API) enrolGet(w http.ResponseWriter, r *http.Request) {
	rider := canonicalRider(r.PathValue("rider"))
	if rider == "" {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s (see /v1/openapi.json)", r.Method, fares.ShortValue(r.URL.Path)))
		return
	}
	if _, err := ParseRiderAccount(rider); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	v, err := a.enrolmentView(rider)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// EnrolmentList is GET /v1/enrolments: the last record of each rider ever
// enrolled (a revocation included), by rider, paged, and the version of
// the enrolment list the gates hold. (The desk could look up one rider at
// a time while clearing ran: the CLI's list reads a stopped store.)
type EnrolmentList struct {
	Version    uint64      `json:"version"`
	Enrolments []Enrolment `json:"enrolments"`
	NextAfter  string      `json:"next_after,omitempty"`
}

// enrolList serves GET /v1/enrolments?after=&limit=.
func (a *API) enrolList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
		return
	}
	after := canonicalRider(q.Get("after"))
	if after != "" {
		if _, err := ParseRiderAccount(after); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("after: %w", err))
			return
		}
	}
	version, _ := a.c.EnrolmentListVersion()
	list, err := a.c.store.LatestEnrolments(after, limit+1) // one more: is there a next page?
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	v := EnrolmentList{Version: version, Enrolments: make([]Enrolment, 0, min(len(list), limit))}
	for i, e := range list {
		if i == limit {
			v.NextAfter = list[limit-1].Rider
			break
		}
		v.Enrolments = append(v.Enrolments, a.zonedEnrolment(e))
	}
	writeJSON(w, http.StatusOK, v)
}

func writeEnrolError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrInvalidEnrolment):
		writeError(w, http.StatusBadRequest, err)
	case errors.Is(err, ErrIdempotencyConflict):
		writeError(w, http.StatusUnprocessableEntity, err)
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}
