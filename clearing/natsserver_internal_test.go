package clearing

import (
	"syscall"
	"testing"
)

// TestEmbeddedNATSBoundsConnections: the embedded server takes at most 512
// subscriptions a connection and protocol lines of 1 KiB, keeps 16 closed
// connections for monitoring, and takes no more
// client connections than the process's open-file limit leaves after a
// quarter (at least 1,024) kept for the stores, the API and the chain: a
// stolen terminal key's 19,900 connections ran an outside red team's
// clearing out of file descriptors, and its JetStream store failed.
func TestEmbeddedNATSBoundsConnections(t *testing.T) {
	e, err := StartEmbeddedNATS(EmbeddedOptions{Dir: t.TempDir(), Port: -1, anonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	keep := max(rl.Cur/4, 1024)
	want := uint64(256)
	if rl.Cur > keep+256 {
		want = min(rl.Cur-keep, 65536)
	}
	if e.opts.MaxSubs != natsMaxSubs || e.opts.MaxControlLine != natsMaxControlLine || e.opts.MaxClosedClients != natsMaxClosed {
		t.Errorf("the embedded server takes %d subscriptions a connection and lines of %d bytes, and keeps %d closed connections; want %d, %d, %d",
			e.opts.MaxSubs, e.opts.MaxControlLine, e.opts.MaxClosedClients, natsMaxSubs, natsMaxControlLine, natsMaxClosed)
	}
	if got := uint64(e.opts.MaxConn); got != want {
		t.Fatalf("the embedded server takes %d connections with an open-file limit of %d, want %d (a quarter, at least 1,024, kept)", got, rl.Cur, want)
	}
}
