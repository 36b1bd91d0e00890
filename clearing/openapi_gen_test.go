package clearing_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/clearing"
)

// The OpenAPI document (openapi.json, embedded and served at
// /v1/openapi.json) is generated from the table below and the Go types the
// handlers encode: a response's schema is derived by reflection from the
// very type the handler writes, so a field added to a view shows up in the
// document when it is regenerated, and TestOpenAPIDocumentCurrent fails
// until it is. Regenerate with
//
//	go test ./clearing -run TestOpenAPIDocumentCurrent -update-openapi
var updateOpenAPI = flag.Bool("update-openapi", false, "rewrite clearing/openapi.json from the route table and the API's types")

// apiParam is a query or path parameter.
type apiParam struct {
	name, in, desc string
	schema         map[string]any
	required       bool
}

// apiOp is one operation of the settlement API.
type apiOp struct {
	method, path string
	tag, summary string
	desc         string
	who          string // who may call it: the route's policy in words
	params       []apiParam
	body         any         // request body type (JSON), nil for none
	rawBody      string      // a non-JSON request body's content type (a binary string)
	ok           map[int]any // success status -> the type written
	errs         []int       // error statuses the handler answers besides 401, 405 and 500
	csv          bool        // also text/csv (?format=csv or Accept: text/csv)
	public       bool        // no bearer token needed
	raw          string      // a non-JSON success content type (with ok[200] == nil)
}

// Common parameters.
var (
	pLimit = func(def, hi int) apiParam {
		return apiParam{name: "limit", in: "query", desc: fmt.Sprintf("page size (default %d)", def),
			schema: map[string]any{"type": "integer", "minimum": 1, "maximum": hi, "default": def}}
	}
	pIdempotencyKey = apiParam{name: "Idempotency-Key", in: "header",
		desc: "client-chosen key making the request idempotent for the calling token: 1 to 255 visible ASCII characters, optionally in double quotes (not counted)",
		// The pattern says what the server takes: a value beginning and
		// ending with a quote is quoted, its inside the key; any other is
		// the key (an outside integrator's client, validating by
		// maxLength alone, sent 256 characters and was refused).
		schema: map[string]any{"type": "string", "minLength": 1, "maxLength": 257, "pattern": `^([!#-~][!-~]{0,254}|"[!-~]{0,253}[!#-~]|"|"[!-~]{1,255}")$`}}
	pAfter = func(what string) apiParam {
		return apiParam{name: "after", in: "query", desc: "cursor: the next_after of the previous page (" + what + "); omitted on the first page", schema: str()}
	}
	// A number, typed as the next_after it takes (a string in every page):
	// a client generated from the document passes one to the other as it is
	// (an outside test found the two types differ).
	pAfterInt = func(what string, maximum uint64) apiParam {
		// The pattern bounds the digits; the description, the value.
		bound := fmt.Sprintf(", at most %d", maximum)
		pattern := fmt.Sprintf("^[0-9]{1,%d}$", len(strconv.FormatUint(maximum, 10)))
		return apiParam{name: "after", in: "query", desc: "cursor: the next_after of the previous page (" + what + ", in decimal digits" + bound + "); omitted on the first page",
			schema: map[string]any{"type": "string", "pattern": pattern}}
	}
	pFormat = apiParam{name: "format", in: "query", desc: "json (default) or csv; without it, Accept: text/csv asks for CSV",
		schema: map[string]any{"type": "string", "enum": []any{"json", "csv"}}}
	pMedia = apiParam{name: "media", in: "path", required: true, desc: "the rider's medium", schema: map[string]any{"type": "string", "enum": []any{"card", "face"}}}
	pPseud = apiParam{name: "pseudonym", in: "path", required: true, desc: "the rider's pseudonym: 0x and 32 hex digits (as in passenger/<media>/0x...)",
		schema: map[string]any{"type": "string", "pattern": "^0x[0-9a-fA-F]{32}$"}}
	pBatchID  = apiParam{name: "id", in: "path", required: true, desc: "batch id (1, 2, ...)", schema: map[string]any{"type": "integer", "minimum": 1, "maximum": uint64(1 << 62)}}
	pOperator = func(in, desc string) apiParam {
		return apiParam{name: "operator", in: in, required: in == "path", desc: desc, schema: str()}
	}
	pSince = apiParam{name: "since", in: "query", desc: "RFC 3339 time with a zone: only what ends after it (batches: period_end > since; events: device_time >= since)", schema: dateTime()}
	pUntil = apiParam{name: "until", in: "query", desc: "RFC 3339 time with a zone: only what starts before it (batches: period_start < until; events: device_time < until)", schema: dateTime()}
)

func str() map[string]any      { return map[string]any{"type": "string"} }
func dateTime() map[string]any { return map[string]any{"type": "string", "format": "date-time"} }

