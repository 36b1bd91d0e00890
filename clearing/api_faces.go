package clearing

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/fare"
)

// Face subjects in the settlement API (see faces.go):
//
//	POST   /v1/faces             enrol a subject: templates, consent, scope (faces desk)
//	DELETE /v1/faces/{subject}   erase a subject; consent withdrawal is erasure (faces desk)
//	GET    /v1/faces/{subject}   a subject's metadata, the terminals in its scope and whether
//	                             the bucket holds it for each, its erasures (faces desk, auditors)
//	GET    /v1/faces             enrolled subjects, paged by id (faces desk, auditors)
//
// No response holds a descriptor. Who enrolled or erased is the token's
// name. Operators, the concessions and the payments desks get 403.

// maxFaceBody bounds an enrolment request: 16 descriptors of 128 numbers.
const maxFaceBody = 256 << 10

// FaceEnrolBody is the request of POST /v1/faces. Descriptors are arrays of
// 128 numbers (float32 range); card_key is fare.DenyKey of the holder's
// card, or card_token the card's token, which is hashed at once and never
// kept.
type FaceEnrolBody struct {
	Subject string `json:"subject"`
	Consent struct {
		GivenBy    string `json:"given_by"`
		At         string `json:"at"`
		Purpose    string `json:"purpose"`
		LegalBasis string `json:"legal_basis"`
	} `json:"consent"`
	ModelID     string      `json:"model_id"`
	Descriptors [][]float64 `json:"descriptors"`
	// Each of the rest may be left out (omitempty marks them so in the
	// OpenAPI document), but stops and/or lines must name a scope, and
	// face_only or one of the card fields is needed.
	Stops     []string `json:"stops,omitempty"`
	Lines     []string `json:"lines,omitempty"`
	FaceOnly  bool     `json:"face_only,omitempty"`
	CardKey   string   `json:"card_key,omitempty"`
	CardToken string   `json:"card_token,omitempty"`
	// SamePersonAsErased: the subject id was erased before and this is
	// the same person (FaceEnrolRequest.SamePersonAsErased).
	SamePersonAsErased bool `json:"same_person_as_erased,omitempty"`
}

// faceRequest turns a body into an enrolment request and names the
// problems JSON decoding cannot (a descriptor of the wrong length would
// otherwise be cut or padded).
func faceRequest(body *FaceEnrolBody, by string) (FaceEnrolRequest, []string) {
	req := FaceEnrolRequest{Subject: body.Subject, ModelID: body.ModelID, Stops: body.Stops, Lines: body.Lines,
		FaceOnly: body.FaceOnly, CardKey: body.CardKey, EnrolledBy: by, SamePersonAsErased: body.SamePersonAsErased,
		Consent: FaceConsent{GivenBy: body.Consent.GivenBy, Purpose: body.Consent.Purpose, LegalBasis: body.Consent.LegalBasis}}
	var errs []string
	if body.Consent.At != "" { // a missing one is named by checkFaceRequest
		at, err := time.Parse(time.RFC3339, body.Consent.At)
		if err != nil {
			errs = append(errs, fmt.Sprintf("consent at %q: want an RFC 3339 time with its zone (e.g. 2026-12-01T10:00:00+01:00 or ...Z)", body.Consent.At))
		}
		req.Consent.At = at
	}
	if body.CardToken != "" {
		if body.CardKey != "" {
			errs = append(errs, "card_key and card_token: give one")
		}
		// As concession enrolment checks it: a token no card reader
		// could send (a space, an invisible character) gave a key no tap
		// ever names, and the card the desk meant to hold to its
		// holder's face passed unchecked (an outside review).
		if err := fare.CheckDeskToken(body.CardToken); err != nil {
			errs = append(errs, "card_token: "+err.Error())
		}
		req.CardKey = fare.DenyKey(fare.Card, body.CardToken)
	}
	for i, d := range body.Descriptors {
		if len(d) != fare.FaceDim {
			errs = append(errs, fmt.Sprintf("descriptor %d: %d values, want %d", i+1, len(d), fare.FaceDim))
			continue
		}
		var v [fare.FaceDim]float32
		ok := true
		for j, x := range d {
			if math.Abs(x) > math.MaxFloat32 {
				errs = append(errs, fmt.Sprintf("descriptor %d value %d: %g is outside float32", i+1, j, x))
				ok = false // and not screened again, half read
				break
			}
			v[j] = float32(x)
		}
		if ok {
			req.Descriptors = append(req.Descriptors, v)
		}
	}
	return req, errs
}

