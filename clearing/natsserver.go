package clearing

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedNATS is an in-process nats-server with JetStream on a file store.
type EmbeddedNATS struct {
	srv *server.Server
}

// StartEmbeddedNATS starts a nats-server with JetStream storing under dir,
// listening on host:port (port -1 picks a free one). Terminals connect to
// ClientURL.
func StartEmbeddedNATS(dir, host string, port int, log *slog.Logger) (*EmbeddedNATS, error) {
	opts := &server.Options{
		ServerName:         "faregate-clearing",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           filepath.Join(dir, "jetstream"),
		NoSigs:             true,
		MaxPayload:         1 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	srv.SetLoggerV2(natsLogger{log.With("component", "nats-server")}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats-server on %s:%d not ready after 10s", host, port)
	}
	return &EmbeddedNATS{srv: srv}, nil
}

// ClientURL is the URL clients connect to.
func (e *EmbeddedNATS) ClientURL() string { return e.srv.ClientURL() }

// Shutdown stops the server and waits for it.
func (e *EmbeddedNATS) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(string, ...any)    {}
func (n natsLogger) Warnf(f string, a ...any)  { n.l.Warn(fmt.Sprintf(f, a...)) }
func (n natsLogger) Fatalf(f string, a ...any) { n.l.Error(fmt.Sprintf(f, a...)) }
func (n natsLogger) Errorf(f string, a ...any) { n.l.Error(fmt.Sprintf(f, a...)) }
func (n natsLogger) Debugf(string, ...any)     {}
func (n natsLogger) Tracef(string, ...any)     {}