// Response envelopes: the handlers write maps; these name the same keys.
type (
	operatorsResp struct {
		Operators []clearing.OperatorView `json:"operators"`
		NextAfter string                  `json:"next_after,omitempty"`
	}
	balancesResp struct {
		Balances  []clearing.BalanceView `json:"balances"`
		PageTotal clearing.Money         `json:"page_total"`
		NextAfter string                 `json:"next_after,omitempty"`
	}
	batchesResp struct {
		Batches   []clearing.BatchView `json:"batches"`
		NextAfter string               `json:"next_after,omitempty"`
	}
	batchEventsResp struct {
		Batch     uint64                    `json:"batch"`
		Events    []clearing.BatchEventView `json:"events"`
		NextAfter string                    `json:"next_after,omitempty"`
	}
	terminalsResp struct {
		Terminals []clearing.TerminalView `json:"terminals"`
		// Registrations on chain clearing does not follow, with why.
		Refused   []clearing.RefusedRegistration `json:"refused"`
		NextAfter string                         `json:"next_after,omitempty"`
	}
	denyResp struct {
		Version   uint64               `json:"version"`
		Entries   []clearing.DenyEntry `json:"entries"`
		NextAfter string               `json:"next_after,omitempty"`
	}
	enrolResp struct {
		Enrolment clearing.Enrolment     `json:"enrolment"`
		Rider     clearing.EnrolmentView `json:"rider"`
	}
	riderDaysResp struct {
		Rider     string                 `json:"rider"`
		Days      []clearing.FareDayView `json:"days"`
		NextAfter string                 `json:"next_after,omitempty"`
	}
	facesResp struct {
		Version   uint64                      `json:"version"`
		Enrolled  int                         `json:"enrolled"`
		Subjects  []clearing.FaceSubjectEntry `json:"subjects"`
		NextAfter string                      `json:"next_after,omitempty"`
	}
	healthResp struct {
		Status string `json:"status"`
	}
)

