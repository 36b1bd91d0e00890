package ledger

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// TestHostedNodeKeysRedacted: a node reached with its key in the path, a
// key in the query and a password (as hosted nodes take them) is used with
// all three, and no error names any of them: not the dial's, nor a later
// call's once the node is gone (an HTTP client's error quotes the URL it
// asked; an outside review found a query key printed).
func TestHostedNodeKeysRedacted(t *testing.T) {
	const pathKey, queryKey, password = "0123456789abcdefPATHKEY", "QUERYSECRET", "hunter22"
	e := openTest(t, t.TempDir(), WithHTTP("127.0.0.1:0"))
	up, err := url.Parse(e.HTTPEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(up)
	hosted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, _ := r.BasicAuth()
		if r.URL.Path != "/v3/"+pathKey || r.URL.Query().Get("apikey") != queryKey || user != "me" || pw != password {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		r.URL.Path, r.URL.RawQuery = "/", ""
		proxy.ServeHTTP(w, r)
	}))
	defer hosted.Close()
	node := "http://me:" + password + "@" + strings.TrimPrefix(hosted.URL, "http://") + "/v3/" + pathKey + "?apikey=" + queryKey
	secret := func(err error) bool {
		return err != nil && (strings.Contains(err.Error(), pathKey) || strings.Contains(err.Error(), queryKey) || strings.Contains(err.Error(), password))
	}
	ctx := context.Background()
	c, err := DialReadOnly(ctx, node, e.ContractAddress().Hex())
	if err != nil {
		t.Fatalf("dial the hosted node: %v", err)
	}
	defer c.Close()
	if _, err := c.NextBatchID(ctx); err != nil {
		t.Fatalf("a call through the hosted node: %v", err)
	}
	hosted.Close()
	_, err = c.NextBatchID(ctx)
	if err == nil || secret(err) || !strings.Contains(err.Error(), "/v3/xxxxx?apikey=xxxxx") {
		t.Errorf("a call once the node is gone: %v; want it to fail naming the node redacted", err)
	}
	if _, err := DialReadOnly(ctx, node, e.ContractAddress().Hex()); err == nil || secret(err) {
		t.Errorf("a dial of the node gone: %v; want it to fail, no key named", err)
	}
	// A wrong key: refused by the node, no key named.
	wrong := strings.Replace(node, queryKey, "WRONGSECRET", 1)
	if _, err := DialReadOnly(ctx, wrong, e.ContractAddress().Hex()); err == nil || strings.Contains(err.Error(), "WRONGSECRET") || secret(err) {
		t.Errorf("a dial with a wrong key: %v", err)
	}
}

// TestNodeRedirectRefused: a node that answers with a redirect is refused,
// saying so, not followed (resolved against the redacted URL it looped);
// neither its key nor the target's is named.
func TestNodeRedirectRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/new/0123456789abcdefTARGETKEY", http.StatusPermanentRedirect)
	}))
	defer srv.Close()
	_, err := DialReadOnly(context.Background(), srv.URL+"/old/0123456789abcdefOLDKEY", "0x0000000000000000000000000000000000000001")
	if err == nil || !strings.Contains(err.Error(), "a redirect") || strings.Contains(err.Error(), "TARGETKEY") || strings.Contains(err.Error(), "OLDKEY") {
		t.Errorf("dial a node that redirects: %v; want it refused as a redirect, no key named", err)
	}
	// One that does not parse is said in our words, not url.Parse's (they
	// quote a piece of a password cut at its '#').
	_, err = DialReadOnly(context.Background(), "https://me:S3cretPW#x@node:8545", "0x0000000000000000000000000000000000000001")
	if err == nil || !strings.Contains(err.Error(), "does not parse as a URL") || strings.Contains(err.Error(), "S3cretPW") {
		t.Errorf("dial a URL that does not parse: %v", err)
	}
}
