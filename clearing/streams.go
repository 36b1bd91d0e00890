package clearing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// streamOwnerKey marks, in a stream's metadata, the streams clearing made
// itself. Clearing keeps those in step with its configuration; a stream
// without the mark was made by the operator (nats stream add, a GitOps
// tool), and clearing changes none of its limits or replicas.
const (
	streamOwnerKey   = "faregate.owner"
	streamOwnerValue = "clearing"
)

// ErrStreamMismatch is returned when an existing stream lacks a setting
// clearing relies on (its subjects, retention, storage, discard policy).
// Clearing never rewrites such a stream: the error names each difference.
var ErrStreamMismatch = errors.New("clearing: an existing stream is configured differently from what clearing relies on")

// DefaultClusterReplicas is the replica count clearing gives the streams
// it creates on a NATS cluster (Limits.Replicas 0). On a single server it
// is 1.
const DefaultClusterReplicas = 3

// replicas is the replica count for the streams clearing creates: the
// configured one, or 3 when connected to a cluster and 1 otherwise.
func (c *Clearing) replicas() int {
	if r := c.cfg.Limits.Replicas; r > 0 {
		return r
	}
	if c.nc != nil && c.nc.ConnectedClusterName() != "" {
		return DefaultClusterReplicas
	}
	return 1
}

// ensureStream makes want exist without weakening what is there:
//   - absent: created with clearing's replicas and marked as clearing's;
//   - clearing's own: updated to want, its replicas never lowered;
//   - the operator's: left as it is if it has what clearing relies on
//     (checkStream), with more replicas or other limits reported once;
//     otherwise ErrStreamMismatch naming each difference.
func (c *Clearing) ensureStream(ctx context.Context, want jetstream.StreamConfig) (jetstream.Stream, error) {
	want.Replicas = c.replicas()
	if want.Metadata == nil {
		want.Metadata = map[string]string{}
	}
	want.Metadata[streamOwnerKey] = streamOwnerValue
	st, err := retryPlacement(ctx, func(ctx context.Context) (jetstream.Stream, error) { return c.js.Stream(ctx, want.Name) })
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = retryPlacement(ctx, func(ctx context.Context) (jetstream.Stream, error) { return c.js.CreateStream(ctx, want) })
		if err != nil {
			return nil, fmt.Errorf("create stream %s with %d replica(s): %w", want.Name, want.Replicas, err)
		}
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", want.Name, err)
	}
	have := st.CachedInfo().Config
	checked := have
	if have.Metadata[streamOwnerKey] == streamOwnerValue {
		// Clearing's own stream, made by an earlier build with publish acks
		// on, or without a subject this build adds (the verifier partitions'
		// quarantine subjects): the update below turns them off, adds it.
		checked.NoAck = checked.NoAck || want.NoAck
		checked.Subjects = want.Subjects
	}
	if diffs := checkStream(checked, want); len(diffs) > 0 {
		return nil, fmt.Errorf("%w: %s: %s (fix or remove the stream; clearing will not rewrite it)", ErrStreamMismatch, want.Name, strings.Join(diffs, "; "))
	}
	if have.Metadata[streamOwnerKey] != streamOwnerValue {
		if notes := streamNotes(have, want); len(notes) > 0 {
			level := slog.LevelInfo
			if have.Replicas < want.Replicas {
				// Fewer copies than clearing would keep: one node's loss
				// stops the stream (and every tap's confirmation) until it
				// is back.
				level = slog.LevelWarn
			}
			c.log.Log(ctx, level, "using the operator's stream as configured", "stream", want.Name, "differs_from_clearing_defaults", strings.Join(notes, "; "))
		}
		return st, nil
	}
	// Clearing's own stream: follow the configuration, but a stream the
	// operator scaled up keeps its replicas.
	if have.Replicas > want.Replicas {
		c.log.Info("keeping the stream's replicas: clearing never scales a stream down (remove it to make it anew with fewer)",
			"stream", want.Name, "replicas", have.Replicas, "configured", want.Replicas)
	}
	want.Replicas = max(want.Replicas, have.Replicas)
	st, err = retryPlacement(ctx, func(ctx context.Context) (jetstream.Stream, error) { return c.js.UpdateStream(ctx, want) })
	if err != nil {
		return nil, fmt.Errorf("update stream %s: %w", want.Name, err)
	}
	return st, nil
}

// jsErrNoPeers is JetStream's "no suitable peers for placement": a cluster
// whose nodes are still joining (or one node restarting) cannot place the
// replicas yet. jsErrClusterNotAvail is its "JetStream system temporarily
// unavailable": no meta leader yet.
const (
	jsErrNoPeers         jetstream.ErrorCode = 10005
	jsErrClusterNotAvail jetstream.ErrorCode = 10008
	// jsErrStorage is a single server's "insufficient storage resources
	// available" (the cluster says it as 10005).
	jsErrStorage jetstream.ErrorCode = 10047
)

// placementWait bounds how long a stream's placement is retried, and
// placementRequest each request.
const (
	placementWait    = 60 * time.Second
	placementRequest = 5 * time.Second
)

// clusterForming says whether err is what a JetStream cluster that is still
// forming answers (or leaves unanswered) while ctx itself is still live.
func clusterForming(ctx context.Context, err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jsErrNoPeers || apiErr.ErrorCode == jsErrClusterNotAvail
	}
	// A request no meta leader answers times out (the API's own timeout).
	return ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout))
}

