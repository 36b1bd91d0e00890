package clearing_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/faregate/faregate/clearing"
)

// loadOpenAPI parses and validates the embedded document as OpenAPI 3.1.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(clearing.OpenAPIDocument())
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi.json is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json does not validate: %v", err)
	}
	return doc
}

// TestOpenAPIRoutes: every route NewAPI registers is in the document, and
// every operation of the document is a route.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	registered := slices.Clone(openAPIRoutes(t))
	sort.Strings(documented)
	sort.Strings(registered)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is served but not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("openapi.json describes %s, which the API does not serve", d)
		}
	}
}

// openAPIRoutes are the routes of an API with a metrics gatherer. NewAPI
// only registers handlers: a clearing that was never opened will do.
func openAPIRoutes(t *testing.T) []string {
	t.Helper()
	ts, err := clearing.LoadTokenStore(filepath.Join(t.TempDir(), "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	return clearing.NewAPI(&clearing.Clearing{}, prometheus.NewRegistry(), clearing.WithTokens(ts), clearing.WithAPILogger(quietLogger())).Routes()
}

// conformanceCase is one request of the conformance test.
type conformanceCase struct {
	method, party, path string
	op                  string // the document's path template; "" for a path it does not describe
	hdr                 []string
	body                string
	want                int // expected status
}

// TestOpenAPIConformance runs every endpoint of the API over the priced
// city (a real clearing with applied events and committed batches), in
// success and error cases, and validates every real response (status,
// headers, body) against the document with kin-openapi.
func TestOpenAPIConformance(t *testing.T) {
	doc := loadOpenAPI(t)
	f := newPricedAPI(t)
	for _, g := range []struct {
		party string
		role  clearing.Role
	}{{"concessions", clearing.RoleConcessions}, {"payments", clearing.RolePayments}, {"faces", clearing.RoleFaces}, {"fares", clearing.RoleFares}} {
		tok, err := f.ts.Issue(g.role, "", g.party)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[g.party] = tok
	}
	f.tokens["bad"] = clearing.TokenPrefix + strings.Repeat("A", 43)
	// The city feed with its bus fare raised, as a zip.
	var feedZip bytes.Buffer
	zw := zip.NewWriter(&feedZip)
	entries, err := os.ReadDir("journeys/testdata/city")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("journeys/testdata/city", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "fare_products.txt" {
			b = bytes.Replace(b, []byte("adult,,1.80,EUR"), []byte("adult,,1.90,EUR"), 1)
		}
		w, _ := zw.Create(e.Name())
		w.Write(b)
	}
	zw.Close()
	zipType := []string{"Content-Type", "application/zip"}
	feedVersion, err := clearing.FeedVersionOfZip(feedZip.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(clearing.NewAPI(f.cl.Clearing, prometheus.NewRegistry(), clearing.WithTokens(f.ts)))
	t.Cleanup(srv.Close)

	rider := riderPath(f.riderA)
	unknownRider := "/v1/riders/card/0x" + strings.Repeat("ab", 16)
	ev := f.busTap.ID.String()
	enrol := `{"media":"card","token":"card-c","category":"concession","valid_until":"2027-12-31T04:00:00+01:00"}`
	cases := []conformanceCase{
		{"GET", "none", "/v1/openapi.json", "/v1/openapi.json", nil, "", 200},
		{"GET", "none", "/healthz", "/healthz", nil, "", 200},
		{"GET", "none", "/readyz", "/readyz", nil, "", 200},
		{"GET", "auditor", "/v1/dashboard", "/v1/dashboard", nil, "", 200},
		{"GET", "metro", "/v1/dashboard", "/v1/dashboard", nil, "", 403},
		{"GET", "none", "/v1/dashboard", "/v1/dashboard", nil, "", 401},
		{"GET", "auditor", "/v1/dashboard?operator=bus", "/v1/dashboard", nil, "", 400},
		{"GET", "auditor", "/metrics", "/metrics", nil, "", 200},
		{"GET", "metro", "/metrics", "/metrics", nil, "", 403},
		{"GET", "none", "/metrics", "/metrics", nil, "", 401},
		{"GET", "auditor", "/v1/stats", "/v1/stats", nil, "", 200},
		{"GET", "bus", "/v1/stats", "/v1/stats", nil, "", 403},

		{"GET", "auditor", "/v1/operators", "/v1/operators", nil, "", 200},
		{"GET", "metro", "/v1/operators", "/v1/operators", nil, "", 200},
		{"GET", "auditor", "/v1/operators?limit=1", "/v1/operators", nil, "", 200},
		{"GET", "auditor", "/v1/operators?limit=0", "/v1/operators", nil, "", 400},
		{"GET", "auditor", "/v1/operators?operator=bus", "/v1/operators", nil, "", 400},
		{"GET", "auditor", "/v1/balances?prefx=operator/", "/v1/balances", nil, "", 400},
		{"GET", "auditor", "/v1/deny?limt=5", "/v1/deny", nil, "", 400},
		{"GET", "auditor", "/v1/batches/1/statements/bus?fromat=csv", "/v1/batches/{id}/statements/{operator}", nil, "", 400},
		{"GET", "metro", "/v1/operators/metro", "/v1/operators/{id}", nil, "", 200},
		{"GET", "metro", "/v1/operators/bus", "/v1/operators/{id}", nil, "", 403},
		{"GET", "auditor", "/v1/operators/nope", "/v1/operators/{id}", nil, "", 404},
		{"GET", "auditor", "/v1/balances?limit=1", "/v1/balances", nil, "", 200},
		{"GET", "auditor", "/v1/balances?prefix=passenger/", "/v1/balances", nil, "", 200},
		{"GET", "metro", "/v1/balances?prefix=operator/metro", "/v1/balances", nil, "", 200},
		{"GET", "metro", "/v1/balances", "/v1/balances", nil, "", 403},
		{"GET", "auditor", "/v1/balances?limit=0", "/v1/balances", nil, "", 400},
		{"GET", "metro", "/v1/accounts/operator/metro", "/v1/accounts/{account}", nil, "", 200},
		{"GET", "auditor", "/v1/accounts/" + f.riderA, "/v1/accounts/{account}", nil, "", 200},
		{"GET", "metro", "/v1/accounts/operator/bus", "/v1/accounts/{account}", nil, "", 403},
		{"GET", "auditor", "/v1/accounts/bogus", "/v1/accounts/{account}", nil, "", 400},

		{"GET", "auditor", "/v1/batches", "/v1/batches", nil, "", 200},
		{"GET", "metro", "/v1/batches?limit=1", "/v1/batches", nil, "", 200},
		{"GET", "auditor", "/v1/batches?after=1&operator=bus&since=2026-12-01T00:00:00Z&until=2030-01-01T00:00:00%2B01:00", "/v1/batches", nil, "", 200},
		{"GET", "auditor", "/v1/batches?format=csv", "/v1/batches", nil, "", 200},
		{"GET", "bus", "/v1/batches", "/v1/batches", []string{"Accept", "text/csv"}, "", 200},
		{"GET", "auditor", "/v1/batches?operator=nope", "/v1/batches", nil, "", 404},
		{"GET", "auditor", "/v1/batches?since=yesterday", "/v1/batches", nil, "", 400},
		{"GET", "auditor", "/v1/batches?colour=red", "/v1/batches", nil, "", 400},
		{"GET", "metro", "/v1/batches?operator=bus", "/v1/batches", nil, "", 403},
		{"GET", "none", "/v1/batches", "/v1/batches", nil, "", 401},
		{"GET", "bad", "/v1/batches", "/v1/batches", nil, "", 401},
		{"GET", "auditor", "/v1/batches/1", "/v1/batches/{id}", nil, "", 200},
		{"GET", "auditor", "/v1/batches/x", "/v1/batches/{id}", nil, "", 400},
		{"GET", "auditor", "/v1/batches/99", "/v1/batches/{id}", nil, "", 404},
		{"GET", "auditor", "/v1/batches/2/events", "/v1/batches/{id}/events", nil, "", 200},
		{"GET", "auditor", "/v1/batches/2/events?limit=1&after=0&operator=metro", "/v1/batches/{id}/events", nil, "", 200},
		{"GET", "metro", "/v1/batches/2/events?format=csv", "/v1/batches/{id}/events", nil, "", 200},
		{"GET", "metro", "/v1/batches/2/events?operator=bus", "/v1/batches/{id}/events", nil, "", 403},
		{"GET", "auditor", "/v1/batches/2/events?after=x", "/v1/batches/{id}/events", nil, "", 400},
		{"GET", "auditor", "/v1/batches/99/events", "/v1/batches/{id}/events", nil, "", 404},
		{"GET", "auditor", "/v1/batches/2/statements/bus", "/v1/batches/{id}/statements/{operator}", nil, "", 200},
		{"GET", "bus", "/v1/batches/1/statements/bus?format=csv", "/v1/batches/{id}/statements/{operator}", nil, "", 200},
		{"GET", "metro", "/v1/batches/1/statements/bus", "/v1/batches/{id}/statements/{operator}", nil, "", 403},
		{"GET", "auditor", "/v1/batches/0/statements/bus", "/v1/batches/{id}/statements/{operator}", nil, "", 400},
		{"GET", "auditor", "/v1/batches/99/statements/bus", "/v1/batches/{id}/statements/{operator}", nil, "", 404},
		{"GET", "auditor", "/v1/events/" + ev, "/v1/events/{id}", nil, "", 200},
		{"GET", "bus", "/v1/events/" + ev, "/v1/events/{id}", nil, "", 200},
		{"GET", "metro", "/v1/events/" + ev, "/v1/events/{id}", nil, "", 404},
		{"GET", "auditor", "/v1/events/zz", "/v1/events/{id}", nil, "", 400},
		{"GET", "bus", "/v1/terminals", "/v1/terminals", nil, "", 200},
		{"GET", "auditor", "/v1/terminals?operator=metro&limit=1", "/v1/terminals", nil, "", 200},
		{"GET", "auditor", "/v1/terminals?limit=1&after=metro-s01-g1", "/v1/terminals", nil, "", 200},
		{"GET", "bus", "/v1/terminals?operator=metro", "/v1/terminals", nil, "", 403},
		{"GET", "auditor", "/v1/terminals?limit=x", "/v1/terminals", nil, "", 400},
		{"GET", "auditor", "/v1/deny", "/v1/deny", nil, "", 200},
		{"GET", "auditor", "/v1/deny?after=bad", "/v1/deny", nil, "", 400},
		{"GET", "metro", "/v1/deny", "/v1/deny", nil, "", 403},

		{"POST", "concessions", "/v1/enrolments", "/v1/enrolments", nil, enrol, 201},
		{"POST", "concessions", "/v1/enrolments", "/v1/enrolments", nil, `{"media":"card"`, 400},
		{"POST", "auditor", "/v1/enrolments", "/v1/enrolments", nil, enrol, 403},
		{"GET", "concessions", "/v1/enrolments/" + f.riderA, "/v1/enrolments/{rider}", nil, "", 200},
		{"GET", "concessions", "/v1/enrolments/bogus", "/v1/enrolments/{rider}", nil, "", 400},
		{"GET", "metro", "/v1/enrolments/" + f.riderA, "/v1/enrolments/{rider}", nil, "", 403},
		{"DELETE", "auditor", "/v1/enrolments/" + f.riderA, "/v1/enrolments/{rider}", nil, "", 403},

		{"GET", "auditor", rider, "/v1/riders/{media}/{pseudonym}", nil, "", 200},
		{"GET", "auditor", unknownRider, "/v1/riders/{media}/{pseudonym}", nil, "", 404},
		{"GET", "auditor", "/v1/riders/bus/0x00", "/v1/riders/{media}/{pseudonym}", nil, "", 400},
		{"GET", "metro", rider, "/v1/riders/{media}/{pseudonym}", nil, "", 403},
		{"GET", "auditor", rider + "/days?limit=1", "/v1/riders/{media}/{pseudonym}/days", nil, "", 200},
		{"GET", "auditor", rider + "/days?from=monday", "/v1/riders/{media}/{pseudonym}/days", nil, "", 400},
		{"GET", "auditor", rider + "/days/2026-12-02", "/v1/riders/{media}/{pseudonym}/days/{date}", nil, "", 200},
		{"GET", "auditor", rider + "/days/2026-01-01", "/v1/riders/{media}/{pseudonym}/days/{date}", nil, "", 404},
		{"GET", "payments", rider + "/payments", "/v1/riders/{media}/{pseudonym}/payments", nil, "", 200},
		{"GET", "metro", rider + "/payments", "/v1/riders/{media}/{pseudonym}/payments", nil, "", 403},
		{"POST", "payments", rider + "/payments", "/v1/riders/{media}/{pseudonym}/payments", nil, "", 409},
		{"POST", "auditor", rider + "/payments", "/v1/riders/{media}/{pseudonym}/payments", nil, "", 403},

		{"GET", "faces", "/v1/faces", "/v1/faces", nil, "", 0},
		{"GET", "metro", "/v1/faces", "/v1/faces", nil, "", 403},
		{"GET", "auditor", "/v1/faces/nobody", "/v1/faces/{subject}", nil, "", 0},
		{"POST", "faces", "/v1/faces", "/v1/faces", nil, `{"subject":""}`, 0},
		{"DELETE", "faces", "/v1/faces/nobody", "/v1/faces/{subject}", nil, "", 0},
		{"DELETE", "auditor", "/v1/faces/nobody", "/v1/faces/{subject}", nil, "", 403},

		// The desks (concessions, payments, faces) see no operator's
		// events, terminals, operators or accounts; batches are public.
		{"GET", "concessions", "/v1/batches/2/events", "/v1/batches/{id}/events", nil, "", 403},
		{"GET", "payments", "/v1/batches/2/events?format=csv", "/v1/batches/{id}/events", nil, "", 403},
		{"GET", "faces", "/v1/events/" + ev, "/v1/events/{id}", nil, "", 403},
		{"GET", "concessions", "/v1/operators", "/v1/operators", nil, "", 403},
		{"GET", "faces", "/v1/operators/metro", "/v1/operators/{id}", nil, "", 403},
		{"GET", "payments", "/v1/terminals", "/v1/terminals", nil, "", 403},
		{"GET", "concessions", "/v1/accounts/" + f.riderA, "/v1/accounts/{account}", nil, "", 403},
		{"GET", "payments", "/v1/balances?prefix=passenger/", "/v1/balances", nil, "", 403},
		{"GET", "faces", "/v1/batches", "/v1/batches", nil, "", 200},
		// A parameter the endpoint does not read, or a query that does not
		// decode, is refused: a mistyped option never passes for none (a
		// revocation or erasure with one does not happen).
		{"GET", "auditor", "/v1/batches?operator=bus%", "/v1/batches", nil, "", 400},
		{"GET", "auditor", "/v1/balances?prefix=operator/%zz", "/v1/balances", nil, "", 400},
		{"GET", "auditor", "/v1/batches/1?format=csv", "/v1/batches/{id}", nil, "", 400},
		{"GET", "auditor", "/v1/events/" + ev + "?format=csv", "/v1/events/{id}", nil, "", 400},
		{"DELETE", "concessions", "/v1/enrolments/" + f.riderA + "?validfrom=2027-06-01T00:00:00Z", "/v1/enrolments/{rider}", nil, "", 400},
		{"DELETE", "faces", "/v1/faces/nobody?reasn=typo", "/v1/faces/{subject}", nil, "", 400},
		{"POST", "concessions", "/v1/enrolments?dry=1", "/v1/enrolments", nil, enrol, 400},
		// An account the journal never posted to is none (a registered
		// operator's excepted), whatever the case of its hex.
		{"GET", "auditor", "/v1/accounts/operator/nonexistent", "/v1/accounts/{account}", nil, "", 404},
		{"GET", "auditor", "/v1/accounts/passenger/anything-at-all", "/v1/accounts/{account}", nil, "", 400},
		{"GET", "auditor", "/v1/accounts/" + strings.ToUpper(f.riderA[:len("passenger/card/0x")]) + strings.ToUpper(f.riderA[len("passenger/card/0x"):]), "/v1/accounts/{account}", nil, "", 400},
		{"GET", "auditor", "/v1/accounts/passenger/card/0x" + strings.ToUpper(f.riderA[len("passenger/card/0x"):]), "/v1/accounts/{account}", nil, "", 200},
		{"GET", "auditor", "/v1/accounts/acquirer", "/v1/accounts/{account}", nil, "", 0},
		// Bodies: JSON only, bounded, one object, field names as documented.
		{"POST", "concessions", "/v1/enrolments", "/v1/enrolments", []string{"Content-Type", "text/plain"}, enrol, 415},
		{"POST", "faces", "/v1/faces", "/v1/faces", []string{"Content-Type", "application/x-www-form-urlencoded"}, `{"subject":""}`, 415},
		{"POST", "concessions", "/v1/enrolments", "/v1/enrolments", nil, `{"media":"card","token":"` + strings.Repeat("x", 5000) + `"}`, 413},
		{"POST", "concessions", "/v1/enrolments", "/v1/enrolments", nil, enrol + ` {"media":"card"}`, 400},
		{"POST", "concessions", "/v1/enrolments", "/v1/enrolments", nil, strings.Replace(enrol, `"media"`, `"MEDIA"`, 1), 400},

		// Fare feed versions: the fare desk schedules, auditors see.
		{"GET", "fares", "/v1/feeds", "/v1/feeds", nil, "", 200},
		{"GET", "auditor", "/v1/feeds", "/v1/feeds", nil, "", 200},
		{"GET", "metro", "/v1/feeds", "/v1/feeds", nil, "", 403},
		{"POST", "auditor", "/v1/feeds?from=2027-06-01T04:00:00%2B02:00", "/v1/feeds", zipType, feedZip.String(), 403},
		{"POST", "fares", "/v1/feeds?from=2027-06-01T04:00:00%2B02:00", "/v1/feeds", zipType, "not a zip", 400},
		{"POST", "fares", "/v1/feeds?from=2099-01-01", "/v1/feeds", zipType, feedZip.String(), 400},
		{"POST", "fares", "/v1/feeds?from=2099-01-01T04:00:00%2B24:00", "/v1/feeds", zipType, feedZip.String(), 400},
		{"POST", "fares", "/v1/feeds?from=2099-01-01T04:00:00%2B01:00", "/v1/feeds", nil, feedZip.String(), 415},
		{"POST", "fares", "/v1/feeds?from=2000-01-01T04:00:00%2B01:00", "/v1/feeds", zipType, feedZip.String(), 422},
		{"POST", "fares", "/v1/feeds?from=2099-01-01T04:00:00%2B01:00", "/v1/feeds", zipType, feedZip.String(), 422},
		{"POST", "fares", "/v1/feeds?from=2027-06-01T04:00:00%2B02:00", "/v1/feeds", zipType, feedZip.String(), 201},
		{"POST", "fares", "/v1/feeds?from=2027-06-01T04:00:00%2B02:00", "/v1/feeds", zipType, feedZip.String(), 200},
		{"POST", "fares", "/v1/feeds?from=2027-03-01T04:00:00%2B01:00", "/v1/feeds", zipType, feedZip.String(), 409},
		{"DELETE", "auditor", "/v1/feeds/" + feedVersion, "/v1/feeds/{version}", nil, "", 403},
		{"DELETE", "fares", "/v1/feeds/sha256:0x0000000000000000", "/v1/feeds/{version}", nil, "", 404},
		{"DELETE", "fares", "/v1/feeds/garbage", "/v1/feeds/{version}", nil, "", 400},
		{"DELETE", "fares", "/v1/feeds/" + feedVersion, "/v1/feeds/{version}", nil, "", 200},

		// Wrong methods: 405 with Allow, in the error shape.
		{"POST", "auditor", "/v1/batches", "", nil, "", 405},
		{"DELETE", "auditor", "/v1/batches/1/events", "", nil, "", 405},
		{"PUT", "auditor", rider, "", nil, "", 405},
		{"PATCH", "auditor", "/v1/faces/nobody", "", nil, "", 405},
		{"POST", "auditor", "/v1/openapi.json", "", nil, "", 405},
		{"POST", "auditor", "/readyz", "", nil, "", 405},
		{"DELETE", "auditor", "/v1/batches/1/statements/bus", "", nil, "", 405},
		// No such endpoint.
		{"GET", "auditor", "/v1/nothing", "", nil, "", 404},
	}
	checkConformance(t, doc, srv.URL, f.tokens, cases)
}

// checkConformance sends each case to the API at base and validates the
// real response against doc: the status is the one wanted and documented
// for the operation (not only as default), headers and body conform, an
// error has the Error shape, a 405 names the methods allowed, CSV parses.
func checkConformance(t *testing.T, doc *openapi3.T, base string, tokens map[string]string, cases []conformanceCase) {
	t.Helper()
	errSchema := doc.Components.Schemas["Error"].Value
	for _, c := range cases {
		name := c.method + " " + c.path + " as " + c.party
		req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.party != "none" {
			req.Header.Set("Authorization", "Bearer "+tokens[c.party])
		}
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(c.hdr); i += 2 {
			req.Header.Set(c.hdr[i], c.hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if c.want != 0 && resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d: %s", name, resp.StatusCode, c.want, body)
			continue
		}
		if c.want == 0 {
			t.Logf("%s: %d", name, resp.StatusCode)
		}
		if resp.StatusCode >= 400 {
			// One error shape everywhere, documented or not.
			var v any
			if err := json.Unmarshal(body, &v); err != nil || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: error %d is not JSON (%s): %s", name, resp.StatusCode, resp.Header.Get("Content-Type"), body)
			} else if err := errSchema.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
				t.Errorf("%s: error body does not match the Error schema: %v: %s", name, err, body)
			}
		}
		if resp.StatusCode == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
			t.Errorf("%s: 405 without an Allow header", name)
		}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
			if _, err := csv.NewReader(bytes.NewReader(body)).ReadAll(); err != nil {
				t.Errorf("%s: CSV does not parse: %v", name, err)
			}
		}
		if c.op == "" {
			continue
		}
		item := doc.Paths.Value(c.op)
		if item == nil || item.GetOperation(c.method) == nil {
			t.Errorf("%s: openapi.json has no %s %s", name, c.method, c.op)
			continue
		}
		operation := item.GetOperation(c.method)
		if operation.Responses.Value(strconv.Itoa(resp.StatusCode)) == nil {
			t.Errorf("%s: status %d is not documented for %s %s (only as default)", name, resp.StatusCode, c.method, c.op)
		}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{
				Request: req,
				Route:   &routers.Route{Spec: doc, Path: c.op, PathItem: item, Method: c.method, Operation: operation},
			},
			Status: resp.StatusCode,
			Header: resp.Header,
			Body:   io.NopCloser(bytes.NewReader(body)),
			Options: &openapi3filter.Options{
				IncludeResponseStatus: true,
				MultiError:            true,
			},
		}
		if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
			t.Errorf("%s: response %d does not conform: %v\n%s", name, resp.StatusCode, err, truncate(body))
		}
	}
}

