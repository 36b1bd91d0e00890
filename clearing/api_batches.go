package clearing

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/faregate/faregate/clearing/fares"
	"github.com/faregate/faregate/ledger"
)

// Batches in the settlement API:
//
//	GET /v1/batches?operator=&since=&until=&after=&limit=&format=
//	    batches, oldest first, paged by id (next_after); CSV on request
//	GET /v1/batches/{id}
//	    one batch with its commit and the operators' on-chain answers
//	GET /v1/batches/{id}/events?operator=&since=&until=&after=&limit=&format=
//	    the batch's events in apply order, paged by apply index
//
// A filter the handler does not understand is refused (400) naming the
// parameter: reconciliation against a list that silently ignored a filter
// would be wrong without anyone noticing.

// AnswerView is an operator's on-chain answer to a committed batch.
type AnswerView struct {
	Operator string `json:"operator"`
	// Answer is none, acknowledged or disputed.
	Answer string `json:"answer"`
	// ReasonHash identifies a dispute's reason document (0x hex).
	ReasonHash string `json:"reason_hash,omitempty"`
}

// reconciliations is the part of a ledger that reads operators' answers
// (both ledger.Embedded and ledger.Client have it).
type reconciliations interface {
	Reconciliation(ctx context.Context, id uint64, operator string) (ledger.Reconciliation, error)
}

// answers reads the operators' answers to committed batch id from the
// chain: every operator with a net in the batch (none yet included), and
// every other registered operator that answered it (the contract lets any
// operator acknowledge or dispute any batch, and such an answer is on
// record like any other); nil when the ledger cannot tell.
func (a *API) answers(ctx context.Context, b *BatchRecord, cr *chainReads) ([]AnswerView, error) {
	rl, ok := a.c.cfg.Ledger.(reconciliations)
	if !ok {
		return nil, nil
	}
	out := make([]AnswerView, 0, len(b.Amounts))
	for _, am := range b.Amounts {
		v, err := a.answerOf(ctx, rl, b.ID, am.Operator, cr)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	others := a.c.cfg.Registry.OperatorIDs()
	// An operator admitted on chain but missing from the registry file
	// may answer too: the chain's answer logs say who did.
	answered, err := a.answerers.of(ctx, a.c.cfg.Ledger, b.ID, cr)
	if err != nil {
		if cr.down == nil {
			cr.down = err
		}
		return nil, err
	}
	for _, op := range answered {
		if !slices.Contains(others, op) {
			others = append(others, op)
		}
	}
	for _, op := range others {
		if hasNet(b, op) {
			continue
		}
		v, err := a.answerOf(ctx, rl, b.ID, op, cr)
		if err != nil {
			return nil, err
		}
		if v.Answer != ledger.AnswerNone.String() {
			out = append(out, v)
		}
	}
	return out, nil
}

func (a *API) answerOf(ctx context.Context, rl reconciliations, batch uint64, op string, cr *chainReads) (AnswerView, error) {
	if v, ok := a.answerMemo.get(batch, op); ok {
		return v, nil
	}
	if cr.down != nil {
		return AnswerView{}, cr.down
	}
	rctx, cancel := context.WithTimeout(ctx, chainReadTimeout)
	r, err := rl.Reconciliation(rctx, batch, op)
	cancel()
	if err != nil {
		cr.down = fmt.Errorf("batch %d: answer of %s: %w", batch, op, err)
		return AnswerView{}, cr.down
	}
	v := AnswerView{Operator: op, Answer: r.Answer.String()}
	if r.ReasonHash != ([32]byte{}) {
		v.ReasonHash = "0x" + hex.EncodeToString(r.ReasonHash[:])
	}
	a.answerMemo.put(batch, v)
	return v, nil
}

// chainReads is what one API request learnt of the chain: once a read
// failed (the node down), the rest of the request does not wait on it
// again, batch after batch.
type chainReads struct {
	down        error
	answersRead bool // the answer logs were read (answerers)
}

// chainReadTimeout bounds one read of the chain for an API request: a node
// that does not answer (dropped packets, not refused) must not hold it.
const chainReadTimeout = 5 * time.Second

// answerCache keeps the operators' answers read from the chain. An answer
// is final, so one given is kept for good and read once; "none" is read
// again every time (an operator may have answered a moment ago).
type answerCache struct {
	mu sync.Mutex
	m  map[uint64]map[string]AnswerView
}

func (c *answerCache) get(batch uint64, op string) (AnswerView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[batch][op]
	return v, ok
}

func (c *answerCache) put(batch uint64, v AnswerView) {
	if v.Answer == ledger.AnswerNone.String() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[uint64]map[string]AnswerView{}
	}
	if c.m[batch] == nil {
		c.m[batch] = map[string]AnswerView{}
	}
	c.m[batch][v.Operator] = v
}

