package clearing

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/faregate/faregate/fare"
)

// TestInTerminalInbox: the subjects clearing answers and delivers a
// terminal's feed on, from the attacker's side: only literal subjects
// under its own inbox prefix, not one of another terminal whose id starts
// with its own.
func TestInTerminalInbox(t *testing.T) {
	for _, tc := range []struct {
		subject string
		ok      bool
	}{
		{"_INBOX.t1.abc", true},
		{"_INBOX.t1.abc.def", true},
		{"_INBOX.t1", false},
		{"_INBOX.t1.", false},
		{"_INBOX.t10.abc", false},
		{"_INBOX.t1X.abc", false},
		{"_INBOX.t1..abc", false},
		{"_INBOX.t1.abc.", false},
		{"_INBOX.t1.*", false},
		{"_INBOX.t1.>", false},
		{"_INBOX.t1.a.>", false},
		{"_INBOX.t1.0*", false},
		{"_INBOX.t1.a>b", false},
		{"_INBOX.t1.a b", false},
		{"_INBOX.t1.a\tb", false},
		{"_INBOX.t1.a\x00b", false},
		{"_INBOX.t2.abc", false},
		{"$KV.FAREGATE_DENY._INBOX.t1.abc", false},
		{"faregate.applied.t1", false},
		{"_INBOX.t1." + strings.Repeat("x", maxDeliverSubject), false},
		{"_INBOX.t1.ünï", true},
	} {
		if got := inTerminalInbox("t1", tc.subject); got != tc.ok {
			t.Errorf("%q: %v, want %v", tc.subject, got, tc.ok)
		}
	}
}

// FuzzGateFeedRequest: whatever a terminal sends, a request is granted
// only for a feed there is, filtered to what the terminal may read, and
// delivering on a literal subject in its own inbox, resuming only from a
// position naming a stream's creation time and a revision below the last.
func FuzzGateFeedRequest(f *testing.F) {
	for _, s := range [][3]string{
		{"t1", fare.FeedDeny, `{"deliver":"_INBOX.t1.x"}`},
		{"t1", fare.FeedFace, `{"deliver":"_INBOX.t1.x.y"}`},
		{"t1", fare.FeedEnrol, `{"deliver":"_INBOX.t10.x"}`},
		{"t1", "faces", `{"deliver":"_INBOX.t1.x"}`},
		{"t1", fare.FeedDeny, `{"deliver":"$KV.FAREGATE_DENY.x"}`},
		{"t1", fare.FeedDeny, `{"deliver":"_INBOX.t1.>"}`},
		{"t1", fare.FeedDeny, `{"deliver":"_INBOX.t1.0*"}`},
		{"t1", fare.FeedDeny, `not json`},
		{"t1", fare.FeedDeny, `{"deliver":"_INBOX.t1.x","resume":{"stream":"2026-12-05T03:00:00.123456789Z","revision":41}}`},
		{"t1", fare.FeedEnrol, `{"deliver":"_INBOX.t1.x","resume":{"stream":"yesterday","revision":41}}`},
		{"t1", fare.FeedDeny, `{"deliver":"_INBOX.t1.x","resume":{"stream":"2026-12-05T03:00:00Z","revision":18446744073709551615}}`},
		{"t1", fare.FeedDeny, `{"deliver":"_INBOX.t1.x","resume":{"stream":"2026-12-05T03:00:00Z","revision":-1}}`},
		{"t1", fare.FeedDeny, `{"deliver":"_INBOX.t1.x","resume":null}`},
	} {
		f.Add(s[0], s[1], []byte(s[2]))
	}
	f.Fuzz(func(t *testing.T, term, feed string, data []byte) {
		stream, filter, parsed, err := parseFeedRequest(term, feed, data)
		if err != nil {
			return
		}
		wantStream, wantFilter, ok := fare.GateFeedStream(term, feed)
		if !ok || stream != wantStream || filter != wantFilter {
			t.Fatalf("granted %q/%q for feed %q of %q", stream, filter, feed, term)
		}
		if feed == fare.FeedFace && filter != fare.FaceWatchFilter(term) {
			t.Fatalf("face feed of %q filtered %q", term, filter)
		}
		var req fare.GateFeedRequest
		deliver := parsed.Deliver
		if json.Unmarshal(data, &req) != nil || req.Deliver != deliver {
			t.Fatalf("delivery %q not the request's", deliver)
		}
		if !strings.HasPrefix(deliver, fare.TerminalInboxPrefix(term)+".") || len(deliver) > maxDeliverSubject ||
			strings.Contains(deliver, "..") || strings.HasSuffix(deliver, ".") || strings.ContainsAny(deliver, "*> \t\r\n") {
			t.Fatalf("delivery %q for %q", deliver, term)
		}
		if r := parsed.Resume; r != nil {
			if _, err := time.Parse(time.RFC3339Nano, r.Stream); err != nil || r.Revision == 0 || r.Revision == math.MaxUint64 {
				t.Fatalf("resumption from %+v accepted", *r)
			}
		}
	})
}
