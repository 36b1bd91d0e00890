package fare

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// Tally counts refusals by reason and logs one summary line per interval
// instead of a line per refused message, so a flood of junk cannot flood the
// logs. The first refusal of each interval is logged at once with its detail.
type Tally struct {
	log  *slog.Logger
	msg  string
	key  string // what the counted keys are: "reason" unless NewTallyBy
	mu   sync.Mutex
	by   map[string]uint64
	seen bool
}

// NewTally returns a tally that logs msg through log.
func NewTally(log *slog.Logger, msg string) *Tally {
	return NewTallyBy(log, msg, "reason")
}

// NewTallyBy returns a tally whose counts are by key (a terminal, say),
// which its first line of an interval names as such.
func NewTallyBy(log *slog.Logger, msg, key string) *Tally {
	return &Tally{log: log, msg: msg, key: key, by: make(map[string]uint64)}
}

// Add counts one refusal; detail is logged only for the first of an interval.
func (t *Tally) Add(reason, detail string) {
	t.mu.Lock()
	first := !t.seen
	t.seen = true
	t.by[reason]++
	t.mu.Unlock()
	if first {
		t.log.Warn(t.msg, t.key, reason, "detail", detail, "note", "further refusals this interval are summarised")
	}
}

// Flush logs the counts since the last flush, if any, and resets them.
func (t *Tally) Flush() {
	t.mu.Lock()
	by := t.by
	t.by, t.seen = make(map[string]uint64), false
	t.mu.Unlock()
	if len(by) == 0 {
		return
	}
	args := make([]any, 0, 2*len(by))
	var total uint64
	for _, k := range slices.Sorted(maps.Keys(by)) {
		args = append(args, k, by[k])
		total += by[k]
	}
	t.log.Warn(t.msg+" (summary)", append([]any{"total", total}, args...)...)
}

// Run flushes every interval until ctx ends, then once more.
func (t *Tally) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			t.Flush()
			return
		case <-tick.C:
			t.Flush()
		}
	}
}