// batchAnswerLogs is the part of a ledger that reads who answered which
// batch from the chain's logs (both ledger.Embedded and ledger.Client).
type batchAnswerLogs interface {
	BatchAnswers(ctx context.Context, from uint64) ([]ledger.BatchAnswer, uint64, error)
}

// answerers follows the chain's answer logs: which operators answered each
// batch, whether or not the registry file names them. The blocks since the
// last read are read once per request (chainReads), each read bounded by
// chainReadTimeout (an API request must not wait long; a read cut short
// resumes where it stopped on the next) unless ownDeadline.
type answerers struct {
	mu     sync.Mutex
	next   uint64 // first block not read
	bySeen map[uint64][]string
	// ownDeadline: reads are bounded by the caller's context alone (the
	// audit's --timeout): the audit reads the logs once, all of them.
	ownDeadline bool
}

// of returns the operators that answered batch id, reading the blocks
// since the last read first if cr has not (none when the ledger cannot
// tell).
func (w *answerers) of(ctx context.Context, l ledger.Ledger, id uint64, cr *chainReads) ([]string, error) {
	al, ok := l.(batchAnswerLogs)
	if !ok {
		return nil, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !cr.answersRead {
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if !w.ownDeadline {
			rctx, cancel = context.WithTimeout(ctx, chainReadTimeout)
		}
		got, next, err := al.BatchAnswers(rctx, w.next)
		cancel()
		for _, a := range got {
			if w.bySeen == nil {
				w.bySeen = map[uint64][]string{}
			}
			if !slices.Contains(w.bySeen[a.BatchID], a.Operator) {
				w.bySeen[a.BatchID] = append(w.bySeen[a.BatchID], a.Operator)
			}
		}
		w.next = next
		if err != nil {
			return nil, fmt.Errorf("who answered batch %d: %w", id, err)
		}
		cr.answersRead = true
	}
	return slices.Clone(w.bySeen[id]), nil
}

// answered says whether op answered committed batch b on chain without
// having a net in it (the ?operator= filter lists such batches too).
func (a *API) answered(ctx context.Context, b *BatchRecord, op string, cr *chainReads) (bool, error) {
	rl, ok := a.c.cfg.Ledger.(reconciliations)
	if !ok {
		return false, nil
	}
	if _, err := a.c.store.Commit(b.ID); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	v, err := a.answerOf(ctx, rl, b.ID, op, cr)
	if err != nil {
		// The chain cannot say: the batch is left out as unanswered,
		// and the batches listed say their answers are unread.
		return false, nil
	}
	return v.Answer != ledger.AnswerNone.String(), nil
}

// periodFilter is ?since= and ?until= (RFC 3339 with a zone).
type periodFilter struct{ since, until time.Time }

func parsePeriod(q url.Values) (periodFilter, error) {
	var f periodFilter
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.since}, {"until", &f.until}} {
		if s := q.Get(p.name); s != "" {
			t, err := parseQueryTime(s)
			if err != nil {
				return f, fmt.Errorf("%s %q: want an RFC 3339 time with a zone, such as 2026-12-02T00:00:00+01:00", p.name, s)
			}
			*p.dst = t
		}
	}
	if !f.since.IsZero() && !f.until.IsZero() && !f.since.Before(f.until) {
		return f, fmt.Errorf("since %s is not before until %s", q.Get("since"), q.Get("until"))
	}
	return f, nil
}

