package clearing

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestRetryPlacement: placement refused for want of peers or of a meta
// leader, or a request left unanswered (a cluster still forming), is tried
// again until it succeeds; any other error returns at once.
func TestRetryPlacement(t *testing.T) {
	noPeers := &jetstream.APIError{Code: 400, ErrorCode: jsErrNoPeers, Description: "no suitable peers for placement, peer offline"}
	noLeader := &jetstream.APIError{Code: 503, ErrorCode: jsErrClusterNotAvail, Description: "JetStream system temporarily unavailable"}
	other := &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use"}
	for _, tc := range []struct {
		name      string
		errs      []error
		wantCalls int
		wantErr   error
	}{
		{"placed at once", []error{nil}, 1, nil},
		{"placed once the peers are up", []error{noPeers, noPeers, nil}, 3, nil},
		{"placed once a meta leader answers", []error{context.DeadlineExceeded, noLeader, nil}, 3, nil},
		{"another error returns at once", []error{other, nil}, 1, other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			_, err := retryPlacement(context.Background(), func(context.Context) (int, error) {
				err := tc.errs[calls]
				calls++
				return calls, err
			})
			if calls != tc.wantCalls || !errors.Is(err, tc.wantErr) {
				t.Fatalf("%d calls, err %v; want %d, %v", calls, err, tc.wantCalls, tc.wantErr)
			}
		})
	}
}
