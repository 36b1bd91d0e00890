package clearing

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAPIHandlerPanicAnswers500: a handler's bug answers 500 in the API's
// error shape and is logged with its stack, instead of net/http closing
// the connection with no answer (an outside test met that on a feed the
// loader panicked on); the API goes on serving.
func TestAPIHandlerPanicAnswers500(t *testing.T) {
	var logged bytes.Buffer
	a := &API{mux: http.NewServeMux(), log: slog.New(slog.NewJSONHandler(&logged, nil))}
	a.mux.HandleFunc("POST /v1/feeds", func(http.ResponseWriter, *http.Request) {
		var rows []int
		_ = rows[0] // the loader's index out of range
	})
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, "ok") })
	for range 2 {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/feeds", strings.NewReader("PK")))
		var body map[string]string
		if rec.Code != http.StatusInternalServerError || json.Unmarshal(rec.Body.Bytes(), &body) != nil || !strings.Contains(body["error"], "internal error serving POST /v1/feeds") {
			t.Fatalf("a panicking handler answered %d %s, want 500 with an error object", rec.Code, rec.Body)
		}
		rec = httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("after a handler's panic, /healthz answered %d", rec.Code)
		}
	}
	if !strings.Contains(logged.String(), "index out of range") || !strings.Contains(logged.String(), `"stack"`) || !strings.Contains(logged.String(), `"path":"/v1/feeds"`) {
		t.Errorf("the panic was not logged with its stack and path: %s", logged.String())
	}
}