// parseQueryTime reads an RFC 3339 time from a query parameter. A zone
// offset's "+" sent without percent-encoding arrives as a space (the API
// gives times in the agency's zone, +01:00, which a script may pass back
// as it got them): "2026-12-02T18:40:28 01:00" is read as the time it
// can only mean.
func parseQueryTime(s string) (time.Time, error) { return ParseTime(s) }

// ParseTime reads an RFC 3339 time as the API and the CLI take one: the T
// and Z in either case, offsets' hours to 23 and minutes to 59 (Go's
// time.RFC3339 takes +24:00 and +23:60), and an offset's "+" arrived as a
// space read as a "+".
func ParseTime(s string) (time.Time, error) {
	// RFC 3339 (5.6) lets the T and the Z be lower case; Go's layout wants
	// them upper.
	if len(s) > 10 && s[10] == 't' {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	// A "+" a query string left unescaped arrives as a space.
	if len(s) > 6 && s[len(s)-6] == ' ' && s[len(s)-3] == ':' {
		s = s[:len(s)-6] + "+" + s[len(s)-5:]
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, err
	}
	// Go reads an offset's hours up to 99; RFC 3339's run to 23 and its
	// minutes to 59.
	if z := s[len(s)-1]; z != 'Z' {
		hh, _ := strconv.Atoi(s[len(s)-5 : len(s)-3])
		mm, _ := strconv.Atoi(s[len(s)-2:])
		if hh > 23 || mm > 59 {
			return time.Time{}, fmt.Errorf("offset %s: hours run to 23, minutes to 59", s[len(s)-6:])
		}
	}
	return t, nil
}

// overlaps: a batch's period [start, end) meets the filter's.
func (f periodFilter) overlaps(start, end time.Time) bool {
	return (f.since.IsZero() || end.After(f.since)) && (f.until.IsZero() || start.Before(f.until))
}

// holds: t lies in [since, until).
func (f periodFilter) holds(t time.Time) bool {
	return (f.since.IsZero() || !t.Before(f.since)) && (f.until.IsZero() || t.Before(f.until))
}

// operatorFilter reads ?operator=: an operator token may name only itself
// (403 otherwise); an unknown operator is 404 (as in a path), not an empty
// list.
func (a *API) operatorFilter(r *http.Request) (string, int, error) {
	op := r.URL.Query().Get("operator")
	if op == "" {
		return "", 0, nil
	}
	if p := principal(r); !p.Sees(op) {
		if p.Operator == "" {
			// A desk's token: it sees no operator's figures.
			return "", http.StatusForbidden, fmt.Errorf("operator %q: token %q is a %s desk's, which sees no operator's figures: leave out ?operator=", fares.ShortValue(op), p.Name, p.Role)
		}
		return "", http.StatusForbidden, fmt.Errorf("operator %q: token %q may see operator %q only", fares.ShortValue(op), p.Name, p.Operator)
	}
	if _, ok := a.c.cfg.Registry.Operator(op); !ok {
		return "", http.StatusNotFound, fmt.Errorf("operator %q: clearing's registry does not list it", fares.ShortValue(op))
	}
	return op, 0, nil
}

// onlyParams refuses (400) a request with a query parameter h does not
// read, or a query that does not decode (net/url's Query drops a pair it
// cannot decode): a misspelt or mangled filter or cursor must not pass for
// an empty one.
func onlyParams(h http.HandlerFunc, names ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if err := knownParams(q, names...); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodDelete {
			// A body here would be ignored, and with it whatever it said
			// (a DELETE's reason in a JSON body recorded as the default).
			if hasBody(r) {
				writeError(w, http.StatusBadRequest, fmt.Errorf("%s takes no request body: its parameters go in the query (%s)", r.Method, paramList(names)))
				return
			}
		}
		h(w, r)
	}
}