// apiOps is every operation the API serves. TestOpenAPIRoutes checks it
// against the routes NewAPI registers.
var apiOps = []apiOp{
	{method: "GET", path: "/v1/openapi.json", tag: "meta", summary: "This document", public: true, raw: "application/json",
		desc: "The OpenAPI 3.1 description of the settlement API. Served without a token: it holds no data."},
	{method: "GET", path: "/healthz", tag: "meta", summary: "Liveness", public: true, ok: map[int]any{200: healthResp{}},
		desc: "200 while the process serves HTTP. Whether clearing can do its work is /readyz."},
	{method: "GET", path: "/readyz", tag: "meta", summary: "Readiness", public: true, ok: map[int]any{200: healthResp{}}, errs: []int{503},
		desc: "200 ({\"status\": \"ready\"}) when clearing can do its work now: the store is open, the consume loop runs, the NATS connection is up, " +
			"the durable event consumer exists on the server and the ledger answers a read (each call bounded by 2 s). " +
			"Otherwise 503 with the error naming every part that is not ready."},
	{method: "GET", path: "/v1/dashboard", tag: "meta", summary: "Everything the live dashboard (/ui/) shows", who: "auditors",
		desc: "Readiness, running totals, quarantine by reason (every reason, zeros included), the tap rate of the last minute, " +
			"the confirmation latency of the last applied events, consumer lag, operators' positions (journal and on chain), " +
			"the most recent batches with their commit and answers, and the terminals (those with a gap first) with their last contact.",
		ok: map[int]any{200: clearing.DashboardView{}}, errs: []int{400, 403}},
	{method: "GET", path: "/metrics", tag: "meta", summary: "Prometheus metrics", who: "auditors, metrics tokens", raw: "text/plain", errs: []int{403}},
	{method: "GET", path: "/v1/stats", tag: "meta", summary: "Running totals of clearing since this process started (the store's figures: /v1/dashboard)", who: "auditors", ok: map[int]any{200: clearing.Stats{}}, errs: []int{403}},

	{method: "GET", path: "/v1/operators", tag: "operators", summary: "Operators with their revenue so far", who: "auditors; an operator sees itself only (desks: 403)",
		params: []apiParam{pAfter("an operator id"), pLimit(1000, 10000)},
		ok:     map[int]any{200: operatorsResp{}}, errs: []int{400, 403}},
	{method: "GET", path: "/v1/operators/{id}", tag: "operators", summary: "One operator", who: "auditors; an operator itself",
		params: []apiParam{{name: "id", in: "path", required: true, desc: "operator id", schema: str()}},
		ok:     map[int]any{200: clearing.OperatorView{}}, errs: []int{403, 404}},
	{method: "GET", path: "/v1/balances", tag: "accounts", summary: "Journal balances, paged by account", who: "auditors; an operator with prefix = its own account",
		params: []apiParam{{name: "prefix", in: "query", desc: "account name prefix, e.g. operator/ or passenger/card/", schema: str()}, pAfter("an account name"), pLimit(100, 1000)},
		ok:     map[int]any{200: balancesResp{}}, errs: []int{400, 403}},
	{method: "GET", path: "/v1/accounts/{account}", tag: "accounts", summary: "One journal account",
		desc: "account holds slashes: sent as one path segment, its / as %2F (/v1/accounts/operator%2Fmetro, as a client generated from this document sends it), or unescaped across segments (/v1/accounts/operator/metro, /v1/accounts/passenger/card/0x..., /v1/accounts/acquirer): the same answer. " +
			"A registered operator's account exists from the start; any other account exists once the journal posted to it (404 before).",
		who: "auditors; an operator its own operator account",
		params: []apiParam{{name: "account", in: "path", required: true, desc: "operator/<id>, passenger/<media>/0x<32 lower-case hex> or acquirer",
			schema: map[string]any{"type": "string", "pattern": "^(operator/|passenger/|acquirer$)"}}},
		ok: map[int]any{200: clearing.BalanceView{}}, errs: []int{400, 403, 404}},

	{method: "GET", path: "/v1/batches", tag: "batches", summary: "Settlement batches, oldest first, paged",
		desc: "Filters combine. Batches are public on the chain: every party sees every batch with all its nets and answers; " +
			"?operator= keeps batches with a net for that operator or its on-chain answer. Answers list every operator with a net (none included) and any other that answered. CSV has one row per batch and operator net, then one per other operator that answered (net columns empty).",
		who: "any party",
		params: []apiParam{pOperator("query", "only batches in which this operator has a net (an operator token: its own only)"), pSince, pUntil, pAfterInt("a batch id", 1<<62),
			{name: "from", in: "query", desc: "the first batch id to list (default 1)", schema: map[string]any{"type": "integer", "minimum": 1, "maximum": 1 << 62}}, pLimit(100, 1000), pFormat},
		ok: map[int]any{200: batchesResp{}}, errs: []int{400, 403, 404}, csv: true},
	{method: "GET", path: "/v1/batches/{id}", tag: "batches", summary: "One batch: root, nets, commit and the operators' on-chain answers", who: "any party",
		params: []apiParam{pBatchID}, ok: map[int]any{200: clearing.BatchView{}}, errs: []int{400, 404}},
	{method: "GET", path: "/v1/batches/{id}/events", tag: "batches", summary: "The events of a batch in apply order, paged",
		desc:   "An operator sees the events of its own terminals only; the desks (concessions, payments, faces) none. CSV has one row per event.",
		who:    "auditors; an operator its own events",
		params: []apiParam{pBatchID, pOperator("query", "only the events of this operator's terminals (an operator token: its own only)"), pSince, pUntil, pAfterInt("an apply index", math.MaxUint64), pLimit(100, 1000), pFormat},
		ok:     map[int]any{200: batchEventsResp{}}, errs: []int{400, 403, 404}, csv: true},
	{method: "GET", path: "/v1/batches/{id}/statements/{operator}", tag: "batches", summary: "An operator's revenue statement for a batch",
		who: "auditors; an operator its own", params: []apiParam{pBatchID, pOperator("path", "operator id"), pFormat},
		ok: map[int]any{200: clearing.StatementView{}}, errs: []int{400, 403, 404}, csv: true},
	{method: "GET", path: "/v1/events/{id}", tag: "events", summary: "An applied event with its inclusion proof", who: "auditors; an operator its own events and those that moved its money (others: 404)",
		desc:   "An operator shown another operator's event (one that moved its money) gets fare as its own share, and the fields listed in withheld left out (blank, zero, times to the second).",
		params: []apiParam{{name: "id", in: "path", required: true, desc: "event id: 32 hex digits, 0x optional", schema: map[string]any{"type": "string", "pattern": "^(0[xX])?[0-9a-fA-F]{32}$"}}},
		ok:     map[int]any{200: clearing.EventView{}}, errs: []int{400, 403, 404}},
	{method: "GET", path: "/v1/terminals", tag: "terminals", summary: "Registered terminals with clearing's view of their streams, and registrations on chain it does not follow (refused, with why)", who: "auditors; an operator its own",
		params: []apiParam{pOperator("query", "only this operator's terminals (an operator token: its own only)"), pAfter("a terminal id"), pLimit(1000, 10000)},
		ok:     map[int]any{200: terminalsResp{}}, errs: []int{400, 403, 404}},
	{method: "GET", path: "/v1/deny", tag: "deny", summary: "The deny list (hashed keys), paged", who: "auditors",
		params: []apiParam{pAfter("a deny key"), pLimit(100, 1000)}, ok: map[int]any{200: denyResp{}}, errs: []int{400, 403}},

	{method: "POST", path: "/v1/enrolments", tag: "enrolments", summary: "Enrol a medium into a rider category", who: "concessions desk",
		desc: "The body is application/json in UTF-8 (415 otherwise, or for another charset), at most 4 KiB (413), member names as written here (case-sensitive). " +
			"With an Idempotency-Key, a repeat of the request (same key, same token, same request) answers 200 with the record the first made and Idempotent-Replayed: true, however late; the same key with a different request is refused (422).",
		params: []apiParam{pIdempotencyKey},
		body:   clearing.EnrolBody{}, ok: map[int]any{201: enrolResp{}, 200: enrolResp{}}, errs: []int{400, 403, 413, 415, 422}},
	{method: "GET", path: "/v1/enrolments", tag: "enrolments", summary: "Every rider's last enrolment record, paged", who: "concessions desk, auditors",
		desc:   "The last record of each rider ever enrolled (a revocation included), by rider, with the version of the enrolment list the gates hold; next_after is the last rider of a full page.",
		params: []apiParam{pAfter("a rider account (passenger/<media>/0x<32 hex>)"), pLimit(100, 1000)},
		ok:     map[int]any{200: clearing.EnrolmentList{}}, errs: []int{400, 403}},
	{method: "GET", path: "/v1/enrolments/{rider}", tag: "enrolments", summary: "A rider's enrolments", who: "concessions desk, auditors",
		desc:   "rider holds slashes: sent as one path segment, its / as %2F (/v1/enrolments/passenger%2Fcard%2F0x..., as a client generated from this document sends it), or unescaped across segments (/v1/enrolments/passenger/card/0x...): the same answer.",
		params: []apiParam{{name: "rider", in: "path", required: true, desc: "passenger/<media>/0x<32 hex>", schema: str()}},
		ok:     map[int]any{200: clearing.EnrolmentView{}}, errs: []int{400, 403}},
	{method: "DELETE", path: "/v1/enrolments/{rider}", tag: "enrolments", summary: "Revoke a rider's enrolment", who: "concessions desk",
		params: []apiParam{{name: "rider", in: "path", required: true, desc: "passenger/<media>/0x<32 hex>, its / sent as %2F or unescaped (see GET)", schema: str()},
			{name: "valid_from", in: "query", desc: "RFC 3339: from when (default now)", schema: dateTime()}, pIdempotencyKey},
		desc: "With an Idempotency-Key, a repeat (same key, same token, same request) answers with the revocation the first made and Idempotent-Replayed: true, appending nothing; the same key with a different request is refused (422).",
		ok:   map[int]any{200: enrolResp{}}, errs: []int{400, 403, 404, 422}},

	{method: "GET", path: "/v1/riders/{media}/{pseudonym}", tag: "riders", summary: "A rider: balance, fare days, payments, debt", who: "auditors",
		params: []apiParam{pMedia, pPseud}, ok: map[int]any{200: clearing.RiderView{}}, errs: []int{400, 403, 404}},
	{method: "GET", path: "/v1/riders/{media}/{pseudonym}/days", tag: "riders", summary: "A rider's fare days, paged", who: "auditors",
		params: []apiParam{pMedia, pPseud,
			{name: "from", in: "query", desc: "first fare day (YYYY-MM-DD)", schema: map[string]any{"type": "string", "format": "date"}},
			{name: "to", in: "query", desc: "last fare day (YYYY-MM-DD)", schema: map[string]any{"type": "string", "format": "date"}},
			pAfter("a fare day"), pLimit(31, 366)},
		ok: map[int]any{200: riderDaysResp{}}, errs: []int{400, 403}},
	{method: "GET", path: "/v1/riders/{media}/{pseudonym}/days/{date}", tag: "riders", summary: "One fare day of a rider", who: "auditors",
		params: []apiParam{pMedia, pPseud, {name: "date", in: "path", required: true, desc: "fare day (YYYY-MM-DD)", schema: map[string]any{"type": "string", "format": "date"}}},
		ok:     map[int]any{200: clearing.FareDayView{}}, errs: []int{400, 403, 404}},
	{method: "GET", path: "/v1/riders/{media}/{pseudonym}/payments", tag: "payments", summary: "A rider's billing and payment attempts", who: "payments desk, auditors",
		params: []apiParam{pMedia, pPseud}, ok: map[int]any{200: clearing.BillingView{}}, errs: []int{400, 403, 404}},
	{method: "POST", path: "/v1/riders/{media}/{pseudonym}/payments", tag: "payments", summary: "Charge a rider's debt now", who: "payments desk",
		desc: "The amount is what the rider owes for fare days that are over (the billing view's due: the debt, and what late taps added to days already billed). 201: approved; 200: nothing owed; 402: the acquirer declined (the body says so); 409: no acquirer configured; 502: the acquirer failed. " +
			"With an Idempotency-Key, a repeat (same key, same token, same rider) answers what the first did, with Idempotent-Replayed: true, charging nothing again; the key for another rider is refused (422).",
		params: []apiParam{pMedia, pPseud, pIdempotencyKey}, ok: map[int]any{200: clearing.BillingView{}, 201: clearing.BillingView{}, 402: clearing.BillingView{}},
		errs: []int{400, 403, 404, 409, 422, 502}},

	{method: "POST", path: "/v1/feeds", tag: "feeds", summary: "Schedule a new version of the fare feed", who: "fare desk",
		desc: "The body is the GTFS feed (Fares v2, with fare_caps.txt) as a zip, application/zip (415 otherwise), at most 64 MiB (413). " +
			"Fare days that begin at or after from are priced with it, earlier days with the versions before it, whenever their taps arrive. " +
			"400: the zip is not a feed clearing can load (the error names the file and line); 422: it does not fit (its time zone or fare-day cut-over differ, " +
			"the registry's operators or currency, from within clearing's MaxDeviceTimeAhead of its fare clock, or a fare day from then on priced already); " +
			"409: clearing prices flat fares, a version already takes effect at or after from, this version is scheduled at another time, or 16 are scheduled. " +
			"from may be at most two years ahead of the fare clock (422); one change of the schedule runs at a time, and the feed's files may inflate to 128 MiB at most (400). " +
			"The same version for the same time again answers 200 with replayed: true and Idempotent-Replayed: true. The version is kept in clearing's data directory and survives a restart.",
		params:  []apiParam{{name: "from", in: "query", required: true, desc: "when the version takes effect: RFC 3339 with its zone (from the first fare day beginning at or after it)", schema: dateTime()}},
		rawBody: "application/zip", ok: map[int]any{201: clearing.FeedScheduleView{}, 200: clearing.FeedScheduleView{}}, errs: []int{400, 403, 409, 413, 415, 422}},
	{method: "GET", path: "/v1/feeds", tag: "feeds", summary: "The fare feed's versions in effect and scheduled", who: "fare desk, auditors",
		ok: map[int]any{200: clearing.FeedListView{}}, errs: []int{403}},
	{method: "DELETE", path: "/v1/feeds/{version}", tag: "feeds", summary: "Withdraw the last scheduled fare feed version before it takes effect", who: "fare desk",
		desc:   "400: not a version (sha256:0x and 16 hex digits); 404: no such version scheduled; 409: a later version follows it (withdraw that first), or it was given at start (--next-feed); 422: its first fare day begins within MaxDeviceTimeAhead of the fare clock or has a rider day (it may be in effect).",
		params: []apiParam{{name: "version", in: "path", required: true, desc: "the version (sha256:0x and 16 hex digits)", schema: str()}},
		ok:     map[int]any{200: clearing.FeedWithdrawView{}}, errs: []int{400, 403, 404, 409, 422}},

	{method: "POST", path: "/v1/faces", tag: "faces", summary: "Enrol a face subject", who: "faces desk",
		desc: "The body is application/json in UTF-8 (415 otherwise, or for another charset), at most 256 KiB (413), member names as written here (case-sensitive). " +
			"Each descriptor is 128 numbers within float32; stops and/or lines name the scope; give card_key or card_token (not both) unless face_only. " +
			"A repeat of the request that enrolled a subject (a retry) answers 200 with the subject, replayed: true and Idempotent-Replayed: true, enrolling nothing again; another request for an enrolled subject is refused (409). " +
			"With an Idempotency-Key the repeat is answered however late, but never re-enrols a subject erased since (409); the same key with a different request is refused (422).",
		params: []apiParam{pIdempotencyKey},
		body:   clearing.FaceEnrolBody{}, ok: map[int]any{201: clearing.FaceSubject{}, 200: clearing.FaceSubject{}}, errs: []int{400, 403, 409, 413, 415, 422, 503}},
	{method: "GET", path: "/v1/faces", tag: "faces", summary: "Enrolled face subjects, paged by id", who: "faces desk, auditors",
		params: []apiParam{pAfter("a subject id"), pLimit(100, 1000)}, ok: map[int]any{200: facesResp{}}, errs: []int{400, 403, 503}},
	{method: "GET", path: "/v1/faces/{subject}", tag: "faces", summary: "A face subject and its erasures", who: "faces desk, auditors",
		params: []apiParam{{name: "subject", in: "path", required: true, desc: "subject id", schema: str()}},
		ok:     map[int]any{200: clearing.FaceView{}}, errs: []int{400, 403, 404, 503}},
	{method: "DELETE", path: "/v1/faces/{subject}", tag: "faces", summary: "Erase a face subject (consent withdrawal is erasure)", who: "faces desk",
		desc: "Erasing a subject erased before answers that erasure (already_erased), erasing nothing again. " +
			"With an Idempotency-Key a repeat (same key, same token, same subject and reason) answers the erasure the first made, with Idempotent-Replayed: true; the same key with another subject or reason is refused (422).",
		params: []apiParam{{name: "subject", in: "path", required: true, desc: "subject id", schema: str()},
			{name: "reason", in: "query", desc: "why, kept with the erasure (default: consent withdrawn)", schema: str()}, pIdempotencyKey},
		ok: map[int]any{200: clearing.FaceErasure{}}, errs: []int{400, 403, 404, 422, 503}},
}

