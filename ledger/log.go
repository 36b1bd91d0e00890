package ledger

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	gethlog "github.com/ethereum/go-ethereum/log"
)

// gethLogTarget receives go-ethereum's log records. go-ethereum logs through a
// process-wide root logger; we install a forwarding handler once and point it at
// the most recently configured slog.Logger.
var (
	gethLogTarget  atomic.Pointer[slog.Logger]
	gethLogInstall sync.Once
)

// gethLogLevel is the lowest go-ethereum level forwarded: its info level
// reports every block and would drown the application's own logs.
const gethLogLevel = slog.LevelWarn

// gethExpectedWarnings are warnings go-ethereum prints on every start of the
// embedded chain although nothing is wrong: the chain has no peers by design
// (no dialing, no listening) and a fresh or freezer-less database has no head
// block for the freezer to reach. They are passed on at debug level so that an
// operator who sees a warning knows it needs a look.
var gethExpectedWarnings = map[string]bool{
	"P2P server will be useless, neither dialing nor listening": true,
	"Head block is not reachable":                               true,
}

func routeGethLog(l *slog.Logger) {
	gethLogTarget.Store(l)
	gethLogInstall.Do(func() {
		// Wrapped: given go-ethereum's own logger type, SetDefault would also
		// replace slog's process-wide default with our handler.
		gethlog.SetDefault(rootLogger{gethlog.NewLogger(forwardHandler{})})
	})
}

// rootLogger hides the concrete go-ethereum logger type from gethlog.SetDefault.
type rootLogger struct{ gethlog.Logger }

// forwardHandler forwards warn-and-above records to gethLogTarget, tagged so
// they can be told apart from Faregate's own messages.
type forwardHandler struct {
	attrs []slog.Attr
	group string
}

func (h forwardHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= gethLogLevel
}

func (h forwardHandler) Handle(ctx context.Context, r slog.Record) error {
	target := gethLogTarget.Load()
	if target == nil || r.Level < gethLogLevel {
		return nil
	}
	// The RPC server logs every failed call ("Served eth_call ... execution
	// reverted"); the caller already gets that error, so it is noise here.
	if strings.HasPrefix(r.Message, "Served ") {
		return nil
	}
	if gethExpectedWarnings[r.Message] {
		r = r.Clone()
		r.Level = slog.LevelDebug
	}
	th := target.Handler().WithAttrs(append([]slog.Attr{slog.String("component", "go-ethereum")}, h.attrs...))
	if h.group != "" {
		th = th.WithGroup(h.group)
	}
	if !th.Enabled(ctx, r.Level) {
		return nil
	}
	return th.Handle(ctx, r)
}

func (h forwardHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return forwardHandler{attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...), group: h.group}
}

func (h forwardHandler) WithGroup(name string) slog.Handler {
	// Groups are rare in go-ethereum; keep only the innermost.
	return forwardHandler{attrs: h.attrs, group: name}
}