// parseQuery decodes r's query, or says what does not decode.
func parseQuery(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err == nil {
		return q, nil
	}
	// The query itself is not echoed whole: it may be huge.
	raw := r.URL.RawQuery
	if len(raw) > 100 {
		raw = raw[:100] + "..."
	}
	if strings.Contains(err.Error(), "exceeded limit") {
		err = fmt.Errorf("more query parameters than the server reads (%d given at least)", strings.Count(r.URL.RawQuery, "&")+1)
	}
	return nil, fmt.Errorf("query %q: %w", raw, err)
}

// hasBody reports whether r carries a request body (a length, or chunks).
// It reads nothing: a chunked request that never sends its chunks must
// not hold the connection (TestAPIUnreadBodies); see emptyChunked.
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || r.ContentLength < 0 && len(r.TransferEncoding) > 0
}

// emptyChunked reports whether r's body is chunked and empty (a last
// chunk alone, as a client sending every request chunked sends no body),
// reading up to its first byte for at most a second; what it read is put
// back. An outside review's desk, posting no body so, was refused as
// posting one.
func emptyChunked(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength >= 0 || len(r.TransferEncoding) == 0 || r.Body == nil {
		return false
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Second))
	var first [1]byte
	n, err := io.ReadFull(r.Body, first[:])
	if n == 0 && errors.Is(err, io.EOF) {
		return true
	}
	r.Body = readCloser{io.MultiReader(bytes.NewReader(first[:n]), r.Body), r.Body}
	return false
}

// readCloser reads from one reader and closes another (a body with what
// was read of it put back).
type readCloser struct {
	io.Reader
	io.Closer
}

// paramList names a route's query parameters for an error message.
func paramList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// knownParams refuses query parameters a handler does not read.
func knownParams(q url.Values, names ...string) error {
	for k, vs := range q {
		if len(vs) > 1 {
			// Only the first would be read; the others silently dropped.
			return fmt.Errorf("query parameter %q given %d times: give it once", k, len(vs))
		}
		if slices.Contains(names, k) {
			if vs[0] == "" && k != "after" {
				// An unset variable in a script: doing it with the default
				// would be a silent guess. (An empty cursor is the first
				// page, as a paging loop starts.)
				return fmt.Errorf("query parameter %q is empty: give it a value or leave it out", k)
			}
			continue
		}
		if len(names) == 0 {
			return fmt.Errorf("query parameter %q: this endpoint takes none", k)
		}
		return fmt.Errorf("query parameter %q: not understood here (known: %s)", k, strings.Join(names, ", "))
	}
	return nil
}

func (a *API) batches(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	asCSV, err := wantsCSV(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	// from (first id, inclusive) predates the after cursor and still works.
	from, err := intParam(q.Get("from"), 1, 1, maxBatchID)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("from: %w", err))
		return
	}
	if s := q.Get("after"); s != "" {
		after, err := intParam(s, 0, 0, maxBatchID)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("after: %w", err))
			return
		}
		from = max(from, after+1)
	}
	limit, err := intParam(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
		return
	}
	period, err := parsePeriod(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	op, status, err := a.operatorFilter(r)
	if err != nil {
		a.scopeError(w, r, status, err)
		return
	}
	// Filters drop batches, so read in chunks until the page is full.
	var out []BatchView
	var cr chainReads
	more := false
	next := uint64(from)
scan:
	for {
		bs, err := a.c.store.Batches(next, 256)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		for _, b := range bs {
			next = b.ID + 1
			if !period.overlaps(b.PeriodStart, b.PeriodEnd) {
				continue
			}
			if op != "" && !hasNet(b, op) {
				ok, err := a.answered(r.Context(), b, op, &cr)
				if err != nil {
					writeError(w, http.StatusInternalServerError, err)
					return
				}
				if !ok {
					continue
				}
			}
			if len(out) == limit {
				more = true
				break scan
			}
			v, err := a.batchView(r.Context(), b, &cr)
			if err != nil {
				writeError(w, http.StatusInternalServerError, err)
				return
			}
			out = append(out, v)
		}
		if len(bs) < 256 {
			break
		}
	}
	if out == nil {
		out = []BatchView{}
	}
	if asCSV {
		if more {
			setNextPage(w, r, strconv.FormatUint(out[len(out)-1].ID, 10))
		}
		a.batchesCSV(w, out)
		return
	}
	resp := map[string]any{"batches": out}
	if more {
		resp["next_after"] = strconv.FormatUint(out[len(out)-1].ID, 10)
	}
	w.Header().Set("Vary", "Accept")
	writeJSON(w, http.StatusOK, resp)
}