// Formats the API promises beyond Go's types, by "Type.json_field" (or
// "*.json_field" for every type): the conformance test then checks every
// real value against them.
var (
	hex0x      = map[string]any{"type": "string", "pattern": "^0x[0-9a-f]*$", "description": "0x hex"}
	hash0x     = map[string]any{"type": "string", "pattern": "^0x[0-9a-f]{64}$", "description": "32 bytes, 0x hex"}
	denyKey0x  = map[string]any{"type": "string", "pattern": "^0x[0-9a-f]{32}$", "description": "a medium's deny-list key (fare.DenyKey), 0x hex"}
	address0x  = map[string]any{"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$", "description": "contract address, 0x hex (EIP-55 checksummed)"}
	fieldForms = map[string]map[string]any{
		"Money.decimal":                  {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$", "description": "the amount in the currency's major unit, e.g. 2.50"},
		"Money.currency":                 {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217"},
		"BatchView.root":                 hash0x,
		"BatchView.contract":             address0x,
		"DashboardView.contract":         address0x,
		"DashboardView.currency":         {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217"},
		"CommitRecordView.tx_hash":       hash0x,
		"ProofView.root":                 hash0x,
		"ProofView.path":                 {"type": []any{"array", "null"}, "items": hash0x, "description": "sibling hashes from the leaf up, as OpenZeppelin's StandardMerkleTree.verify takes them: [] in a batch of one event; null only while the proof is pending"},
		"EventView.leaf":                 leafValue,
		"EventView.signed":               hex0x,
		"BatchEventView.leaf":            leafValue,
		"StatementEntry.leaf":            leafValue,
		"StatementView.root":             hash0x,
		"StatementView.tx_hash":          hash0x,
		"AnswerView.answer":              {"type": "string", "enum": []any{"none", "acknowledged", "disputed"}},
		"AnswerView.reason_hash":         hash0x,
		"TerminalView.public_key":        map[string]any{"type": "string", "pattern": "^0x[0-9a-f]{64}$", "description": "Ed25519 public key, 0x hex"},
		"TerminalView.key_proof":         map[string]any{"type": "string", "pattern": "^0x[0-9a-f]{128}$", "description": "the key's Ed25519 signature of its registration, 0x hex: over \"faregate/terminal-registration/v1\\0\" then operator, terminal and stop ids (each a length byte and its bytes) then the 32-byte key"},
		"RefusedRegistration.public_key": map[string]any{"type": "string", "pattern": "^0x[0-9a-f]{64}$", "description": "the key as registered, 0x hex"},
		"RefusedRegistration.key_proof":  map[string]any{"type": "string", "pattern": "^0x([0-9a-f]{2})*$", "description": "the key proof as the operator sent it, 0x hex (unchecked: why says what is wrong)"},
		"DenyEntry.key":                  denyKey0x,
		"Enrolment.key":                  denyKey0x,
		"PaymentView.key":                {"type": "string", "pattern": "^0x[0-9a-f]{32}$", "description": "the charge's idempotency key at the acquirer, 0x hex: the same on every attempt until its answer is posted"},
		"RiderDebtView.attempts":         {"type": "integer", "description": "steps of the retry schedule used up since the debt began, the first decline being step 1; a step whose day passed while no retry could be made is used up too, so this may exceed charges"},
		"RiderDebtView.charges":          {"type": "integer", "description": "clearing's own charges since the debt began: the declined one that began it and its retries (payments asked for through the API are not counted)"},
		"FaceSubject.card_key":           denyKey0x,
		"FaceSubjectEntry.card_key":      denyKey0x,
		"*.direction":                    {"type": "string", "enum": []any{"entry", "exit", "validate"}},
		"*.media":                        {"type": "string", "enum": []any{"card", "face"}},
		"EventFields.decision":           {"type": "string", "enum": []any{"accepted", "denied"}},
	}
	// leafValue is a Merkle leaf as the API shows it.
	leafValue = map[string]any{"type": "string", "pattern": "^0x[0-9a-f]{64}$",
		"description": "the Merkle leaf value: sha256 of the terminal-signed event bytes (an auditor's `signed`). The tree is OpenZeppelin's StandardMerkleTree with leaf encoding [\"bytes32\"]: the hash in the tree is keccak256(keccak256(leaf)), so StandardMerkleTree.verify(root, [\"bytes32\"], [leaf], path) checks a proof"}
	// timeNames are the string members that hold RFC 3339 times (the API
	// formats them in the agency's zone itself).
	timeNames = []string{"period_start", "period_end", "time", "valid_from", "valid_until", "begins", "ends", "start", "end", "at", "since", "next_retry"}
)

// schemaGen derives JSON Schemas (2020-12, as OpenAPI 3.1 uses) from Go
// types the way encoding/json encodes them.
type schemaGen struct {
	defs map[string]any
	seen map[reflect.Type]string
}

var timeType = reflect.TypeFor[time.Time]()

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.Pointer:
		return nullable(g.schema(t.Elem()))
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}
		}
		// A nil slice encodes as null.
		return nullable(map[string]any{"type": "array", "items": g.schema(t.Elem())})
	case reflect.Array:
		return map[string]any{"type": "array", "items": g.schema(t.Elem()), "minItems": t.Len(), "maxItems": t.Len()}
	case reflect.Map:
		return nullable(map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())})
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		if t.Name() == "" {
			return g.object(t)
		}
		name := t.Name()
		if prev, ok := g.seen[t]; ok {
			return ref(prev)
		}
		for _, other := range g.seen {
			if other == name {
				name = strings.ReplaceAll(t.PkgPath()[strings.LastIndex(t.PkgPath(), "/")+1:], ".", "") + name
			}
		}
		g.seen[t] = name
		g.defs[name] = g.object(t)
		return ref(name)
	}
	panic(fmt.Sprintf("openapi: no schema for %s", t))
}