// retryPlacement calls place until it succeeds, fails otherwise than a
// forming cluster does (clusterForming), or placementWait passes: clearing
// started beside a cluster that is still electing its meta leader or
// joining its nodes waits for it instead of exiting (it exited after 6 s
// when started half a second after the nodes).
func retryPlacement[T any](ctx context.Context, place func(ctx context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(placementWait)
	retry := retrySchedule(250*time.Millisecond, 2*time.Second)
	for {
		// Each request on its own clock: one sent before the meta leader
		// was elected goes unanswered, and would otherwise wait for ctx.
		actx, cancel := context.WithTimeout(ctx, placementRequest)
		v, err := place(actx)
		cancel()
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrNoPeers && strings.Contains(apiErr.Description, "insufficient") || apiErr.ErrorCode == jsErrStorage) {
			// Not a cluster still forming: no server has room. Said at once.
			return v, fmt.Errorf("%w (no JetStream server has room for it: each replica reserves the stream's max bytes on its server; lower --event-max-bytes or --quarantine-max-bytes, or raise the servers' max_file)", err)
		}
		if err == nil || !clusterForming(ctx, err) || time.Now().After(deadline) {
			if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrNoPeers {
				err = fmt.Errorf("%w (after %s: --stream-replicas can be at most the number of JetStream servers in the cluster, each with room for the stream's max bytes)", err, placementWait)
			}
			return v, err
		}
		sleep(ctx, retry.NextBackOff())
		if ctx.Err() != nil {
			return v, err
		}
	}
}

// clusterHint is what to add to a JetStream request's timeout at start:
// the cluster did not answer for placementWait.
func clusterHint(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return fmt.Sprintf(" (the NATS servers did not answer for %s: a node down or restarting, a replica moving, or no JetStream meta leader; clearing can be started again once they do)", placementWait)
	}
	return ""
}

// checkStream lists what an existing stream lacks of what clearing relies
// on: every subject clearing publishes or reads under, the retention (the
// event stream's interest retention is what lets clearing's AckAll drop
// applied events), file storage, the discard policy (a full event stream
// must refuse, never drop, an event), and the event stream's silence (no
// publish acks, which a terminal could aim at another's subject).
func checkStream(have, want jetstream.StreamConfig) []string {
	var diffs []string
	for _, s := range want.Subjects {
		if !slices.Contains(have.Subjects, s) {
			diffs = append(diffs, fmt.Sprintf("subjects %v lack %q", have.Subjects, s))
		}
	}
	if have.Retention != want.Retention {
		diffs = append(diffs, fmt.Sprintf("retention %s, clearing needs %s", have.Retention, want.Retention))
	}
	if have.Storage != want.Storage {
		diffs = append(diffs, fmt.Sprintf("storage %s, clearing needs %s", have.Storage, want.Storage))
	}
	if have.Discard != want.Discard || have.DiscardNewPerSubject != want.DiscardNewPerSubject {
		diffs = append(diffs, fmt.Sprintf("discard %s (per subject %v), clearing needs %s (per subject %v)",
			have.Discard, have.DiscardNewPerSubject, want.Discard, want.DiscardNewPerSubject))
	}
	if want.AllowRollup && !have.AllowRollup {
		diffs = append(diffs, "roll-ups denied, clearing needs them")
	}
	if want.NoAck && !have.NoAck {
		diffs = append(diffs, "publish acks on (no_ack false): any terminal could have the server store an ack on another terminal's subject with each publish it makes; clearing needs no_ack")
	}
	return diffs
}

// streamNotes lists where an operator's stream differs from clearing's
// defaults in ways the operator may choose: replicas and limits.
func streamNotes(have, want jetstream.StreamConfig) []string {
	var notes []string
	note := func(name string, h, w any) {
		if h != w {
			notes = append(notes, fmt.Sprintf("%s %v (clearing's default %v)", name, h, w))
		}
	}
	// JetStream takes 0 and -1 alike for "no limit": said as such, not
	// as a limit of 0 (an outside test read "max_bytes 0").
	unlimited := func(n int64) string {
		if n <= 0 {
			return "unlimited"
		}
		return strconv.FormatInt(n, 10)
	}
	note("replicas", have.Replicas, want.Replicas)
	note("max_bytes", unlimited(have.MaxBytes), unlimited(want.MaxBytes))
	age := func(d time.Duration) string {
		if d <= 0 {
			return "unlimited"
		}
		return d.String()
	}
	note("max_age", age(have.MaxAge), age(want.MaxAge))
	note("max_msgs", unlimited(have.MaxMsgs), unlimited(want.MaxMsgs))
	note("max_msgs_per_subject", unlimited(have.MaxMsgsPerSubject), unlimited(want.MaxMsgsPerSubject))
	note("duplicate_window", have.Duplicates, want.Duplicates)
	return notes
}

// bucketReplicas is the replica count for a key-value bucket clearing
// creates or updates: clearing's, but never fewer than the bucket has.
func (c *Clearing) bucketReplicas(ctx context.Context, bucket string) int {
	r := c.replicas()
	if st, err := c.js.Stream(ctx, "KV_"+bucket); err == nil {
		r = max(r, st.CachedInfo().Config.Replicas)
	}
	return r
}