func hasNet(b *BatchRecord, op string) bool {
	for _, am := range b.Amounts {
		if am.Operator == op {
			return true
		}
	}
	return false
}

// eventsCSVHeader: one row per event of a batch, in apply order; the
// share columns are an operator token's own share, empty for auditors.
var eventsCSVHeader = []string{"batch", "apply_index", "event", "leaf", "terminal", "operator", "stop", "gate", "direction", "media", "rider",
	"rider_category", "device_time", "decision", "reason", "sequence", "fare_minor", "fare_decimal", "currency", "applied_at", "unpriced",
	"share_minor", "share_decimal"}

// CSVColumns are the header rows of the API's CSV answers (?format=csv,
// or Accept: text/csv), by route pattern: RFC 4180 with CRLF line ends,
// money as minor units, decimal string and currency columns, times RFC
// 3339 with the agency's zone.
func CSVColumns() map[string][]string {
	return map[string][]string{
		"GET /v1/batches":                            slices.Clone(batchesCSVHeader),
		"GET /v1/batches/{id}/events":                slices.Clone(eventsCSVHeader),
		"GET /v1/batches/{id}/statements/{operator}": slices.Clone(statementCSVHeader),
	}
}

// batchesCSVHeader: one row per batch and operator net, then one per
// operator without a net that answered the batch (net columns empty); a
// batch with neither has one row with those columns empty.
var batchesCSVHeader = []string{"batch", "period_start", "period_end", "event_count", "root", "committed", "tx_hash", "block_number",
	"operator", "net_minor", "net_decimal", "currency", "answer", "reason_hash"}

func (a *API) batchesCSV(w http.ResponseWriter, bs []BatchView) {
	writeCSVHeaders(w, "batches.csv")
	cw := newCSVWriter(w)
	_ = cw.Write(batchesCSVHeader)
	for _, b := range bs {
		head := []string{strconv.FormatUint(b.ID, 10), b.PeriodStart.Format(time.RFC3339), b.PeriodEnd.Format(time.RFC3339),
			strconv.FormatUint(b.EventCount, 10), b.Root, strconv.FormatBool(b.Committed), "", ""}
		if b.Commit != nil {
			head[6], head[7] = b.Commit.TxHash, strconv.FormatUint(b.Commit.BlockNumber, 10)
		}
		if len(b.Amounts) == 0 && len(b.Answers) == 0 {
			_ = cw.Write(append(head, "", "", "", "", "", ""))
		}
		for _, am := range b.Amounts {
			answer, reason := "", ""
			if b.AnswersUnread != "" {
				answer = "unknown" // the chain could not be read
			}
			for _, an := range b.Answers {
				if an.Operator == am.Operator {
					answer, reason = an.Answer, an.ReasonHash
				}
			}
			_ = cw.Write(append(head[:8:8], am.Operator, strconv.FormatInt(am.Net.Minor, 10), am.Net.Decimal, am.Net.Currency, answer, reason))
		}
		// An operator without a net that answered the batch: its answer,
		// the net columns empty.
		for _, an := range b.Answers {
			if !slices.ContainsFunc(b.Amounts, func(am OperatorNetView) bool { return am.Operator == an.Operator }) {
				_ = cw.Write(append(head[:8:8], an.Operator, "", "", "", an.Answer, an.ReasonHash))
			}
		}
	}
	cw.Flush()
}