// object is a struct's schema: its exported, tagged fields, embedded
// structs flattened; a field without omitempty is required. Unknown
// properties are refused so that a field the document lacks fails the
// conformance test.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	g.fields(t, props, &required)
	sort.Strings(required)
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

func (g *schemaGen) fields(t reflect.Type, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			g.fields(f.Type, props, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		s := g.schema(f.Type)
		if form, ok := fieldForms[t.Name()+"."+name]; ok {
			s = form
		} else if form, ok := fieldForms["*."+name]; ok && f.Type.Kind() == reflect.String {
			s = form
		} else if slices.Contains(timeNames, name) && f.Type.Kind() == reflect.String {
			s = map[string]any{"type": "string", "format": "date-time"}
		}
		if strings.Contains(opts, "string") {
			s = map[string]any{"type": "string"}
		}
		if strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
			// An omitted field is never null either.
			s = notNull(s)
		} else {
			*required = append(*required, name)
		}
		props[name] = s
	}
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

func nullable(s map[string]any) map[string]any {
	if r, ok := s["$ref"]; ok {
		return map[string]any{"anyOf": []any{map[string]any{"$ref": r}, map[string]any{"type": "null"}}}
	}
	out := map[string]any{}
	for k, v := range s {
		out[k] = v
	}
	if ty, ok := s["type"].(string); ok {
		out["type"] = []any{ty, "null"}
	}
	return out
}