func (a *API) faceEnrol(w http.ResponseWriter, r *http.Request) {
	var body FaceEnrolBody
	if status, err := readJSONBody(w, r, maxFaceBody, &body); err != nil {
		writeError(w, status, fmt.Errorf("face enrolment: want JSON {subject, consent: {given_by, at, purpose, legal_basis}, model_id, descriptors, stops, lines, face_only, card_key | card_token}: %w", err))
		return
	}
	req, errs := faceRequest(&body, principal(r).Name)
	if len(errs) > 0 {
		// Every problem at once: those of the body, then the request's.
		if err := a.c.checkFaceRequest(&req); err != nil {
			for _, e := range strings.Split(strings.TrimPrefix(err.Error(), ErrInvalidFace.Error()+": "), "; ") {
				// Descriptors or a time refused above are not missing ones.
				if e == "no descriptors" && len(body.Descriptors) > 0 || strings.HasPrefix(e, "missing consent at") && body.Consent.At != "" {
					continue
				}
				errs = append(errs, e)
			}
		}
		writeFaceError(w, badFace("%s", strings.Join(errs, "; ")))
		return
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		writeFaceError(w, badFace("%v", err))
		return
	}
	req.IdempotencyKey = idem
	v, err := a.c.EnrolFace(r.Context(), req)
	if err != nil {
		writeFaceError(w, err)
		return
	}
	status := http.StatusCreated
	if v.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	writeJSON(w, status, v)
}

func (a *API) faceErase(w http.ResponseWriter, r *http.Request) {
	idem, err := idempotencyKey(r)
	if err != nil {
		writeFaceError(w, badFace("%v", err))
		return
	}
	e, err := a.c.EraseFaceOnce(r.Context(), r.PathValue("subject"), principal(r).Name, r.URL.Query().Get("reason"), idem)
	if err != nil {
		writeFaceError(w, err)
		return
	}
	if e.replayed {
		w.Header().Set("Idempotent-Replayed", "true") // nothing erased again
	}
	writeJSON(w, http.StatusOK, e)
}

// FaceView is GET /v1/faces/{subject}: the subject if enrolled, and its
// erasures.
type FaceView struct {
	Subject  string        `json:"subject"`
	Enrolled *FaceSubject  `json:"enrolled"`
	Erasures []FaceErasure `json:"erasures"`
}

func (a *API) faceGet(w http.ResponseWriter, r *http.Request) {
	subject := r.PathValue("subject")
	v := FaceView{Subject: subject, Erasures: []FaceErasure{}}
	s, err := a.c.FaceSubject(r.Context(), subject)
	switch {
	case err == nil:
		v.Enrolled = &s
	case !errors.Is(err, ErrNotFound):
		writeFaceError(w, err)
		return
	}
	es, err := a.c.FaceErasures(subject)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if es != nil {
		v.Erasures = es
	}
	if v.Enrolled == nil && len(v.Erasures) == 0 {
		writeError(w, http.StatusNotFound, fmt.Errorf("face subject %q: never enrolled: %w", fares.ShortValue(subject), ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *API) faceList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
		return
	}
	subjects, err := a.c.FaceSubjects(q.Get("after"), limit+1) // one more: is there a next page?
	if err != nil {
		writeFaceError(w, err)
		return
	}
	more := len(subjects) > limit
	subjects = subjects[:min(len(subjects), limit)]
	version, n := a.c.FaceGalleriesVersion()
	resp := map[string]any{"version": version, "enrolled": n, "subjects": subjects}
	if more {
		resp["next_after"] = subjects[len(subjects)-1].Subject
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeFaceError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrInvalidFace):
		writeError(w, http.StatusBadRequest, err)
	case errors.Is(err, ErrFaceConflict), errors.Is(err, ErrFaceKeyUsed):
		writeError(w, http.StatusConflict, err)
	case errors.Is(err, ErrIdempotencyConflict), errors.Is(err, ErrGalleryFull):
		writeError(w, http.StatusUnprocessableEntity, err)
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, ErrFacesOff):
		writeError(w, http.StatusServiceUnavailable, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}
