package clearing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/faregate/faregate/fare"
)

// EnrolRequestsDir, in clearing's data dir, queues enrolments and
// revocations made by `faregate clearing enrol add|revoke`
// (QueueEnrolment), as DenyRequestsDir does for the deny list: a running
// clearing applies them within a second (a stopped one at its next start)
// and deletes each once it is durable. A request names the rider's
// pseudonymous account and the medium's gate key, never its token. One
// clearing refuses (an unknown category, a time in the past) is replaced by
// <name>.rejected holding the request and the reason.
const EnrolRequestsDir = "enrol-requests"

// QueuedEnrolment is one queued enrolment or revocation.
type QueuedEnrolment struct {
	// Rider is the pseudonymous account (RiderAccount) of the rider.
	Rider string `json:"rider"`
	// Media and Key (fare.DenyKey) name the medium; a revocation may leave
	// them empty (clearing takes them from the rider's history).
	Media      string    `json:"media,omitempty"`
	Key        string    `json:"key,omitempty"`
	Category   string    `json:"category,omitempty"`
	Revoke     bool      `json:"revoke,omitempty"`
	ApprovedBy string    `json:"approved_by"`
	ValidFrom  time.Time `json:"valid_from,omitzero"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
	Requested  time.Time `json:"requested"`
}

// RejectedEnrolment is what a refused request's .rejected file holds.
type RejectedEnrolment struct {
	Request QueuedEnrolment `json:"request"`
	Error   string          `json:"error"`
}

// check validates what can be checked without clearing's feed and store.
func (q *QueuedEnrolment) check() error {
	m, err := ParseRiderAccount(q.Rider)
	if err != nil {
		return err
	}
	if q.Media != "" || q.Key != "" || !q.Revoke {
		qm, err := ParseMedia(q.Media)
		if err != nil {
			return err
		}
		if qm != m {
			return fmt.Errorf("media %s, but rider %s is a %s rider", q.Media, q.Rider, m)
		}
		if _, err := fare.ParseDenyKey(q.Key); err != nil {
			return err
		}
	}
	if q.Revoke && (q.Category != "" || !q.ValidUntil.IsZero()) {
		return errors.New("a revocation takes no category and no valid_until")
	}
	if limit := maxEnrolmentDate(q.Requested); !q.Requested.IsZero() {
		for _, d := range []struct {
			name string
			t    time.Time
		}{{"valid_from", q.ValidFrom}, {"valid_until", q.ValidUntil}} {
			if d.t.After(limit) {
				return fmt.Errorf("%w: %s %s is more than %d years ahead (at most %s)", ErrInvalidEnrolment, d.name, d.t.UTC().Format(time.RFC3339), MaxEnrolmentYears, limit.Format(time.RFC3339))
			}
		}
	}
	if err := validateApprover(q.ApprovedBy); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEnrolment, err) // the CLI's usage error: nothing queued
	}
	return nil
}

// QueueEnrolment queues q in dataDir (see EnrolRequestsDir) and returns the
// request file's path, which disappears once clearing has applied it (or is
// replaced by path+".rejected").
func QueueEnrolment(dataDir string, q QueuedEnrolment, now time.Time) (string, error) {
	q.Requested = now.UTC()
	if err := q.check(); err != nil {
		return "", fmt.Errorf("queue enrolment: %w", err)
	}
	// What clearing would refuse whatever its fare clock (never behind
	// the wall's) is refused before it is queued.
	switch {
	case !q.ValidFrom.IsZero() && q.ValidFrom.Before(q.Requested.Add(-time.Minute)):
		return "", fmt.Errorf("queue enrolment: %w: valid_from %s is in the past (now %s): enrolments are never backdated",
			ErrInvalidEnrolment, q.ValidFrom.UTC().Format(time.RFC3339), q.Requested.Format(time.RFC3339))
	case !q.ValidUntil.IsZero() && !q.ValidUntil.After(q.Requested):
		return "", fmt.Errorf("queue enrolment: %w: valid_until %s is in the past (now %s)",
			ErrInvalidEnrolment, q.ValidUntil.UTC().Format(time.RFC3339), q.Requested.Format(time.RFC3339))
	case !q.ValidUntil.IsZero() && !q.ValidFrom.IsZero() && !q.ValidUntil.After(q.ValidFrom):
		return "", fmt.Errorf("queue enrolment: %w: valid_until %s is not after valid_from %s",
			ErrInvalidEnrolment, q.ValidUntil.UTC().Format(time.RFC3339), q.ValidFrom.UTC().Format(time.RFC3339))
	}
	b, err := json.Marshal(q)
	if err != nil {
		return "", err
	}
	return queueRequest(dataDir, EnrolRequestsDir, "enrolment", b, now)
}

// PendingEnrolments lists the queued requests clearing has not applied
// yet, oldest first.
func PendingEnrolments(dataDir string) ([]string, error) {
	return pendingRequests(dataDir, EnrolRequestsDir, "enrolment requests")
}

// decodeQueuedEnrolment parses a request file, naming what is wrong.
func decodeQueuedEnrolment(b []byte) (QueuedEnrolment, error) {
	var q QueuedEnrolment
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return q, fmt.Errorf("not an enrolment request: %w", err)
	}
	if err := q.check(); err != nil {
		return q, err
	}
	return q, nil
}

// applyEnrolQueue applies the queued requests in order and deletes each
// once it is durable; a refused one is set aside with its reason.
func (c *Clearing) applyEnrolQueue(ctx context.Context) {
	paths, err := PendingEnrolments(c.cfg.DataDir)
	if err != nil {
		c.log.Error("enrolment requests", "err", err)
		return
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil && unreadableForGood(err) {
			if rerr := os.Rename(path, path+".rejected"); rerr != nil {
				c.log.Error("enrolment request unreadable; could not rename it aside", "file", path, "err", err, "rename_err", rerr)
				return
			}
			c.log.Error("enrolment request unreadable; renamed aside", "file", path+".rejected", "err", err)
			continue
		}
		if err != nil {
			c.log.Error("enrolment request unreadable; retrying", "file", path, "err", err)
			return
		}
		q, err := decodeQueuedEnrolment(b)
		// The request file's name keys it: one applied but not yet
		// deleted when clearing stopped is not made a second time.
		idem := "enrol-request/" + filepath.Base(path)
		switch {
		case err != nil:
			err = fmt.Errorf("%w: %v", ErrInvalidEnrolment, err)
		case q.Revoke:
			// A revocation whose time passed while clearing was stopped
			// takes effect now: refused as backdated, it left the rider
			// enrolled after the start check had counted it
			// (queuedRevocations).
			from := q.ValidFrom
			if from.Before(c.cfg.FareClock()) {
				from = time.Time{}
			}
			_, err = c.RevokeEnrolment(ctx, q.Rider, q.ApprovedBy, from, idem)
			if errors.Is(err, ErrIdempotencyConflict) && !from.Equal(q.ValidFrom) {
				// Applied as queued before clearing stopped, its time
				// passed since: a repeat, answered as such (asked with
				// the start made now, it conflicted with itself and held
				// every later request for good: an outside review).
				_, err = c.RevokeEnrolment(ctx, q.Rider, q.ApprovedBy, q.ValidFrom, idem)
			}
		default:
			m, _ := ParseMedia(q.Media)
			k, _ := fare.ParseDenyKey(q.Key)
			_, err = c.enrol(ctx, q.Rider, m, k, EnrolRequest{Category: q.Category, ApprovedBy: q.ApprovedBy, ValidFrom: q.ValidFrom, ValidUntil: q.ValidUntil, IdempotencyKey: idem})
		}
		// A conflict of the file's key is a request file changed after it
		// was applied: refused, never retried (it would hold every later
		// request).
		if err != nil && !errors.Is(err, ErrInvalidEnrolment) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrIdempotencyConflict) {
			c.log.Error("enrolment request not applied; retrying", "file", path, "err", err)
			return
		}
		if err != nil {
			rej, _ := json.MarshalIndent(RejectedEnrolment{Request: q, Error: err.Error()}, "", "  ")
			if werr := writeSynced(path+".rejected", rej, os.O_CREATE|os.O_TRUNC, 0o600); werr != nil {
				c.log.Error("enrolment request refused; could not set it aside", "file", path, "err", err, "write_err", werr)
				return
			}
			_ = os.Remove(path)
			c.log.Error("enrolment request refused; set aside", "file", path+".rejected", "err", err)
			continue
		}
		if err := os.Remove(path); err != nil {
			c.log.Warn("enrolment request applied but not deleted (its idempotency key keeps a second apply from changing anything)", "file", path, "err", err)
		}
		c.log.Info("enrolment request applied", "rider", q.Rider, "revoke", q.Revoke, "file", filepath.Base(path))
	}
}

// ReadEnrolments reads a stopped clearing's enrolments (read-only): the
// history of rider, or, with rider empty, the latest record of every
// enrolled rider. A running clearing holds its store and serves
// GET /v1/enrolments (or /v1/enrolments/{rider}) instead.
func ReadEnrolments(dataDir, rider string, log *slog.Logger) ([]Enrolment, error) {
	st, err := OpenStoreReadOnly(filepath.Join(dataDir, "store"), log)
	if errors.Is(err, ErrNoStore) {
		return nil, err // a mistyped --data: no clearing there, running or not
	}
	if err != nil {
		return nil, fmt.Errorf("%w (a running clearing holds its store: ask GET /v1/enrolments, or GET /v1/enrolments/{rider}, with a concessions or auditor token)", err)
	}
	defer st.Close()
	if rider != "" {
		return st.RiderEnrolments(rider)
	}
	return st.LatestEnrolments("", 0)
}
