package clearing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
	// Users are the NKey users admitted at start, in the accounts they
	// name (NATSUsers; a user naming none is in ClearingAccount).
	Users []*server.NkeyUser
	// TLSCert and TLSKey are PEM files; when set, clients must use TLS.
	TLSCert, TLSKey string
	// MaxPayload bounds one message (default 64 KiB).
	MaxPayload int32
	Logger     *slog.Logger
	anonymous  bool // no users at all: only the security-cost benchmark's baseline
	maxConn    int  // tests: the server's connection limit, instead of maxNATSConns
}

// Bounds of the embedded server: subscriptions of one connection, the
// length of a protocol line, closed connections kept for monitoring.
const (
	natsMaxSubs        = 512
	natsMaxControlLine = 1024
	natsMaxClosed      = 16
)

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
		MaxConn:            cmp.Or(o.maxConn, maxNATSConns()),
		// A client needs a handful of subscriptions (a gate: its
		// confirmations, its inbox, its list and gallery watches); an
		// outside red team's 200,000 on one connection grew clearing's
		// memory by 200 MB in seconds. A terminal's connection takes
		// fewer still (NATSAccounts).
		MaxSubs: natsMaxSubs,
		// A protocol line (a subject and its reply) of clearing's or a
		// gate's is a few hundred bytes; the default 4 KiB let a red team
		// make each subscription cost that much.
		MaxControlLine: natsMaxControlLine,
		// The server keeps each closed connection's subscriptions for
		// monitoring, 10,000 connections by default: one terminal key's
		// connect-subscribe-close rounds left gigabytes held after it
		// had gone (an outside red team). Nothing here reads them.
		MaxClosedClients: natsMaxClosed,
		// A connection whose client vanished without a reset (a gate on a
		// cellular link) is closed after about 45 s, not nats-server's
		// default 4 minutes: each gate's connections are counted
		// (watchTerminalConns), and dead ones must not count for long.
		PingInterval: 15 * time.Second,
		MaxPingsOut:  3,
	}
	if o.anonymous {
		opts.Nkeys = nil
	} else {
		if err := migrateGlobalStore(opts.StoreDir); err != nil {
			return nil, err
		}
		if err := setAccounts(&opts, o.Users); err != nil {
			return nil, err
		}
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
	if err := setAccounts(&next, users); err != nil {
		return err
	}
	if err := e.srv.ReloadOptions(&next); err != nil {
		return fmt.Errorf("embedded nats-server: reload users: %w", err)
	}
	e.opts = next
	return nil
}

// setAccounts puts users in their accounts (NATSAccounts) into opts, parsed
// as nats-server parses a configuration file: the embedded server runs the
// accounts `faregate nats config` writes for an external one. The
// terminals' connections are bounded below opts.MaxConn, so that clearing
// and its verifiers can always connect.
func setAccounts(opts *server.Options, users []*server.NkeyUser) error {
	terminalConns := 0
	if opts.MaxConn > 0 {
		// Each verifiers' account may hold verifierConns on top of
		// clearing's reserve, so that one account's verifiers cannot take
		// the connections clearing and the other partitions' need.
		vaccts := map[string]bool{}
		for _, u := range users {
			if u.Account != nil && strings.HasPrefix(u.Account.Name, verifierAccountPrefix) {
				vaccts[u.Account.Name] = true
			}
		}
		terminalConns = max(opts.MaxConn-natsReservedConns-len(vaccts)*verifierConns, opts.MaxConn/2)
	}
	var auth server.Options
	if err := auth.ProcessConfigString(NATSAccounts(users, nil, terminalConns)); err != nil {
		return fmt.Errorf("embedded nats-server accounts: %w", err)
	}
	opts.Accounts, opts.Nkeys = auth.Accounts, auth.Nkeys
	return nil
}

// natsReservedConns are the embedded server's connections terminals cannot
// take for clearing's own (each verifiers' account adds verifierConns).
const natsReservedConns = 64

// migrateGlobalStore moves a JetStream store kept under nats-server's
// global account (data dirs from before the accounts of NATSAccounts) to
// ClearingAccount, so the streams, buckets and consumers in it stay
// clearing's.
func migrateGlobalStore(storeDir string) error {
	accounts := filepath.Join(storeDir, server.JetStreamStoreDir) // the server's own layout under StoreDir
	old, now := filepath.Join(accounts, server.DEFAULT_GLOBAL_ACCOUNT), filepath.Join(accounts, ClearingAccount)
	if _, err := os.Stat(old); err != nil {
		return nil
	}
	if _, err := os.Stat(now); err == nil {
		return nil
	}
	if err := os.Rename(old, now); err != nil {
		return fmt.Errorf("embedded nats-server: move the JetStream store of the global account to %s: %w", ClearingAccount, err)
	}
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
	for _, kind := range []string{"authentication error", "Authorization Error", "Permissions Violation", "Publish Violation", "Subscription Violation", "Maximum Payload", "TLS handshake error", "maximum account active connections exceeded", "Problem registering with account", "maximum control line exceeded", "maximum subscriptions exceeded",
		// A verifier's acks of sequences its consumer never had (one
		// warning each: an outside review's flood wrote 5.4 million lines).
		"past last stream sequence"} {
		if strings.Contains(msg, kind) {
			n.refused.Add(kind, msg)
			return
		}
	}
	log(msg)
}
func (n natsLogger) Debugf(string, ...any) {}
func (n natsLogger) Tracef(string, ...any) {}

// connsByUser counts the connections of each user (its NKey) of account.
func (e *EmbeddedNATS) connsByUser(account string) map[string]int {
	out := map[string]int{}
	for offset := 0; ; {
		cz, err := e.srv.Connz(&server.ConnzOptions{Username: true, Account: account, Offset: offset, Limit: 4096})
		if err != nil || len(cz.Conns) == 0 {
			return out
		}
		for _, ci := range cz.Conns {
			out[ci.AuthorizedUser]++
		}
		offset += len(cz.Conns)
		if offset >= cz.Total {
			return out
		}
	}
}
