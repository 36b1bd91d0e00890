package ledger

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// rpcProxy is a JSON-RPC proxy in front of upstream for tests that play
// another node or a failing one: answer, when not nil, may answer a request
// body itself (ok true); rewrite, when not nil, rewrites upstream's answer.
// It is closed when the test ends.
func rpcProxy(t *testing.T, upstream string, answer func(body []byte) (out []byte, ok bool), rewrite func(out []byte) []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if answer != nil {
			if out, ok := answer(body); ok {
				w.Write(out)
				return
			}
		}
		resp, err := http.Post(upstream, "application/json", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if rewrite != nil {
			out = rewrite(out)
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