func notNull(s map[string]any) map[string]any {
	if ty, ok := s["type"].([]any); ok && len(ty) == 2 && ty[1] == "null" {
		out := map[string]any{}
		for k, v := range s {
			out[k] = v
		}
		out["type"] = ty[0]
		return out
	}
	if alts, ok := s["anyOf"].([]any); ok && len(alts) == 2 {
		return alts[0].(map[string]any)
	}
	return s
}

// okHeaders describes the headers an operation's success answers carry
// (an outside client found them undescribed): Cache-Control on every /v1/
// answer, Vary on those that answer CSV by Accept, the next page's cursor
// and link on a CSV page that is not the last, Content-Disposition on CSV
// exports, and Idempotent-Replayed on a replay of an idempotent request.
func okHeaders(op apiOp) map[string]any {
	h := map[string]any{}
	hasParam := func(name string) bool {
		return slices.ContainsFunc(op.params, func(p apiParam) bool { return p.name == name })
	}
	if strings.HasPrefix(op.path, "/v1/") && op.raw == "" {
		h["Cache-Control"] = map[string]any{"required": true, "description": "no-store: answers hold card tokens, riders' journeys and money",
			"schema": map[string]any{"type": "string", "const": "no-store"}}
	}
	if op.csv {
		h["Vary"] = map[string]any{"schema": map[string]any{"type": "string", "pattern": "Accept"}, "required": true}
		h["Content-Disposition"] = map[string]any{"description": "on some CSV answers: attachment, with a file name", "schema": str()}
		if hasParam("after") {
			h["Faregate-Next-After"] = map[string]any{"description": "on a CSV page that is not the last: the cursor of the next page (the JSON's next_after), to pass as ?after=", "schema": str()}
			h["Link"] = map[string]any{"description": `on a CSV page that is not the last: the next page's address, <...>; rel="next" (RFC 8288)`, "schema": str()}
		}
	}
	if hasParam("Idempotency-Key") {
		h["Idempotent-Replayed"] = map[string]any{"description": "true on the answer to a repeat of an earlier request with the same Idempotency-Key (nothing done again)",
			"schema": map[string]any{"type": "string", "const": "true"}}
	}
	return h
}