// TestOpenAPIValidatorBites: the validation the conformance test relies on
// refuses a body the document does not describe (an unknown field, a
// field of the wrong type, a missing one), an undocumented content type
// and an answer without a header the document requires.
func TestOpenAPIValidatorBites(t *testing.T) {
	doc := loadOpenAPI(t)
	item := doc.Paths.Value("/v1/batches/{id}")
	good := `{"id":1,"period_start":"2026-12-02T10:00:00Z","period_end":"2026-12-02T11:00:00Z","event_count":2,"root":"0x` + strings.Repeat("ab", 32) + `",` +
		`"amounts":[{"operator":"bus","net":{"minor":180,"decimal":"1.80","currency":"EUR"}}],"committed":false,"contract":"0x` + strings.Repeat("Cd", 20) + `"}`
	for _, c := range []struct {
		name, ctype, body string
		ok                bool
		noCache           bool // the answer lacks Cache-Control: no-store
	}{
		{"good", "application/json", good, true, false},
		{"no Cache-Control", "application/json", good, false, true},
		{"unknown field", "application/json", strings.Replace(good, `"id":1,`, `"id":1,"colour":"red",`, 1), false, false},
		{"wrong type", "application/json", strings.Replace(good, `"minor":180`, `"minor":"180"`, 1), false, false},
		{"missing field", "application/json", strings.Replace(good, `"committed":false,`, ``, 1), false, false},
		{"root without 0x", "application/json", strings.Replace(good, `"root":"0x`, `"root":"`, 1), false, false},
		{"decimal as a number", "application/json", strings.Replace(good, `"decimal":"1.80"`, `"decimal":1.80`, 1), false, false},
		{"content type", "text/html", good, false, false},
	} {
		req, _ := http.NewRequest("GET", "http://x/v1/batches/1", nil)
		header := http.Header{"Content-Type": {c.ctype}, "Cache-Control": {"no-store"}}
		if c.noCache {
			header.Del("Cache-Control")
		}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req,
				Route: &routers.Route{Spec: doc, Path: "/v1/batches/{id}", PathItem: item, Method: "GET", Operation: item.Get}},
			Status: 200, Header: header, Body: io.NopCloser(strings.NewReader(c.body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		}
		if err := openapi3filter.ValidateResponse(context.Background(), in); (err == nil) != c.ok {
			t.Errorf("%s: validation error %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func truncate(b []byte) []byte {
	if len(b) > 2000 {
		return append(b[:2000:2000], "..."...)
	}
	return b
}

// TestOpenAPIConformanceFaces runs the face endpoints where faces are on
// (the face city): enrol, list, look up, a conflicting enrolment, erase,
// and validates every response against the document.
func TestOpenAPIConformanceFaces(t *testing.T) {
	doc := loadOpenAPI(t)
	fc := startFaceCity(t)
	ts, err := clearing.LoadTokenStore(filepath.Join(fc.dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, g := range []struct {
		party string
		role  clearing.Role
	}{{"faces", clearing.RoleFaces}, {"auditor", clearing.RoleAuditor}} {
		if tokens[g.party], err = ts.Issue(g.role, "", g.party); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(clearing.NewAPI(fc.cl.Clearing, nil, clearing.WithTokens(ts)))
	t.Cleanup(srv.Close)
	var descs [][]float64
	for _, d := range newFace(33).templates(2) {
		row := make([]float64, len(d))
		for i, v := range d {
			row[i] = float64(v)
		}
		descs = append(descs, row)
	}
	body, _ := json.Marshal(map[string]any{
		"subject": "oapi-1", "model_id": testModel, "descriptors": descs, "stops": []string{"stop-t1"}, "face_only": true,
		"card_token": "oapi-card",
		"consent":    map[string]any{"given_by": "the subject", "at": "2026-12-01T10:00:00+01:00", "purpose": "face-only travel", "legal_basis": "GDPR Art. 9(2)(a) explicit consent"},
	})
	checkConformance(t, doc, srv.URL, tokens, []conformanceCase{
		{"POST", "faces", "/v1/faces", "/v1/faces", nil, string(body), 201},
		{"POST", "faces", "/v1/faces", "/v1/faces", nil, `{"subject":"oapi-2","descriptors":[[1,2]]}`, 400},
		{"GET", "faces", "/v1/faces?limit=1", "/v1/faces", nil, "", 200},
		{"GET", "auditor", "/v1/faces", "/v1/faces", nil, "", 200},
		{"GET", "auditor", "/v1/faces/oapi-1", "/v1/faces/{subject}", nil, "", 200},
		{"GET", "auditor", "/v1/faces/nobody", "/v1/faces/{subject}", nil, "", 404},
		{"DELETE", "faces", "/v1/faces/oapi-1?reason=consent+withdrawn", "/v1/faces/{subject}", nil, "", 200},
		{"GET", "faces", "/v1/faces/oapi-1", "/v1/faces/{subject}", nil, "", 200},
		{"DELETE", "faces", "/v1/faces/nobody", "/v1/faces/{subject}", nil, "", 404},
	})
}
