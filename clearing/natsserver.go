package clearing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/faregate/faregate/fare"
)

// EmbeddedNATS is an in-process nats-server with JetStream on a file store.
// Anonymous clients are refused: it admits the NKey users it is given (see
// NATSUsers), with their permissions, and takes new users without a restart.
type EmbeddedNATS struct {
	srv     *server.Server
	mu      sync.Mutex
	opts    server.Options // the options it runs with; SetUsers reloads a copy
	stopLog context.CancelFunc
	logDone chan struct{}
}

// MaxPayload bounds one NATS message on clearing's servers (embedded, and
// in the configuration NATSServerConfig renders): far above a fare event
// (fare.MaxEncodedSize) or a confirmation, far below a flood.
const MaxPayload = 64 << 10

// EmbeddedOptions configures StartEmbeddedNATS.
type EmbeddedOptions struct {
	// Dir holds JetStream's file store (under Dir/jetstream).
	Dir string
	// Host and Port to listen on (port -1 picks a free one).
	Host string
	Port int
	// Users are the NKey users admitted at start.
	Users []*server.NkeyUser
	// TLSCert and TLSKey are PEM files; when set, clients must use TLS.
	TLSCert, TLSKey string
	// MaxPayload bounds one message (default 64 KiB).
	MaxPayload int32
	Logger     *slog.Logger
	anonymous  bool // no users at all: only the security-cost benchmark's baseline
}

// natsMaxSubs bounds the subscriptions of one connection to the embedded
// server.
const natsMaxSubs = 4096

// maxNATSConns bounds the embedded server's client connections by the
// process's open-file limit, keeping a quarter of it (at least 1,024) for
// the stores, the API and the chain: connections by a client (a stolen
// terminal key may open thousands) ran an outside red team's clearing out
// of file descriptors, and its JetStream store failed with it. 0 (the
// server's default) when the limit cannot be read.
func maxNATSConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 0
	}
	keep := max(rl.Cur/4, 1024)
	if rl.Cur <= keep+256 {
		return 256
	}
	return int(min(rl.Cur-keep, 65536))
}

// StartEmbeddedNATS starts a nats-server with JetStream. Terminals connect to
// ClientURL.
func StartEmbeddedNATS(o EmbeddedOptions) (*EmbeddedNATS, error) {
	if len(o.Users) == 0 && !o.anonymous {
		return nil, errors.New("embedded nats-server: no users; anonymous access is never allowed")
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = MaxPayload
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	opts := server.Options{
		ServerName:         "faregate-clearing",
		Host:               o.Host,
		Port:               o.Port,
		JetStream:          true,
		StoreDir:           filepath.Join(o.Dir, "jetstream"),
		NoSigs:             true,
		MaxPayload:         o.MaxPayload,
		JetStreamMaxMemory: 256 << 20,
		Nkeys:              o.Users,
		MaxConn:            maxNATSConns(),
		// A client needs a handful of subscriptions (a gate: its
		// confirmations, its inbox, its list and gallery watches); an
		// outside red team's 200,000 on one connection grew clearing's
		// memory by 200 MB in seconds.
		MaxSubs: natsMaxSubs,
	}
	if o.anonymous {
		opts.Nkeys = nil
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("embedded nats-server: TLS needs both a certificate and a key file")
	}
	if o.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: o.TLSCert, KeyFile: o.TLSKey})
		if err == nil && len(tc.Certificates) > 0 {
			err = CheckCertificateDates(tc.Certificates[0], time.Now())
		}
		if err != nil {
			return nil, fmt.Errorf("embedded nats-server TLS %s: %w", o.TLSCert, err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 2
	}
	run := opts
	srv, err := server.NewServer(&run)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	l := o.Logger.With("component", "nats-server")
	refused := fare.NewTally(l, "NATS refused clients")
	srv.SetLoggerV2(natsLogger{l, refused}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s:%d not ready after 10s", o.Host, o.Port)
	}
	ctx, stop := context.WithCancel(context.Background())
	e := &EmbeddedNATS{srv: srv, opts: opts, stopLog: stop, logDone: make(chan struct{})}
	go func() {
		defer close(e.logDone)
		refused.Run(ctx, 10*time.Second)
	}()
	return e, nil
}

// SetUsers replaces the admitted users through nats-server's own reload:
// new users can connect at once, and connected clients whose user is gone
// are disconnected, with their permissions re-checked.
func (e *EmbeddedNATS) SetUsers(users []*server.NkeyUser) error {
	if len(users) == 0 {
		return errors.New("embedded nats-server: no users")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	next := e.opts
	next.Nkeys = users
	if err := e.srv.ReloadOptions(&next); err != nil {
		return fmt.Errorf("embedded nats-server: reload users: %w", err)
	}
	e.opts.Nkeys = users
	return nil
}

// ClientURL is the URL clients connect to.
func (e *EmbeddedNATS) ClientURL() string { return e.srv.ClientURL() }

// Server is the running nats-server.
func (e *EmbeddedNATS) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits for it.
func (e *EmbeddedNATS) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.stopLog()
	<-e.logDone
}

// natsLogger sends nats-server's log to slog; refused clients (failed
// authentication, permission violations) are tallied, one summary line per
// interval, so a client retrying or probing cannot flood the log.
type natsLogger struct {
	l       *slog.Logger
	refused *fare.Tally
}

func (n natsLogger) Noticef(string, ...any)    {}
func (n natsLogger) Warnf(f string, a ...any)  { n.refuseOr(n.l.Warn, fmt.Sprintf(f, a...)) }
func (n natsLogger) Fatalf(f string, a ...any) { n.l.Error(fmt.Sprintf(f, a...)) }
func (n natsLogger) Errorf(f string, a ...any) { n.refuseOr(n.l.Error, fmt.Sprintf(f, a...)) }

func (n natsLogger) refuseOr(log func(string, ...any), msg string) {
	for _, kind := range []string{"authentication error", "Authorization Error", "Permissions Violation", "Publish Violation", "Subscription Violation", "Maximum Payload", "TLS handshake error"} {
		if strings.Contains(msg, kind) {
			n.refused.Add(kind, msg)
			return
		}
	}
	log(msg)
}
func (n natsLogger) Debugf(string, ...any) {}
func (n natsLogger) Tracef(string, ...any) {}