// newCSVWriter writes the API's CSV: RFC 4180, lines ended by CRLF as
// text/csv's registration says (strict importers insist).
func newCSVWriter(w io.Writer) *csvWriter {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	return &csvWriter{w: cw}
}

// csvWriter writes records with every cell a spreadsheet would read as a
// formula neutralised (OWASP's CSV injection advice): a cell a terminal
// signed, its gate or a denial reason, could otherwise start with = and
// run when an operator opens the export. Numbers (-0.08) stay numbers.
type csvWriter struct{ w *csv.Writer }

// Write writes record, its cells neutralised in a copy (the header rows
// are shared by every request).
func (c *csvWriter) Write(record []string) error {
	out := make([]string, len(record))
	for i, f := range record {
		out[i] = csvCell(f)
	}
	return c.w.Write(out)
}

func (c *csvWriter) Flush() { c.w.Flush() }

// csvCell prefixes a cell starting with = + - @, a tab or a carriage
// return with a single quote, unless it is a plain number.
func csvCell(f string) string {
	if f == "" || !strings.ContainsRune("=+-@\t\r", rune(f[0])) {
		return f
	}
	if _, err := strconv.ParseFloat(f, 64); err == nil && f[0] != '=' && f[0] != '@' {
		return f
	}
	return "'" + f
}

