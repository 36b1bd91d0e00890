package clearing

import (
	"context"
	"errors"
	"slices"
	"strings"
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
	noRoom := &jetstream.APIError{Code: 500, ErrorCode: jsErrStorage, Description: "insufficient storage resources available"}
	noRoomCluster := &jetstream.APIError{Code: 400, ErrorCode: jsErrNoPeers, Description: "insufficient resources"}
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
		// A single server short of room answers 10047, a cluster 10005:
		// both said at once, with what to change.
		{"no room on a single server", []error{noRoom, nil}, 1, noRoom},
		{"no room in a cluster", []error{noRoomCluster, nil}, 1, noRoomCluster},
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
			if (tc.wantErr == noRoom || tc.wantErr == noRoomCluster) && !strings.Contains(err.Error(), "lower --event-max-bytes") {
				t.Errorf("%v: want it to say what to change", err)
			}
		})
	}
}

// TestStreamNotes: an operator's stream's differences from clearing's
// defaults are named, but "no limit" written as -1 or 0 is no difference.
func TestStreamNotes(t *testing.T) {
	want := jetstream.StreamConfig{Replicas: 3, MaxBytes: 1 << 30, MaxMsgs: 0, MaxMsgsPerSubject: 100_000}
	for _, tc := range []struct {
		name string
		have jetstream.StreamConfig
		want []string
	}{
		{"the same", want, nil},
		{"no limit written as -1", jetstream.StreamConfig{Replicas: 3, MaxBytes: 1 << 30, MaxMsgs: -1, MaxMsgsPerSubject: 100_000}, nil},
		{"one replica, a smaller limit", jetstream.StreamConfig{Replicas: 1, MaxBytes: 1 << 20, MaxMsgs: -1, MaxMsgsPerSubject: 100_000},
			[]string{"replicas 1 (clearing's default 3)", "max_bytes 1048576 (clearing's default 1073741824)"}},
		// No limit is said to be none, not a limit of 0 (an outside test).
		{"no byte limit", jetstream.StreamConfig{Replicas: 3, MaxBytes: -1, MaxMsgsPerSubject: 100_000},
			[]string{"max_bytes unlimited (clearing's default 1073741824)"}},
	} {
		if got := streamNotes(tc.have, want); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