// buildOpenAPI renders the document.
func buildOpenAPI() ([]byte, error) {
	g := &schemaGen{defs: map[string]any{}, seen: map[reflect.Type]string{}}
	g.defs["Error"] = map[string]any{
		"type": "object", "required": []any{"error"}, "additionalProperties": false,
		"description": "Every error of the API, whatever its status: one sentence naming what is wrong.",
		"properties":  map[string]any{"error": map[string]any{"type": "string", "minLength": 1}},
	}
	errResp := func(desc string) map[string]any {
		return map[string]any{"description": desc, "content": map[string]any{"application/json": map[string]any{"schema": ref("Error")}}}
	}
	responses := map[string]any{
		"Error": errResp("An error (see the status)."),
		"Unauthorized": map[string]any{"description": "No valid bearer token.",
			"headers": map[string]any{"WWW-Authenticate": map[string]any{"required": true, "schema": map[string]any{"type": "string", "pattern": "^Bearer realm="}}},
			"content": map[string]any{"application/json": map[string]any{"schema": ref("Error")}}},
		"TooManyRequests": map[string]any{"description": "The token is over its request rate (clearing --api-token-rate, --api-token-burst).",
			"headers": map[string]any{"Retry-After": map[string]any{"required": true, "description": "Seconds until the token's next request is taken.", "schema": map[string]any{"type": "integer", "minimum": 1}}},
			"content": map[string]any{"application/json": map[string]any{"schema": ref("Error")}}},
	}
	paths := map[string]any{}
	tags := map[string]bool{}
	for _, op := range apiOps {
		tags[op.tag] = true
		o := map[string]any{
			"operationId": opID(op), "summary": op.summary, "tags": []any{op.tag},
		}
		desc := op.desc
		if op.who != "" {
			desc = strings.TrimSpace("Who: " + op.who + ".\n\n" + desc)
		}
		if desc != "" {
			o["description"] = desc
		}
		if op.public {
			o["security"] = []any{}
		}
		var params []any
		for _, p := range op.params {
			pm := map[string]any{"name": p.name, "in": p.in, "schema": p.schema}
			if p.desc != "" {
				pm["description"] = p.desc
			}
			if p.required {
				pm["required"] = true
			}
			params = append(params, pm)
		}
		if op.csv {
			params = append(params, map[string]any{"name": "Accept", "in": "header", "schema": str(),
				"description": "text/csv for CSV (when ?format is not given)"})
		}
		if params != nil {
			o["parameters"] = params
		}
		if op.body != nil {
			o["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(op.body))}}}
		}
		if op.rawBody != "" {
			o["requestBody"] = map[string]any{"required": true, "content": map[string]any{op.rawBody: map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}}
		}
		rs := map[string]any{}
		for status, v := range op.ok {
			content := map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeOf(v))}}
			if op.csv {
				cols, ok := clearing.CSVColumns()[op.method+" "+op.path]
				if !ok {
					return nil, fmt.Errorf("%s %s answers CSV, and clearing.CSVColumns does not say its columns", op.method, op.path)
				}
				content["text/csv"] = map[string]any{"schema": map[string]any{"type": "string",
					"description": "CSV (RFC 4180, CRLF line ends; a cell that a spreadsheet would read as a formula is prefixed with '), beginning with the header row " + strings.Join(cols, ",")}}
			}
			r := map[string]any{"description": http.StatusText(status), "content": content}
			if h := okHeaders(op); len(h) > 0 {
				r["headers"] = h
			}
			rs[strconv.Itoa(status)] = r
		}
		if op.raw != "" {
			schema := map[string]any{"type": "string"}
			if op.raw == "application/json" {
				schema = map[string]any{"type": "object", "description": "an OpenAPI document"}
			}
			rs["200"] = map[string]any{"description": "OK", "content": map[string]any{op.raw: map[string]any{"schema": schema}}}
		}
		// Every route refuses a query parameter it does not read (400),
		// and every route behind a token refuses a token of an operator
		// the registry does not list (403).
		errs := append([]int{400}, op.errs...)
		if !op.public {
			errs = append(errs, 403)
		}
		for _, s := range errs {
			rs[strconv.Itoa(s)] = errResp(http.StatusText(s))
		}
		if !op.public {
			rs["401"] = map[string]any{"$ref": "#/components/responses/Unauthorized"}
			rs["429"] = map[string]any{"$ref": "#/components/responses/TooManyRequests"}
		}
		rs["default"] = map[string]any{"$ref": "#/components/responses/Error"}
		o["responses"] = rs
		pi, _ := paths[op.path].(map[string]any)
		if pi == nil {
			pi = map[string]any{}
			paths[op.path] = pi
		}
		pi[strings.ToLower(op.method)] = o
	}
	var tagList []any
	for _, t := range sortedKeys(tags) {
		tagList = append(tagList, map[string]any{"name": t})
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "faregate settlement API",
			"version": "1",
			"description": "The API operators, auditors and the concessions, payments, faces and fares desks reconcile and act through. " +
				"Every request but /healthz, /readyz, /v1/openapi.json and the live dashboard's page and files under /ui/ (no data: they call the API with a token) carries a bearer token (`faregate clearing token issue`). " +
				"Money is {minor, decimal, currency}; hashes and keys are 0x hex; times are RFC 3339 with an explicit zone. " +
				"Lists are paged by cursor: pass a page's next_after as ?after= for the next; a page without next_after is the last. " +
				"A list endpoint refuses (400) a query parameter it does not read, naming it: a filter is never silently ignored. " +
				"Every error is {\"error\": \"...\"}; a method a path does not serve gets 405 with an Allow header. " +
				"A GET operation answers HEAD too, with the status and headers its GET would have and no body (net/http's rule; OpenAPI lists only the GET).",
		},
		"servers":  []any{map[string]any{"url": "/", "description": "the clearing house that serves this document"}},
		"security": []any{map[string]any{"bearer": []any{}}},
		"tags":     tagList,
		"paths":    paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "a token from `faregate clearing token issue` (fgt_...)"}},
			"schemas":         g.defs,
			"responses":       responses,
		},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// opID names an operation after its method and path: getV1BatchesIdEvents.
func opID(op apiOp) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(op.method))
	for _, part := range strings.FieldsFunc(op.path, func(r rune) bool { return r == '/' || r == '.' || r == '{' || r == '}' || r == '_' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// TestOpenAPIDocumentCurrent: the embedded document is what the route
// table and the API's types generate (-update-openapi rewrites it).
func TestOpenAPIDocumentCurrent(t *testing.T) {
	got, err := buildOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if *updateOpenAPI {
		if err := os.WriteFile("openapi.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(got, clearing.OpenAPIDocument()) {
		t.Fatal("clearing/openapi.json is stale: the route table or an API type changed; run go test ./clearing -run TestOpenAPIDocumentCurrent -update-openapi")
	}
}