func writeCSVHeaders(w http.ResponseWriter, filename string) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename=%q`, filename))
	w.Header().Set("Vary", "Accept")
	w.WriteHeader(http.StatusOK)
}

// BatchEventView is one event of a batch: its fields (the rider as its
// pseudonymous account), fare, Merkle leaf and apply index.
type BatchEventView struct {
	ApplyIndex uint64 `json:"apply_index"`
	EventFields
	// Fare is what the tap charged the rider, every operator's share of it
	// together; Share the calling operator's own (operators only).
	Fare  Money  `json:"fare"`
	Share *Money `json:"share,omitempty"`
	// Unpriced: why the fare feed could not price this accepted tap (to
	// review: its journey is charged leg by leg where the feed knows a
	// leg's fare, else nothing); absent when priced.
	Unpriced  string    `json:"unpriced,omitempty"`
	AppliedAt time.Time `json:"applied_at"`
	Leaf      string    `json:"leaf"`
}

func (a *API) batchEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	asCSV, err := wantsCSV(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	id, err := batchIDParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	limit, err := intParam(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %w", err))
		return
	}
	// hasAfter: apply index 0 is an event like any other, so "no after"
	// is not after == 0.
	var after uint64
	s := q.Get("after")
	hasAfter := s != ""
	if hasAfter {
		if after, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("after %q: want an apply index (a page's next_after)", s))
			return
		}
	}
	period, err := parsePeriod(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	op, status, err := a.operatorFilter(r)
	if err != nil {
		a.scopeError(w, r, status, err)
		return
	}
	p := principal(r)
	if p.Role == RoleOperator {
		op = p.Operator // an operator sees its own terminals' events only
	}
	b, err := a.c.store.Batch(id)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	start := b.StartIndex
	if hasAfter && after >= start {
		// A cursor at or past the batch's end gives an empty page (and
		// after+1 must not wrap to 0, into earlier batches).
		start = min(after, b.EndIndex-1) + 1
	}
	out := []BatchEventView{}
	more := false
	err = a.c.store.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{pApplied}})
		defer it.Close()
		for it.Seek(keyU64(pApplied, start)); it.Valid(); it.Next() {
			idx := u64(it.Item().Key()[1:])
			if idx >= b.EndIndex {
				break
			}
			var ae appliedEntry
			if err := it.Item().Value(func(v []byte) error {
				var err error
				ae, err = parseApplied(v)
				return err
			}); err != nil {
				return fmt.Errorf("apply index %d: %w", idx, err)
			}
			rec, sig, err := appliedEvent(txn, ae.id)
			if err != nil {
				return fmt.Errorf("apply index %d: %w", idx, err)
			}
			e := &sig.Event
			if (op != "" && e.Operator != op) || !period.holds(e.DeviceTime) {
				continue
			}
			if len(out) == limit {
				more = true
				return nil
			}
			v := BatchEventView{ApplyIndex: idx,
				EventFields: a.eventFields(e),
				Fare:        a.money(rec.Fare), Unpriced: rec.Unpriced, AppliedAt: a.zoned(rec.AppliedAt), Leaf: "0x" + hex.EncodeToString(ae.digest[:])}
			if p.Role == RoleOperator {
				share := a.money(shareOf(&rec, e.Operator, p.Operator))
				v.Share = &share
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if asCSV {
		if more {
			setNextPage(w, r, strconv.FormatUint(out[len(out)-1].ApplyIndex, 10))
		}
		writeCSVHeaders(w, fmt.Sprintf("batch-%d-events.csv", id))
		cw := newCSVWriter(w)
		_ = cw.Write(eventsCSVHeader)
		batch := strconv.FormatUint(id, 10)
		for _, e := range out {
			shareMinor, shareDecimal := "", "" // an operator's own share; empty for the other parties
			if e.Share != nil {
				shareMinor, shareDecimal = strconv.FormatInt(e.Share.Minor, 10), e.Share.Decimal
			}
			_ = cw.Write([]string{batch, strconv.FormatUint(e.ApplyIndex, 10), e.ID, e.Leaf, e.Terminal, e.Operator, e.Stop, e.Gate, e.Direction,
				e.Media, e.Rider, e.RiderCategory, e.DeviceTime.Format(time.RFC3339Nano), e.Decision, e.Reason, strconv.FormatUint(e.Sequence, 10),
				strconv.FormatInt(e.Fare.Minor, 10), e.Fare.Decimal, e.Fare.Currency, e.AppliedAt.Format(time.RFC3339Nano), e.Unpriced,
				shareMinor, shareDecimal})
		}
		cw.Flush()
		return
	}
	resp := map[string]any{"batch": id, "events": out}
	if more {
		resp["next_after"] = strconv.FormatUint(out[len(out)-1].ApplyIndex, 10)
	}
	w.Header().Set("Vary", "Accept")
	writeJSON(w, http.StatusOK, resp)
}

// setNextPage says, on a CSV page that is not the last, where the next one
// starts: the JSON's next_after as Faregate-Next-After, and the next page's
// address as an RFC 8288 Link (rel="next"), so that a CSV export cut to
// one page never looks complete.
func setNextPage(w http.ResponseWriter, r *http.Request, after string) {
	q := r.URL.Query()
	q.Set("after", after)
	// The next page is CSV too, whether this one was asked for by
	// Accept or by format: a client following the link with no header
	// would otherwise get JSON.
	q.Set("format", "csv")
	next := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	w.Header().Set("Faregate-Next-After", after)
	w.Header().Set("Link", "<"+next.String()+`>; rel="next"`)
}

// methodNotAllowed answers a request whose path the API serves with other
// methods: 405 with Allow, in the API's error shape. It reports false when
// no method serves the path.
func (a *API) methodNotAllowed(w http.ResponseWriter, r *http.Request) bool {
	allow := a.allowedMethods(r)
	if len(allow) == 0 {
		return false
	}
	w.Header().Set("Allow", joinComma(allow))
	writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, joinComma(allow)))
	return true
}

// allowedMethods lists the methods other than r's that the API serves r's
// path with.
func (a *API) allowedMethods(r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if h, pattern := a.mux.Handler(probe); pattern != "" && pattern != "/" && !isRedirect(h) {
			allow = append(allow, m)
		}
	}
	return allow
}

func joinComma(s []string) string { return strings.Join(s, ", ") }
